"""The shared core of remote providers: configuration, the stream loop, retries, error tables.

A remote provider subclasses ``RemoteProvider`` and keeps only its wire specifics: how to build
its SDK client, how to send one request and read one chunk, how to name a vendor failure, and
its error table. The rest is here, once:

- ``needs`` declares the settings a provider cannot work without and how to ask for them;
  ``missing()``, ``status()`` and the "not configured" ``ConfigurationError`` derive from it.
- ``stream()`` checks the configuration and retries a refusal that comes before the first token
  (``providers.retry``, sleeping through the injected ``sleep``); the stream loop keeps the text
  of a cut answer, estimates usage the server did not report, and closes the vendor's stream
  when the user stops reading.
- A vendor failure becomes our error in two steps::

      vendor exception --provider._refusal()--> Refusal(code, detail, reason, retry_after)
      Refusal --first covering Rule of provider.errors, then SHARED--> ProviderError

  ``code`` is an HTTP status, a gRPC status code, or one of the transport failures named
  below; every message is Russian and says what to fix, and server details are scrubbed of
  keys and tokens first.
- The SDK client is built on first use and shared by every thread (tokens live in it), or
  injected through the constructor; the model list an API offers is cached and never waited
  for long.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from pydantic import SecretStr

from language import estimate_tokens
from providers import base
from providers.base import ChatMessage, Completion, Fragment, GenerationParams, ModelInfo, Prompt, Usage
from providers.retry import stream_with_retries
from settings import Settings

ClientT = TypeVar("ClientT")
ChunkT = TypeVar("ChunkT")
Sleep = Callable[[float], None]

WHERE = ".streamlit/secrets.toml или в переменных окружения"
MAX_DETAIL_CHARS = 300
# Failures that are not an answer of the server, the same for every vendor.
TIMEOUT = "timeout"
UNREACHABLE = "unreachable"
TLS = "tls"  # the server's certificate could not be verified
FORMAT = "format"  # an answer the SDK could not read: not the API the settings point at
EMPTY = "empty"  # the stream ended before its first word


@dataclass(frozen=True)
class Need:
    """A requirement: any one of ``settings`` (field names of ``Settings``), asked for as ``ask``."""

    settings: tuple[str, ...]
    ask: str


@dataclass(frozen=True)
class Refusal:
    """A vendor failure in neutral terms: what error tables match and their messages quote."""

    code: object  # an HTTP status, a gRPC status code, or TIMEOUT, UNREACHABLE, TLS, FORMAT, EMPTY
    detail: str = ""  # the server's own words, scrubbed of secrets
    reason: str = ""  # the vendor's machine-readable error code, lower case ("model_not_found")
    retry_after: float | None = None


@dataclass(frozen=True)
class Rule:
    """A row of an error table: the failures it covers, our error class, the message template.

    The template is ``str.format``-ed with ``{label}``, ``{who}`` (the provider or its server),
    ``{model}``, ``{status}``, ``{detail}``, ``{timeout}``, ``{where}``, ``{s}`` (the settings,
    whose secrets print masked) and what a provider's ``_fields`` adds.
    """

    error: type[base.ProviderError]
    message: str
    codes: Container[object] | None = None  # None: every code
    when: Callable[[Refusal], bool] | None = None

    def covers(self, refusal: Refusal) -> bool:
        """Whether this row applies to the refusal."""
        if self.codes is not None and refusal.code not in self.codes:
            return False
        return self.when is None or self.when(refusal)


# Words of a refusal that is about the prompt's size, not a malformed parameter ("Invalid params:
# max_tokens must be ..." is not one): GigaChat's "Tokens limit exceeded", OpenAI's and vLLM's
# "maximum context length is 8192 tokens", Yandex's "number of input tokens must be no more than
# 32768" and "text length is 349354, which is outside the range".
TOO_LONG = re.compile(
    r"context[_ ]length|context window|maximum context|too many tokens|tokens? limit|input tokens"
    r"|text length is|max_tokens is too large|maximum (number of )?tokens|at most \d+ (completion )?tokens"
    r"|too long|too large|exceed|контекст|превыш|слишком длин",
    re.IGNORECASE,
)


def too_long(refusal: Refusal) -> bool:
    """Whether a refusal says the prompt does not fit the model's context."""
    return (
        refusal.code == 413
        or refusal.reason == "context_length_exceeded"
        or bool(TOO_LONG.search(refusal.detail))
    )


# What an HTTP status means wherever a provider's own rows say nothing more specific.
HTTP_ERRORS = (
    Rule(
        base.ContextTooLongError,
        "{who}: запрос не помещается в контекст модели «{model}»: сократите вопрос, историю или число "
        "фрагментов, либо выберите модель с большим контекстом.",
        (400, 413, 422),
        too_long,
    ),
    Rule(base.RateLimitError, "{who}: слишком много запросов.", (429,)),
    Rule(
        base.ProviderUnavailableError,
        "{who} временно недоступен (ошибка сервера {status}): повторите запрос позже.",
        (408, 409, *range(500, 600)),
    ),
    Rule(
        base.InvalidRequestError,
        "{who} отклонил запрос ({status}: {detail}): проверьте модель и параметры генерации.",
        range(400, 500),
    ),
)
# Rows every table ends with; a provider's own rows come first and may override them.
SHARED = (
    Rule(
        base.ProviderTimeoutError,
        "{who} не ответил за {timeout} с: повторите запрос позже или увеличьте RAG_LLM_TIMEOUT_S.",
        (TIMEOUT,),
    ),
    Rule(base.ProviderUnavailableError, "{who} вернул пустой ответ: повторите запрос позже.", (EMPTY,)),
    Rule(base.ProviderUnavailableError, "{who}: ошибка сервиса ({status}): повторите запрос позже."),
)


def translate(
    rules: Iterable[Rule], refusal: Refusal, fields: Mapping[str, object], provider: str
) -> base.ProviderError:
    """Our error for a refusal: the first row of ``rules`` (then ``SHARED``) that covers it."""
    rule = next(r for r in (*rules, *SHARED) if r.covers(refusal))
    message = rule.message.format(
        **fields,
        status=getattr(refusal.code, "name", refusal.code),
        detail=refusal.detail or "неверные параметры",
    )
    if rule.error is base.RateLimitError:
        return base.RateLimitError(message, provider=provider, retry_after=refusal.retry_after)
    return rule.error(message, provider=provider)


def server_words(body: object) -> str:
    """The server's own words in an error body: its ``message``, ``detail`` or ``error``."""
    if isinstance(body, bytes | str):
        raw = body
        try:
            body = json.loads(raw or "{}")
        except ValueError:
            return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if isinstance(body, Mapping):
        words = body.get("message") or body.get("detail") or body.get("error")
        return words if isinstance(words, str) else ""
    return ""


def retry_after(headers: Iterable[tuple[str, str | bytes]]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    values = {str(k).lower(): (v.decode() if isinstance(v, bytes) else str(v)).strip() for k, v in headers}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            seconds = float(values[name]) / scale
        except (KeyError, ValueError):
            continue
        if math.isfinite(seconds):
            return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(values.get("retry-after", ""))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class Reply:
    """What one request's stream has brought so far."""

    text: str = ""
    usage: Usage | None = None  # the server's count, which comes with the end of the answer
    finish: str = ""  # why the answer ended (a finish reason, a final status); "" while it runs

    @property
    def ended(self) -> bool:
        """Whether the stream closed properly; a cut one ends with neither finish nor usage."""
        return bool(self.finish) or self.usage is not None


class RemoteProvider(ABC, Generic[ClientT, ChunkT]):
    """A provider behind a vendor SDK; subclasses declare their settings and errors, and speak the wire."""

    name: str
    label: str
    catalogue: ClassVar[tuple[ModelInfo, ...]] = ()
    needs: ClassVar[tuple[Need, ...]] = ()
    errors: ClassVar[tuple[Rule, ...]] = ()
    # Ids the API no longer serves, or spells differently now: id -> (current id, note or "").
    successors: ClassVar[Mapping[str, tuple[str, str]]] = {}
    temperatures: ClassVar[tuple[float, float]] = (0.0, 2.0)  # what the API accepts
    # The model list is asked for when the sidebar is drawn: briefly, and not on every rerun.
    models_ttl_s = 600.0
    models_timeout_s = 3.0

    def __init__(
        self, settings: Settings, *, client: ClientT | None = None, sleep: Sleep = time.sleep
    ) -> None:
        self.settings = settings
        self.log = logging.getLogger(type(self).__module__)
        self._client = client
        self._owns_client = client is None
        self._sleep = sleep
        self._lock = threading.Lock()
        self._models_lock = threading.Lock()
        self._models_cache: tuple[float, list[str] | None] | None = None

    # -- the wire: what each provider implements ------------------------------------------

    @abstractmethod
    def _build_client(self) -> ClientT:
        """A new SDK client from the settings."""

    @abstractmethod
    def _request(self, messages: list[ChatMessage], model: str, params: GenerationParams) -> Iterator[ChunkT]:
        """Send one streamed request; its chunks as the SDK yields them."""

    @abstractmethod
    def _read(self, chunk: ChunkT, reply: Reply) -> str:
        """The text delta of one chunk; records usage and the finish in ``reply``."""

    @abstractmethod
    def _refusal(self, exc: Exception) -> Refusal | None:
        """A vendor or transport failure in neutral terms; None for an exception that is not one."""

    def _fetch_models(self) -> list[str]:
        """The chat model ids the API lists (raises when it cannot)."""
        raise NotImplementedError

    # -- configuration ---------------------------------------------------------------------

    def setting(self, name: str) -> str:
        """A setting as stripped text (a secret unwrapped); "" when unset."""
        value = getattr(self.settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return str(value or "").strip()

    def missing(self) -> str:
        """What must be configured, in Russian, or "" when nothing is missing."""
        asks = [need.ask for need in self.needs if not any(self.setting(s) for s in need.settings)]
        return f"укажите {' и '.join(asks)} в {WHERE}" if asks else ""

    def status(self) -> base.ProviderStatus:
        """Available once every need is configured."""
        missing = self.missing()
        return base.ProviderStatus(False, f"не настроен: {missing}") if missing else base.ProviderStatus(True)

    def _secrets(self) -> list[str]:
        """The configured keys and tokens, to be masked wherever server words are quoted."""
        names = [n for need in self.needs for n in need.settings]
        return [self.setting(n) for n in names if isinstance(getattr(self.settings, n), SecretStr)]

    def _scrub(self, text: str) -> str:
        """Server words fit for a message: one line, shortened, every key and token masked."""
        for secret in self._secrets():
            if secret:
                text = text.replace(secret, "***")
        return " ".join(text.split())[:MAX_DETAIL_CHARS]

    @property
    def who(self) -> str:
        """How messages name the party that failed."""
        return self.label

    def _fields(self, model: str) -> dict[str, object]:
        """What error messages may quote (never a secret)."""
        timeout = f"{self.settings.llm_timeout_s:g}"
        return {
            "label": self.label,
            "who": self.who,
            "model": model,
            "timeout": timeout,
            "where": WHERE,
            "s": self.settings,
        }

    # -- the SDK client --------------------------------------------------------------------

    def client(self) -> ClientT:
        """The SDK client: injected, or built on first use; shared by every thread."""
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def close(self) -> None:
        """Close the client this provider built (the next request builds another); not an injected one."""
        with self._lock:
            client = self._client if self._owns_client else None
            if self._owns_client:
                self._client = None
        close = getattr(client, "close", None)
        if callable(close):
            close()

    # -- models ----------------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        """The catalogue shown in the model selector."""
        return list(self.catalogue)

    def resolve_model(self, model: str) -> tuple[str, str]:
        """``(current id, note)``: a retired or respelt id's successor; the id itself otherwise."""
        return self.successors.get(model, (model, ""))

    def _listed_models(self) -> list[str] | None:
        """The API's model ids, cached for ``models_ttl_s`` (a failure too); None when unavailable.

        Asked in a worker thread and waited for at most ``models_timeout_s``: the sidebar must
        render even when the API hangs.
        """
        with self._models_lock:
            cached = self._models_cache
            if cached is None or time.monotonic() - cached[0] >= self.models_ttl_s:
                cached = (time.monotonic(), self._fetch_models_briefly())
                self._models_cache = cached
            return list(cached[1]) if cached[1] is not None else None

    def _fetch_models_briefly(self) -> list[str] | None:
        found: list[list[str]] = []

        def fetch() -> None:
            try:
                found.append(self._fetch_models())
            except Exception as exc:  # any failure: the selector shows the catalogue instead
                status = getattr(exc, "status_code", None)
                self.log.warning(
                    "%s: model list unavailable (%s%s); showing the built-in catalogue",
                    self.label,
                    type(exc).__name__,
                    f" {status}" if status else "",
                )

        worker = threading.Thread(target=fetch, name=f"{self.name}-models", daemon=True)
        worker.start()
        worker.join(self.models_timeout_s)
        if worker.is_alive():
            self.log.warning(
                "%s: model list took over %gs; showing the built-in catalogue",
                self.label,
                self.models_timeout_s,
            )
        return found[0] if found else None

    # -- generation ------------------------------------------------------------------------

    def stream(
        self, messages: Prompt, model: str, params: GenerationParams, fragments: Sequence[Fragment] = ()
    ) -> Completion:
        """Stream an answer; the fragments are already in ``messages``."""
        missing = self.missing()
        if missing:
            raise base.ConfigurationError(f"{self.label}: не настроен: {missing}.", provider=self.name)
        prompt = list(messages)
        return Completion(
            stream_with_retries(
                lambda: self._open(prompt, model, params),
                retries=self.settings.llm_max_retries,
                max_wait=self.settings.llm_retry_max_wait_s,
                sleep=self._sleep,
            )
        )

    def _open(
        self, messages: list[ChatMessage], model: str, params: GenerationParams
    ) -> Iterator[str | Usage]:
        """One request: the text deltas as they arrive, then one ``Usage``."""
        low, high = self.temperatures
        params = params.model_copy(update={"temperature": min(max(params.temperature, low), high)})
        self.log.debug(
            "%s request: model=%s temperature=%s max_tokens=%d messages=%d chars=%d timeout=%gs",
            self.label,
            model,
            params.temperature,
            params.max_tokens,
            len(messages),
            sum(len(m.content) for m in messages),
            self.settings.llm_timeout_s,
        )
        reply = Reply()
        chunks: Iterator[ChunkT] | None = None
        try:
            chunks = self._request(messages, model, params)
            for chunk in chunks:
                delta = self._read(chunk, reply)
                if delta:
                    reply.text += delta
                    yield delta
        except base.ProviderError:
            raise
        except Exception as exc:
            refusal = self._refusal(exc)
            if refusal is None:
                raise
            raise self._failure(refusal, model, reply.text) from exc
        finally:
            # Also when the user stops reading: the SDK cancels the request.
            close = getattr(chunks, "close", None)
            if callable(close):
                close()
        if not reply.ended:
            # The stream stopped without its closing event: the connection was cut.
            raise self._failure(Refusal(EMPTY), model, reply.text)
        if reply.finish and reply.finish.lower() not in ("stop", "final"):
            self.log.info("%s: answer finished with %s", self.label, reply.finish)
        prompt = sum(estimate_tokens(m.content) for m in messages)
        yield reply.usage or Usage(prompt, estimate_tokens(reply.text))

    def _failure(self, refusal: Refusal, model: str, partial: str) -> base.ProviderError:
        """Our error for a refusal; once text has arrived, whatever broke it keeps the text."""
        if partial:
            why = (
                f" (сервер молчал дольше {self.settings.llm_timeout_s:g} с)"
                if refusal.code == TIMEOUT
                else ""
            )
            return base.StreamInterruptedError(
                f"{self.who}: ответ оборвался{why}: показана полученная часть. Повторите запрос.",
                provider=self.name,
                partial=partial,
            )
        error = translate(self.errors, refusal, self._fields(model), self.name)
        self.log.info("%s: %s for model %s", self.label, type(error).__name__, model)
        return error
