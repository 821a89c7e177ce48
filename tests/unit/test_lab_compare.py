"""Comparison (rag.lab.compare): columns side by side, shared searches, failures, votes, leaderboard."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from providers import Usage
from providers.base import ChatMessage
from providers.offline import MODEL_ID
from rag.identity.access import Forbidden
from rag.lab.assistants import AssistantSpec
from rag.lab.compare import wilson
from rag.library import Library
from storage import NotFoundError
from tests.stand_in import StandInModel
from tests.unit.lab_team import Broken, Echo, make_team

OFFLINE = AssistantSpec(name="Офлайн", provider="offline", model=MODEL_ID)


class Hanging(StandInModel):
    """A remote model that never answers (until the test lets it go)."""

    name = "hanging"
    label = "Зависший"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def deltas(self, messages: list[ChatMessage]) -> Iterator[str | Usage]:
        self.release.wait(30)
        yield "поздно"


def test_two_assistants_answer_side_by_side_with_figures(make_library: Callable[..., Library]) -> None:
    t = make_team(make_library, {"echo": Echo()}, RAG_MODEL_PRICES='{"echo/s-1": [0.4, 1.2]}')
    a = t.lab.assistants.create(OFFLINE, t.alice)
    b = t.lab.assistants.create(AssistantSpec(name="Эхо", provider="echo", model="s-1"), t.alice)
    done = t.lab.compare.run("Какой срок аренды?", [a.id, b.id], t.alice)
    first, second = done.columns
    assert (first.assistant, second.assistant) == ("Офлайн", "Эхо")
    assert "11 месяцев" in first.text and first.error is None and first.sources
    assert second.text == "Срок аренды — 11 месяцев." and second.error is None
    for c in done.columns:
        assert c.first_token_ms is not None and c.total_ms is not None and c.total_ms >= c.first_token_ms
    # The offline provider runs here: free; the remote one at the configured price per 1000 tokens.
    assert first.cost_rub == 0.0
    assert (second.tokens_in, second.tokens_out) == (1000, 500)
    assert second.cost_rub == pytest.approx(1000 * 0.4 / 1000 + 500 * 1.2 / 1000)
    assert set(first.as_json()) == {
        "assistant",
        "answer",
        "sources",
        "first_token_ms",
        "total_ms",
        "tokens_in",
        "tokens_out",
        "cost_rub",
    }


def test_identical_retrieval_settings_share_one_search(make_library: Callable[..., Library]) -> None:
    t = make_team(make_library)
    a = t.lab.assistants.create(OFFLINE, t.alice)
    warmer = t.lab.assistants.create(
        OFFLINE.model_copy(update={"name": "Тёплый", "temperature": 0.9}), t.alice
    )
    keyword = t.lab.assistants.create(
        OFFLINE.model_copy(update={"name": "Слова", "method": "keyword"}), t.alice
    )
    same = t.lab.compare.run("Какой срок аренды?", [a.id, warmer.id], t.alice)
    assert same.searches == 1
    assert [s.chunk_id for s in same.columns[0].sources] == [s.chunk_id for s in same.columns[1].sources]
    different = t.lab.compare.run("Какой срок аренды?", [a.id, warmer.id, keyword.id], t.alice)
    assert different.searches == 2


def test_a_failing_or_hanging_column_never_blocks_the_others(make_library: Callable[..., Library]) -> None:
    hanging = Hanging()
    t = make_team(make_library, {"broken": Broken(), "hanging": hanging}, RAG_LAB_TIMEOUT_S="1")
    try:
        good = t.lab.assistants.create(OFFLINE, t.alice)
        bad = t.lab.assistants.create(AssistantSpec(name="Сломанный", provider="broken"), t.alice)
        slow = t.lab.assistants.create(AssistantSpec(name="Зависший", provider="hanging"), t.alice)
        done = t.lab.compare.run("Какой срок аренды?", [good.id, bad.id, slow.id], t.alice)
        ok, broken, hung = done.columns
        assert "11 месяцев" in ok.text and ok.error is None
        assert broken.error is not None and "ошибку 500" in broken.error
        assert hung.error is not None and "не ответил" in hung.error and hung.text == ""
    finally:
        hanging.release.set()


def test_comparisons_take_two_to_four_assistants_the_user_may_use(
    make_library: Callable[..., Library],
) -> None:
    t = make_team(make_library)
    mine = t.lab.assistants.create(OFFLINE, t.alice)
    bobs = t.lab.assistants.create(OFFLINE, t.bob)
    with pytest.raises(Forbidden):
        t.lab.compare.start("Какой срок аренды?", [mine.id], t.alice)
    with pytest.raises(NotFoundError):
        t.lab.compare.start("Какой срок аренды?", [mine.id, bobs.id], t.alice)


def test_a_published_assistant_in_a_comparison_never_widens_the_search(
    make_library: Callable[..., Library],
) -> None:
    t = make_team(make_library)
    alices = t.lib.access.personal_collection(t.alice)
    spec = OFFLINE.model_copy(update={"name": "Аренда", "collection_ids": [alices.id]})
    shared = t.lab.assistants.create(spec, t.boss, publish=True)
    everything = t.lab.assistants.create(OFFLINE.model_copy(update={"name": "Всё"}), t.bob)
    done = t.lab.compare.run("Какой срок аренды?", [shared.id, everything.id], t.bob)
    narrowed, own = done.columns
    assert narrowed.note is not None and alices.name in narrowed.note
    assert narrowed.sources == [] and "11 месяцев" not in narrowed.text
    assert all(s.filename != "dogovor.txt" for s in own.sources)


def test_votes_are_the_voters_and_the_leaderboard_counts_them(make_library: Callable[..., Library]) -> None:
    t = make_team(make_library)
    a = t.lab.assistants.create(OFFLINE, t.boss, publish=True)
    b = t.lab.assistants.create(OFFLINE.model_copy(update={"name": "Второй"}), t.boss, publish=True)
    private = t.lab.assistants.create(OFFLINE.model_copy(update={"name": "Личный"}), t.alice)
    t.lab.votes.vote("q1", [a.id, b.id], "better", a.id, "точнее", user=t.alice)
    t.lab.votes.vote("q2", [a.id, b.id], "tie", user=t.alice)
    t.lab.votes.vote("q3", [a.id, b.id], "worse", a.id, user=t.bob)
    t.lab.votes.vote("q4", [a.id, private.id], "better", private.id, user=t.alice)
    # Nobody votes with an assistant they cannot see, nor reads another's votes.
    with pytest.raises(NotFoundError):
        t.lab.votes.vote("q", [a.id, private.id], "better", a.id, user=t.bob)
    assert [v.question for v in t.lab.votes.votes_of(t.bob)] == ["q3"]
    assert {v.question for v in t.lab.votes.votes_of(t.alice)} == {"q1", "q2", "q4"}

    board = {r.assistant: r for r in t.lab.votes.leaderboard(t.bob)}
    assert set(board) == {"Офлайн", "Второй"}  # alice's personal assistant is not bob's to see
    first = board["Офлайн"]
    # Офлайн: won q1, tied q2, lost q3, lost q4 → 1.5 of 4 games.
    assert (first.votes, first.wins, first.losses, first.ties) == (4, 1, 2, 1)
    assert first.win_rate == pytest.approx(1.5 / 4)
    low, high = wilson(1.5, 4)
    assert (first.low, first.high) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))
    second = board["Второй"]
    assert (second.votes, second.wins, second.losses, second.ties) == (3, 1, 1, 1)
    mine = {r.assistant: r for r in t.lab.votes.leaderboard(t.bob, mine=True)}
    assert (mine["Офлайн"].votes, mine["Офлайн"].win_rate) == (1, 0.0)
    assert t.lab.votes.leaderboard(t.alice, mine=True)[0].assistant in {"Офлайн", "Личный"}
    assert "Личный" in {r.assistant for r in t.lab.votes.leaderboard(t.alice)}


def test_wilson_interval_matches_the_formula() -> None:
    low, high = wilson(8, 10)
    # Known values for 8/10 at 95 %: 0.4902 .. 0.9433.
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson(0, 0) == (0.0, 1.0)
