"""The provider protocol, its value types and the error tree (see the package docstring)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant"]


class ChatMessage(BaseModel):
    """One message of the prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    content: str


# The messages of one request, system prompt first.
Prompt = Sequence[ChatMessage]


class GenerationParams(BaseModel):
    """Validated generation settings shared by every provider."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=0.3, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, ge=1, le=32768)


@dataclass(frozen=True)
class Fragment:
    """A retrieved fragment as the provider sees it; ``n`` is its citation number."""

    n: int
    file: str
    page: int | None
    text: str
    score: float
    anchor: str | None = None  # the clause it stands in («п. 2.1», «пп. 2.1–2.3»), when numbered


@dataclass(frozen=True)
class ModelInfo:
    """A model a provider offers."""

    id: str
    label: str
    context_tokens: int = 8192


@dataclass(frozen=True)
class ProviderStatus:
    """Whether a provider can be used now, and if not, what to do."""

    available: bool
    reason: str = ""


@dataclass
class Usage:
    """Token counts reported (or estimated) for one answer."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class Completion:
    """An answer being streamed: iterate for text deltas; ``usage`` is set once it ends.

    Providers feed it text deltas and, usually last, one ``Usage``; ``text`` always holds
    what arrived so far, so a broken or stopped stream keeps its partial answer.
    """

    def __init__(self, deltas: Iterable[str | Usage]) -> None:
        self._deltas = iter(deltas)
        self.usage: Usage | None = None
        self.text = ""

    def __iter__(self) -> Completion:
        return self

    def close(self) -> None:
        """Abandon the stream (the user stopped it): the provider cancels its request."""
        close = getattr(self._deltas, "close", None)
        if callable(close):
            close()

    def __next__(self) -> str:
        while True:
            item = next(self._deltas)
            if isinstance(item, Usage):
                self.usage = item
                continue
            if item:
                self.text += item
                return item


class Provider(Protocol):
    """What the app needs from an LLM backend."""

    name: str
    label: str

    def status(self) -> ProviderStatus:
        """Whether the provider is configured and usable."""
        ...

    def models(self) -> list[ModelInfo]:
        """The catalogue shown in the model selector."""
        ...

    def resolve_model(self, model: str) -> tuple[str, str]:
        """``(current id, note)``: a retired model's successor with a Russian note, else ``(model, "")``."""
        ...

    def stream(
        self, messages: Prompt, model: str, params: GenerationParams, fragments: Sequence[Fragment] = ()
    ) -> Completion:
        """Start an answer; remote providers find the fragments already in ``messages``."""
        ...


class ProviderError(Exception):
    """Base of provider errors; ``user_message`` is Russian and says what to do."""

    default_message = "Ошибка провайдера."

    def __init__(self, user_message: str | None = None, *, provider: str = "") -> None:
        self.user_message = user_message or self.default_message
        self.provider = provider
        super().__init__(self.user_message)


class ConfigurationError(ProviderError):
    """A key or setting is missing."""

    default_message = "Провайдер не настроен."


class AuthenticationError(ProviderError):
    """The key was rejected or the token expired."""

    default_message = "Ключ доступа отклонён: проверьте ключ в .streamlit/secrets.toml."


class RateLimitError(ProviderError):
    """Too many requests."""

    default_message = "Слишком много запросов: подождите немного и повторите."

    def __init__(
        self, user_message: str | None = None, *, provider: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(user_message, provider=provider)
        self.retry_after = retry_after


class ModelNotFoundError(ProviderError):
    """No such model, or no access to it."""

    default_message = "Модель не найдена или к ней нет доступа: выберите другую модель."


class InvalidRequestError(ProviderError):
    """The request was refused as malformed."""

    default_message = "Провайдер отклонил запрос."


class ContextTooLongError(InvalidRequestError):
    """The prompt does not fit the model's context window."""

    default_message = "Запрос не помещается в контекст модели: сократите вопрос или историю."


class ProviderUnavailableError(ProviderError):
    """The server is down, unreachable or timed out."""

    default_message = "Провайдер недоступен: проверьте сеть и повторите позже."


class ProviderTimeoutError(ProviderUnavailableError):
    """The server did not answer in time (not retried: the user has already waited)."""

    default_message = "Провайдер не ответил вовремя: повторите запрос позже или увеличьте RAG_LLM_TIMEOUT_S."


class StreamInterruptedError(ProviderError):
    """The stream broke mid-answer; ``partial`` is what arrived."""

    default_message = "Ответ оборвался: показана полученная часть. Повторите запрос."

    def __init__(self, user_message: str | None = None, *, provider: str = "", partial: str = "") -> None:
        super().__init__(user_message, provider=provider)
        self.partial = partial
