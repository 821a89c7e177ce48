"""GigaChat (Sber) through the official ``gigachat`` SDK (HTTP, SSE streaming).

Authentication is OAuth: ``GIGACHAT_CREDENTIALS`` (the base64 authorization key) and
``GIGACHAT_SCOPE`` buy an access token at ``auth_url`` that lives 30 minutes. The one SDK client
(``RemoteProvider.client``; the SDK 0.2.x takes no HTTP client, so one may be injected whole)
keeps it across reruns and sessions, and renews it before a request when it expires within a
minute, and once more after a 401. Its retries are off: ``providers.retry`` retries.

The API's certificates are issued by the Russian Trusted Root CA: point
``GIGACHAT_CA_BUNDLE_FILE`` at that bundle; ``GIGACHAT_VERIFY_SSL_CERTS=false`` is a warned
last resort.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from gigachat import GigaChatSyncClient
from gigachat import exceptions as sdk_errors
from gigachat.models import Chat, ChatCompletionChunk, Messages, MessagesRole
from gigachat.settings import AUTH_URL, BASE_URL

from providers import base, remote
from providers.base import ChatMessage, GenerationParams, ModelInfo, Usage
from providers.remote import Need, Refusal, RemoteProvider, Reply, Rule, retry_after

CONTEXT_GIGACHAT_2 = 131072
CONTEXT_GIGACHAT_1 = 32768
# The current generations, then the seed's (first generation, still served).
MODELS = (
    ModelInfo("GigaChat-2", "GigaChat 2 Lite", CONTEXT_GIGACHAT_2),
    ModelInfo("GigaChat-2-Pro", "GigaChat 2 Pro", CONTEXT_GIGACHAT_2),
    ModelInfo("GigaChat-2-Max", "GigaChat 2 Max", CONTEXT_GIGACHAT_2),
    ModelInfo("GigaChat-3-Ultra", "GigaChat 3 Ultra", CONTEXT_GIGACHAT_2),
    ModelInfo("GigaChat", "GigaChat", CONTEXT_GIGACHAT_1),
    ModelInfo("GigaChat-Pro", "GigaChat Pro", CONTEXT_GIGACHAT_1),
    ModelInfo("GigaChat-Max", "GigaChat Max", CONTEXT_GIGACHAT_1),
)
GIGACHAT_VERSION = re.compile(r"^GigaChat-(\d+)", re.IGNORECASE)
SCOPES = "GIGACHAT_API_PERS, GIGACHAT_API_B2B или GIGACHAT_API_CORP"
OAUTH = "oauth"  # a code of ours: the token request itself was refused (any 4xx of auth_url)
KEY_REFUSED = (
    "{label} отклонил ключ авторизации: проверьте GIGACHAT_CREDENTIALS (ключ авторизации из личного "
    "кабинета, строка base64) и GIGACHAT_SCOPE ({scopes}) в {where}."
)
ERRORS = (
    Rule(
        base.AuthenticationError,
        "{label}: ключ GIGACHAT_CREDENTIALS не подходит к области доступа GIGACHAT_SCOPE="
        "{s.gigachat_scope}: укажите область из личного кабинета ({scopes}) в {where}.",
        (OAUTH,),
        lambda r: "scope" in r.detail.lower(),
    ),
    Rule(base.AuthenticationError, KEY_REFUSED, (OAUTH, 401)),
    Rule(
        base.ProviderError,
        "{label}: закончились токены в пакете: пополните баланс или выберите другую модель.",
        (402,),
    ),
    # A valid token, but this model (or method) is not in the plan or scope; another model
    # usually works, so this is a model error that names the scope as well.
    Rule(
        base.ModelNotFoundError,
        "{label}: нет доступа к модели «{model}»: её нет в вашем тарифе или в области GIGACHAT_SCOPE="
        "{s.gigachat_scope}. Выберите другую модель или проверьте GIGACHAT_SCOPE.",
        (403,),
    ),
    Rule(
        base.ModelNotFoundError,
        "{label}: модель «{model}» не найдена: выберите другую модель в списке.",
        (404,),
    ),
    Rule(
        base.ProviderUnavailableError,
        "{label}: не удалось проверить сертификат сервера. У GigaChat сертификат Минцифры (Russian "
        "Trusted Root CA): укажите путь к этому сертификату в GIGACHAT_CA_BUNDLE_FILE в {where}. "
        "Крайняя мера — GIGACHAT_VERIFY_SSL_CERTS=false (соединение не будет защищено от подмены).",
        (remote.TLS,),
    ),
    Rule(
        base.ProviderUnavailableError,
        "{label} прислал ответ в неожиданном формате: проверьте GIGACHAT_BASE_URL, повторите запрос позже.",
        (remote.FORMAT,),
    ),
    Rule(
        base.ProviderUnavailableError,
        "{label} недоступен ({hosts}): проверьте сеть и GIGACHAT_BASE_URL, повторите запрос позже.",
        (remote.UNREACHABLE,),
    ),
    *remote.HTTP_ERRORS,
)


class GigaChatProvider(RemoteProvider[GigaChatSyncClient, ChatCompletionChunk]):
    """GigaChat through the official SDK."""

    name = "gigachat"
    label = "GigaChat"
    catalogue = MODELS
    needs = (
        Need(
            ("gigachat_credentials",),
            "ключ авторизации GIGACHAT_CREDENTIALS (и при необходимости область доступа "
            f"GIGACHAT_SCOPE: {SCOPES})",
        ),
    )
    errors = ERRORS
    # The API wants a temperature above 0; from 0 to 0.001 it answers as deterministically as it can.
    temperatures = (0.001, 2.0)

    def _build_client(self) -> GigaChatSyncClient:
        s = self.settings
        kwargs: dict[str, Any] = {}
        if not s.gigachat_verify_ssl_certs:
            self.log.warning(
                "GigaChat: TLS certificate verification is off (GIGACHAT_VERIFY_SSL_CERTS=false); "
                "set GIGACHAT_CA_BUNDLE_FILE to the Russian Trusted Root CA bundle instead"
            )
        elif s.gigachat_ca_bundle_file:
            kwargs["ssl_context"] = self._ssl_context(s.gigachat_ca_bundle_file)
        return GigaChatSyncClient(
            credentials=self.setting("gigachat_credentials"),
            scope=s.gigachat_scope,
            # Explicit, so the SDK's own reading of GIGACHAT_* variables cannot differ from ours.
            base_url=s.gigachat_base_url or BASE_URL,
            auth_url=s.gigachat_auth_url or AUTH_URL,
            verify_ssl_certs=s.gigachat_verify_ssl_certs,
            timeout=s.llm_timeout_s,
            max_retries=0,
            **kwargs,
        )

    def _ssl_context(self, bundle: str) -> ssl.SSLContext:
        """The system's trusted roots plus the bundle (the Russian Trusted Root CA)."""
        context = ssl.create_default_context()
        try:
            context.load_verify_locations(cafile=bundle)
        except (OSError, ssl.SSLError) as exc:
            raise base.ConfigurationError(
                f"{self.label}: не удалось прочитать файл сертификатов GIGACHAT_CA_BUNDLE_FILE "
                f"({bundle}): укажите путь к PEM-файлу Russian Trusted Root CA в {remote.WHERE}.",
                provider=self.name,
            ) from exc
        return context

    def models(self) -> list[ModelInfo]:
        """The catalogue, then the chat models only the API lists; the catalogue alone without it."""
        return list(MODELS) if self.missing() else merge_models(self._listed_models())

    def _fetch_models(self) -> list[str]:
        # The SDK's Model drops the entry's "type" (0.2.x): where it does, the name decides.
        listed = self.client().get_models().data
        return chat_model_ids((m.id_, getattr(m, "type_", None) or getattr(m, "type", None)) for m in listed)

    def _request(
        self, messages: list[ChatMessage], model: str, params: GenerationParams
    ) -> Iterator[ChatCompletionChunk]:
        chat = Chat(
            model=model,
            messages=sdk_messages(messages),
            temperature=params.temperature,
            max_tokens=params.max_tokens,
        )
        return self.client().stream(chat)

    def _read(self, chunk: ChatCompletionChunk, reply: Reply) -> str:
        if chunk.usage is not None:
            reply.usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        if not chunk.choices:
            return ""
        choice = chunk.choices[0]
        reply.finish = choice.finish_reason or reply.finish
        return choice.delta.content or ""

    def _refusal(self, exc: Exception) -> Refusal | None:
        if isinstance(exc, sdk_errors.ResponseError):
            url = str(exc.url).rstrip("/")
            from_auth = url == (self.settings.gigachat_auth_url or AUTH_URL).rstrip("/") or url.endswith(
                "/oauth"
            )
            code = OAUTH if from_auth and 400 <= exc.status_code < 500 else exc.status_code
            words = self._scrub(remote.server_words(exc.content))
            return Refusal(code, words, retry_after=retry_after((exc.headers or httpx.Headers()).items()))
        if isinstance(exc, httpx.TimeoutException):
            return Refusal(remote.TIMEOUT)
        if _is_tls_failure(exc):
            return Refusal(remote.TLS)
        if isinstance(exc, ValueError) or "Content-Type" in str(exc):
            # A body the SDK could not parse, or not the event stream it asked for.
            return Refusal(remote.FORMAT)
        if isinstance(exc, httpx.TransportError | OSError):
            return Refusal(remote.UNREACHABLE)
        if isinstance(exc, sdk_errors.GigaChatException | httpx.HTTPError | httpx.StreamError):
            return Refusal(type(exc).__name__)
        return None

    def _secrets(self) -> list[str]:
        return [*super()._secrets(), getattr(self._client, "token", None) or ""]  # the OAuth token

    def _fields(self, model: str) -> dict[str, object]:
        s = self.settings
        urls = (s.gigachat_base_url or BASE_URL, s.gigachat_auth_url or AUTH_URL)
        hosts = ", ".join(sorted({urlsplit(u).hostname or u for u in urls}))
        return {**super()._fields(model), "scopes": SCOPES, "hosts": hosts}


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


def chat_model_ids(listed: Iterable[tuple[str, str | None]]) -> list[str]:
    """The chat models of ``GET /models`` entries ``(id, type)``: ``type == "chat"``; by name if untyped."""
    return [i for i, kind in listed if (kind == "chat" if kind else "embedding" not in i.lower())]


def merge_models(api_ids: list[str] | None) -> list[ModelInfo]:
    """The catalogue (with its labels), then the chat models only the API lists."""
    known = {m.id for m in MODELS}
    extra = [i for i in dict.fromkeys(api_ids or []) if i not in known]
    return [*MODELS, *(ModelInfo(i, i, context_tokens(i)) for i in extra)]


def _is_tls_failure(exc: BaseException | None) -> bool:
    for _ in range(5):
        if exc is None:
            return False
        if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
