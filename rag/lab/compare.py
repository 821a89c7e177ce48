"""One question answered by two to four assistants at once, with figures; votes and a leaderboard.

Each column runs in its own thread under its own deadline: a provider that fails or hangs
ends its own column with a Russian error, never the others. Columns whose retrieval settings
are identical (method, depth, the collections searched, how the question is rewritten) share
one search, made once by whichever of them gets there first.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from providers import Provider, ProviderError
from rag.answer.chat import INTERNAL, TurnChoice
from rag.answer.pipeline import answer, fused_search, search_queries
from rag.identity.access import Forbidden, Scope
from rag.lab.assistants import AssistantService, ready_provider
from rag.lab.prices import Price, cost_rub
from rag.search.retrieve import Retriever
from rag.search.rewrite import QueryRewriter
from storage import NotFoundError, Source
from storage.models import Assistant, User, Vote
from storage.repos import add_row

log = logging.getLogger(__name__)

MIN_COLUMNS, MAX_COLUMNS = 2, 4
OUTCOMES = ("better", "worse", "tie")
TIMEOUT = "Ассистент не ответил за {seconds:.0f} с: ответ прерван, остальные колонки не ждут его."
# 95 % two-sided.
Z = 1.96


@dataclass
class Column:
    """One assistant's answer in a comparison, filled in by its thread while it streams."""

    assistant_id: str
    assistant: str
    provider: str
    model: str
    note: str | None = None  # collections of the assistant the user may not read (skipped)
    text: str = ""
    sources: list[Source] = field(default_factory=list)
    error: str | None = None
    first_token_ms: float | None = None
    total_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_rub: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def finish(self, **fields: Any) -> bool:
        """Set the final fields once; False if the column had already ended (e.g. timed out)."""
        with self._lock:
            if self.done.is_set():
                return False
            for name, value in fields.items():
                setattr(self, name, value)
            self.done.set()
            return True

    def as_json(self) -> dict[str, Any]:
        """The keys ``rag compare --json`` prints, one object per assistant."""
        return {
            "assistant": self.assistant,
            "answer": self.text,
            "sources": [s.model_dump(mode="json") for s in self.sources],
            "first_token_ms": self.first_token_ms,
            "total_ms": self.total_ms,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_rub": self.cost_rub,
        }


@dataclass
class Comparison:
    """A question and its columns, answered in threads of their own."""

    question: str
    columns: list[Column]
    shared: _SharedSearch | None = None

    @property
    def searches(self) -> int:
        """How many searches were made for the columns (identical settings share one)."""
        return self.shared.count if self.shared is not None else 0

    @property
    def finished(self) -> bool:
        """Whether every column has ended (answered, failed or timed out)."""
        return all(c.done.is_set() for c in self.columns)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every column (up to ``timeout`` seconds); whether all have ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for c in self.columns:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not c.done.wait(left):
                return False
        return True

    @property
    def assistant_ids(self) -> list[str]:
        """The compared assistants' ids, in column order."""
        return [c.assistant_id for c in self.columns]


class _SharedSearch:
    """One search per retrieval key, made by the first column that needs it, awaited by the rest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[tuple[Any, ...], tuple[threading.Event, list[Any]]] = {}
        self.count = 0

    def get(self, key: tuple[Any, ...], search: Callable[[], list[Source]], timeout: float) -> list[Source]:
        with self._lock:
            entry = self._results.get(key)
            mine = entry is None
            if entry is None:
                entry = (threading.Event(), [])
                self._results[key] = entry
                self.count += 1
        ready, box = entry
        if mine:
            try:
                box.append(search())
            except BaseException as exc:
                box.append(exc)
            finally:
                ready.set()
        elif not ready.wait(timeout):
            raise TimeoutError
        result = box[0]
        if isinstance(result, BaseException):
            raise result
        return list(result)


class CompareService:
    """Comparisons over a library's retriever and the providers, as a given user."""

    def __init__(
        self,
        retriever: Retriever,
        providers: Mapping[str, Provider],
        assistants: AssistantService,
        scope: Callable[[User | None, list[str] | None], Scope],
        prices: dict[str, Price],
        *,
        rewriter: QueryRewriter | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        self.retriever = retriever
        self.providers = providers
        self.assistants = assistants
        self._scope = scope
        self.prices = prices
        self.rewriter = rewriter
        self.timeout_s = timeout_s

    def start(self, question: str, assistant_ids: list[str], user: User | None = None) -> Comparison:
        """Begin answering with each assistant (2 to 4, each one the user may use); returns at once."""
        ids = list(dict.fromkeys(assistant_ids))
        if not MIN_COLUMNS <= len(ids) <= MAX_COLUMNS:
            raise Forbidden(f"Для сравнения выберите от {MIN_COLUMNS} до {MAX_COLUMNS} разных ассистентов.")
        if not question.strip():
            raise Forbidden("Введите вопрос для сравнения.")
        chosen = [self.assistants.get(i, user) for i in ids]  # NotFoundError for anyone else's
        shared = _SharedSearch()
        comparison = Comparison(question.strip(), [], shared)
        for assistant in chosen:
            choice, note = self.assistants.choice(assistant, user)
            column = Column(assistant.id, assistant.name, choice.provider, choice.model, note=note)
            comparison.columns.append(column)
            scope = self._scope(user, choice.collection_ids)
            threading.Thread(
                target=self._supervise,
                args=(comparison, column, choice, scope, shared),
                name=f"compare-{assistant.name}",
                daemon=True,  # a hung provider must not keep the process alive
            ).start()
        return comparison

    def run(self, question: str, assistant_ids: list[str], user: User | None = None) -> Comparison:
        """Answer with each assistant and wait for all of them (each bounded by its own timeout)."""
        comparison = self.start(question, assistant_ids, user)
        comparison.wait()
        return comparison

    def _supervise(
        self, comparison: Comparison, column: Column, choice: TurnChoice, scope: Scope, shared: _SharedSearch
    ) -> None:
        started = time.perf_counter()
        worker = threading.Thread(
            target=self._answer,
            args=(comparison.question, column, choice, scope, shared, started),
            name=f"answer-{column.assistant}",
            daemon=True,
        )
        worker.start()
        worker.join(self.timeout_s)
        if worker.is_alive():
            column.finish(
                error=TIMEOUT.format(seconds=self.timeout_s),
                total_ms=round((time.perf_counter() - started) * 1000, 1),
            )

    def _answer(
        self,
        question: str,
        column: Column,
        choice: TurnChoice,
        scope: Scope,
        shared: _SharedSearch,
        started: float,
    ) -> None:
        completion = None
        error: str | None = None
        model = choice.model
        try:
            provider, model = ready_provider(self.providers.get(choice.provider), choice)
            hits: list[Source] = []
            if choice.use_documents and not scope.empty:
                rewriter = self.rewriter if choice.rewrite else None
                key = (
                    choice.method,
                    choice.top_k,
                    scope.collections,
                    tuple(sorted(scope.names)) if scope.names is not None else None,
                    # The rewrite is the model's: two models rewrite differently.
                    (choice.provider, model) if rewriter is not None else None,
                )

                def search() -> list[Source]:
                    queries = search_queries(question, (), provider, model, rewriter)
                    return fused_search(self.retriever, queries, choice.top_k or 5, scope, choice.method)

                hits = shared.get(key, search, self.timeout_s)
            prepared = answer(
                self.retriever,
                provider,
                question,
                model,
                choice.params(),
                top_k=choice.top_k or 5,
                use_documents=choice.use_documents,
                extra_system=choice.system_prompt,
                scope=scope,
                method=choice.method,
                hits=hits,
            )
            column.sources = prepared.sources
            completion = prepared.completion
            for delta in completion:
                if column.done.is_set():  # timed out meanwhile: stop paying for it
                    completion.close()
                    return
                if column.first_token_ms is None:
                    column.first_token_ms = round((time.perf_counter() - started) * 1000, 1)
                column.text += delta
        except ProviderError as exc:
            error = exc.user_message
        except Exception:
            log.exception("a comparison column failed")
            error = INTERNAL
        usage = completion.usage if completion is not None else None
        tokens_in = usage.prompt_tokens if usage else None
        tokens_out = usage.completion_tokens if usage else None
        column.finish(
            error=error,
            total_ms=round((time.perf_counter() - started) * 1000, 1),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_rub=cost_rub(self.prices, choice.provider, model, tokens_in, tokens_out),
        )


# -- votes and the leaderboard -----------------------------------------------------------------


@dataclass
class Standing:
    """An assistant's row of the leaderboard."""

    assistant_id: str
    assistant: str
    votes: int
    wins: int
    losses: int
    ties: int
    win_rate: float | None
    low: float | None
    high: float | None


def wilson(successes: float, n: int, z: float = Z) -> tuple[float, float]:
    """The Wilson score interval of a proportion (ties count as half a win)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def pairs_of(vote: Vote) -> list[tuple[str, str, float]]:
    """A vote as pairwise games (a, b, a's score: 1 won, 0 lost, 0.5 tie)."""
    ids = list(vote.assistant_ids)
    if vote.outcome == "tie" or vote.assistant_id is None:
        return [(a, b, 0.5) for i, a in enumerate(ids) for b in ids[i + 1 :]]
    named = vote.assistant_id
    score = 1.0 if vote.outcome == "better" else 0.0
    return [(named, other, score) for other in ids if other != named]


class VoteService:
    """Votes belong to their author; the leaderboard counts everyone's or only the user's own."""

    def __init__(
        self, engine: Engine, assistants: AssistantService, actor: Callable[[User | None], User]
    ) -> None:
        self.engine = engine
        self.assistants = assistants
        self._actor = actor

    def vote(
        self,
        question: str,
        assistant_ids: list[str],
        outcome: str,
        assistant_id: str | None = None,
        comment: str = "",
        user: User | None = None,
    ) -> Vote:
        """Record the user's verdict on a comparison: one answer better or worse, or a tie."""
        me = self._actor(user)
        if outcome not in OUTCOMES:
            raise Forbidden("Голос: «лучше», «хуже» или «ничья».")
        ids = list(dict.fromkeys(assistant_ids))
        if len(ids) < MIN_COLUMNS:
            raise Forbidden("Голосовать можно только за сравнение двух и более ассистентов.")
        for i in ids:
            self.assistants.get(i, me)  # NotFoundError for someone else's personal assistant
        if outcome != "tie" and assistant_id not in ids:
            raise NotFoundError(str(assistant_id))
        return add_row(
            self.engine,
            Vote(
                owner_id=me.id,
                question=question.strip(),
                assistant_ids=ids,
                assistant_id=None if outcome == "tie" else assistant_id,
                outcome=outcome,
                comment=comment.strip()[:2000],
            ),
        )

    def votes_of(self, user: User | None = None) -> list[Vote]:
        """The user's own votes, newest first."""
        me = self._actor(user)
        with Session(self.engine) as s:
            return list(
                s.exec(
                    select(Vote).where(col(Vote.owner_id) == me.id).order_by(col(Vote.created_at).desc())
                ).all()
            )

    def leaderboard(self, user: User | None = None, mine: bool = False) -> list[Standing]:
        """Win rates of the assistants the user may use, from everyone's votes or their own."""
        me = self._actor(user)
        visible: dict[str, Assistant] = {a.id: a for a in self.assistants.list_for(me)}
        with Session(self.engine) as s:
            query = select(Vote)
            if mine:
                query = query.where(col(Vote.owner_id) == me.id)
            votes = list(s.exec(query).all())
        tally: dict[str, list[float]] = {i: [] for i in visible}
        counted: dict[str, int] = dict.fromkeys(visible, 0)
        for v in votes:
            for i in v.assistant_ids:
                if i in counted:
                    counted[i] += 1
            for a, b, score in pairs_of(v):
                # Games against an assistant the user cannot see still count for the visible one.
                if a in tally:
                    tally[a].append(score)
                if b in tally:
                    tally[b].append(1.0 - score)
        rows = []
        for i, games in tally.items():
            if not counted[i]:
                continue
            n, won = len(games), sum(games)
            low, high = wilson(won, n) if n else (None, None)
            rows.append(
                Standing(
                    assistant_id=i,
                    assistant=visible[i].name,
                    votes=counted[i],
                    wins=sum(g == 1.0 for g in games),
                    losses=sum(g == 0.0 for g in games),
                    ties=sum(g == 0.5 for g in games),
                    win_rate=round(won / n, 4) if n else None,
                    low=round(low, 4) if low is not None else None,
                    high=round(high, 4) if high is not None else None,
                )
            )
        return sorted(rows, key=lambda r: (-(r.win_rate or 0.0), -r.votes, r.assistant))
