"""A fake OpenAI-compatible server: Chat Completions over REST and SSE, as the real API speaks it.

``GET /v1/models`` and ``POST /v1/chat/completions`` (a JSON answer, or with ``"stream": true``
an SSE stream over chunked transfer encoding: ``data: {chunk}`` events, a usage chunk with empty
``choices`` when ``stream_options.include_usage`` is set, then ``data: [DONE]``). Errors carry
OpenAI's error JSON. The real ``openai`` SDK talks to it through our provider.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from providers.openai_compat import OpenAICompatProvider
from settings import Settings
from tests.contract.harness import DEFAULT_DELTAS, ProviderCase, RecordedRequest, rewrite_deltas

FAKE_KEY = "sk-fake-0penai-Kx93TqW7zPmL2vRb"
MODELS = ["fake-gpt", "fake-gpt-mini"]


def _error(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _masked(key: str) -> str:
    # OpenAI echoes a rejected key masked like this; a provider must not pass even that on.
    return f"{key[:3]}{'*' * 8}{key[-4:]}" if len(key) > 8 else "***"


def standard_error(status: int, model: str) -> dict[str, Any]:
    """The body OpenAI sends with this status."""
    if status == 400:
        return _error(
            "This model's maximum context length is 8192 tokens. However, your messages resulted in "
            "9120 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        )
    if status == 401:
        return _error(
            "Incorrect API key provided. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )
    if status == 403:
        return _error(
            f"Project `proj_fake` does not have access to model `{model}`",
            "invalid_request_error",
            "model_not_found",
        )
    if status == 404:
        return _error(
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )
    if status == 422:
        return _error("Unprocessable request.", "invalid_request_error", None)
    if status == 429:
        return _error(
            f"Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, "
            "Requested 1. Please try again in 1s.",
            "requests",
            "rate_limit_exceeded",
        )
    if status == 503:
        return _error("The engine is currently overloaded, please try again later", "server_error", None)
    return _error(
        "The server had an error while processing your request. Sorry about that!", "server_error", None
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a timeout, a cut stream, a keep-alive closed) is no error of the fake's.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeOpenAI:
    """The server and its knobs; implements ``harness.FakeControl``."""

    def __init__(self, api_key: str | None = FAKE_KEY) -> None:
        self.api_key = api_key  # None: accept any (or no) Authorization, like Ollama
        self.requests: list[RecordedRequest] = []
        self.bodies: list[dict[str, Any]] = []  # the raw JSON of each generation request
        self.deltas: list[str] = list(DEFAULT_DELTAS)
        self.models: list[str] = list(MODELS)
        self.token_requests = 0
        self.rewrite: str | None = None
        # Extra knobs for the provider-specific tests.
        self.model_list_requests = 0  # GET /models received
        self.models_status: int | None = None  # answer GET /models with this error status
        self.models_stall = 0.0  # seconds GET /models waits before answering
        self.usage_in_stream = True  # False: ignore include_usage, like some older servers
        self.rejected_params: set[str] = set()  # 400 unsupported_parameter for these (e.g. max_tokens)
        self._failures: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        self._cut = False
        self._stall = 0.0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-openai", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # wake stalled handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- FakeControl ---------------------------------------------------------------------

    def fail_next(self, status: int, retry_after: int | None = None, times: int = 1) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            for _ in range(times):
                self._failures.append((status, {}, headers))

    def fail_next_with(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next generation request with exactly this error body and headers."""
        with self._lock:
            self._failures.append((status, body, headers or {}))

    def cut_next(self) -> None:
        with self._lock:
            self._cut = True

    def stall_next(self, seconds: float) -> None:
        with self._lock:
            self._stall = seconds

    def expire_token(self) -> None:
        """API keys do not expire."""

    # --- used by the handler ---------------------------------------------------------------

    def take_failure(self) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def take_cut(self) -> bool:
        with self._lock:
            cut, self._cut = self._cut, False
            return cut

    def take_stall(self) -> float:
        with self._lock:
            stall, self._stall = self._stall, 0.0
            return stall

    def authorized(self, header: str | None) -> bool:
        return self.api_key is None or header == f"Bearer {self.api_key}"

    def wait(self, seconds: float) -> None:
        self._closing.wait(seconds)


def _handler_for(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as the real API
        timeout = 30  # idle keep-alive connections end on their own

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        # --- plumbing ----------------------------------------------------------------------

        def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", f"req_{time.monotonic_ns()}")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _event(self, payload: object) -> None:
            text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
            self._chunk(f"data: {text}\n\n".encode())

        def _unauthorized(self) -> bool:
            header = self.headers.get("Authorization")
            if fake.authorized(header):
                return False
            given = (header or "").removeprefix("Bearer ")
            body = _error(
                f"Incorrect API key provided: {_masked(given)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
            self._json(401, body)
            return True

        # --- routes ------------------------------------------------------------------------

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                self._json(404, _error(f"Invalid URL (GET {self.path})", "invalid_request_error", None))
                return
            fake.model_list_requests += 1
            if fake.models_stall:
                fake.wait(fake.models_stall)
            if self._unauthorized():
                return
            if fake.models_status is not None:
                self._json(fake.models_status, standard_error(fake.models_status, ""))
                return
            data = [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in fake.models
            ]
            self._json(200, {"object": "list", "data": data})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._json(404, _error(f"Invalid URL (POST {self.path})", "invalid_request_error", None))
                return
            if self._unauthorized():
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._json(
                    400,
                    _error(
                        "We could not parse the JSON body of your request.", "invalid_request_error", None
                    ),
                )
                return
            fake.bodies.append(body)
            model = str(body.get("model", ""))
            max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
            messages = [(m["role"], m["content"]) for m in body.get("messages", [])]
            fake.requests.append(
                RecordedRequest(
                    model=model,
                    temperature=body.get("temperature"),
                    max_tokens=max_tokens,
                    messages=messages,
                    headers={k.lower(): v for k, v in self.headers.items()},
                )
            )
            rewrite = rewrite_deltas(messages, fake.rewrite)
            deltas = list(fake.deltas) if rewrite is None else rewrite
            stall = fake.take_stall()
            if stall:
                fake.wait(stall)
            failure = fake.take_failure()
            if failure is not None:
                status, error_body, headers = failure
                self._json(status, error_body or standard_error(status, model), headers)
                return
            for param in sorted(fake.rejected_params & body.keys()):
                self._json(
                    400,
                    _error(
                        f"Unsupported parameter: '{param}' is not supported with this model.",
                        "invalid_request_error",
                        "unsupported_parameter",
                        param,
                    ),
                )
                return
            if not model:
                self._json(400, _error("you must provide a model parameter", "invalid_request_error", None))
                return
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(deltas),
                "total_tokens": prompt_tokens + len(deltas),
            }
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                self._stream(model, deltas, usage if include_usage and fake.usage_in_stream else None)
            else:
                self._json(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "".join(deltas)},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": usage,
                    },
                )

        def _stream(self, model: str, deltas: list[str], usage: dict[str, int] | None) -> None:
            cut = fake.take_cut()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            base = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
            }
            extra = {"usage": None} if usage is not None else {}

            def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
                return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

            self._event(chunk({"role": "assistant", "content": ""}))
            for delta in deltas:
                self._event(chunk({"content": delta}))
                if cut:
                    # The connection breaks mid-body: no terminating chunk, no [DONE].
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
            self._event(chunk({}, "stop"))
            if usage is not None:
                self._event({**base, "choices": [], "usage": usage})
            self._event("[DONE]")
            self._chunk(b"")  # the terminating zero-length chunk

    return Handler


def make_settings(fake: FakeOpenAI, **overrides: Any) -> Settings:
    """Settings pointed at the fake, as the contract uses them; keyword overrides by env name."""
    values: dict[str, Any] = {
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": FAKE_KEY,
        "OPENAI_MODELS": ",".join(MODELS),
        "RAG_LLM_TIMEOUT_S": 2,
        "RAG_LLM_MAX_RETRIES": 2,
        "RAG_LLM_RETRY_MAX_WAIT_S": 2,
    }
    values.update(overrides)
    values = {k: v for k, v in values.items() if v is not None}
    return Settings(_env_file=None, **values)


@contextlib.contextmanager
def running_fake(api_key: str | None = FAKE_KEY) -> Iterator[FakeOpenAI]:
    """A started fake server, stopped on exit."""
    fake = FakeOpenAI(api_key).start()
    try:
        yield fake
    finally:
        fake.close()


@contextlib.contextmanager
def make_case(tmp_path: Path) -> Iterator[ProviderCase]:
    """The OpenAI-compatible provider wired to a running fake."""
    with running_fake() as fake:
        settings = make_settings(fake)
        env = {
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_API_KEY": FAKE_KEY,
            "OPENAI_MODELS": ",".join(MODELS),
            "RAG_LLM_TIMEOUT_S": "2",
            "RAG_LLM_MAX_RETRIES": "2",
            "RAG_LLM_RETRY_MAX_WAIT_S": "2",
        }
        waits: list[float] = []
        yield ProviderCase(
            name="openai",
            provider=OpenAICompatProvider(settings, sleep=waits.append),
            model="fake-gpt",
            fake=fake,
            secrets=[FAKE_KEY],
            env=env,
            waits=waits,
        )
