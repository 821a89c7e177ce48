"""Test sets and checks (rag.lab.checks): uploads, access, the figures and the background run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from providers.offline import MODEL_ID
from rag.eval import norm_answer
from rag.identity.access import Forbidden
from rag.lab.assistants import AssistantSpec
from rag.lab.checks import CheckQuestion, parse_questions
from rag.library import Library
from storage import NotFoundError
from tests.unit.lab_team import make_team

QUESTIONS = [
    CheckQuestion("Какой срок аренды?", "11 месяцев", "dogovor.txt"),
    CheckQuestion("Какая арендная плата?", "45 000 рублей"),
    CheckQuestion("Чему равен залог?", "двум месячным платежам", "dogovor.txt"),
    CheckQuestion("Кто оплачивает коммунальные услуги?", "оплачивает коммунальные услуги отдельно"),
    CheckQuestion("Сколько варят бульон?", "два часа"),  # bob's recipe: alice cannot read it
]


def test_csv_and_json_uploads_are_read() -> None:
    csv_text = (
        "question;expected_fact;expected_file\nКакой срок?;11 месяцев;dogovor.txt\nПлата?;45 000 рублей;\n"
    )
    got = parse_questions(csv_text.encode("utf-8-sig"), "set.csv")
    assert got == [
        CheckQuestion("Какой срок?", "11 месяцев", "dogovor.txt"),
        CheckQuestion("Плата?", "45 000 рублей", None),
    ]
    as_json = json.dumps([{"вопрос": "Какой срок?", "факт": "11 месяцев"}], ensure_ascii=False)
    assert parse_questions(as_json.encode(), "set.json") == [CheckQuestion("Какой срок?", "11 месяцев")]
    with pytest.raises(Forbidden):
        parse_questions(b"question,expected_fact\n\xd0\xa1\xd1\x80\xd0\xbe\xd0\xba?,\n", "bad.csv")
    with pytest.raises(Forbidden):
        parse_questions(b"{}", "bad.json")


def test_no_one_sees_or_adds_to_another_users_test_set(make_library: Callable[..., Library]) -> None:
    t = make_team(make_library)
    mine = t.lab.sets.create("Аренда", QUESTIONS[:2], t.alice)
    assert [s.name for s in t.lab.sets.sets_of(t.alice)] == ["Аренда"]
    assert t.lab.sets.sets_of(t.bob) == []
    for attempt in (
        lambda: t.lab.sets.get(mine.id, t.bob),
        lambda: t.lab.sets.questions(mine.id, t.bob),
        lambda: t.lab.sets.add_question(mine.id, "Вопрос?", "факт", user=t.bob),
        lambda: t.lab.sets.delete(mine.id, t.bob),
        lambda: t.lab.checks.runs_of(mine.id, t.bob),
    ):
        with pytest.raises(NotFoundError):
            attempt()
    # The interface the chats' «в тестовый набор» button uses.
    added = t.lab.sets.add_question(mine.id, "Залог?", "двум месячным платежам", user=t.alice)
    assert added.ordinal == 2
    assert [q.question for q in t.lab.sets.questions(mine.id, t.alice)][-1] == "Залог?"
    with pytest.raises(Forbidden):
        t.lab.sets.create("Для всех", [], t.alice, publish=True)
    shared = t.lab.sets.create("Для всех", QUESTIONS[:1], t.boss, publish=True)
    assert [s.name for s in t.lab.sets.sets_of(t.bob)] == ["Для всех"]
    with pytest.raises(Forbidden):
        t.lab.sets.add_question(shared.id, "Вопрос?", "факт", user=t.bob)


def _expected(lib: Library, questions: list[CheckQuestion], user: object) -> tuple[float, float]:
    """R@5 and MRR@10 computed here from the retriever, independently of rag.lab.checks."""
    scope = lib.scope(user)  # type: ignore[arg-type]
    hits5 = rr = 0.0
    for q in questions:
        found = lib.retriever.search(q.question, k=10, method="hybrid", scope=scope)
        for pos, hit in enumerate(found, start=1):
            if (q.expected_file is None or hit.filename == q.expected_file) and norm_answer(
                q.expected_fact
            ) in norm_answer(hit.text):
                hits5 += pos <= 5
                rr += 1 / pos
                break
    return hits5 / len(questions), rr / len(questions)


def test_a_check_scores_each_assistant_within_what_the_user_reads(
    make_library: Callable[..., Library],
) -> None:
    t = make_team(make_library)
    a = t.lab.assistants.create(AssistantSpec(name="Офлайн", provider="offline", model=MODEL_ID), t.alice)
    b = t.lab.assistants.create(
        AssistantSpec(name="Без документов", provider="offline", model=MODEL_ID, use_documents=False), t.alice
    )
    report = t.lab.checks.evaluate(QUESTIONS, [a.id, b.id], t.alice)
    first, second = report["assistants"]
    r5, mrr = _expected(t.lib, QUESTIONS, t.alice)
    assert first["questions"] == 5
    assert first["recall@5"] == pytest.approx(r5, abs=1e-4) and first["mrr@10"] == pytest.approx(
        mrr, abs=1e-4
    )
    # Four facts are in alice's lease; the recipe is bob's, so its question is not found for her.
    assert first["recall@5"] == pytest.approx(4 / 5)
    facts = [o["fact"] for o in first["per_question"]]
    assert facts[4] is False and first["fact_rate"] == pytest.approx(sum(facts) / 5)
    assert first["fact_rate"] >= 0.6
    assert first["cost_rub"] == 0.0 and first["p50_ms"] <= first["p95_ms"]
    # Without documents the offline model has nothing to quote: it abstains every time.
    assert second["recall@5"] == 0.0 and second["fact_rate"] == 0.0 and second["abstentions"] == 5


def test_a_run_goes_in_the_background_is_kept_and_can_be_cancelled(
    make_library: Callable[..., Library],
) -> None:
    t = make_team(make_library)
    a = t.lab.assistants.create(AssistantSpec(name="Офлайн", provider="offline", model=MODEL_ID), t.alice)
    test_set = t.lab.sets.create("Аренда", QUESTIONS, t.alice)
    run = t.lab.checks.start(test_set.id, [a.id], t.alice)
    for _ in range(600):
        run = t.lab.checks.run(run.id, t.alice)
        if run.state in ("done", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert run.state == "done" and run.fraction == 1.0
    [figures] = run.results["assistants"]
    direct = t.lab.checks.evaluate(QUESTIONS, [a.id], t.alice)["assistants"][0]
    for key in ("recall@5", "mrr@10", "fact_rate", "abstentions", "cost_rub"):
        assert figures[key] == direct[key], key
    with pytest.raises(NotFoundError):
        t.lab.checks.run(run.id, t.bob)
    # Cancelled before it starts its second question: it stops there and says so.
    second = t.lab.checks.start(test_set.id, [a.id], t.alice)
    t.lab.checks.cancel(second.id, t.alice)
    for _ in range(600):
        second = t.lab.checks.run(second.id, t.alice)
        if second.state in ("done", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert second.state == "cancelled"
    assert second.results["assistants"][0]["questions"] < len(QUESTIONS)
    assert [r.id for r in t.lab.checks.runs_of(test_set.id, t.alice)] == [second.id, run.id]


def test_a_published_assistant_never_widens_a_check(make_library: Callable[..., Library]) -> None:
    t = make_team(make_library)
    alices = t.lib.access.personal_collection(t.alice)
    spec = AssistantSpec(name="Аренда", provider="offline", model=MODEL_ID, collection_ids=[alices.id])
    shared = t.lab.assistants.create(spec, t.boss, publish=True)
    for_alice = t.lab.checks.evaluate(QUESTIONS[:4], [shared.id], t.alice)["assistants"][0]
    assert for_alice["note"] is None and for_alice["recall@5"] == 1.0
    for_bob = t.lab.checks.evaluate(QUESTIONS[:4], [shared.id], t.bob)["assistants"][0]
    assert for_bob["note"] is not None and alices.name in for_bob["note"]
    assert for_bob["recall@5"] == 0.0 and for_bob["fact_rate"] == 0.0


def test_a_run_whose_process_died_is_reported_interrupted_not_running_for_good(
    make_library: Callable[..., Library],
) -> None:
    from datetime import timedelta

    from rag.lab.checks import INTERRUPTED
    from storage.models import CheckRun, utcnow
    from storage.repos import add_row

    t = make_team(make_library)
    a = t.lab.assistants.create(AssistantSpec(name="Офлайн", provider="offline", model=MODEL_ID), t.alice)
    test_set = t.lab.sets.create("Аренда", QUESTIONS, t.alice)
    me = t.lab.assistants.who(t.alice)
    # What a restart leaves behind: a row that says «running», whose thread is gone.
    dead = add_row(
        t.lib.engine,
        CheckRun(
            set_id=test_set.id,
            owner_id=me.id,
            assistant_ids=[a.id],
            state="running",
            fraction=0.4,
            beat_at=utcnow() - timedelta(hours=1),
        ),
    )
    # A live one beat a moment ago: it stays running.
    live = add_row(
        t.lib.engine,
        CheckRun(set_id=test_set.id, owner_id=me.id, assistant_ids=[a.id], state="running", beat_at=utcnow()),
    )
    seen = {r.id: r for r in t.lab.checks.runs_of(test_set.id, t.alice)}
    assert seen[dead.id].state == "failed" and seen[dead.id].error == INTERRUPTED
    assert seen[dead.id].finished_at is not None
    assert seen[live.id].state == "running"
    assert t.lab.checks.run(dead.id, t.alice).state == "failed"  # stored, not only shown
    with pytest.raises(NotFoundError):
        t.lab.checks.run(dead.id, t.bob)
