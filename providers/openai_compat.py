"""OpenAI-compatible servers (OpenAI, Ollama, vLLM, Yandex's compatible endpoint) through the ``openai`` SDK.

One ``openai.OpenAI`` client per provider (``RemoteProvider.client``, or one passed in, e.g.
over a mock transport): ``base_url`` and key from settings (a local Ollama or vLLM needs no key:
a placeholder is sent), ``timeout`` from ``RAG_LLM_TIMEOUT_S`` and ``max_retries=0``, since
``providers.retry`` retries. Answers are streamed (``stream_options.include_usage`` asks for token
counts in a final chunk); parameters a model refuses are dropped and remembered per model.
"""

from __future__ import annotations

import re
import time
from typing import cast
from urllib.parse import urlsplit

import openai
from openai import Omit, omit
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from providers import base, remote
from providers.base import ChatMessage, GenerationParams, ModelInfo, Usage
from providers.remote import Need, Refusal, RemoteProvider, Reply, Rule, retry_after
from settings import Settings

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# The SDK refuses to start without a key; local servers (Ollama, vLLM) ignore whatever is sent.
NO_KEY_PLACEHOLDER = "no-key"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_CONTEXT_TOKENS = 8192

# Known context windows by model name, first match wins; anything else gets the default.
CONTEXT_HINTS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"128k"), 128_000),
    (re.compile(r"32k"), 32_768),
    (re.compile(r"16k"), 16_384),
    (re.compile(r"(^|/)(chatgpt-4o|gpt-4o|gpt-4\.1|gpt-4\.5|gpt-4-turbo|gpt-5|o1|o3|o4)"), 128_000),
    (re.compile(r"(^|/)gpt-3\.5-turbo"), 16_385),
    (re.compile(r"yandexgpt|aliceai"), 32_768),
)
# Entries of an OpenAI /models list that are not chat models.
NOT_CHAT = ("embed", "whisper", "tts", "dall-e", "davinci", "babbage", "moderation", "transcribe", "sora")


def about_model(r: Refusal) -> bool:
    """The refusal names the model (not the key, the project or the URL)."""
    return r.reason == "model_not_found" or "model" in r.detail.lower()


ERRORS = (
    Rule(
        base.AuthenticationError,
        "{who} отклонил запрос без ключа или с неверным ключом: укажите OPENAI_API_KEY (или проверьте "
        "его) в {where}.",
        (401,),
    ),
    Rule(
        base.ModelNotFoundError,
        "Нет доступа к модели «{model}»: ключу OPENAI_API_KEY она не разрешена. Выберите другую модель "
        "или исправьте OPENAI_MODELS.",
        (403,),
        about_model,
    ),
    Rule(
        base.AuthenticationError,
        "{who} недоступен из вашего региона: укажите другой OPENAI_BASE_URL (например, прокси).",
        (403,),
        lambda r: "region" in r.reason or "country" in r.detail.lower() or "region" in r.detail.lower(),
    ),
    Rule(
        base.AuthenticationError,
        "Доступ запрещён: у ключа OPENAI_API_KEY нет прав на этот запрос. Проверьте ключ и права проекта.",
        (403,),
    ),
    Rule(
        base.ModelNotFoundError,
        "Модель «{model}» не найдена на сервере: выберите другую модель или исправьте OPENAI_MODELS "
        "(для Ollama сначала скачайте её: ollama pull).",
        (404,),
        about_model,
    ),
    Rule(
        base.ModelNotFoundError,
        "{who} не нашёл модель «{model}» или сам адрес API: проверьте OPENAI_MODELS и OPENAI_BASE_URL "
        "(обычно адрес оканчивается на /v1).",
        (404,),
    ),
    # Not a rate: waiting does not help, so it is not retried.
    Rule(
        base.AuthenticationError,
        "Исчерпана квота ключа OPENAI_API_KEY: пополните баланс или укажите другой ключ.",
        (429,),
        lambda r: r.reason == "insufficient_quota" or "quota" in r.detail.lower(),
    ),
    Rule(
        base.ProviderUnavailableError,
        "{who} недоступен: проверьте OPENAI_BASE_URL и что сервер запущен (для Ollama — «ollama serve»), "
        "затем повторите запрос.",
        (remote.UNREACHABLE,),
    ),
    # A 200 that is no OpenAI stream: some other web server answers at that address.
    Rule(
        base.ConfigurationError,
        "{who} ответил не в формате OpenAI: проверьте OPENAI_BASE_URL (обычно адрес оканчивается на /v1).",
        (remote.FORMAT, remote.EMPTY),
    ),
    *remote.HTTP_ERRORS,
)


def context_tokens(model: str) -> int:
    """A context window for a model name: known families, else a safe default."""
    return next((n for pattern, n in CONTEXT_HINTS if pattern.search(model.lower())), DEFAULT_CONTEXT_TOKENS)


class OpenAICompatProvider(RemoteProvider[openai.OpenAI, ChatCompletionChunk]):
    """Any server speaking the OpenAI Chat Completions API."""

    name = "openai"
    label = "OpenAI-совместимый"
    needs = (
        Need(
            ("openai_base_url", "openai_api_key"),
            "OPENAI_BASE_URL (адрес сервера, например http://localhost:11434/v1 для Ollama; для OpenAI "
            "можно не указывать) и/или OPENAI_API_KEY, а при желании список моделей OPENAI_MODELS "
            "через запятую",
        ),
    )
    errors = ERRORS

    def __init__(
        self, settings: Settings, *, client: openai.OpenAI | None = None, sleep: remote.Sleep = time.sleep
    ) -> None:
        super().__init__(settings, client=client, sleep=sleep)
        # Parameters a model refused (e.g. max_tokens for o1-style models), learned per model.
        self._quirks: dict[str, frozenset[str]] = {}

    @property
    def who(self) -> str:
        """The server by its base URL, without any credentials in it."""
        url = self.setting("openai_base_url") or DEFAULT_BASE_URL
        parts = urlsplit(url)
        host = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname or ""
        return f"Сервер {parts.scheme}://{host}{parts.path}" if parts.scheme and host else f"Сервер {url}"

    def _build_client(self) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=self.setting("openai_api_key") or NO_KEY_PLACEHOLDER,
            base_url=self.setting("openai_base_url") or DEFAULT_BASE_URL,
            timeout=self.settings.llm_timeout_s,
            max_retries=0,
        )

    def models(self) -> list[ModelInfo]:
        """OPENAI_MODELS if given, else the server's list (cached), else a default model."""
        names = list(dict.fromkeys(n.strip() for n in self.settings.openai_models.split(",") if n.strip()))
        if not names and not self.missing():
            names = self._listed_models() or []
        return [ModelInfo(n, n, context_tokens(n)) for n in names or [DEFAULT_MODEL]]

    def _fetch_models(self) -> list[str]:
        client = self.client().with_options(timeout=self.models_timeout_s, max_retries=0)
        ids = [str(m.id) for m in client.models.list().data if getattr(m, "id", None)]
        chat = sorted({i for i in ids if not any(word in i.lower() for word in NOT_CHAT)} or set(ids))
        if DEFAULT_MODEL in chat:  # the first entry is the default choice
            chat.insert(0, chat.pop(chat.index(DEFAULT_MODEL)))
        return chat

    def _request(
        self, messages: list[ChatMessage], model: str, params: GenerationParams
    ) -> openai.Stream[ChatCompletionChunk]:
        """Start the request, dropping parameters the model refuses (remembered per model)."""
        payload = [cast(ChatCompletionMessageParam, {"role": m.role, "content": m.content}) for m in messages]
        while True:
            quirks = self._quirks.get(model, frozenset())
            temperature: float | Omit = omit if "temperature" in quirks else params.temperature
            completion_tokens = "max_completion_tokens" in quirks
            try:
                return self.client().chat.completions.create(
                    model=model,
                    messages=payload,
                    stream=True,
                    temperature=temperature,
                    # Ollama, vLLM and Yandex understand max_tokens; newer OpenAI models want the other.
                    max_tokens=omit if completion_tokens else params.max_tokens,
                    max_completion_tokens=params.max_tokens if completion_tokens else omit,
                    stream_options=omit if "stream_options" in quirks else {"include_usage": True},
                )
            except openai.BadRequestError as exc:
                quirk = _refused_parameter(exc)
                if quirk is None or quirk in quirks:
                    raise
                self.log.info("openai: model %s refuses %s; retrying without it", model, quirk)
                self._quirks[model] = quirks | {quirk}

    def _read(self, chunk: ChatCompletionChunk, reply: Reply) -> str:
        if chunk.usage is not None:
            reply.usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
        choice = next((c for c in chunk.choices if c.index == 0), None)
        if choice is None:
            return ""
        reply.finish = choice.finish_reason or reply.finish
        return (choice.delta.content if choice.delta is not None else None) or ""

    def _refusal(self, exc: Exception) -> Refusal | None:
        if isinstance(exc, openai.APITimeoutError):
            return Refusal(remote.TIMEOUT)
        if isinstance(exc, openai.APIConnectionError):
            return Refusal(remote.UNREACHABLE)
        if isinstance(exc, openai.APIStatusError):
            reason = (exc.code or "").lower()
            headers = exc.response.headers.items()
            return Refusal(
                exc.status_code, self._scrub(remote.server_words(exc.body)), reason, retry_after(headers)
            )
        if isinstance(exc, ValueError):
            return Refusal(remote.FORMAT)
        if isinstance(exc, openai.OpenAIError):
            return Refusal(type(exc).__name__, self._scrub(remote.server_words(getattr(exc, "body", None))))
        return None


def _refused_parameter(exc: openai.BadRequestError) -> str | None:
    """The parameter a 400 says this model does not support, if it is one we can drop."""
    param = (exc.param or "").lower()
    message = remote.server_words(exc.body).lower()
    code = (exc.code or "").lower()
    if param == "stream_options" or "stream_options" in message:
        return "stream_options"
    if not (code.startswith("unsupported") or "not supported" in message or "unsupported" in message):
        return None
    if param == "max_tokens" or "max_completion_tokens" in message:
        return "max_completion_tokens"
    if param == "temperature" or "'temperature'" in message:
        return "temperature"
    return None
