"""A stand-in for a remote LLM in unit tests: the provider protocol around scripted deltas.

Subclasses say only what the model answers (``deltas``); the protocol's other methods and the
record of every request sent are here once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from providers import ChatMessage, Completion, Fragment, GenerationParams, ModelInfo, ProviderStatus, Usage


class StandInModel:
    """Always available, one model; records each request as (messages, model, params)."""

    name = "stand-in"
    label = "Stand-in"
    model_id = "s-1"
    context_tokens = 8192

    def __init__(self) -> None:
        self.requests: list[tuple[list[ChatMessage], str, GenerationParams]] = []

    @property
    def prompts(self) -> list[list[ChatMessage]]:
        """The messages of every request, in order."""
        return [messages for messages, _, _ in self.requests]

    def status(self) -> ProviderStatus:
        return ProviderStatus(True)

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(self.model_id, self.label, context_tokens=self.context_tokens)]

    def resolve_model(self, model: str) -> tuple[str, str]:
        return model, ""

    def stream(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        params: GenerationParams,
        fragments: Sequence[Fragment] = (),
    ) -> Completion:
        self.requests.append((list(messages), model, params))
        return Completion(self.deltas(list(messages)))

    def deltas(self, messages: list[ChatMessage]) -> Iterator[str | Usage]:
        """What the model streams for these messages (text deltas, then usage)."""
        raise NotImplementedError
