"""Test sets and the check that runs assistants over them («Проверка»), in the background or at once.

A test set is a list of questions, each with the fact a right answer states and, optionally,
the file it is in. Per assistant a run measures what ``rag eval`` measures, with the same
helpers (``rag.eval.norm_answer``, nearest-rank percentiles, the offline abstention texts):
retrieval R@5 and MRR@10 (a hit is a fragment holding the fact, in the expected file when one
is given), the share of answers that state the fact, abstentions, time p50/p95 and the cost.
The page's background run and ``rag eval --assistant`` call the same ``score_assistant``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, or_, select

from names import clean_name
from providers import Provider, ProviderError
from providers.offline import NO_FRAGMENTS, NOTHING_FOUND
from rag.answer.chat import INTERNAL, TurnChoice
from rag.answer.pipeline import answer
from rag.eval import CORPUS_K, norm_answer
from rag.identity.access import AccessControl, Forbidden, Scope
from rag.lab.assistants import AssistantService, ready_provider
from rag.lab.prices import Price, cost_rub
from rag.search.retrieve import Retriever
from rag.search.rewrite import QueryRewriter
from storage import NotFoundError, Source
from storage.models import CheckRun, TestQuestion, TestSet, User, utcnow
from storage.repos import add_row, get_row, update_row

log = logging.getLogger(__name__)

# A live run beats at every question; one silent this long lost its process (a restart): far
# longer than any one answer may take.
STALE_AFTER = timedelta(minutes=30)
INTERRUPTED = "Проверка прервана: приложение перезапускалось, пока она шла. Запустите её снова."


def _aware(moment: datetime) -> datetime:
    """SQLite gives datetimes back without their zone; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


MAX_QUESTIONS = 500
# What a model is told to say when the fragments do not answer (rag.answer.prompts), and the
# offline provider's own texts: an answer that says so abstained.
ABSTAIN_MARKERS = ("в документах этого нет", "в документах нет", "не нашлось", "нет информации")
STATES_ENDED = ("done", "cancelled", "failed")


@dataclass(frozen=True)
class CheckQuestion:
    """A question with the fact its answer must state and, optionally, the file holding it."""

    question: str
    expected_fact: str
    expected_file: str | None = None


def is_abstention(text: str) -> bool:
    """Whether an answer says the documents do not answer the question."""
    stripped = text.strip()
    if stripped in (NOTHING_FOUND, NO_FRAGMENTS):
        return True
    low = norm_answer(stripped)
    return any(m in low for m in ABSTAIN_MARKERS)


_QUESTION_KEYS = ("question", "вопрос", "q")
_FACT_KEYS = ("expected_fact", "fact", "answer", "факт", "ответ", "ожидаемый факт")
_FILE_KEYS = ("expected_file", "file", "source", "файл", "ожидаемый файл")


def _pick(item: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    lowered = {str(k).strip().casefold(): v for k, v in item.items()}
    for k in keys:
        value = lowered.get(k)
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


def parse_questions(data: bytes, filename: str) -> list[CheckQuestion]:
    """Questions from an uploaded CSV (header: question, expected_fact, expected_file) or JSON list."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Forbidden(f"«{filename}»: файл не в кодировке UTF-8.") from None
    rows: list[Mapping[str, Any]]
    if filename.lower().endswith(".json"):
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise Forbidden(f"«{filename}»: не JSON ({exc}).") from None
        if not isinstance(loaded, list) or not all(isinstance(r, dict) for r in loaded):
            raise Forbidden(
                f"«{filename}»: ожидается JSON-список объектов с полями question и expected_fact."
            )
        rows = loaded
    else:
        sample = text[:4096]
        try:
            dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        rows = list(csv.DictReader(io.StringIO(text), dialect=dialect))
    out: list[CheckQuestion] = []
    for i, row in enumerate(rows, start=1):
        question, fact = _pick(row, _QUESTION_KEYS), _pick(row, _FACT_KEYS)
        if not question and not fact:
            continue  # an empty line
        if not question or not fact:
            raise Forbidden(f"«{filename}», вопрос №{i}: нужны и вопрос, и ожидаемый факт.")
        out.append(CheckQuestion(question, fact, _pick(row, _FILE_KEYS) or None))
    if not out:
        raise Forbidden(
            f"«{filename}»: не найдено ни одного вопроса (нужны столбцы question и expected_fact)."
        )
    if len(out) > MAX_QUESTIONS:
        raise Forbidden(f"«{filename}»: больше {MAX_QUESTIONS} вопросов.")
    return out


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (always one of the measured values), as ``rag eval`` reports."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def hit_rank(hits: list[Source], q: CheckQuestion) -> int | None:
    """1-based rank of the first fragment that holds the fact (in the expected file, if given)."""
    want = norm_answer(q.expected_fact)
    for pos, hit in enumerate(hits, start=1):
        if q.expected_file and hit.filename != q.expected_file:
            continue
        if want in norm_answer(hit.text):
            return pos
    return None


def score_assistant(
    retriever: Retriever,
    providers: Mapping[str, Provider],
    choice: TurnChoice,
    scope: Scope,
    questions: list[CheckQuestion],
    prices: dict[str, Price],
    *,
    rewriter: QueryRewriter | None = None,
    progress: Callable[[int], bool] | None = None,
) -> dict[str, Any]:
    """Run one assistant over the questions; its figures and the outcome of each question.

    ``progress(done)`` is called after each question; when it returns False the run stops
    (cancelled) and the figures cover the questions done so far.
    """
    provider = providers.get(choice.provider)
    per_question: list[dict[str, Any]] = []
    for q in questions:
        ranks = retriever.search(q.question, k=CORPUS_K, method=choice.method, scope=scope)
        rank = hit_rank(ranks, q) if choice.use_documents else None
        started = time.perf_counter()
        text, error, usage = "", None, None
        model = choice.model
        try:
            usable, model = ready_provider(provider, choice)
            prepared = answer(
                retriever,
                usable,
                q.question,
                model,
                choice.params(),
                top_k=choice.top_k or 5,
                use_documents=choice.use_documents,
                extra_system=choice.system_prompt,
                rewriter=rewriter if choice.rewrite else None,
                scope=scope,
                method=choice.method,
            )
            for _ in prepared.completion:
                pass
            text, usage = prepared.completion.text, prepared.completion.usage
        except ProviderError as exc:
            error = exc.user_message
        except Exception:
            log.exception("a check question failed")
            error = INTERNAL
        ms = round((time.perf_counter() - started) * 1000, 1)
        tokens_in = usage.prompt_tokens if usage else None
        tokens_out = usage.completion_tokens if usage else None
        per_question.append(
            {
                "question": q.question,
                "rank": rank,
                "fact": error is None and norm_answer(q.expected_fact) in norm_answer(text),
                "abstained": error is None and is_abstention(text),
                "error": error,
                "ms": ms,
                "answer": text,
                "cost_rub": cost_rub(prices, choice.provider, model, tokens_in, tokens_out),
            }
        )
        if progress is not None and not progress(len(per_question)):
            break
    return {**figures(per_question), "per_question": per_question}


def figures(per_question: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of one assistant's outcomes: R@5, MRR@10, facts, abstentions, p50/p95, cost."""
    n = len(per_question)
    ranks = [o["rank"] for o in per_question]
    times = [o["ms"] for o in per_question]
    costs = [o["cost_rub"] for o in per_question]

    def share(count: int) -> float | None:
        return round(count / n, 4) if n else None

    return {
        "questions": n,
        "recall@5": share(sum(r is not None and r <= 5 for r in ranks)),
        "mrr@10": round(sum(1.0 / r for r in ranks if r is not None) / n, 4) if n else None,
        "fact_rate": share(sum(bool(o["fact"]) for o in per_question)),
        "abstentions": sum(bool(o["abstained"]) for o in per_question),
        "errors": sum(o["error"] is not None for o in per_question),
        "p50_ms": percentile(times, 0.5),
        "p95_ms": percentile(times, 0.95),
        # Unknown when any answer's model has no price: a partial sum would read as a total.
        "cost_rub": None if any(c is None for c in costs) else round(sum(costs), 4),
    }


class TestSetService:
    """Test sets: their owner's, or everyone's when an admin publishes one."""

    __test__ = False

    def __init__(self, engine: Engine, access: AccessControl, actor: Callable[[User | None], User]) -> None:
        self.engine = engine
        self.access = access
        self._actor = actor

    def sets_of(self, user: User | None = None) -> list[TestSet]:
        """The user's own test sets, then the published ones."""
        me = self._actor(user)
        with Session(self.engine) as s:
            rows = s.exec(
                select(TestSet).where(or_(col(TestSet.owner_id) == me.id, col(TestSet.published)))
            ).all()
        return sorted(rows, key=lambda t: (t.owner_id != me.id, t.name.casefold()))

    def get(self, set_id: str, user: User | None = None) -> TestSet:
        """A test set the user may use; NotFoundError for anyone else's personal one."""
        me = self._actor(user)
        found = get_row(self.engine, TestSet, set_id)
        if found.owner_id != me.id and not found.published:
            raise NotFoundError(set_id)
        return found

    def create(
        self,
        name: str,
        questions: list[CheckQuestion] | None = None,
        user: User | None = None,
        publish: bool = False,
    ) -> TestSet:
        """A new test set owned by the user (published only by an admin), with its questions."""
        me = self._actor(user)
        if publish:
            self.access.require_admin(me)
        if not name.strip():
            raise Forbidden("Название тестового набора не может быть пустым.")
        made = add_row(self.engine, TestSet(name=clean_name(name, 120), owner_id=me.id, published=publish))
        for q in questions or []:
            self.add_question(made.id, q.question, q.expected_fact, q.expected_file, user=me)
        return made

    def add_question(
        self,
        set_id: str,
        question: str,
        expected_fact: str,
        expected_file: str | None = None,
        *,
        user: User | None = None,
    ) -> TestQuestion:
        """Add one question to a test set the user owns (an admin: any published one too)."""
        found = self._editable(set_id, user)
        if not question.strip() or not expected_fact.strip():
            raise Forbidden("Нужны и вопрос, и ожидаемый факт.")
        count = len(self.questions(found.id, user))
        if count >= MAX_QUESTIONS:
            raise Forbidden(f"В наборе уже {MAX_QUESTIONS} вопросов.")
        return add_row(
            self.engine,
            TestQuestion(
                set_id=found.id,
                ordinal=count,
                question=question.strip(),
                expected_fact=expected_fact.strip(),
                expected_file=(expected_file or "").strip() or None,
            ),
        )

    def questions(self, set_id: str, user: User | None = None) -> list[TestQuestion]:
        """The questions of a test set the user may use, in order."""
        self.get(set_id, user)
        with Session(self.engine) as s:
            return list(
                s.exec(
                    select(TestQuestion)
                    .where(col(TestQuestion.set_id) == set_id)
                    .order_by(col(TestQuestion.ordinal))
                ).all()
            )

    def delete(self, set_id: str, user: User | None = None) -> None:
        """Delete a test set with its questions and runs."""
        found = self._editable(set_id, user)
        with Session(self.engine) as s:
            s.exec(delete(TestQuestion).where(col(TestQuestion.set_id) == found.id))
            s.exec(delete(CheckRun).where(col(CheckRun.set_id) == found.id))
            row = s.get(TestSet, found.id)
            if row is not None:
                s.delete(row)
            s.commit()

    def _editable(self, set_id: str, user: User | None) -> TestSet:
        me = self._actor(user)
        found = self.get(set_id, me)
        if found.owner_id != me.id:
            self.access.require_admin(me)
        return found


class CheckService:
    """Runs of assistants over test sets: started in the background, kept, read back by their owner."""

    def __init__(
        self,
        engine: Engine,
        retriever: Retriever,
        providers: Mapping[str, Provider],
        assistants: AssistantService,
        sets: TestSetService,
        scope: Callable[[User | None, list[str] | None], Scope],
        prices: dict[str, Price],
        *,
        rewriter: QueryRewriter | None = None,
        stale_after: timedelta = STALE_AFTER,
    ) -> None:
        self.engine = engine
        self.stale_after = stale_after
        self.retriever = retriever
        self.providers = providers
        self.assistants = assistants
        self.sets = sets
        self._scope = scope
        self.prices = prices
        self.rewriter = rewriter

    def evaluate(
        self,
        questions: list[CheckQuestion],
        assistant_ids: list[str],
        user: User | None = None,
        progress: Callable[[int], bool] | None = None,
    ) -> dict[str, Any]:
        """Score each assistant over the questions, at once: what a run stores, what the CLI prints."""
        chosen = [self.assistants.get(i, user) for i in dict.fromkeys(assistant_ids)]
        if not chosen:
            raise Forbidden("Выберите хотя бы одного ассистента.")
        total = len(questions) * len(chosen)
        out: list[dict[str, Any]] = []
        for index, assistant in enumerate(chosen):
            choice, note = self.assistants.choice(assistant, user)
            done_before = index * len(questions)

            def step(done: int, before: int = done_before) -> bool:
                return progress(before + done) if progress is not None else True

            scored = score_assistant(
                self.retriever,
                self.providers,
                choice,
                self._scope(user, choice.collection_ids),
                questions,
                self.prices,
                rewriter=self.rewriter,
                progress=step,
            )
            out.append({"assistant_id": assistant.id, "assistant": assistant.name, "note": note, **scored})
            if progress is not None and scored["questions"] < len(questions):
                break  # cancelled
        return {"questions": len(questions), "total_steps": total, "assistants": out}

    def start(self, set_id: str, assistant_ids: list[str], user: User | None = None) -> CheckRun:
        """Start a run in the background; its row shows progress, and the figures when it ends."""
        test_set = self.sets.get(set_id, user)
        rows = self.sets.questions(test_set.id, user)
        if not rows:
            raise Forbidden("В наборе нет вопросов.")
        ids = list(dict.fromkeys(assistant_ids))
        for i in ids:
            self.assistants.get(i, user)
        if not ids:
            raise Forbidden("Выберите хотя бы одного ассистента.")
        me = self.assistants.who(user)
        run = add_row(self.engine, CheckRun(set_id=test_set.id, owner_id=me.id, assistant_ids=ids))
        questions = [CheckQuestion(r.question, r.expected_fact, r.expected_file) for r in rows]
        threading.Thread(
            target=self._run, args=(run.id, questions, ids, me), name=f"check-{run.id}", daemon=True
        ).start()
        return run

    def _run(self, run_id: str, questions: list[CheckQuestion], ids: list[str], me: User) -> None:
        total = max(1, len(questions) * len(ids))
        update_row(self.engine, CheckRun, run_id, {"state": "running", "beat_at": utcnow()})

        def progress(done: int) -> bool:
            row = update_row(
                self.engine, CheckRun, run_id, {"fraction": round(done / total, 4), "beat_at": utcnow()}
            )
            return not row.cancel

        try:
            results = self.evaluate(questions, ids, me, progress)
            cancelled = get_row(self.engine, CheckRun, run_id).cancel
            update_row(
                self.engine,
                CheckRun,
                run_id,
                {
                    "state": "cancelled" if cancelled else "done",
                    "results": results,
                    "fraction": 1.0 if not cancelled else get_row(self.engine, CheckRun, run_id).fraction,
                    "finished_at": utcnow(),
                },
            )
        except Exception:
            log.exception("a check run failed")
            update_row(
                self.engine, CheckRun, run_id, {"state": "failed", "error": INTERNAL, "finished_at": utcnow()}
            )

    def cancel(self, run_id: str, user: User | None = None) -> CheckRun:
        """Ask a running run to stop after its current question."""
        run = self.run(run_id, user)
        return update_row(self.engine, CheckRun, run.id, {"cancel": True})

    def run(self, run_id: str, user: User | None = None) -> CheckRun:
        """One of the user's runs; NotFoundError for anyone else's."""
        me = self.assistants.who(user)
        found = get_row(self.engine, CheckRun, run_id)
        if found.owner_id != me.id:
            raise NotFoundError(run_id)
        return self._unstuck(found)

    def runs_of(self, set_id: str, user: User | None = None) -> list[CheckRun]:
        """The user's runs of a test set, newest first (every run is kept)."""
        me = self.assistants.who(user)
        self.sets.get(set_id, me)
        with Session(self.engine) as s:
            runs = list(
                s.exec(
                    select(CheckRun)
                    .where(col(CheckRun.set_id) == set_id, col(CheckRun.owner_id) == me.id)
                    .order_by(col(CheckRun.created_at).desc())
                ).all()
            )
        return [self._unstuck(r) for r in runs]

    def _unstuck(self, run: CheckRun) -> CheckRun:
        """A live-looking run whose beat stopped (its process was restarted), marked interrupted."""
        if run.state not in ("queued", "running"):
            return run
        last = _aware(run.beat_at or run.created_at)
        if utcnow() - last < self.stale_after:
            return run
        return update_row(
            self.engine,
            CheckRun,
            run.id,
            {"state": "failed", "error": INTERRUPTED, "finished_at": utcnow()},
        )
