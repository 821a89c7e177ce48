"""OpenAI-compatible servers (OpenAI, Ollama, vLLM, Yandex's compatible endpoint) through the ``openai`` SDK.

One ``openai.OpenAI`` client per provider, created on first use: ``base_url`` and key from
settings (a local Ollama or vLLM needs no key: a placeholder is sent), ``timeout`` from
``RAG_LLM_TIMEOUT_S`` and ``max_retries=0``, since refusals before the first token are retried
by ``providers.retry``. Answers are streamed (``stream_options.include_usage`` asks for token
counts in a final chunk); the SDK's errors are translated here into the provider error tree.
"""

from __future__ import annotations

import email.utils
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import openai
from openai import Omit, omit
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from providers.base import (
    AuthenticationError,
    ChatMessage,
    Completion,
    ConfigurationError,
    ContextTooLongError,
    Fragment,
    GenerationParams,
    InvalidRequestError,
    ModelInfo,
    ModelNotFoundError,
    ProviderError,
    ProviderStatus,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    StreamInterruptedError,
    Usage,
)
from providers.retry import stream_with_retries
from settings import Settings

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# The SDK refuses to start without a key; local servers (Ollama, vLLM) ignore whatever is sent.
NO_KEY_PLACEHOLDER = "no-key"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_CONTEXT_TOKENS = 8192
# The sidebar asks for the catalogue on every rerun: a short timeout, and a cached answer.
MODELS_TIMEOUT_S = 3.0
MODELS_TTL_S = 600.0
MAX_DETAIL_CHARS = 300

SETUP_HINT = (
    "укажите OPENAI_BASE_URL (адрес сервера, например http://localhost:11434/v1 для Ollama; "
    "для OpenAI можно не указывать) и/или OPENAI_API_KEY, а при желании список моделей "
    "OPENAI_MODELS через запятую — в .streamlit/secrets.toml или в переменных окружения"
)

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

CONTEXT_MESSAGE = re.compile(
    r"context[_ ]length|context window|maximum context|too many tokens|max_tokens is too large"
    r"|maximum (number of )?tokens|at most \d+ (completion )?tokens"
    r"|(prompt|input|context|request|messages?) (is )?too long",
    re.IGNORECASE,
)


def context_tokens(model: str) -> int:
    """A context window for a model name: known families, else a safe default."""
    name = model.lower()
    for pattern, tokens in CONTEXT_HINTS:
        if pattern.search(name):
            return tokens
    return DEFAULT_CONTEXT_TOKENS


def estimate_tokens(text: str) -> int:
    """About three characters a token (Russian); used when the server reports no usage."""
    return len(text) // 3 + 1 if text else 0


class OpenAICompatProvider:
    """Any server speaking the OpenAI Chat Completions API."""

    name = "openai"
    label = "OpenAI-совместимый"
    models_ttl_s = MODELS_TTL_S

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: openai.OpenAI | None = None
        self._client_lock = threading.Lock()
        self._models_lock = threading.Lock()
        self._server_models_cache: tuple[float, list[str]] | None = None
        # Parameters a model refused (e.g. max_tokens for o1-style models), learned per model.
        self._quirks: dict[str, frozenset[str]] = {}

    # --- configuration ---------------------------------------------------------------------

    def _key(self) -> str:
        secret = self.settings.openai_api_key
        return secret.get_secret_value().strip() if secret is not None else ""

    def _base_url(self) -> str:
        return (self.settings.openai_base_url or "").strip() or DEFAULT_BASE_URL

    def _server(self) -> str:
        """The base URL for messages and logs, without any credentials in it."""
        parts = urlsplit(self._base_url())
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return f"{parts.scheme}://{host}{parts.path}" if parts.scheme and host else self._base_url()

    def _configured(self) -> bool:
        return bool((self.settings.openai_base_url or "").strip() or self._key())

    def _configured_models(self) -> list[str]:
        names = [m.strip() for m in self.settings.openai_models.split(",")]
        return list(dict.fromkeys(n for n in names if n))

    def client(self) -> openai.OpenAI:
        """The provider's SDK client, created on first use and shared by every request."""
        with self._client_lock:
            if self._client is None:
                self._client = openai.OpenAI(
                    api_key=self._key() or NO_KEY_PLACEHOLDER,
                    base_url=self._base_url(),
                    timeout=self.settings.llm_timeout_s,
                    max_retries=0,
                )
            return self._client

    # --- protocol --------------------------------------------------------------------------

    def status(self) -> ProviderStatus:
        """Usable once a server address or a key is set."""
        if self._configured():
            return ProviderStatus(True)
        return ProviderStatus(False, f"не настроен: {SETUP_HINT}")

    def models(self) -> list[ModelInfo]:
        """OPENAI_MODELS if given, else the server's list (cached), else a default model."""
        names = self._configured_models()
        if not names and self._configured():
            names = self._server_models()
        if not names:
            names = [DEFAULT_MODEL]
        return [ModelInfo(n, n, context_tokens(n)) for n in names]

    def _server_models(self) -> list[str]:
        with self._models_lock:
            now = time.monotonic()
            cached = self._server_models_cache
            if cached is not None and now - cached[0] < self.models_ttl_s:
                return list(cached[1])
            names = self._fetch_models()
            self._server_models_cache = (now, names)  # failures are cached too: no hang per rerun
            return list(names)

    def _fetch_models(self) -> list[str]:
        timeout = min(MODELS_TIMEOUT_S, self.settings.llm_timeout_s)
        try:
            page = self.client().with_options(timeout=timeout, max_retries=0).models.list()
            ids = [str(m.id) for m in page.data if getattr(m, "id", None)]
        except Exception as exc:  # any failure: the selector falls back, the page must render
            status = getattr(exc, "status_code", None)
            log.warning(
                "openai: model list from %s unavailable (%s%s); using defaults",
                self._server(),
                type(exc).__name__,
                f" {status}" if status else "",
            )
            return []
        chat = [i for i in ids if not any(word in i.lower() for word in NOT_CHAT)] or ids
        chat = sorted(dict.fromkeys(chat))
        if DEFAULT_MODEL in chat:  # the first entry is the default choice
            chat.insert(0, chat.pop(chat.index(DEFAULT_MODEL)))
        return chat

    def stream(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        params: GenerationParams,
        fragments: Sequence[Fragment] = (),
    ) -> Completion:
        """Stream an answer; the fragments are already in ``messages``."""
        if not self._configured():
            raise ConfigurationError(f"{self.label}: {SETUP_HINT}.", provider=self.name)
        prompt = list(messages)
        return Completion(
            stream_with_retries(
                lambda: self._open(prompt, model, params),
                retries=self.settings.llm_max_retries,
                max_wait=self.settings.llm_retry_max_wait_s,
            )
        )

    # --- one request -----------------------------------------------------------------------

    def _open(
        self, messages: list[ChatMessage], model: str, params: GenerationParams
    ) -> Iterator[str | Usage]:
        log.debug(
            "openai request: server=%s model=%s temperature=%s max_tokens=%d messages=%d chars=%d",
            self._server(),
            model,
            params.temperature,
            params.max_tokens,
            len(messages),
            sum(len(m.content) for m in messages),
        )
        text = ""
        usage: Usage | None = None
        chunks = 0
        finished = False
        try:
            with self._create(messages, model, params) as response:
                for chunk in response:
                    chunks += 1
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                    for choice in chunk.choices:
                        if choice.index != 0:
                            continue
                        finished = finished or choice.finish_reason is not None
                        delta = choice.delta.content if choice.delta is not None else None
                        if delta:
                            text += delta
                            yield delta
        except (openai.OpenAIError, ValueError) as exc:
            error = self._translate(exc, model, text)
            log.info("openai: %s from %s for model %s", type(error).__name__, self._server(), model)
            raise error from exc
        if chunks == 0:
            raise ConfigurationError(
                f"Сервер {self._server()} ответил не в формате OpenAI (нет потока ответа): проверьте "
                "OPENAI_BASE_URL — обычно адрес оканчивается на /v1.",
                provider=self.name,
            )
        if not finished:
            log.warning("openai: stream from %s ended without finish_reason", self._server())
        if usage is None:
            usage = Usage(sum(estimate_tokens(m.content) for m in messages), estimate_tokens(text))
        yield usage

    def _create(
        self, messages: list[ChatMessage], model: str, params: GenerationParams
    ) -> openai.Stream[ChatCompletionChunk]:
        """Start the request, dropping parameters the model refuses (remembered per model)."""
        payload = [_message(m) for m in messages]
        client = self.client()
        while True:
            quirks = self._quirks.get(model, frozenset())
            temperature: float | Omit = omit if "temperature" in quirks else params.temperature
            completion_tokens = "max_completion_tokens" in quirks
            try:
                return client.chat.completions.create(
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
                log.info("openai: model %s refuses %s; retrying without it", model, quirk)
                self._quirks[model] = quirks | {quirk}

    # --- errors ----------------------------------------------------------------------------

    def _translate(self, exc: Exception, model: str, partial: str) -> ProviderError:
        """The SDK's exception as our error, with a Russian message saying what to do."""
        p = self.name
        server = self._server()
        timeout = f"{self.settings.llm_timeout_s:g}"
        if partial:
            reason = (
                f"сервер молчал дольше {timeout} с"
                if isinstance(exc, openai.APITimeoutError)
                else "соединение с сервером прервалось"
            )
            return StreamInterruptedError(
                f"Ответ оборвался ({reason}): показана полученная часть. Повторите запрос.",
                provider=p,
                partial=partial,
            )
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeoutError(
                f"Сервер {server} не ответил за {timeout} с: повторите запрос позже "
                "или увеличьте RAG_LLM_TIMEOUT_S.",
                provider=p,
            )
        if isinstance(exc, openai.APIConnectionError):
            return ProviderUnavailableError(
                f"Не удалось подключиться к {server}: проверьте OPENAI_BASE_URL и что сервер запущен "
                "(для Ollama — «ollama serve»), затем повторите запрос.",
                provider=p,
            )
        if isinstance(exc, openai.APIStatusError):
            return self._translate_status(exc, model)
        if isinstance(exc, ValueError):
            return ConfigurationError(
                f"Сервер {server} ответил не в формате OpenAI: проверьте OPENAI_BASE_URL "
                "(обычно адрес оканчивается на /v1).",
                provider=p,
            )
        detail = self._detail(exc)
        return ProviderUnavailableError(
            f"Сервер {server} сообщил об ошибке{': ' + detail if detail else ''}. Повторите запрос позже.",
            provider=p,
        )

    def _translate_status(self, exc: openai.APIStatusError, model: str) -> ProviderError:
        p = self.name
        status = exc.status_code
        code = (exc.code or "").lower()
        detail = self._detail(exc)
        message = detail.lower()
        if status == 401:
            if self._key():
                text = (
                    "Сервер отклонил ключ OPENAI_API_KEY: проверьте ключ в .streamlit/secrets.toml "
                    "или в переменной окружения OPENAI_API_KEY."
                )
            else:
                text = "Сервер требует ключ: укажите OPENAI_API_KEY в .streamlit/secrets.toml."
            return AuthenticationError(text, provider=p)
        if status == 403:
            if code == "model_not_found" or "model" in message:
                return ModelNotFoundError(
                    f"Нет доступа к модели «{model}»: ключу OPENAI_API_KEY она не разрешена. "
                    "Выберите другую модель или исправьте OPENAI_MODELS.",
                    provider=p,
                )
            if "region" in code or "country" in message or "region" in message:
                text = (
                    "Сервер недоступен из вашего региона: укажите другой OPENAI_BASE_URL (например, прокси)."
                )
            else:
                text = (
                    "Доступ запрещён: у ключа OPENAI_API_KEY нет прав на этот запрос. "
                    "Проверьте ключ и права проекта."
                )
            return AuthenticationError(text, provider=p)
        if status == 404:
            if code == "model_not_found" or "model" in message:
                text = (
                    f"Модель «{model}» не найдена на сервере: выберите другую модель или исправьте "
                    "OPENAI_MODELS (для Ollama сначала скачайте её: ollama pull)."
                )
            else:
                text = (
                    f"Сервер не нашёл модель «{model}» или сам адрес API: проверьте OPENAI_MODELS и "
                    "OPENAI_BASE_URL (обычно адрес оканчивается на /v1)."
                )
            return ModelNotFoundError(text, provider=p)
        if status == 429:
            if code == "insufficient_quota" or "quota" in message:
                return AuthenticationError(
                    "Исчерпана квота ключа OPENAI_API_KEY: пополните баланс или укажите другой ключ.",
                    provider=p,
                )
            return RateLimitError(
                "Сервер ограничил частоту запросов.",
                provider=p,
                retry_after=_retry_after(exc.response.headers),
            )
        if status in (400, 413, 422) and (
            status == 413 or code == "context_length_exceeded" or CONTEXT_MESSAGE.search(detail)
        ):
            return ContextTooLongError(
                f"Запрос не помещается в контекст модели «{model}»: сократите вопрос или историю, "
                "уменьшите число фрагментов или длину ответа.",
                provider=p,
            )
        if status in (408, 409) or status >= 500:
            return ProviderUnavailableError(
                f"Сервер {self._server()} временно недоступен (ошибка {status}): повторите запрос позже.",
                provider=p,
            )
        return InvalidRequestError(
            f"Сервер отклонил запрос (ошибка {status}){': ' + detail if detail else ''}. "
            "Проверьте модель и параметры генерации.",
            provider=p,
        )

    def _detail(self, exc: Exception) -> str:
        """The server's own error message, shortened and with the key masked."""
        body = getattr(exc, "body", None)
        detail = ""
        if isinstance(body, Mapping):
            value = body.get("message") or body.get("detail") or body.get("error")
            detail = value if isinstance(value, str) else ""
        elif isinstance(body, str):
            detail = body
        detail = " ".join(detail.split())[:MAX_DETAIL_CHARS]
        key = self._key()
        if key:
            detail = detail.replace(key, "***")
        return detail


def _message(m: ChatMessage) -> ChatCompletionMessageParam:
    if m.role == "system":
        return {"role": "system", "content": m.content}
    if m.role == "assistant":
        return {"role": "assistant", "content": m.content}
    return {"role": "user", "content": m.content}


def _refused_parameter(exc: openai.BadRequestError) -> str | None:
    """The parameter a 400 says this model does not support, if it is one we can drop."""
    param = (exc.param or "").lower()
    body = exc.body
    raw = body.get("message") if isinstance(body, Mapping) else None
    message = raw.lower() if isinstance(raw, str) else ""
    code = (exc.code or "").lower()
    unsupported = code.startswith("unsupported") or "not supported" in message or "unsupported" in message
    if param == "stream_options" or "stream_options" in message:
        return "stream_options"
    if not unsupported:
        return None
    if param == "max_tokens" or "max_completion_tokens" in message:
        return "max_completion_tokens"
    if param == "temperature" or "'temperature'" in message:
        return "temperature"
    return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return None
