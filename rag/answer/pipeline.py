"""Answer a question: (rewrite it,) retrieve, build the prompt, start the provider's stream."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from language import is_follow_up
from providers.base import (
    ChatMessage,
    Completion,
    ContextTooLongError,
    Fragment,
    GenerationParams,
    Provider,
    Usage,
)
from rag.answer.prompts import build_messages
from rag.identity.access import EVERYTHING, Scope
from rag.search.retrieve import Method, Retriever
from rag.search.rewrite import QueryRewriter
from storage import Source


@dataclass
class PreparedAnswer:
    """Everything about an answer except its text: prompt, sources and the live stream."""

    messages: list[ChatMessage]
    sources: list[Source]
    completion: Completion
    queries: list[str] = field(default_factory=list)  # what retrieval searched with


def retrieval_query(question: str, history: Sequence[ChatMessage], anchor: str | None = None) -> str:
    """The question, widened when it is a short follow-up: with the earlier question the chat's
    memory found most relevant (``anchor``, rag.chats.memory), else with the previous question."""
    previous = [m.content for m in history if m.role == "user"]
    if (previous or anchor) and is_follow_up(question):
        return f"{anchor or previous[-1]} {question}"
    return question


def search_queries(
    question: str,
    history: Sequence[ChatMessage],
    provider: Provider,
    model: str,
    rewriter: QueryRewriter | None = None,
    anchor: str | None = None,
) -> list[str]:
    """What retrieval searches with: the model's rewrites and the question, or the question alone.

    A question that stands alone stays among the queries after its rewrites, so a rewrite that
    drops a rare term or a name cannot lose what the question itself finds. A follow-up widened
    with the previous question does not: that widening is what the rewrite replaces, and the
    previous question's words would pull the search back to the previous topic.
    """
    raw = retrieval_query(question, history, anchor)
    rewrites = rewriter.rewrite(provider, model, question, history) if rewriter is not None else []
    candidates = [*rewrites, raw] if not rewrites or raw == question else rewrites
    if anchor and not rewrites and raw != question:
        # Widened with an earlier turn the chat's memory found: the follow-up's own words are
        # searched too, so «а для второго склада?» after «срок аренды первого склада» is not
        # pulled back to the first one (the widened query alone ranked it first; bench/README.md).
        candidates = [raw, question]
    queries: list[str] = []
    for q in candidates:
        if q.strip() and q.casefold() not in {seen.casefold() for seen in queries}:
            queries.append(q)
    return queries


def fused_search(
    retriever: Retriever,
    queries: Sequence[str],
    k: int,
    scope: Scope = EVERYTHING,
    method: Method = "hybrid",
) -> list[Source]:
    """Top-k chunks for several queries: each searched alone, the scores summed, renumbered.

    Scores, not ranks, are fused (each query's scaled to its best): a query that barely tells
    two chunks apart (an English query over Russian text) then barely moves them, where rank
    fusion would count its near-tie as a full rank's difference.
    """
    if len(queries) == 1:
        return retriever.search(queries[0], k=k, scope=scope, method=method)
    # Each ranking deeper than k, so that a chunk second-best for every query still surfaces.
    pool = max(k * 4, 20)
    found: dict[str, Source] = {}
    fused: dict[str, float] = {}
    for q in queries:
        hits = retriever.search(q, k=pool, scope=scope, method=method)
        top = max((h.score for h in hits), default=0.0)
        for h in hits:
            found.setdefault(h.chunk_id, h)
            fused[h.chunk_id] = fused.get(h.chunk_id, 0.0) + (h.score / top if top > 0 else 0.0)
    # sorted() is stable: ties keep the order of the first query (the Russian rewrite).
    best = sorted(fused.items(), key=lambda kv: kv[1], reverse=True)[:k]
    return [
        found[cid].model_copy(update={"n": n, "score": score / len(queries)})
        for n, (cid, score) in enumerate(best, 1)
    ]


def to_fragments(sources: Sequence[Source]) -> list[Fragment]:
    """The sources as the provider sees them, under their citation numbers."""
    return [Fragment(s.n, s.filename, s.page, s.text, s.score, s.anchor) for s in sources]


def answer(
    retriever: Retriever,
    provider: Provider,
    question: str,
    model: str,
    params: GenerationParams,
    history: Sequence[ChatMessage] = (),
    top_k: int = 5,
    use_documents: bool = True,
    extra_system: str = "",
    rewriter: QueryRewriter | None = None,
    scope: Scope = EVERYTHING,
    method: Method = "hybrid",
    hits: Sequence[Source] | None = None,
    anchor: str | None = None,
) -> PreparedAnswer:
    """Retrieve fragments and start streaming the provider's answer.

    With a ``rewriter``, the provider's model first rewrites the question into standalone
    search queries (``rag.search.rewrite``), and retrieval fuses what each finds (``search_queries``).
    If the model refuses the prompt as too long before answering, the history is dropped and
    the fragments halved, and the request is sent once more; ``sources`` follows what was sent.
    Only the documents ``scope`` allows are searched (what the asking user may read), by
    ``method``. Given ``hits`` (a search already made with the same settings, e.g. shared by the
    columns of a comparison), nothing is searched again.
    """
    if hits is None:
        queries = (
            search_queries(question, history, provider, model, rewriter, anchor) if use_documents else []
        )
        found = fused_search(retriever, queries, top_k, scope, method) if queries else []
    else:
        queries, found = [], list(hits) if use_documents else []
    context = next((m.context_tokens for m in provider.models() if m.id == model), 8192)

    def build(
        frags: Sequence[Fragment], past: Sequence[ChatMessage]
    ) -> tuple[list[ChatMessage], list[Fragment]]:
        return build_messages(
            question,
            frags,
            past,
            extra_system=extra_system,
            use_documents=use_documents,
            context_tokens=context,
            answer_tokens=params.max_tokens,
        )

    messages, kept = build(to_fragments(found), history)
    prepared = PreparedAnswer(messages, found[: len(kept)], Completion(()), queries)

    def deltas() -> Iterator[str | Usage]:
        first = provider.stream(prepared.messages, model, params, kept)
        produced = False
        try:
            for delta in first:
                produced = True
                yield delta
            final = first
        except ContextTooLongError:
            if produced:
                raise
            smaller = kept[: max(1, len(kept) // 2)]
            prepared.messages, smaller = build(smaller, ())
            prepared.sources[:] = prepared.sources[: len(smaller)]
            final = provider.stream(prepared.messages, model, params, smaller)
            yield from final
        if final.usage is not None:
            yield final.usage

    prepared.completion = Completion(deltas())
    return prepared
