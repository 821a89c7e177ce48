"""Access control below the pages: a second user on every path of the library, the retriever
and the chat service sees nothing of another's private documents and chats."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from providers.offline import MODEL_ID, OfflineProvider
from rag.answer.chat import ChatService, TurnChoice
from rag.identity.access import PERSONAL_COLLECTION, Forbidden
from rag.library import Library
from rag.search.retrieve import METHODS
from storage import NotFoundError
from storage.models import Access, Role, User

SECRET = (
    "Служебная записка о сокращении. Отдел логистики сокращается на семь человек, "
    "приказ подписан тайно, кодовое слово «Белуга»."
)
SECRET_QUESTION = "Какое кодовое слово у приказа о сокращении отдела логистики?"
HANDBOOK = "Справочник сотрудника. Обед длится один час, с 13:00 до 14:00, в столовой на втором этаже."
OFFLINE = TurnChoice(provider="offline", model=MODEL_ID)


@pytest.fixture
def team(library: Library) -> tuple[Library, User, User, User]:
    admin = library.users.create("boss", role=Role.ADMIN)
    alice = library.users.create("alice")
    bob = library.users.create("bob")
    return library, admin, alice, bob


def _service(lib: Library) -> ChatService:
    return ChatService(
        lib.chats, lib.retriever, {"offline": OfflineProvider()}, actor=lib.actor, scope=lib.scope
    )


def test_a_private_document_is_invisible_to_another_member_on_every_path(
    team: tuple[Library, User, User, User],
) -> None:
    lib, admin, alice, bob = team
    res = lib.ingest("sokrashchenie.txt", SECRET.encode(), user=alice)
    assert res.status == "indexed" and res.document is not None
    secret_id = res.document.id
    assert lib.ingest("spravochnik.txt", HANDBOOK.encode(), user=bob).status == "indexed"

    # The owner finds it by every method; the other member by none.
    for method in METHODS:
        assert (
            lib.retriever.search(SECRET_QUESTION, method=method, scope=lib.scope(alice))[0].document_id
            == secret_id
        )
        hits = lib.retriever.search(SECRET_QUESTION, method=method, scope=lib.scope(bob))
        assert secret_id not in {h.document_id for h in hits}
        assert all("Белуга" not in h.text and h.filename != "sokrashchenie.txt" for h in hits)
    # Listing, looking up by id, removing, moving: the document does not exist for bob.
    assert [e.name for e in lib.documents(bob)] == ["spravochnik.txt"]
    with pytest.raises(NotFoundError):
        lib.document(secret_id, bob)
    with pytest.raises(NotFoundError):
        lib.remove(secret_id, bob)
    bobs = lib.access.personal_collection(bob)
    alices = lib.access.personal_collection(alice)
    with pytest.raises(NotFoundError):
        lib.move(secret_id, alices.id, bobs.id, bob)
    # Alice's collection itself is hidden from bob, and he cannot upload into it.
    with pytest.raises(NotFoundError):
        lib.access.collection(bob, alices.id)
    with pytest.raises(NotFoundError):
        lib.ingest("x.txt", b"anything at all", user=bob, collection_id=alices.id)
    assert {c.id for c in lib.access.readable(bob)} == {bobs.id}
    # The admin sees both documents.
    assert {e.document.id for e in lib.documents(admin)} >= {secret_id}
    assert len(lib.documents(admin)) == 2


def test_sharing_gives_read_then_write(team: tuple[Library, User, User, User]) -> None:
    lib, _admin, alice, bob = team
    shared = lib.collections.create("Юристы", alice.id)
    lib.ingest("sokrashchenie.txt", SECRET.encode(), user=alice, collection_id=shared.id)
    assert lib.retriever.search(SECRET_QUESTION, scope=lib.scope(bob)) == []

    lib.collections.grant(shared.id, bob.id, Access.READ)
    hits = lib.retriever.search(SECRET_QUESTION, scope=lib.scope(bob))
    assert hits and hits[0].filename == "sokrashchenie.txt"
    with pytest.raises(Forbidden):
        lib.ingest("spravochnik.txt", HANDBOOK.encode(), user=bob, collection_id=shared.id)

    lib.collections.grant(shared.id, bob.id, Access.WRITE)
    assert (
        lib.ingest("spravochnik.txt", HANDBOOK.encode(), user=bob, collection_id=shared.id).status
        == "indexed"
    )
    # Shared with everyone: a third member reads it too, but cannot write.
    carol = lib.users.create("carol")
    assert lib.retriever.search(SECRET_QUESTION, scope=lib.scope(carol)) == []
    lib.collections.update(shared.id, everyone=Access.READ)
    assert lib.retriever.search(SECRET_QUESTION, scope=lib.scope(carol))
    assert shared.id not in {c.id for c in lib.access.writable(carol)}
    # A deactivated member can do nothing at all, even with a user object from before.
    lib.users.update(bob.id, active=False)
    disabled = lib.users.get(bob.id)
    assert lib.access.scope(disabled).names == {}
    with pytest.raises(Forbidden):
        lib.scope(disabled)
    with pytest.raises(Forbidden):
        lib.ingest("other.txt", b"new bytes here", user=disabled)


def test_the_same_bytes_are_indexed_once_and_each_uploader_keeps_their_own_name(
    team: tuple[Library, User, User, User],
) -> None:
    lib, _admin, alice, bob = team
    first = lib.ingest("sokrashchenie.txt", SECRET.encode(), user=alice)
    second = lib.ingest("moya-kopiya.txt", SECRET.encode(), user=bob)
    assert first.document is not None and second.document is not None
    assert second.document.id == first.document.id  # stored and embedded once
    assert second.status == "indexed"
    # Alice's file name is not bob's business, in the message or in the row he gets back.
    assert "sokrashchenie" not in second.message
    assert second.document.filename == "moya-kopiya.txt"
    assert len(lib.docs.list_all()) == 1
    assert [e.name for e in lib.documents(bob)] == ["moya-kopiya.txt"]
    assert [e.name for e in lib.documents(alice)] == ["sokrashchenie.txt"]
    assert lib.retriever.search(SECRET_QUESTION, scope=lib.scope(bob))[0].filename == "moya-kopiya.txt"
    # Uploading it again into the same collection is a duplicate, named as bob knows it.
    again = lib.ingest("eshche-raz.txt", SECRET.encode(), user=bob)
    assert again.status == "duplicate" and "moya-kopiya.txt" in again.message
    # Bob removing his copy leaves alice's; the bytes go only when nobody has them.
    assert lib.remove(first.document.id, bob) is False
    assert [e.name for e in lib.documents(alice)] == ["sokrashchenie.txt"]
    assert lib.documents(bob) == []
    assert lib.remove(first.document.id, alice) is True
    assert lib.docs.list_all() == []


def test_a_member_moves_a_document_between_their_collections(team: tuple[Library, User, User, User]) -> None:
    lib, _admin, alice, _bob = team
    doc = lib.ingest("sokrashchenie.txt", SECRET.encode(), user=alice).document
    assert doc is not None
    personal = lib.access.personal_collection(alice)
    archive = lib.collections.create("Архив", alice.id)
    lib.move(doc.id, personal.id, archive.id, alice)
    assert lib.document(doc.id, alice).collections == [archive.id]
    assert lib.retriever.search(SECRET_QUESTION, scope=lib.scope(alice, [personal.id])) == []
    assert lib.retriever.search(SECRET_QUESTION, scope=lib.scope(alice, [archive.id]))


def test_chats_belong_to_their_owner(team: tuple[Library, User, User, User]) -> None:
    lib, _admin, alice, bob = team
    lib.ingest("sokrashchenie.txt", SECRET.encode(), user=alice)
    service = _service(lib)
    turn = service.ask(None, SECRET_QUESTION, OFFLINE, user=alice)
    text = turn.run()
    assert "Белуга" in text and turn.sources[0].filename == "sokrashchenie.txt"
    alice_chat = turn.chat.id

    assert [c.id for c in service.chats_of(alice)] == [alice_chat]
    assert service.chats_of(bob) == []
    with pytest.raises(NotFoundError):
        service.chat(alice_chat, bob)
    # Bob asking "in" alice's chat id gets a chat of his own; hers is untouched.
    theirs = service.ask(alice_chat, SECRET_QUESTION, OFFLINE, user=bob)
    assert theirs.chat.id != alice_chat and theirs.chat.owner_id == bob.id
    answer = theirs.run()
    assert "Белуга" not in answer and theirs.sources == []
    assert len(lib.chats.messages(alice_chat)) == 2
    assert service.discard_failed(alice_chat, "any", user=bob) is None


def test_a_chat_searches_only_the_collections_it_chose(team: tuple[Library, User, User, User]) -> None:
    lib, _admin, alice, _bob = team
    archive = lib.collections.create("Архив", alice.id)
    lib.ingest("sokrashchenie.txt", SECRET.encode(), user=alice, collection_id=archive.id)
    service = _service(lib)
    chat = service.start_chat(OFFLINE, user=alice)
    lib.chats.update(chat.id, collection_ids=[lib.access.personal_collection(alice).id])
    turn = service.ask(chat.id, SECRET_QUESTION, OFFLINE, user=alice)
    turn.run()
    assert turn.sources == []
    lib.chats.update(chat.id, collection_ids=None)  # back to everything alice may read
    turn = service.ask(chat.id, SECRET_QUESTION, OFFLINE, user=alice)
    turn.run()
    assert turn.sources and turn.sources[0].filename == "sokrashchenie.txt"


def test_without_sign_in_the_local_admin_acts_and_takes_over_older_data(library: Library) -> None:
    old_chat = library.chats.create(title="Старый чат")  # as a release without users left it
    assert old_chat.owner_id is None
    res = library.ingest("spravochnik.txt", HANDBOOK.encode())
    local = library.actor(None)
    assert local.role == Role.ADMIN and local.name == "local"
    assert library.chats.get(old_chat.id).owner_id == local.id
    assert res.document is not None and res.document.owner_id == local.id
    assert [c.name for c in library.access.readable(local)] == [PERSONAL_COLLECTION]


def test_with_sign_in_on_nobody_acts_without_a_user(make_library: Callable[..., Library]) -> None:
    lib = make_library(RAG_AUTH="password")
    with pytest.raises(Forbidden):
        lib.ingest("spravochnik.txt", HANDBOOK.encode())
    with pytest.raises(Forbidden):
        lib.scope(None)
