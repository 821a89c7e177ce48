"""Search over one's chats (rag.chats.search): Russian stems, owner-only, the index kept in step."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from rag.chats.search import ChatSearch, matching_line
from rag.library import Library
from storage.migrate import MIGRATIONS, upgrade
from storage.models import Chat, Role, User

ANSWER = (
    "Срок действия указан в разделе 3.\n"
    "Стороны продлевают действие договора аренды на 11 месяцев [1].\n"
    "Оплата вносится ежемесячно."
)


def _chat(lib: Library, owner: User | None, title: str, question: str, answer: str) -> Chat:
    chat = lib.chats.create(title=title, owner_id=owner.id if owner else None)
    lib.chats.add_message(chat.id, "user", question)
    lib.chats.add_message(chat.id, "assistant", answer, provider="offline", model="m")
    return chat


def test_an_inflected_form_in_an_answer_finds_the_chat_and_its_line(library: Library) -> None:
    alice = library.users.create("alice")
    lease = _chat(library, alice, "Про аренду", "Сколько длится?", ANSWER)
    _chat(library, alice, "Про отпуск", "Сколько дней отпуска?", "Отпуск длится 28 дней.")
    search = ChatSearch(library.chats, library.actor)

    hits = search.search("договоры аренды", alice)

    assert [h.chat_id for h in hits] == [lease.id]
    hit = hits[0]
    assert hit.title == "Про аренду" and hit.role == "assistant"
    assert hit.line == "Стороны продлевают действие договора аренды на 11 месяцев [1]."
    assert hit.message_id == library.chats.messages(lease.id)[1].id
    # A question's words are searched too; words in no message find nothing.
    assert [h.role for h in search.search("отпуском", alice)] == ["user", "assistant"]
    assert search.search("ипотека", alice) == []
    assert search.search("   ", alice) == []


def test_another_users_chat_is_never_found(library: Library) -> None:
    alice = library.users.create("alice")
    bob = library.users.create("bob")
    admin = library.users.create("boss", role=Role.ADMIN)
    _chat(library, alice, "Тайная аренда", "Что с арендой?", ANSWER)
    mine = _chat(library, bob, "Мой чат", "Про склад", "На складе 40 паллет.")
    search = ChatSearch(library.chats, library.actor)

    assert len(search.search("договор аренды", alice)) == 2  # the question and the answer
    assert search.search("договор аренды", bob) == []
    # Not even an admin's own search reaches another person's chats.
    assert search.search("договор аренды", admin) == []
    assert {h.chat_id for h in search.search("склады", bob)} == {mine.id}
    assert search.search("склады", alice) == []


def test_the_index_follows_edits_clears_and_deletes(library: Library) -> None:
    alice = library.users.create("alice")
    search = ChatSearch(library.chats, library.actor)
    chat = _chat(library, alice, "Аренда", "Что с арендой?", ANSWER)
    other = _chat(library, alice, "Склад", "Про склад", "Склад открыт до 18:00.")
    # A streamed answer's row grows: the index holds its latest text, never a stale one.
    draft = library.chats.add_message(chat.id, "assistant", "")
    library.chats.update_message(draft.id, content="Неустойка составляет")
    library.chats.update_message(draft.id, content="Штраф составляет 5 %.")
    assert search.search("неустойка", alice) == []
    assert [h.message_id for h in search.search("штрафы", alice)] == [draft.id]
    # A streaming checkpoint does not re-index; the final save does.
    library.chats.update_message(draft.id, content="Пени начисляются ежедневно.", reindex=False)
    assert search.search("пени", alice) == []
    library.chats.update_message(draft.id, content="Пени начисляются ежедневно, штраф 5 %.")
    assert [h.message_id for h in search.search("пени", alice)] == [draft.id]
    library.chats.delete_message(draft.id)
    assert search.search("штрафы", alice) == []

    library.chats.clear_messages(chat.id)
    assert search.search("аренда", alice) == []
    assert len(search.search("склад", alice)) == 2
    library.chats.delete(other.id)
    assert search.search("склад", alice) == []

    _chat(library, alice, "Снова", "Про склад", "Склад закрыт.")
    assert library.chats.delete_all(owner_id=alice.id) == 2
    assert search.search("склад", alice) == []


def test_messages_stored_before_the_migration_are_found(library: Library) -> None:
    alice = library.users.create("alice")
    chat = _chat(library, alice, "Старый чат", "Что с арендой?", ANSWER)
    # Back to the schema before chat search, as an older release left it, then up again.
    with library.engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.downgrade(config, "0011")
    upgrade(library.engine)

    hits = ChatSearch(library.chats, library.actor).search("договорами", alice)
    assert [(h.chat_id, h.role) for h in hits] == [(chat.id, "assistant")]
    # The chat opens unchanged.
    assert [m.content for m in library.chats.messages(chat.id)] == ["Что с арендой?", ANSWER]


def test_the_matching_line_is_the_one_with_most_stems() -> None:
    text = "Первая строка про склад.\nВторая строка про склад и аренду.\n" + "Очень " * 60 + "аренда."
    assert matching_line(text, ["склад", "аренд"]) == "Вторая строка про склад и аренду."
    assert matching_line("Очень " * 60, ["очен"]).endswith("…")
