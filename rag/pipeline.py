"""Answer a question: retrieve, build the prompt, start the provider's stream."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from providers.base import ChatMessage, Completion, Fragment, GenerationParams, Provider
from rag.library import Library
from rag.prompts import build_messages
from rag.retrieve import Hit
from rag.text import stems

# Follow-ups such as «А сколько он стоит?» carry too few words to retrieve on their own.
FOLLOW_UP_WORDS = 3


@dataclass
class PreparedAnswer:
    """Everything about an answer except its text: prompt, sources and the live stream."""

    messages: list[ChatMessage]
    hits: list[Hit]
    completion: Completion
    sources: list[dict[str, object]] = field(default_factory=list)


def retrieval_query(question: str, history: Sequence[ChatMessage]) -> str:
    """The question, widened with the previous question when it is a short follow-up."""
    previous = [m.content for m in history if m.role == "user"]
    if previous and len(stems(question, drop_stopwords=True)) <= FOLLOW_UP_WORDS:
        return f"{previous[-1]} {question}"
    return question


def to_fragments(hits: Sequence[Hit]) -> list[Fragment]:
    """Number retrieved chunks 1..n for citation."""
    return [Fragment(i, h.filename, h.page, h.text, h.score) for i, h in enumerate(hits, start=1)]


def answer(
    library: Library,
    provider: Provider,
    question: str,
    model: str,
    params: GenerationParams,
    history: Sequence[ChatMessage] = (),
    top_k: int = 5,
    use_documents: bool = True,
    extra_system: str = "",
) -> PreparedAnswer:
    """Retrieve fragments and start streaming the provider's answer."""
    hits = library.retriever.search(retrieval_query(question, history), k=top_k) if use_documents else []
    context = next((m.context_tokens for m in provider.models() if m.id == model), 8192)
    messages, kept = build_messages(
        question,
        to_fragments(hits),
        history,
        extra_system=extra_system,
        use_documents=use_documents,
        context_tokens=context,
        answer_tokens=params.max_tokens,
    )
    hits = hits[: len(kept)]
    completion = provider.stream(messages, model, params, kept)
    sources = [{"n": i, **h.as_source()} for i, h in enumerate(hits, start=1)]
    return PreparedAnswer(messages, hits, completion, sources)
