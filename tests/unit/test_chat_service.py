"""The chat turn as a service (rag.answer.chat), driven as the page and the CLI drive it, no Streamlit."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from providers import (
    ChatMessage,
    StreamInterruptedError,
    Usage,
)
from providers.offline import MODEL_ID, OfflineProvider
from rag.answer.chat import CRASHED, INTERNAL, STOPPED, ChatService, TurnChoice, pending_question
from rag.identity.access import Forbidden
from rag.library import Library
from storage import NotFoundError
from storage.models import Role, User
from tests.stand_in import StandInModel

LEASE = (
    "Договор аренды нежилого помещения. Срок аренды составляет 11 месяцев с момента подписания. "
    "Арендная плата составляет 45 000 рублей в месяц."
)
OFFLINE = TurnChoice(provider="offline", model=MODEL_ID)


class ScriptedModel(StandInModel):
    """A stand-in for a remote LLM: streams given deltas, may break after some of them."""

    name = "scripted"

    def __init__(self, deltas: list[str], break_after: int | None = None) -> None:
        super().__init__()
        self.script = deltas
        self.break_after = break_after

    def deltas(self, messages: list[ChatMessage]) -> Iterator[str | Usage]:
        text = ""
        for i, delta in enumerate(self.script):
            if self.break_after is not None and i == self.break_after:
                raise StreamInterruptedError("Ответ оборвался.", provider=self.name, partial=text)
            text += delta
            yield delta
        yield Usage(prompt_tokens=10, completion_tokens=len(self.script))


class Clock:
    """A clock the test moves: checkpoints happen when it says a second has passed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lease_library(library: Library) -> Library:
    assert library.ingest("dogovor.txt", LEASE.encode()).status == "indexed"
    return library


def service_for(lib: Library, clock: Clock | None = None, **providers: object) -> ChatService:
    all_providers = {"offline": OfflineProvider(), **providers}
    return ChatService(lib.chats, lib.retriever, all_providers, clock=clock or Clock())  # type: ignore[arg-type]


def test_a_turn_stores_question_title_settings_answer_and_sources(lease_library: Library) -> None:
    service = service_for(lease_library)
    turn = service.ask(None, "Какой срок аренды?", OFFLINE)
    chat = lease_library.chats.get(turn.chat.id)
    assert chat.title == "Какой срок аренды?" and chat.provider == "offline" and chat.model == MODEL_ID
    # The question is stored before anything else happens.
    assert [m.role for m in lease_library.chats.messages(chat.id)] == ["user"]
    text = turn.run()
    assert "11 месяцев" in text and turn.error is None
    stored = lease_library.chats.messages(chat.id)
    assert [(m.role, m.error) for m in stored] == [("user", None), ("assistant", None)]
    assert stored[1].content == text
    assert stored[1].sources == turn.sources and stored[1].sources[0].filename == "dogovor.txt"
    assert stored[1].completion_tokens and stored[1].latency_ms is not None


def test_the_draft_is_stored_before_the_first_token_and_checkpointed(lease_library: Library) -> None:
    clock = Clock()
    model = ScriptedModel(["Срок ", "аренды ", "11 месяцев ", "[1]."])
    service = service_for(lease_library, clock, scripted=model)
    turn = service.ask(None, "Какой срок?", TurnChoice(provider="scripted", model="s-1"))
    turn.prepare()
    draft = lease_library.chats.messages(turn.chat.id)[-1]
    assert draft.role == "assistant" and draft.content == "" and draft.error == CRASHED
    assert draft.sources  # the sources are there before any text
    deltas = turn.deltas()
    next(deltas)
    clock.now = 1.5  # a second later the text so far is saved
    next(deltas)
    assert lease_library.chats.messages(turn.chat.id)[-1].content == "Срок аренды "
    list(deltas)
    final = lease_library.chats.messages(turn.chat.id)[-1]
    assert final.content == "Срок аренды 11 месяцев [1]." and final.error is None


def test_a_stopped_turn_keeps_the_partial_answer(lease_library: Library) -> None:
    model = ScriptedModel(["Срок ", "аренды ", "11 месяцев."])
    service = service_for(lease_library, scripted=model)
    turn = service.ask(None, "Какой срок?", TurnChoice(provider="scripted", model="s-1"))
    turn.prepare()
    deltas = turn.deltas()
    next(deltas)
    turn.stop()  # the page's run was stopped by a click
    deltas.close()
    last = lease_library.chats.messages(turn.chat.id)[-1]
    assert (last.content, last.error) == ("Срок ", STOPPED)
    assert turn.finished


def test_a_turn_cut_before_its_draft_leaves_the_question_pending(lease_library: Library) -> None:
    service = service_for(lease_library)
    turn = service.ask(None, "Какой срок аренды?", OFFLINE)
    turn.stop()  # cut before prepare(): nothing is stored for the answer
    messages = lease_library.chats.messages(turn.chat.id)
    assert pending_question(messages) == turn.question
    again = service.resume(turn.chat.id, turn.question.id, OFFLINE)
    assert again is not None and "11 месяцев" in again.run()
    assert [m.role for m in lease_library.chats.messages(turn.chat.id)] == ["user", "assistant"]
    assert service.resume(turn.chat.id, turn.question.id, OFFLINE) is None  # answered now


def test_a_broken_stream_is_stored_with_its_reason(lease_library: Library) -> None:
    model = ScriptedModel(["Срок ", "аренды ", "11 месяцев."], break_after=2)
    service = service_for(lease_library, scripted=model)
    turn = service.ask(None, "Какой срок?", TurnChoice(provider="scripted", model="s-1"))
    assert turn.run() == "Срок аренды "
    last = lease_library.chats.messages(turn.chat.id)[-1]
    assert (last.content, last.error) == ("Срок аренды ", "Ответ оборвался.")


def test_an_unknown_provider_or_internal_error_is_an_answer_not_a_crash(lease_library: Library) -> None:
    service = service_for(lease_library)
    turn = service.ask(None, "Какой срок?", TurnChoice(provider="нет-такого", model="x"))
    turn.run()
    assert turn.error and "нет-такого" in turn.error
    service.retriever = None  # type: ignore[assignment]
    broken = service.ask(turn.chat.id, "Какой срок?", OFFLINE)
    broken.run()
    assert broken.error == INTERNAL
    roles = [(m.role, bool(m.error)) for m in lease_library.chats.messages(turn.chat.id)]
    assert roles == [("user", False), ("assistant", True)] * 2


def test_retry_after_switching_provider_saves_the_new_one_on_the_chat(lease_library: Library) -> None:
    model = ScriptedModel(["x"], break_after=0)
    service = service_for(lease_library, scripted=model)
    scripted = TurnChoice(provider="scripted", model="s-1")
    turn = service.ask(None, "Какой срок аренды?", scripted)
    turn.run()
    failed = lease_library.chats.messages(turn.chat.id)[-1]
    question = service.discard_failed(turn.chat.id, failed.id)
    assert question == turn.question
    again = service.resume(turn.chat.id, question.id, OFFLINE)
    assert again is not None and "11 месяцев" in again.run()
    chat = lease_library.chats.get(turn.chat.id)
    assert (chat.provider, chat.model) == ("offline", MODEL_ID)
    assert [m.provider for m in lease_library.chats.messages(chat.id)] == [None, "offline"]


def test_history_goes_to_the_model_and_short_follow_ups_retrieve_with_it(lease_library: Library) -> None:
    model = ScriptedModel(["Ответ [1]."])
    service = service_for(lease_library, scripted=model)
    choice = TurnChoice(provider="scripted", model="s-1")
    first = service.ask(None, "Какой срок аренды помещения?", choice)
    first.run()
    follow = service.ask(first.chat.id, "А плата?", choice)
    follow.run()
    sent = model.prompts[-1]
    assert [m.role for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1].content == "Какой срок аренды помещения?"
    assert "45 000" in sent[0].content  # the fragment found with the widened query
    assert lease_library.chats.get(first.chat.id).title == "Какой срок аренды помещения?"


# -- managing chats: every change through the service, for the acting user --------------------


def _team(make_library: Callable[..., Library]) -> tuple[Library, ChatService, User, User, User]:
    """A library with sign-in on: an admin, alice (who owns the lease) and bob."""
    lib = make_library(RAG_AUTH="password")
    boss = lib.users.create("boss", role=Role.ADMIN)
    alice = lib.users.create("alice")
    bob = lib.users.create("bob")
    assert lib.ingest("dogovor.txt", LEASE.encode(), user=alice).status == "indexed"
    service = ChatService(
        lib.chats,
        lib.retriever,
        {"offline": OfflineProvider()},
        actor=lib.actor,
        scope=lib.scope,
        access=lib.access,
    )
    return lib, service, boss, alice, bob


def test_another_users_chat_cannot_be_renamed_deleted_cleared_or_rescoped(
    make_library: Callable[..., Library],
) -> None:
    lib, service, _boss, alice, bob = _team(make_library)
    turn = service.ask(None, "Какой срок аренды?", OFFLINE, user=alice)
    turn.run()
    chat_id = turn.chat.id
    for attempt in (
        lambda: service.rename(chat_id, "чужой", user=bob),
        lambda: service.delete(chat_id, user=bob),
        lambda: service.clear(chat_id, user=bob),
        lambda: service.choose_collections(chat_id, [], user=bob),
        lambda: service.messages(chat_id, user=bob),
    ):
        with pytest.raises(NotFoundError):
            attempt()
    chat = lib.chats.get(chat_id)
    assert chat.title == "Какой срок аренды?" and chat.collection_ids is None
    assert len(lib.chats.messages(chat_id)) == 2
    # The owner does all of it.
    assert service.rename(chat_id, "  Аренда\u202e  ", user=alice).title == "Аренда"
    service.clear(chat_id, user=alice)
    assert service.messages(chat_id, user=alice) == []
    service.delete(chat_id, user=alice)
    assert service.chats_of(alice) == []


def test_only_an_admin_clears_other_users_chats(make_library: Callable[..., Library]) -> None:
    _lib, service, boss, alice, bob = _team(make_library)
    service.ask(None, "Какой срок аренды?", OFFLINE, user=alice).run()
    with pytest.raises(Forbidden):
        service.clear_chats_of(alice.id, user=bob)
    with pytest.raises(Forbidden):
        service.clear_all(user=bob)
    assert len(service.chats_of(alice)) == 1
    assert service.clear_chats_of(alice.id, user=boss) == 1
    assert service.chats_of(alice) == []


def test_deselecting_every_collection_searches_none_never_all(make_library: Callable[..., Library]) -> None:
    lib, service, _boss, alice, bob = _team(make_library)
    first = service.ask(None, "Какой срок аренды?", OFFLINE, user=alice)
    first.run()
    assert first.sources  # every readable collection by default
    chat = service.choose_collections(first.chat.id, [], user=alice)
    assert chat.collection_ids == [] and service.searches_nothing(chat)
    turn = service.ask(chat.id, "Какой срок аренды?", OFFLINE, user=alice)
    turn.run()
    assert turn.sources == [] and "11 месяцев" not in turn.text
    assert lib.chats.get(chat.id).collection_ids == []  # asking keeps the choice
    # A collection the user cannot read does not exist for them: it is dropped, not searched.
    bobs = lib.access.personal_collection(bob)
    assert service.choose_collections(chat.id, [bobs.id], user=alice).collection_ids == []
    personal = lib.access.personal_collection(alice)
    assert service.choose_collections(chat.id, [personal.id], user=alice).collection_ids == [personal.id]
    again = service.ask(chat.id, "Какой срок аренды?", OFFLINE, user=alice)
    again.run()
    assert again.sources


def test_chat_titles_are_cleaned_at_the_door(lease_library: Library) -> None:
    service = service_for(lease_library)
    turn = service.ask(None, "\u202eсрок\u200b аренды?\x07", OFFLINE)
    assert turn.chat.title == "срок аренды?"
    assert service.rename(turn.chat.id, "\u200b\u2066").title == "без имени"
