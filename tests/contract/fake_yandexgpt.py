"""A local YandexGPT: Yandex's real ``TextGenerationService`` (and ``IamTokenService``) over gRPC.

The stubs are the ones ``yandexcloud`` ships; the real ``yandex-ai-studio-sdk`` talks to this
server exactly as it talks to Yandex Cloud. Like the real service, every streamed message
carries the whole text so far (status PARTIAL), the last one repeats it with status FINAL and
the token usage. Errors are gRPC status codes with Yandex's wording.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from yandex.cloud.ai.foundation_models.v1 import text_common_pb2 as common
from yandex.cloud.ai.foundation_models.v1.text_generation import text_generation_service_pb2 as tg
from yandex.cloud.ai.foundation_models.v1.text_generation import text_generation_service_pb2_grpc as tg_grpc
from yandex.cloud.iam.v1 import iam_token_service_pb2 as iam
from yandex.cloud.iam.v1 import iam_token_service_pb2_grpc as iam_grpc

from providers.yandexgpt import YandexGPTProvider
from settings import Settings
from tests.contract.harness import DEFAULT_DELTAS, ProviderCase, RecordedRequest, rewrite_deltas

FOLDER_ID = "b1gfakefolder"
API_KEY = "AQVNfake-yandex-api-key-7f3c9e21d4b8"
IAM_TOKEN = "t1.9euelZqfakeIamToken.Zx8fakeSignature4c2b"
OAUTH_TOKEN = "y0_AgAAAAfakeOAuthToken5e6f"
MODEL = "yandexgpt-lite"
# What the Text Generation API serves (name/version of the model URI), then the seed's retired
# models: the real service refuses those, the fake answers them so that tests may send any URI.
SERVED = [
    "yandexgpt-lite/latest",
    "yandexgpt/latest",
    "yandexgpt/rc",
    "aliceai-llm/latest",
    "yandexgpt-lite/rc",
    "yandexgpt-32k/rc",
]

# Yandex's own wording (details of the gRPC status) for each failure the contract provokes.
FAILURES: dict[int, tuple[grpc.StatusCode, str]] = {
    400: (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Error in session internal_id=fake-1&request_id=fake-2: "
        "number of input tokens must be no more than 32768, got 59830",
    ),
    401: (grpc.StatusCode.UNAUTHENTICATED, "The token is invalid"),
    403: (grpc.StatusCode.PERMISSION_DENIED, "Permission denied"),
    404: (grpc.StatusCode.NOT_FOUND, "Model not found"),
    429: (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "ai.textGenerationCompletionRequestsPerSecond.rate quota limit exceed: allowed 10 requests",
    ),
    500: (grpc.StatusCode.INTERNAL, "Internal error"),
    503: (grpc.StatusCode.UNAVAILABLE, "Service is temporarily unavailable"),
}


@dataclass
class _Failure:
    status: int
    retry_after: int | None


@dataclass
class FakeYandexGPT:
    """The server's knobs and records (``harness.FakeControl``)."""

    folder_id: str = FOLDER_ID
    api_keys: set[str] = field(default_factory=lambda: {API_KEY})
    iam_tokens: set[str] = field(default_factory=lambda: {IAM_TOKEN})
    oauth_tokens: set[str] = field(default_factory=lambda: {OAUTH_TOKEN})
    requests: list[RecordedRequest] = field(default_factory=list)
    deltas: list[str] = field(default_factory=lambda: list(DEFAULT_DELTAS))
    models: list[str] = field(default_factory=lambda: list(SERVED))
    token_requests: int = 0
    rewrite: str | None = None  # the answer to question-rewrite requests; None echoes the question
    chunk_delay: float = 0.0  # seconds between streamed messages
    abandoned: int = 0  # streams the client cancelled before their FINAL message
    port: int = 0
    _failures: list[_Failure] = field(default_factory=list)
    _cut: str | None = None
    _stall: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    # -- FakeControl ---------------------------------------------------------------------

    def fail_next(self, status: int, retry_after: int | None = None, times: int = 1) -> None:
        """The next ``times`` completions fail with the gRPC code mapped from this HTTP status."""
        if status not in FAILURES:
            raise ValueError(f"no gRPC mapping for HTTP {status}")
        with self._lock:
            self._failures.extend(_Failure(status, retry_after) for _ in range(times))

    def cut_next(self, how: str = "abort") -> None:
        """The next stream sends its first chunk, then breaks.

        ``abort``: the stream ends with an error status (what a reset connection looks like);
        ``drop``: it ends cleanly without its FINAL message.
        """
        if how not in ("abort", "drop"):
            raise ValueError(how)
        self._cut = how

    def stall_next(self, seconds: float) -> None:
        """The next completion answers nothing for ``seconds``."""
        self._stall = seconds

    def expire_token(self) -> None:
        """No-op: the SDK does not refresh on UNAUTHENTICATED."""

    # -- server side ---------------------------------------------------------------------

    def _take(self) -> tuple[_Failure | None, str | None, float]:
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
            cut, self._cut = self._cut, None
            stall, self._stall = self._stall, 0.0
        return failure, cut, stall

    def _authorized(self, metadata: dict[str, str]) -> bool:
        auth = metadata.get("authorization", "")
        scheme, _, credential = auth.partition(" ")
        if scheme == "Api-Key":
            return credential in self.api_keys
        if scheme == "Bearer":
            return credential in self.iam_tokens
        return False

    def completion(self, request: tg.CompletionRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        options = request.completion_options
        messages = [(m.role, m.text) for m in request.messages]
        self.requests.append(
            RecordedRequest(
                model=request.model_uri,
                temperature=options.temperature.value if options.HasField("temperature") else None,
                max_tokens=options.max_tokens.value if options.HasField("max_tokens") else None,
                messages=messages,
                headers=metadata,
            )
        )
        rewrite = rewrite_deltas(messages, self.rewrite)
        deltas = list(self.deltas) if rewrite is None else rewrite
        failure, cut, stall = self._take()
        if stall:
            deadline = time.monotonic() + stall
            while time.monotonic() < deadline and context.is_active() and not self._stopping.is_set():
                time.sleep(0.05)
            if not context.is_active():
                return
        if not self._authorized(metadata):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "The token is invalid")
        if failure is not None:
            code, details = FAILURES[failure.status]
            if failure.retry_after is not None:
                context.set_trailing_metadata((("retry-after", str(failure.retry_after)),))
            context.abort(code, details)
        uri = request.model_uri
        if not uri.startswith("gpt://"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid model uri: {uri}")
        folder, _, model = uri.removeprefix("gpt://").partition("/")
        if folder != self.folder_id:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "Permission denied")
        if model not in self.models:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Model {uri} not found")
        if not request.messages:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "messages: must not be empty")

        finished = threading.Event()
        context.add_callback(lambda: self._ended(finished))
        text = ""
        for n, delta in enumerate(deltas):
            text += delta
            if n:
                time.sleep(self.chunk_delay)
            yield _response(text, common.Alternative.ALTERNATIVE_STATUS_PARTIAL)
            if n == 0 and cut == "abort":
                context.abort(grpc.StatusCode.INTERNAL, "Stream removed")
            if n == 0 and cut == "drop":
                return
        prompt = sum(len(m.text.split()) for m in request.messages)
        done = len(text.split())
        usage = common.ContentUsage(
            input_text_tokens=prompt, completion_tokens=done, total_tokens=prompt + done
        )
        finished.set()
        yield _response(text, common.Alternative.ALTERNATIVE_STATUS_FINAL, usage)

    def _ended(self, finished: threading.Event) -> None:
        if not finished.is_set():
            with self._lock:
                self.abandoned += 1

    def create_iam_token(
        self, request: iam.CreateIamTokenRequest, context: grpc.ServicerContext
    ) -> iam.CreateIamTokenResponse:
        self.token_requests += 1
        if request.yandex_passport_oauth_token not in self.oauth_tokens:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "The OAuth token is invalid")
        token = f"t1.9euelZqfakeExchanged{self.token_requests}.sig"
        self.iam_tokens.add(token)
        return iam.CreateIamTokenResponse(iam_token=token)


def _response(text: str, status: int, usage: common.ContentUsage | None = None) -> tg.CompletionResponse:
    alternative = common.Alternative(message=common.Message(role="assistant", text=text), status=status)
    return tg.CompletionResponse(
        alternatives=[alternative],
        usage=usage or common.ContentUsage(),
        model_version="23.10.2024",
    )


class _TextGeneration(tg_grpc.TextGenerationServiceServicer):
    def __init__(self, fake: FakeYandexGPT) -> None:
        self.fake = fake

    def Completion(self, request: Any, context: Any) -> Iterator[Any]:  # gRPC's method name
        return self.fake.completion(request, context)


class _IamToken(iam_grpc.IamTokenServiceServicer):
    def __init__(self, fake: FakeYandexGPT) -> None:
        self.fake = fake

    def Create(self, request: Any, context: Any) -> Any:  # gRPC's method name
        return self.fake.create_iam_token(request, context)


@contextlib.contextmanager
def running_fake() -> Iterator[FakeYandexGPT]:
    """Start the gRPC server on 127.0.0.1 (a free port), stop it on exit."""
    fake = FakeYandexGPT()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    tg_grpc.add_TextGenerationServiceServicer_to_server(_TextGeneration(fake), server)
    iam_grpc.add_IamTokenServiceServicer_to_server(_IamToken(fake), server)
    fake.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield fake
    finally:
        fake._stopping.set()
        server.stop(grace=None).wait(5)


def env_for(fake: FakeYandexGPT, **overrides: str) -> dict[str, str]:
    """Environment (names as in Settings) that points the app at the fake."""
    env = {
        "YC_FOLDER_ID": fake.folder_id,
        "YC_API_KEY": API_KEY,
        "YC_API_ENDPOINT": f"127.0.0.1:{fake.port}",
        "YC_VERIFY_SSL": "false",
        "RAG_LLM_TIMEOUT_S": "2",
        "RAG_LLM_MAX_RETRIES": "2",
        "RAG_LLM_RETRY_MAX_WAIT_S": "2",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v}


def settings_for(fake: FakeYandexGPT, **overrides: str) -> Settings:
    """Settings pointed at the fake; keyword overrides by env name ("" removes one)."""
    values: dict[str, Any] = dict(env_for(fake, **overrides))
    return Settings(_env_file=None, **values)


@contextlib.contextmanager
def make_case(tmp_path: Path) -> Iterator[ProviderCase]:
    """The contract's YandexGPT case: the real SDK against the fake, with an API key."""
    with running_fake() as fake:
        waits: list[float] = []
        yield ProviderCase(
            name="yandexgpt",
            provider=YandexGPTProvider(settings_for(fake), sleep=waits.append),
            model=MODEL,
            fake=fake,
            secrets=[API_KEY],
            env=env_for(fake),
            waits=waits,
        )
