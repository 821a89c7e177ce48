"""The answer pipeline: prompt trimming and the one retry after a context-length refusal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from providers import (
    ChatMessage,
    Completion,
    ContextTooLongError,
    Fragment,
    GenerationParams,
    ModelInfo,
    ProviderStatus,
    Usage,
)
from rag.pipeline import answer, retrieval_query

FACTS = [
    f"Пункт {i}. Арендатор обязан соблюдать правило номер {i} о порядке пользования помещением."
    for i in range(1, 9)
]


class SmallWindowModel:
    """A stand-in for a remote LLM whose real window is smaller than its catalogue claims."""

    name = "small"
    label = "Small"

    def __init__(self, limit_chars: int) -> None:
        self.limit_chars = limit_chars
        self.prompts: list[list[ChatMessage]] = []

    def status(self) -> ProviderStatus:
        return ProviderStatus(True)

    def models(self) -> list[ModelInfo]:
        return [ModelInfo("small-1", "Small", context_tokens=100_000)]

    def stream(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        params: GenerationParams,
        fragments: Sequence[Fragment] = (),
    ) -> Completion:
        self.prompts.append(list(messages))
        size = sum(len(m.content) for m in messages)

        def run() -> Any:
            if size > self.limit_chars:
                raise ContextTooLongError(provider=self.name)
            yield "Ответ [1]."
            yield Usage(prompt_tokens=size // 3, completion_tokens=3)

        return Completion(run())


def test_context_too_long_is_retried_once_with_less(library: Any) -> None:
    for i, fact in enumerate(FACTS):
        assert library.ingest(f"rule-{i}.txt", fact.encode()).status == "indexed"
    history = [
        ChatMessage(role="user", content="Расскажи о правилах пользования помещением " * 20),
        ChatMessage(role="assistant", content="Правила описаны в пунктах договора. " * 20),
    ]
    full = sum(len(f) for f in FACTS[:6]) + 1500
    model = SmallWindowModel(limit_chars=full // 2)
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
