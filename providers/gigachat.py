"""GigaChat (Sber) through the official ``gigachat`` SDK (HTTP, SSE streaming).

Authentication is OAuth: ``GIGACHAT_CREDENTIALS`` (the base64 authorization key) and
``GIGACHAT_SCOPE`` buy an access token at ``auth_url`` that lives 30 minutes. The provider
keeps one SDK client, created on first use and shared by every thread, so the token is
fetched once and reused across reruns and browser sessions. The SDK renews it on its own:
before a request when it expires within a minute (``token_expiry_buffer_ms``, 60 s), and once
more after a 401. The SDK's retries are off; ``providers.retry`` retries before the first token.

The API's certificates are issued by the Russian Trusted Root CA: point
``GIGACHAT_CA_BUNDLE_FILE`` at that bundle; ``GIGACHAT_VERIFY_SSL_CERTS=false`` is a warned
last resort.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import re
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from gigachat import GigaChatSyncClient
from gigachat import exceptions as sdk_errors
from gigachat.models import Chat, Messages, MessagesRole
from gigachat.settings import AUTH_URL, BASE_URL

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

CONTEXT_GIGACHAT_2 = 131072
CONTEXT_GIGACHAT_1 = 32768

MODELS = (
    ModelInfo("GigaChat-2", "GigaChat 2 Lite", CONTEXT_GIGACHAT_2),
    ModelInfo("GigaChat-2-Pro", "GigaChat 2 Pro", CONTEXT_GIGACHAT_2),
    ModelInfo("GigaChat-2-Max", "GigaChat 2 Max", CONTEXT_GIGACHAT_2),
    ModelInfo("GigaChat", "GigaChat", CONTEXT_GIGACHAT_1),
    ModelInfo("GigaChat-Pro", "GigaChat Pro", CONTEXT_GIGACHAT_1),
    ModelInfo("GigaChat-Max", "GigaChat Max", CONTEXT_GIGACHAT_1),
)

WHERE = ".streamlit/secrets.toml или в переменных окружения"
SCOPES = "GIGACHAT_API_PERS, GIGACHAT_API_B2B или GIGACHAT_API_CORP"
# The API wants a temperature above 0; from 0 to 0.001 it answers as deterministically as it can.
MIN_TEMPERATURE = 0.001
# Words of a refusal that is about the prompt's size, not a malformed parameter
# ("Invalid params: max_tokens must be ..." is not one of them).
TOO_LONG = re.compile(
    r"context|tokens? limit|too long|too large|exceed|контекст|превыш|слишком длин",
    re.IGNORECASE,
)
GIGACHAT_VERSION = re.compile(r"^GigaChat-(\d+)", re.IGNORECASE)


class GigaChatProvider:
    """GigaChat through the official SDK."""

    name = "gigachat"
    label = "GigaChat"
    # The model list is asked for when the sidebar is drawn: briefly, and not on every rerun.
    models_ttl_s = 600.0
    models_timeout_s = 3.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: GigaChatSyncClient | None = None
        self._lock = threading.Lock()
        self._models_lock = threading.Lock()
        self._models_cache: tuple[float, list[ModelInfo]] | None = None
        self._warned_insecure = False

    # -- configuration -------------------------------------------------------------------

    def _credentials(self) -> str:
        secret = self.settings.gigachat_credentials
        return secret.get_secret_value().strip() if secret is not None else ""

    def missing(self) -> str:
        """What must be configured, or an empty string: the authorization key."""
        if self._credentials():
            return ""
        return (
            "укажите ключ авторизации GIGACHAT_CREDENTIALS (и при необходимости область доступа "
            f"GIGACHAT_SCOPE: {SCOPES}) в {WHERE}"
        )

    def status(self) -> ProviderStatus:
        """Available once the authorization key is set."""
        missing = self.missing()
        if missing:
            return ProviderStatus(False, f"не настроен: {missing}")
        self._warn_if_insecure()
        return ProviderStatus(True)

    def _warn_if_insecure(self) -> None:
        if self.settings.gigachat_verify_ssl_certs or self._warned_insecure:
            return
        with self._lock:
            if self._warned_insecure:
                return
            self._warned_insecure = True
        log.warning(
            "GigaChat: TLS certificate verification is off (GIGACHAT_VERIFY_SSL_CERTS=false); "
            "set GIGACHAT_CA_BUNDLE_FILE to the Russian Trusted Root CA bundle instead"
        )

    def _sdk(self) -> GigaChatSyncClient:
        """The one SDK client of this provider, created on first use (its token lives in it)."""
        if self._client is not None:
            return self._client
        self._warn_if_insecure()
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> GigaChatSyncClient:
        s = self.settings
        credentials = self._credentials()
        if not credentials:
            raise ConfigurationError(f"{self.label}: не настроен: {self.missing()}.", provider=self.name)
        kwargs: dict[str, Any] = {
            "credentials": credentials,
            "scope": s.gigachat_scope,
            # Explicit, so the SDK's own reading of GIGACHAT_* variables cannot differ from ours.
            "base_url": s.gigachat_base_url or BASE_URL,
            "auth_url": s.gigachat_auth_url or AUTH_URL,
            "verify_ssl_certs": s.gigachat_verify_ssl_certs,
            "timeout": s.llm_timeout_s,
            "max_retries": 0,
        }
        if s.gigachat_verify_ssl_certs and s.gigachat_ca_bundle_file:
            kwargs["ssl_context"] = self._ssl_context(s.gigachat_ca_bundle_file)
        log.debug(
            "GigaChat client: base_url=%s auth_url=%s scope=%s verify=%s ca_bundle=%s timeout=%gs",
            kwargs["base_url"],
            kwargs["auth_url"],
            s.gigachat_scope,
            s.gigachat_verify_ssl_certs,
            bool(s.gigachat_ca_bundle_file),
            s.llm_timeout_s,
        )
        return GigaChatSyncClient(**kwargs)

    def _ssl_context(self, bundle: str) -> ssl.SSLContext:
        """The system's trusted roots plus the bundle (the Russian Trusted Root CA)."""
        context = ssl.create_default_context()
        try:
            context.load_verify_locations(cafile=bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"{self.label}: не удалось прочитать файл сертификатов GIGACHAT_CA_BUNDLE_FILE "
                f"({bundle}): укажите путь к PEM-файлу Russian Trusted Root CA в {WHERE}.",
                provider=self.name,
            ) from exc
        return context

    def close(self) -> None:
        """Close the SDK's HTTP connections (the next request opens new ones)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- models --------------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        """The API's model list merged with the catalogue; the catalogue alone if it fails.

        Cached for ``models_ttl_s`` (failures too) and bounded by ``models_timeout_s``, so the
        sidebar never waits long for it.
        """
        if not self._credentials():
            return list(MODELS)
        with self._models_lock:
            cached = self._models_cache
            if cached is not None and time.monotonic() - cached[0] < self.models_ttl_s:
                return list(cached[1])
            merged = merge_models(self._fetch_model_ids())
            self._models_cache = (time.monotonic(), merged)
            return list(merged)

    def _fetch_model_ids(self) -> list[str] | None:
        """``GET /models`` in a worker thread: at most ``models_timeout_s`` of waiting here."""
        found: list[list[str]] = []

        def fetch() -> None:
            try:
                found.append([m.id_ for m in self._sdk().get_models().data])
            except Exception as exc:  # any failure: the static catalogue is shown instead
                status = getattr(exc, "status_code", None)
                log.warning(
                    "GigaChat: model list unavailable (%s%s); showing the built-in catalogue",
                    type(exc).__name__,
                    f" {status}" if status else "",
                )

        worker = threading.Thread(target=fetch, name="gigachat-models", daemon=True)
        worker.start()
        worker.join(self.models_timeout_s)
        if worker.is_alive():
            log.warning(
                "GigaChat: model list took over %gs; showing the built-in catalogue", self.models_timeout_s
            )
            return None
        return found[0] if found else None

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
        messages = list(messages)
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
        """One request: the text deltas as they arrive, then one ``Usage``."""
        temperature = max(params.temperature, MIN_TEMPERATURE)
        log.debug(
            "GigaChat request: model=%s temperature=%s max_tokens=%d messages=%d timeout=%gs",
            model,
            temperature,
            params.max_tokens,
            len(messages),
            self.settings.llm_timeout_s,
        )
        chat = Chat(
            model=model,
            messages=sdk_messages(messages),
            temperature=temperature,
            max_tokens=params.max_tokens,
        )
        text = ""
        finish_reason: str | None = None
        usage: Usage | None = None
        chunks: Iterator[Any] | None = None
        try:
            chunks = self._sdk().stream(chat)
            for chunk in chunks:
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                finish_reason = choice.finish_reason or finish_reason
                delta = choice.delta.content
                if delta:
                    text += delta
                    yield delta
        except ProviderError:
            raise
        except (sdk_errors.GigaChatException, httpx.HTTPError, httpx.StreamError, OSError, ValueError) as exc:
            raise self._translate(exc, model, text) from exc
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if finish_reason is None and usage is None:
            # The stream ended without its closing event: the connection was cut.
            if text:
                raise StreamInterruptedError(
                    f"{self.label}: ответ оборвался: показана полученная часть. Повторите запрос.",
                    provider=self.name,
                    partial=text,
                )
            raise ProviderUnavailableError(
                f"{self.label} закрыл соединение, не прислав ответа: повторите запрос позже.",
                provider=self.name,
            )
        if finish_reason not in (None, "stop"):
            log.info("GigaChat: answer finished with %s", finish_reason)
        if usage is None:
            prompt = sum(len(m.content) for m in messages)
            usage = Usage(math.ceil(prompt / 4), math.ceil(len(text) / 4))
        yield usage

    # -- errors --------------------------------------------------------------------------

    def _translate(self, exc: Exception, model: str, partial: str) -> ProviderError:
        """Our error for an SDK or transport failure; Russian, with the fix, never with a key."""
        p = self.name
        label = self.label
        if partial:
            why = " (сервер перестал отвечать)" if isinstance(exc, httpx.TimeoutException) else ""
            return StreamInterruptedError(
                f"{label}: ответ оборвался{why}: показана полученная часть. Повторите запрос.",
                provider=p,
                partial=partial,
            )
        if isinstance(exc, sdk_errors.ResponseError):
            return self._from_status(exc, model)
        if isinstance(exc, httpx.TimeoutException):
            return ProviderTimeoutError(
                f"{label} не ответил за {self.settings.llm_timeout_s:g} с: повторите запрос позже "
                "или увеличьте RAG_LLM_TIMEOUT_S.",
                provider=p,
            )
        if _is_tls_failure(exc):
            return ProviderUnavailableError(
                f"{label}: не удалось проверить сертификат сервера. У GigaChat сертификат "
                "Минцифры (Russian Trusted Root CA): укажите путь к этому сертификату в "
                f"GIGACHAT_CA_BUNDLE_FILE в {WHERE}. Крайняя мера — GIGACHAT_VERIFY_SSL_CERTS=false "
                "(соединение не будет защищено от подмены).",
                provider=p,
            )
        if isinstance(exc, ValueError) or "Content-Type" in str(exc):
            # A body the SDK could not parse, or not the event stream it asked for.
            return ProviderUnavailableError(
                f"{label} прислал ответ в неожиданном формате: проверьте GIGACHAT_BASE_URL "
                "или повторите запрос позже.",
                provider=p,
            )
        if isinstance(exc, httpx.TransportError | OSError):
            return ProviderUnavailableError(
                f"{label} недоступен ({self._hosts()}): проверьте сеть и GIGACHAT_BASE_URL, "
                "повторите запрос позже.",
                provider=p,
            )
        return ProviderError(f"{label}: ошибка запроса ({type(exc).__name__}).", provider=p)

    def _from_status(self, exc: sdk_errors.ResponseError, model: str) -> ProviderError:
        p = self.name
        label = self.label
        status = exc.status_code
        detail = self._scrub(_server_message(exc.content))
        if self._is_auth_url(str(exc.url)) and 400 <= status < 500:
            if "scope" in detail.lower():
                return AuthenticationError(
                    f"{label}: ключ GIGACHAT_CREDENTIALS не подходит к области доступа "
                    f"GIGACHAT_SCOPE={self.settings.gigachat_scope}: укажите область из личного "
                    f"кабинета ({SCOPES}) в {WHERE}.",
                    provider=p,
                )
            return self._auth_error()
        if status == 401:
            return self._auth_error()
        if status == 402:
            return ProviderError(
                f"{label}: закончились токены в пакете: пополните баланс в личном кабинете "
                "или выберите другую модель.",
                provider=p,
            )
        if status == 403:
            # A valid token, but this model (or method) is not in the plan or scope; another
            # model usually works, so this is a model error that names the scope as well.
            return ModelNotFoundError(
                f"{label}: нет доступа к модели «{model}»: её нет в вашем тарифе или в области "
                f"GIGACHAT_SCOPE={self.settings.gigachat_scope}. Выберите другую модель "
                "или проверьте GIGACHAT_SCOPE.",
                provider=p,
            )
        if status == 404:
            return ModelNotFoundError(
                f"{label}: модель «{model}» не найдена: выберите другую модель в списке.",
                provider=p,
            )
        if status == 413 or (status in (400, 422) and TOO_LONG.search(detail)):
            return ContextTooLongError(
                f"{label}: запрос не помещается в контекст модели «{model}»: сократите вопрос, "
                "историю или число фрагментов, либо выберите модель с большим контекстом.",
                provider=p,
            )
        if status == 429:
            return RateLimitError(
                f"{label}: слишком много запросов.", provider=p, retry_after=_retry_after(exc.headers)
            )
        if status >= 500:
            return ProviderUnavailableError(
                f"{label} временно недоступен (ошибка сервера {status}): повторите запрос позже.",
                provider=p,
            )
        return InvalidRequestError(
            f"{label} отклонил запрос ({status}: {detail or 'неверные параметры'}): "
            "проверьте модель и параметры генерации.",
            provider=p,
        )

    def _auth_error(self) -> AuthenticationError:
        return AuthenticationError(
            f"{self.label} отклонил ключ авторизации: проверьте GIGACHAT_CREDENTIALS (ключ "
            "авторизации из личного кабинета, строка base64) и GIGACHAT_SCOPE "
            f"({SCOPES}) в {WHERE}.",
            provider=self.name,
        )

    def _is_auth_url(self, url: str) -> bool:
        auth_url = self.settings.gigachat_auth_url or AUTH_URL
        return url.rstrip("/") == auth_url.rstrip("/") or urlsplit(url).path.rstrip("/").endswith("/oauth")

    def _hosts(self) -> str:
        s = self.settings
        hosts = {
            urlsplit(u).hostname or u
            for u in (s.gigachat_base_url or BASE_URL, s.gigachat_auth_url or AUTH_URL)
        }
        return ", ".join(sorted(hosts))

    def _scrub(self, text: str) -> str:
        """Server details, shortened, with the key or the token masked."""
        client = self._client
        for secret in (self._credentials(), client.token if client is not None else None):
            if secret:
                text = text.replace(secret, "***")
        return text.strip()[:300]


def sdk_messages(messages: Sequence[ChatMessage]) -> list[Messages]:
    """The SDK's messages; GigaChat takes one system message, and only as the first one."""
    system = [m.content for m in messages if m.role == "system"]
    out = [Messages(role=MessagesRole.SYSTEM, content="\n\n".join(system))] if system else []
    out += [Messages(role=MessagesRole(m.role), content=m.content) for m in messages if m.role != "system"]
    return out


def context_tokens(model_id: str) -> int:
    """GigaChat 2 and later read 128K tokens; the first generation 32K."""
    match = GIGACHAT_VERSION.match(model_id)
    return CONTEXT_GIGACHAT_2 if match and int(match.group(1)) >= 2 else CONTEXT_GIGACHAT_1


def merge_models(api_ids: list[str] | None) -> list[ModelInfo]:
    """The catalogue (with its labels), then the chat models only the API lists."""
    merged = list(MODELS)
    seen = {m.id for m in merged}
    for model_id in api_ids or []:
        if model_id in seen or model_id.lower().startswith("embeddings"):
            continue
        seen.add(model_id)
        merged.append(ModelInfo(model_id, model_id, context_tokens(model_id)))
    return merged


def _server_message(content: bytes | None) -> str:
    """The ``message`` of GigaChat's JSON error body (``{"status": ..., "message": ...}``)."""
    if not content:
        return ""
    try:
        body = json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace")
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or "")
    return ""


def _retry_after(headers: httpx.Headers | None) -> float | None:
    """Seconds from ``Retry-After``: a number or an HTTP date; None when absent."""
    value = headers.get("retry-after") if headers else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
