"""YandexGPT through Yandex AI Studio (``yandex-ai-studio-sdk``, gRPC).

Completions go to ``TextGenerationService.Completion``, a server stream whose every message
holds the whole answer so far: the provider yields only the new part of each. The SDK's own
retries are off (``NoRetryPolicy``): retries before the first token are ``providers.retry``'s.

``YC_API_ENDPOINT`` (``host:port``) sends every gRPC call of a completion there: the
foundation-models service and, for an OAuth token, the IAM exchange (a gateway, a private
endpoint, a test fake). Unset, the SDK discovers Yandex Cloud's endpoints itself.
``YC_VERIFY_SSL=false`` makes the SDK open a plain-text (insecure) gRPC channel.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc

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

if TYPE_CHECKING:
    from yandex_ai_studio_sdk import AIStudio
    from yandex_ai_studio_sdk._types.message import TextMessageDict
    from yandex_ai_studio_sdk.auth import APIKeyAuth, IAMTokenAuth, OAuthTokenAuth

log = logging.getLogger(__name__)

# The seed's five, then current models from the AI Studio documentation.
MODELS = (
    ModelInfo("yandexgpt-lite/latest", "YandexGPT Lite Latest", 32768),
    ModelInfo("yandexgpt-lite/rc", "YandexGPT Lite RC", 32768),
    ModelInfo("yandexgpt/latest", "YandexGPT Pro Latest", 32768),
    ModelInfo("yandexgpt/rc", "YandexGPT Pro RC", 32768),
    ModelInfo("yandexgpt-32k/rc", "YandexGPT Pro 32k RC", 32768),
    ModelInfo("aliceai-llm/latest", "Alice AI LLM", 32768),
)

WHERE = ".streamlit/secrets.toml или в переменных окружения"
# YandexGPT accepts a temperature from 0 to 1; the app's slider goes to 2.
MAX_TEMPERATURE = 1.0
# Yandex's refusal of an over-long prompt: "Error in session internal_id=...: number of input
# tokens must be no more than 32768, got 59830" or "text length is 349354, which is outside the
# range (0, 100000]".
TOO_LONG = re.compile(
    r"input tokens|too many tokens|text length is|context (?:length|window)|maximum context",
    re.IGNORECASE,
)
# A status that ends an answer; a stream that stops on PARTIAL was cut.
PARTIAL_STATUS = "PARTIAL"


def model_uri(folder_id: str, model: str) -> str:
    """``gpt://<folder>/<name>/<version>`` for ``name/version``; full URIs pass through."""
    if model.startswith("gpt://"):
        return model
    name, _, version = model.partition("/")
    return f"gpt://{folder_id}/{name}/{version or 'latest'}"


def split_model(model: str) -> tuple[str, str]:
    """The SDK's ``(model_name, model_version)``: a ``gpt://`` URI is the name (the SDK keeps it whole)."""
    model = model.strip()
    if model.startswith("gpt://"):
        return model, "latest"
    name, _, version = model.partition("/")
    return name, version or "latest"


class YandexGPTProvider:
    """YandexGPT through Yandex AI Studio."""

    name = "yandexgpt"
    label = "YandexGPT"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: AIStudio | None = None
        self._lock = threading.Lock()

    # -- configuration -------------------------------------------------------------------

    def missing(self) -> str:
        """What must be configured, or an empty string: the folder id and one credential."""
        s = self.settings
        need = []
        if not s.yc_folder_id:
            need.append("YC_FOLDER_ID")
        if not self._credential():
            need.append("YC_API_KEY (или YC_IAM_TOKEN / YC_OAUTH_TOKEN)")
        if not need:
            return ""
        return "укажите " + " и ".join(need) + " в " + WHERE

    def status(self) -> ProviderStatus:
        """Available once the folder id and a key or token are set."""
        missing = self.missing()
        if missing:
            return ProviderStatus(False, f"не настроен: {missing}")
        return ProviderStatus(True)

    def models(self) -> list[ModelInfo]:
        """The static catalogue (AI Studio has no listing of foundation models)."""
        return list(MODELS)

    def _credential(self) -> tuple[str, str] | None:
        """``(setting, value)`` of the credential in use: an API key first (it does not expire)."""
        s = self.settings
        for setting, secret in (
            ("YC_API_KEY", s.yc_api_key),
            ("YC_IAM_TOKEN", s.yc_iam_token),
            ("YC_OAUTH_TOKEN", s.yc_oauth_token),
        ):
            value = secret.get_secret_value().strip() if secret is not None else ""
            if value:
                return setting, value
        return None

    def _secrets(self) -> list[str]:
        s = self.settings
        values = (s.yc_api_key, s.yc_iam_token, s.yc_oauth_token)
        return [
            v.get_secret_value().strip() for v in values if v is not None and v.get_secret_value().strip()
        ]

    def _auth(self) -> APIKeyAuth | IAMTokenAuth | OAuthTokenAuth:
        """The SDK's auth object; the value's form decides, as the SDK does for a string.

        ``t1.…`` is an IAM token (``Bearer``), ``y0_…`` an OAuth token (exchanged by the SDK for
        IAM tokens through the IAM service, refreshed hourly), anything else an API key.
        """
        from yandex_ai_studio_sdk.auth import APIKeyAuth, IAMTokenAuth, OAuthTokenAuth

        found = self._credential()
        if found is None:
            raise ConfigurationError(f"{self.label}: не настроен: {self.missing()}.", provider=self.name)
        setting, value = found
        if setting == "YC_IAM_TOKEN" or re.match(r"t\d\.", value):
            kind: APIKeyAuth | IAMTokenAuth | OAuthTokenAuth = IAMTokenAuth(value)
        elif setting == "YC_OAUTH_TOKEN" or re.match(r"y[0123]_", value):
            with warnings.catch_warnings():
                # The SDK warns that OAuth tokens are for personal use; say it once in the log.
                warnings.simplefilter("ignore", UserWarning)
                kind = OAuthTokenAuth(value)
            log.info("YandexGPT: OAuth token is exchanged for IAM tokens; an API key is preferable")
        else:
            kind = APIKeyAuth(value)
        log.debug("YandexGPT auth: %s from %s", type(kind).__name__, setting)
        return kind

    def _sdk(self) -> AIStudio:
        """The one SDK object of this provider, created on first use."""
        if self._client is not None:
            return self._client
        with self._lock:
            if self._client is None:
                from yandex_ai_studio_sdk import AIStudio
                from yandex_ai_studio_sdk.retry import NoRetryPolicy

                _fix_sdk_done_callbacks()
                s = self.settings
                # A gRPC target is host:port; forgive a pasted URL.
                endpoint = re.sub(r"^https?://", "", (s.yc_api_endpoint or "").strip()).rstrip("/")
                kwargs: dict[str, Any] = {}
                if endpoint:
                    # No discovery: completions (and an OAuth exchange) go straight there.
                    kwargs["endpoint"] = None
                    kwargs["service_map"] = {"ai-foundation-models": endpoint, "iam": endpoint}
                else:
                    # Explicit, so the SDK's own reading of YC_API_ENDPOINT cannot differ from ours.
                    kwargs["endpoint"] = "api.cloud.yandex.net:443"
                if not s.yc_verify_ssl:
                    log.warning("YandexGPT: YC_VERIFY_SSL=false, the gRPC channel is plain text (no TLS)")
                self._client = AIStudio(
                    folder_id=s.yc_folder_id,
                    auth=self._auth(),
                    retry_policy=NoRetryPolicy(),  # type: ignore[no-untyped-call]
                    verify=s.yc_verify_ssl,
                    **kwargs,
                )
        return self._client

    # -- generation ----------------------------------------------------------------------

    def stream(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        params: GenerationParams,
        fragments: Sequence[Fragment] = (),
    ) -> Completion:
        """Stream an answer; the fragments are already in ``messages``."""
        missing = self.missing()
        if missing:
            raise ConfigurationError(f"{self.label}: не настроен: {missing}.", provider=self.name)
        s = self.settings
        return Completion(
            stream_with_retries(
                lambda: self._open(messages, model, params),
                retries=s.llm_max_retries,
                max_wait=s.llm_retry_max_wait_s,
            )
        )

    def _open(
        self, messages: Sequence[ChatMessage], model: str, params: GenerationParams
    ) -> Iterator[str | Usage]:
        """One request: new text of each cumulative chunk, then one ``Usage``."""
        s = self.settings
        name, version = split_model(model)
        temperature = min(params.temperature, MAX_TEMPERATURE)
        log.debug(
            "YandexGPT request: model=%s version=%s temperature=%s max_tokens=%d messages=%d timeout=%.0fs",
            name,
            version,
            temperature,
            params.max_tokens,
            len(messages),
            s.llm_timeout_s,
        )
        payload: list[TextMessageDict] = [{"role": m.role, "text": m.content} for m in messages]
        text = ""
        status = ""
        usage: tuple[int, int] | None = None
        chunks: Iterator[Any] | None = None
        try:
            gpt = self._sdk().models.completions(name, model_version=version)
            gpt = gpt.configure(temperature=temperature, max_tokens=params.max_tokens)
            chunks = gpt.run_stream(payload, timeout=s.llm_timeout_s)
            for result in chunks:
                if not result.alternatives:
                    continue
                current = result.alternatives[0].text
                status = result.alternatives[0].status.name
                if result.usage.input_text_tokens or result.usage.completion_tokens:
                    usage = (result.usage.input_text_tokens, result.usage.completion_tokens)
                if not current.startswith(text):
                    log.warning("YandexGPT: a chunk does not continue the text so far; keeping its tail")
                delta = current[len(text) :]
                text += delta
                if delta:
                    yield delta
        except grpc.RpcError as exc:
            raise self._translate(exc, model, text) from exc
        except ProviderError:
            raise
        except Exception as exc:
            # The SDK's own refusals (an unknown endpoint, auth it cannot use) and such.
            from yandex_ai_studio_sdk.exceptions import AIStudioError

            if not isinstance(exc, AIStudioError | RuntimeError):
                raise
            if text:
                raise StreamInterruptedError(
                    f"{self.label}: ответ оборвался: показана полученная часть. Повторите запрос.",
                    provider=self.name,
                    partial=text,
                ) from exc
            # Not retried: an endpoint the SDK cannot resolve or auth it cannot use stays so.
            raise ProviderError(
                f"{self.label}: не удалось выполнить запрос ({type(exc).__name__}): "
                f"проверьте YC_API_ENDPOINT и ключи в {WHERE}.",
                provider=self.name,
            ) from exc
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if status == PARTIAL_STATUS and text:
            raise StreamInterruptedError(
                f"{self.label}: ответ оборвался: показана полученная часть. Повторите запрос.",
                provider=self.name,
                partial=text,
            )
        if not text and status in ("", PARTIAL_STATUS):
            # Nothing arrived, or the stream ended before its first word: a retriable failure.
            raise ProviderUnavailableError(
                f"{self.label} вернул пустой ответ: повторите запрос позже.", provider=self.name
            )
        if usage is None:
            prompt = sum(len(m.content) for m in messages)
            usage = (math.ceil(prompt / 4), math.ceil(len(text) / 4))
        yield Usage(prompt_tokens=usage[0], completion_tokens=usage[1])

    # -- errors --------------------------------------------------------------------------

    def _translate(self, exc: grpc.RpcError, model: str, partial: str) -> ProviderError:
        """Our error for a gRPC status; Russian, with the fix, never with a key."""
        code = _code(exc)
        details = self._scrub(_details(exc))
        p = self.name
        label = self.label
        if partial:
            why = " (время ожидания истекло)" if code == grpc.StatusCode.DEADLINE_EXCEEDED else ""
            return StreamInterruptedError(
                f"{label}: ответ оборвался{why}: показана полученная часть. Повторите запрос.",
                provider=p,
                partial=partial,
            )
        if code == grpc.StatusCode.UNAUTHENTICATED:
            found = self._credential()
            used = f" ({found[0]})" if found else ""
            return AuthenticationError(
                f"{label} отклонил ключ доступа{used}: проверьте YC_API_KEY или YC_IAM_TOKEN в {WHERE}. "
                "IAM-токен действует не более 12 часов: получите новый (yc iam create-token) "
                "или используйте API-ключ сервисного аккаунта.",
                provider=p,
            )
        if code == grpc.StatusCode.PERMISSION_DENIED:
            # The key is valid but may not use models in this folder: wrong YC_FOLDER_ID or no
            # role. Every model needs the same role, so choosing another model would not help.
            return AuthenticationError(
                f"{label}: нет доступа к каталогу: проверьте YC_FOLDER_ID в {WHERE} и выдайте "
                "аккаунту ключа роль ai.languageModels.user в этом каталоге.",
                provider=p,
            )
        if code == grpc.StatusCode.NOT_FOUND:
            return ModelNotFoundError(
                f"{label}: модель «{model}» не найдена: выберите другую модель "
                "или проверьте имя и версию (например, yandexgpt-lite/latest).",
                provider=p,
            )
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            if TOO_LONG.search(details):
                return ContextTooLongError(
                    f"{label}: запрос не помещается в контекст модели ({details}): сократите вопрос, "
                    "историю или число фрагментов, либо выберите модель с большим контекстом.",
                    provider=p,
                )
            return InvalidRequestError(
                f"{label} отклонил запрос: {details or 'неверные параметры'}. "
                "Проверьте модель и параметры генерации.",
                provider=p,
            )
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return RateLimitError(
                f"{label}: превышен лимит запросов или квота каталога.",
                provider=p,
                retry_after=_retry_after(exc),
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ProviderTimeoutError(
                f"{label} не ответил за {self.settings.llm_timeout_s:g} с: повторите запрос позже "
                "или увеличьте RAG_LLM_TIMEOUT_S.",
                provider=p,
            )
        if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            # The server answered, so the endpoint and TLS settings are not the problem.
            return ProviderUnavailableError(
                f"{label} временно недоступен (внутренняя ошибка сервиса): повторите запрос позже.",
                provider=p,
            )
        if code == grpc.StatusCode.UNAVAILABLE:
            where = " (проверьте YC_API_ENDPOINT и YC_VERIFY_SSL)" if self.settings.yc_api_endpoint else ""
            return ProviderUnavailableError(
                f"{label} недоступен{where}: проверьте сеть и повторите позже.", provider=p
            )
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return ProviderError(
                f"{label}: сервер не поддерживает генерацию текста: проверьте YC_API_ENDPOINT в {WHERE}.",
                provider=p,
            )
        if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE):
            return InvalidRequestError(f"{label} отклонил запрос: {details or code.name}.", provider=p)
        return ProviderUnavailableError(
            f"{label}: ошибка сервиса ({code.name if code else 'нет кода'}): повторите запрос позже.",
            provider=p,
        )

    def _scrub(self, text: str) -> str:
        """Server details, shortened, with any key or token masked."""
        for secret in self._secrets():
            text = text.replace(secret, "***")
        text = re.sub(r"^Error in session [^:]*:\s*", "", text.strip())
        return text[:300]


def _code(exc: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(exc, "code", None)
    value = code() if callable(code) else None
    return value if isinstance(value, grpc.StatusCode) else None


def _details(exc: grpc.RpcError) -> str:
    details = getattr(exc, "details", None)
    value = details() if callable(details) else None
    return value if isinstance(value, str) else ""


def _retry_after(exc: grpc.RpcError) -> float | None:
    """Seconds from a ``retry-after`` metadata entry (trailing first, then initial)."""
    for getter in ("trailing_metadata", "initial_metadata"):
        method = getattr(exc, getter, None)
        metadata = method() if callable(method) else None
        for key, value in metadata or ():
            if str(key).lower() != "retry-after":
                continue
            raw = value.decode() if isinstance(value, bytes) else str(value)
            try:
                seconds = float(raw.strip())
            except ValueError:
                continue
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
    return None


def _fix_sdk_done_callbacks() -> None:
    """Let the SDK's stream wrapper accept done-callbacks (SDK 0.22.1 with grpcio >= 1.7x).

    grpc.aio channels now register every call with ``add_done_callback``; the SDK's logging
    interceptor returns a wrapper whose ``add_done_callback`` raises ``NotImplementedError``,
    so asyncio logs an ERROR traceback after every streamed answer. The fix forwards the
    callback to the wrapped call, as grpc's own wrappers do. Applied once, to that SDK only.
    """
    import yandex_ai_studio_sdk
    from yandex_ai_studio_sdk._utils import grpc as sdk_grpc

    mixin = getattr(sdk_grpc, "StreamResponseIteratorMixin", None)
    if yandex_ai_studio_sdk.__version__ != "0.22.1" or mixin is None or getattr(mixin, "_rag_fixed", False):
        return

    def add_done_callback(self: Any, callback: Any) -> None:
        call = self._call
        if call is None:
            callback(self)
        else:
            call.add_done_callback(lambda _call: callback(self))

    mixin.add_done_callback = add_done_callback
    mixin._rag_fixed = True
