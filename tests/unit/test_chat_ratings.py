"""Ratings of answers (rag.chats.ratings): stored with what was rated, by its asker only, read and
exported by an admin only, filtered by rating, model and date."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from providers.offline import MODEL_ID, OfflineProvider
from rag.answer.chat import ChatService, TurnChoice
from rag.chats.ratings import DOWN, UP, RatingService, ratings_csv
from rag.identity.access import Forbidden
from rag.library import Library
from storage import NotFoundError
from storage.models import Role, User, utcnow
from storage.ratings import RatingRepo

LEASE = "Договор аренды склада. Срок аренды составляет одиннадцать месяцев. Плата 45 000 рублей в месяц."


@pytest.fixture
def team(library: Library) -> tuple[Library, User, User, User]:
    admin = library.users.create("boss", role=Role.ADMIN)
    alice = library.users.create("alice")
    bob = library.users.create("bob")
    assert library.ingest("dogovor.txt", LEASE.encode(), user=alice).status == "indexed"
    return library, admin, alice, bob


def _answer(lib: Library, user: User, question: str, temperature: float = 0.3) -> str:
    service = ChatService(
        lib.chats, lib.retriever, {"offline": OfflineProvider()}, actor=lib.actor, scope=lib.scope
    )
    turn = service.ask(
        None, question, TurnChoice(provider="offline", model=MODEL_ID, temperature=temperature), user
    )
    turn.run()
    assert turn.answer is not None and not turn.error
    return turn.answer.id


def _service(lib: Library) -> RatingService:
    return RatingService(RatingRepo(lib.engine), lib.chats, lib.actor, lib.access)


def test_a_rating_is_stored_with_the_answer_its_sources_model_and_settings(
    team: tuple[Library, User, User, User],
) -> None:
    lib, admin, alice, _bob = team
    answer_id = _answer(lib, alice, "Какой срок аренды?", temperature=0.7)
    ratings = _service(lib)

    first = ratings.rate(answer_id, UP, "", alice)
    again = ratings.rate(answer_id, DOWN, "  Срок указан неверно  ", alice)

    assert again.id == first.id  # one rating per answer: changed, not added
    stored = ratings.recent(admin)
    assert [(r.value, r.comment) for r in stored] == [(DOWN, "Срок указан неверно")]
    r = stored[0]
    answer = lib.chats.message(answer_id)
    assert r.question == "Какой срок аренды?" and r.answer == answer.content
    assert r.sources == answer.sources and r.sources[0].filename == "dogovor.txt"
    assert (r.provider, r.model, r.user_id, r.chat_id) == ("offline", MODEL_ID, alice.id, answer.chat_id)
    assert r.settings["temperature"] == 0.7 and r.settings["max_tokens"] == 1024
    assert ratings.ratings_in(answer.chat_id, alice)[answer_id].value == DOWN
    # The rating outlives the chat: what was rated stays for the admin.
    lib.chats.delete(answer.chat_id)
    assert [x.id for x in ratings.recent(admin)] == [r.id]


def test_only_the_asker_rates_and_only_an_admin_reads(team: tuple[Library, User, User, User]) -> None:
    lib, admin, alice, bob = team
    answer_id = _answer(lib, alice, "Какой срок аренды?")
    ratings = _service(lib)
    question_id = lib.chats.messages(lib.chats.message(answer_id).chat_id)[0].id

    with pytest.raises(NotFoundError):
        ratings.rate(answer_id, UP, "", bob)
    with pytest.raises(NotFoundError):
        ratings.rate(question_id, UP, "", alice)
    with pytest.raises(NotFoundError):
        ratings.rate("0" * 32, UP, "", alice)
    with pytest.raises(NotFoundError):
        ratings.ratings_in(lib.chats.message(answer_id).chat_id, bob)
    with pytest.raises(ValueError, match="👍"):
        ratings.rate(answer_id, 5, "", alice)
    ratings.rate(answer_id, UP, "Отлично", alice)
    for member in (alice, bob):
        with pytest.raises(Forbidden):
            ratings.recent(member)
        with pytest.raises(Forbidden):
            ratings.rated_models(member)
    assert len(ratings.recent(admin)) == 1
    # A test set's candidates: a member's own 👍 answers, every one for an admin.
    assert [r.message_id for r in ratings.rated_answers(alice)] == [answer_id]
    assert ratings.rated_answers(bob) == []
    assert [r.message_id for r in ratings.rated_answers(admin)] == [answer_id]


def test_filters_and_csv(team: tuple[Library, User, User, User]) -> None:
    lib, admin, alice, bob = team
    ratings = _service(lib)
    good = _answer(lib, alice, "Какой срок аренды?")
    bad = _answer(lib, bob, "Какая плата?")
    ratings.rate(good, UP, "", alice)
    ratings.rate(bad, DOWN, "Нет ссылки на пункт; «кавычки», запятые", bob)

    assert [r.message_id for r in ratings.recent(admin, value=UP)] == [good]
    assert [r.message_id for r in ratings.recent(admin, value=DOWN)] == [bad]
    assert len(ratings.recent(admin, model=MODEL_ID)) == 2
    assert ratings.recent(admin, model="other") == []
    assert ratings.rated_models(admin) == [MODEL_ID]
    now = utcnow()
    assert len(ratings.recent(admin, since=now - timedelta(hours=1))) == 2
    assert ratings.recent(admin, since=now + timedelta(minutes=1)) == []
    assert ratings.recent(admin, until=now - timedelta(hours=1)) == []

    rows = ratings.recent(admin)
    names = ratings.user_names([r.user_id for r in rows], admin)
    text = ratings_csv(rows, names)
    assert text.startswith("\ufeff")
    table = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    by_user = {row["user"]: row for row in table}
    assert set(by_user) == {"alice", "bob"}
    assert (
        by_user["bob"]["rating"] == "👎"
        and by_user["bob"]["comment"] == "Нет ссылки на пункт; «кавычки», запятые"
    )
    assert by_user["alice"]["rating"] == "👍" and by_user["alice"]["question"] == "Какой срок аренды?"
    assert "dogovor.txt" in by_user["alice"]["sources"] and by_user["alice"]["model"] == MODEL_ID
