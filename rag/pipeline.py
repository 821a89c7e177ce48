"""Answer a question: retrieve, build the prompt, start the provider's stream."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

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
from rag.prompts import build_messages
from rag.retrieve import Retriever
from storage import Source


@dataclass
class PreparedAnswer:
    """Everything about an answer except its text: prompt, sources and the live stream."""

    messages: list[ChatMessage]
    sources: list[Source]
    completion: Completion


def retrieval_query(question: str, history: Sequence[ChatMessage]) -> str:
    """The question, widened with the previous question when it is a short follow-up."""
    previous = [m.content for m in history if m.role == "user"]
    if previous and is_follow_up(question):
        return f"{previous[-1]} {question}"
    return question


def to_fragments(sources: Sequence[Source]) -> list[Fragment]:
    """The sources as the provider sees them, under their citation numbers."""
    return [Fragment(s.n, s.filename, s.page, s.text, s.score) for s in sources]


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
) -> PreparedAnswer:
    """Retrieve fragments and start streaming the provider's answer.

    If the model refuses the prompt as too long before answering, the history is dropped and
    the fragments halved, and the request is sent once more; ``sources`` follows what was sent.
    """
    hits = retriever.search(retrieval_query(question, history), k=top_k) if use_documents else []
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

    messages, kept = build(to_fragments(hits), history)
    prepared = PreparedAnswer(messages, hits[: len(kept)], Completion(()))

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
