"""A local GigaChat: OAuth, the model list and chat completions (JSON and SSE), over HTTP/1.1.

It speaks the wire protocol the ``gigachat`` SDK talks to the real service:

- ``POST /api/v2/oauth``: form ``scope=...``, headers ``Authorization: Basic <key>`` and
  ``RqUID: <uuid4>``; answers ``{"access_token", "expires_at"}`` (milliseconds).
- ``GET /api/v1/models``: ``{"object": "list", "data": [{"id", "object", "owned_by", "type"}]}``.
- ``POST /api/v1/chat/completions``: ``Authorization: Bearer <token>``; with ``"stream": true``
  a chunked ``text/event-stream`` of ``data: {...}`` events (``choices[0].delta.content``), a
  last chunk with ``finish_reason`` and ``usage``, then ``data: [DONE]``.

Errors carry GigaChat's JSON body ``{"status": ..., "message": ...}`` (OAuth: ``{"code", "message"}``).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import secrets
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from providers.gigachat import GigaChatProvider
from settings import Settings
from tests.contract.harness import DEFAULT_DELTAS, ProviderCase, RecordedRequest, rewrite_deltas

AUTH_PATH = "/api/v2/oauth"
API_PREFIX = "/api/v1"
MODEL_VERSION = "2.0.28.2"
# A distinctive authorization key (base64 of "client_id:client_secret", like the real ones),
# so a leak check that looks for it is meaningful.
CREDENTIALS = base64.b64encode(b"fake-client-5e1f0c2a:fake-secret-GIGA-9d4b7e36c1").decode()
LISTED_MODELS = [
    "GigaChat",
    "GigaChat-Pro",
    "GigaChat-Max",
    "GigaChat-2",
    "GigaChat-2-Pro",
    "GigaChat-2-Max",
    "GigaChat-3-Ultra",
    "Embeddings",
    "Embeddings-2",
    "EmbeddingsGigaR",
]

# The bodies GigaChat sends with each refusal of a generation request.
ERROR_MESSAGES = {
    400: "Tokens limit exceeded: the prompt has 140000 tokens, the model context is 131072 tokens",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Permission denied",
    404: "No such model",
    413: "Tokens limit exceeded",
    422: "Invalid params: repetition_penalty must be in range (0, +inf)",
    429: "Too many requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class FakeGigaChat:
    """The server and its knobs (``harness.FakeControl`` plus GigaChat-only records)."""

    def __init__(self, *, credentials: str = CREDENTIALS, scope: str = "GIGACHAT_API_PERS") -> None:
        self.credentials = credentials
        self.scope = scope  # the only scope this key is registered for
        # FakeControl
        self.requests: list[RecordedRequest] = []
        self.deltas: list[str] = list(DEFAULT_DELTAS)
        self.models: list[str] = list(LISTED_MODELS)
        self.token_requests = 0
        self.rewrite: str | None = None
        # GigaChat-only records and knobs
        self.secrets: list[str] = [credentials]  # the key, then every token issued (live)
        self.scopes: list[str] = []  # the scope field of each OAuth request
        self.rejected_tokens = 0  # 401s for a missing, unknown or expired token
        self.model_list_requests = 0
        self.models_status: int | None = None  # answer GET /models with this error
        self.models_stall_s = 0.0
        self.token_ttl_s = 1800.0  # real tokens live 30 minutes
        self.delta_delay_s = 0.0  # pause between streamed deltas (a slow, long answer)
        self._tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self._failures: deque[tuple[int, int | None]] = deque()
        self._cut = 0
        self._stalls: deque[float] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread: threading.Thread | None = None
        self.scheme = "http"

    # -- lifecycle ---------------------------------------------------------------------

    def use_tls(self, certfile: Path, keyfile: Path) -> None:
        """Serve HTTPS with this certificate (call before ``start``)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        self._server.ssl_context = context
        self.scheme = "https"

    def start(self) -> FakeGigaChat:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes stalled handlers
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def auth_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{AUTH_PATH}"

    # -- FakeControl -------------------------------------------------------------------

    def fail_next(self, status: int, retry_after: int | None = None, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([(status, retry_after)] * times)

    def cut_next(self) -> None:
        with self._lock:
            self._cut += 1

    def stall_next(self, seconds: float) -> None:
        with self._lock:
            self._stalls.append(seconds)

    def expire_token(self) -> None:
        with self._lock:
            self._tokens.clear()

    # -- used by the handler -----------------------------------------------------------

    def issue_token(self) -> tuple[str, int]:
        with self._lock:
            self.token_requests += 1
            token = f"tok-{self.token_requests}-{secrets.token_hex(8)}"
            expires = time.time() + self.token_ttl_s
            self._tokens[token] = expires
            self.secrets.append(token)
        return token, int(expires * 1000)

    def token_valid(self, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        with self._lock:
            expires = self._tokens.get(token) if scheme == "Bearer" else None
            valid = expires is not None and expires > time.time()
            if not valid:
                self.rejected_tokens += 1
        return valid

    def next_failure(self) -> tuple[int, int | None] | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def next_cut(self) -> bool:
        with self._lock:
            if self._cut:
                self._cut -= 1
                return True
            return False

    def next_stall(self) -> float:
        with self._lock:
            return self._stalls.popleft() if self._stalls else 0.0

    def wait(self, seconds: float) -> None:
        self._stop.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeGigaChat
    ssl_context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        if self.ssl_context is not None:
            # The handshake happens in the handler's thread, not in the accepting loop.
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up (timeouts, cut streams, refused certificates): not the fake's errors.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError | ssl.SSLError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 10  # an idle keep-alive connection frees its thread

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> FakeGigaChat:
        return self.server.fake

    # -- routing -----------------------------------------------------------------------

    def do_POST(self) -> None:
        body = self._read_body()
        path = urlsplit(self.path).path
        if path == AUTH_PATH:
            self._oauth(body)
        elif path == f"{API_PREFIX}/chat/completions":
            self._chat(body)
        else:
            self._error(404, "Not Found")

    def do_GET(self) -> None:
        self._read_body()
        if urlsplit(self.path).path == f"{API_PREFIX}/models":
            self._models()
        else:
            self._error(404, "Not Found")

    # -- endpoints ---------------------------------------------------------------------

    def _oauth(self, body: bytes) -> None:
        fake = self.fake
        form = parse_qs(body.decode())
        scope = form.get("scope", [""])[0]
        with fake._lock:
            fake.scopes.append(scope)
        refusal: tuple[int, dict[str, object]] | None = None
        if not _is_uuid4(self.headers.get("RqUID")):
            refusal = (400, {"code": 4, "message": "Can't parse RqUID header: uuid4 expected"})
        elif self.headers.get("Authorization") != f"Basic {fake.credentials}":
            refusal = (401, {"code": 6, "message": "credentials doesn't match db data"})
        elif not scope:
            refusal = (400, {"code": 5, "message": "scope is empty"})
        elif scope != fake.scope:
            refusal = (400, {"code": 7, "message": "scope from db not fully includes consumed scope"})
        if refusal is None:
            token, expires_at = fake.issue_token()
            self._json(200, {"access_token": token, "expires_at": expires_at})
            return
        with fake._lock:  # a refused request counts as well, before the client hears back
            fake.token_requests += 1
        self._json(*refusal)

    def _models(self) -> None:
        fake = self.fake
        if not fake.token_valid(self.headers.get("Authorization")):
            self._error(401, "Unauthorized")
            return
        with fake._lock:
            fake.model_list_requests += 1
        if fake.models_stall_s:
            fake.wait(fake.models_stall_s)
        if fake.models_status:
            self._error(fake.models_status, ERROR_MESSAGES.get(fake.models_status, "Error"))
            return
        data = [
            {
                "id": model_id,
                "object": "model",
                "owned_by": "salutedevices",
                "type": "embedder" if model_id.startswith("Embeddings") else "chat",
            }
            for model_id in fake.models
        ]
        self._json(200, {"object": "list", "data": data})

    def _chat(self, body: bytes) -> None:
        fake = self.fake
        if not fake.token_valid(self.headers.get("Authorization")):
            self._error(401, "Unauthorized")
            return
        request = json.loads(body)
        model = str(request.get("model", ""))
        messages = [(str(m.get("role")), str(m.get("content", ""))) for m in request.get("messages", [])]
        with fake._lock:
            fake.requests.append(
                RecordedRequest(
                    model=model,
                    temperature=request.get("temperature"),
                    max_tokens=request.get("max_tokens"),
                    messages=messages,
                    headers=dict(self.headers.items()),
                )
            )
        stall = fake.next_stall()
        if stall:
            fake.wait(stall)
        failure = fake.next_failure()
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            self._error(status, ERROR_MESSAGES.get(status, "Error"), headers)
            return
        if model not in fake.models:
            self._error(404, ERROR_MESSAGES[404])
            return
        temperature = request.get("temperature")
        if temperature is not None and temperature <= 0:
            self._error(422, "Invalid params: temperature must be in range (0, +inf)")
            return
        if any(role == "system" for role, _ in messages[1:]):
            self._error(422, "Invalid params: system message must be the first message")
            return
        rewrite = rewrite_deltas(messages, fake.rewrite)
        deltas = list(fake.deltas) if rewrite is None else rewrite
        usage = {
            "prompt_tokens": sum(len(text) for _, text in messages) // 4 + 1,
            "completion_tokens": len(deltas),
            "total_tokens": sum(len(text) for _, text in messages) // 4 + 1 + len(deltas),
            "precached_prompt_tokens": 0,
        }
        if request.get("stream"):
            self._sse(model, deltas, usage, cut=fake.next_cut())
            return
        self._json(
            200,
            {
                "choices": [
                    {
                        "message": {"role": "assistant", "content": "".join(deltas)},
                        "index": 0,
                        "finish_reason": "stop",
                    }
                ],
                "created": int(time.time()),
                "model": f"{model}:{MODEL_VERSION}",
                "object": "chat.completion",
                "usage": usage,
            },
        )

    def _sse(self, model: str, deltas: list[str], usage: dict[str, int], *, cut: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        created = int(time.time())

        def event(delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
            choice = {"delta": delta, "index": 0, **extra}
            return {
                "choices": [choice],
                "created": created,
                "model": f"{model}:{MODEL_VERSION}",
                "object": "chat.completion",
            }

        try:
            for i, text in enumerate(deltas):
                delta = {"content": text, "role": "assistant"} if i == 0 else {"content": text}
                if i and self.fake.delta_delay_s:
                    self.fake.wait(self.fake.delta_delay_s)
                self._chunk(f"data: {json.dumps(event(delta), ensure_ascii=False)}\n\n")
                if cut:
                    # Mid-answer, the connection just ends: no closing event, no last chunk.
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
            last = {**event({"content": ""}, finish_reason="stop"), "usage": usage}
            self._chunk(f"data: {json.dumps(last)}\n\n")
            self._chunk("data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client went away
            self.close_connection = True

    # -- helpers -----------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client went away (it timed out)
            self.close_connection = True

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"status": status, "message": message}, headers)


def _is_uuid4(value: str | None) -> bool:
    try:
        return uuid.UUID(value or "").version == 4
    except ValueError:
        return False


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA): ``(cert.pem, key.pem)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fake Russian Trusted Root CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = folder / "gigachat-ca.pem", folder / "gigachat-key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


@contextmanager
def make_case(
    tmp_path: Path, *, scope: str = "GIGACHAT_API_PERS", tls: bool = False, **env_overrides: str
) -> Iterator[ProviderCase]:
    """GigaChatProvider wired to a fresh fake; ``env_overrides`` change its settings (env names)."""
    fake = FakeGigaChat(scope=scope)
    if tls:
        fake.use_tls(*make_certificate(tmp_path))
    fake.start()
    provider: GigaChatProvider | None = None
    try:
        # Plain http needs no certificate settings; the https variant sets them per test.
        env = {
            "GIGACHAT_CREDENTIALS": fake.credentials,
            "GIGACHAT_SCOPE": scope,
            "GIGACHAT_BASE_URL": fake.base_url,
            "GIGACHAT_AUTH_URL": fake.auth_url,
            "RAG_LLM_TIMEOUT_S": "2",
            "RAG_LLM_MAX_RETRIES": "2",
            "RAG_LLM_RETRY_MAX_WAIT_S": "2",
            **env_overrides,
        }
        settings = Settings(_env_file=None, **env)  # type: ignore[call-arg]
        waits: list[float] = []
        provider = GigaChatProvider(settings, sleep=waits.append)
        yield ProviderCase(
            name="gigachat",
            provider=provider,
            model="GigaChat-2",
            fake=fake,
            secrets=fake.secrets,
            env=env,
            waits=waits,
        )
    finally:
        if provider is not None:
            provider.close()
        fake.stop()
