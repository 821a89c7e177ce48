"""The answer pipeline: rewritten queries fused, prompt trimming, the retry after a context refusal."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from providers import (
    ChatMessage,
    ContextTooLongError,
    GenerationParams,
    Usage,
)
from providers.offline import MODEL_ID, OfflineProvider
from rag.answer.pipeline import answer, fused_search, retrieval_query, search_queries
from rag.answer.prompts import SYSTEM_PROMPT
from rag.search.rewrite import QueryRewriter
from storage import Source
from tests.stand_in import StandInModel

FACTS = [
    f"Пункт {i}. Арендатор обязан соблюдать правило номер {i} о порядке пользования помещением."
    for i in range(1, 9)
]


class SmallWindowModel(StandInModel):
    """A stand-in for a remote LLM whose real window is smaller than its catalogue claims."""

    name = "small"
    model_id = "small-1"
    context_tokens = 100_000

    def __init__(self, limit_chars: int) -> None:
        super().__init__()
        self.limit_chars = limit_chars

    def deltas(self, messages: list[ChatMessage]) -> Iterator[str | Usage]:
        size = sum(len(m.content) for m in messages)
        if size > self.limit_chars:
            raise ContextTooLongError(provider=self.name)
        yield "Ответ [1]."
        yield Usage(prompt_tokens=size // 3, completion_tokens=3)


def test_context_too_long_is_retried_once_with_less(library: Any) -> None:
    for i, fact in enumerate(FACTS):
        assert library.ingest(f"rule-{i}.txt", fact.encode()).status == "indexed"
    history = [
        ChatMessage(role="user", content="Расскажи о правилах пользования помещением " * 20),
        ChatMessage(role="assistant", content="Правила описаны в пунктах договора. " * 20),
    ]
    # Room for the instructions and about three fragments: not for six and the history.
    model = SmallWindowModel(limit_chars=len(SYSTEM_PROMPT) + 600)
    prepared = answer(
        library.retriever,
        model,
        "Какие правила пользования помещением?",
        "small-1",
        GenerationParams(),
        history=history,
        top_k=6,
    )
    assert len(prepared.sources) == 6
    text = "".join(prepared.completion)
    assert text == "Ответ [1]."
    assert len(model.prompts) == 2
    first, second = model.prompts
    assert len(second) < len(first)  # history dropped
    assert len(prepared.sources) == 3  # fragments halved, and sources follow what was sent
    sent_system = second[0].content
    for src in prepared.sources:
        assert src.text in sent_system
    assert prepared.completion.usage is not None


def test_context_refusal_that_persists_is_reported(library: Any) -> None:
    library.ingest("rule.txt", FACTS[0].encode())
    model = SmallWindowModel(limit_chars=10)
    prepared = answer(library.retriever, model, "Какие правила?", "small-1", GenerationParams())
    try:
        list(prepared.completion)
    except ContextTooLongError:
        pass
    else:
        raise AssertionError("a prompt that never fits must end in ContextTooLongError")
    assert len(model.prompts) == 2


def test_short_follow_up_borrows_the_previous_question() -> None:
    history = [ChatMessage(role="user", content="Где расположено помещение?")]
    assert retrieval_query("А адрес?", history) == "Где расположено помещение? А адрес?"
    long_question = "Какая арендная плата установлена договором аренды помещения?"
    assert retrieval_query(long_question, history) == long_question


class FixedRewriter(QueryRewriter):
    """Rewrites every question into the same queries, without asking any model."""

    def __init__(self, queries: list[str]) -> None:
        super().__init__()
        self.queries = queries
        self.asked: list[str] = []

    def rewrite(
        self, provider: Any, model: str, question: str, history: Sequence[ChatMessage] = ()
    ) -> list[str]:
        self.asked.append(question)
        return list(self.queries)


class RecordingRetriever:
    """Answers each query with fixed scored chunks, best first; records what was asked."""

    def __init__(self, results: dict[str, list[tuple[str, float]]]) -> None:
        self.results = results
        self.calls: list[tuple[str, int]] = []

    def search(self, query: str, k: int = 5, scope: object = None, method: str = "hybrid") -> list[Source]:
        self.calls.append((query, k))
        scored = self.results.get(query, [])[:k]
        return [
            Source(n=n, chunk_id=cid, document_id=f"d-{cid}", filename=f"{cid}.txt", text=cid, score=score)
            for n, (cid, score) in enumerate(scored, 1)
        ]


def test_search_queries_put_rewrites_first() -> None:
    history = [ChatMessage(role="user", content="Где расположено помещение?")]
    rewriter = FixedRewriter(["Какой адрес помещения?", "What is the address?", "какой адрес помещения?"])
    # A follow-up: the rewrites replace its widening with the previous question.
    queries = search_queries("А адрес?", history, OfflineProvider(), MODEL_ID, rewriter)
    assert queries == ["Какой адрес помещения?", "What is the address?"]
    assert rewriter.asked == ["А адрес?"]  # the rewriter gets the question itself
    # Without a rewrite, the widened question as before.
    widened = "Где расположено помещение? А адрес?"
    assert search_queries("А адрес?", history, OfflineProvider(), MODEL_ID) == [widened]
    assert search_queries("А адрес?", history, OfflineProvider(), MODEL_ID, FixedRewriter([])) == [widened]
    # A question that stands alone stays after its rewrites (unless it is one of them).
    standalone = "По какому адресу расположено арендуемое помещение?"
    assert search_queries(standalone, history, OfflineProvider(), MODEL_ID, rewriter) == [
        "Какой адрес помещения?",
        "What is the address?",
        standalone,
    ]
    same = FixedRewriter([standalone, "What is the address?"])
    assert search_queries(standalone, [], OfflineProvider(), MODEL_ID, same) == same.queries


def test_several_queries_are_searched_apart_and_their_scores_fused() -> None:
    retriever = RecordingRetriever(
        {
            "ru": [("pay", 1.0), ("term", 0.1)],
            # A near-tie moves the fused order little: rank fusion would make it a full rank apart.
            "en": [("term", 1.0), ("pay", 0.98), ("park", 0.2)],
        }
    )
    hits = fused_search(retriever, ["ru", "en"], k=2)  # type: ignore[arg-type]
    assert retriever.calls == [("ru", 20), ("en", 20)]  # each deeper than k
    assert [h.chunk_id for h in hits] == ["pay", "term"]
    assert [h.n for h in hits] == [1, 2]  # renumbered for citation
    assert [h.score for h in hits] == pytest.approx([0.99, 0.55])  # the mean of the scaled scores
    scaled = RecordingRetriever({"a": [("x", 0.5), ("y", 0.25)], "b": [("y", 0.8)], "c": []})
    assert [h.chunk_id for h in fused_search(scaled, ["a", "b", "c"], k=5)] == ["y", "x"]  # type: ignore[arg-type]
    one = RecordingRetriever({"q": [("a", 0.9), ("b", 0.5)]})
    assert [h.chunk_id for h in fused_search(one, ["q"], k=5)] == ["a", "b"]  # type: ignore[arg-type]
    assert one.calls == [("q", 5)]  # one query: searched as before


def test_the_rewrite_reaches_retrieval_and_is_skipped_without_documents() -> None:
    retriever = RecordingRetriever({"ru": [("a", 0.7)], "Какая арендная плата?": [("b", 0.7)]})
    rewriter = FixedRewriter(["ru"])
    prepared = answer(
        retriever,  # type: ignore[arg-type]
        OfflineProvider(),
        "Какая арендная плата?",
        MODEL_ID,
        GenerationParams(),
        top_k=1,
        rewriter=rewriter,
    )
    assert prepared.queries == ["ru", "Какая арендная плата?"]
    assert [q for q, _ in retriever.calls] == ["ru", "Какая арендная плата?"]
    assert [s.chunk_id for s in prepared.sources] == ["a"]  # a tie: the rewrite's ranking first
    retriever.calls.clear()
    plain = answer(
        retriever,  # type: ignore[arg-type]
        OfflineProvider(),
        "Какая арендная плата?",
        MODEL_ID,
        GenerationParams(),
        use_documents=False,
        rewriter=rewriter,
    )
    assert plain.queries == [] and plain.sources == [] and retriever.calls == []
    assert rewriter.asked == ["Какая арендная плата?"]
