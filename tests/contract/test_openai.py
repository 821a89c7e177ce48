"""The OpenAI-compatible provider beyond the shared contract: catalogue, keyless servers, edge errors.

Every test runs the real ``openai`` SDK against the fake server of ``fake_openai``.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate

import httpx2
import openai
import pytest

from providers import (
    AuthenticationError,
    ChatMessage,
    ConfigurationError,
    ContextTooLongError,
    GenerationParams,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderUnavailableError,
    RateLimitError,
    build_providers,
)
from providers.openai_compat import DEFAULT_MODEL, OpenAICompatProvider
from settings import Settings
from tests.contract.fake_openai import FAKE_KEY, FakeOpenAI, make_settings, running_fake
from tests.contract.harness import DEFAULT_DELTAS

QUESTION = [
    ChatMessage(role="system", content="Отвечай по документам."),
    ChatMessage(role="user", content="Какой срок аренды?"),
]
PARAMS = GenerationParams(temperature=0.2, max_tokens=77)
ANSWER = "".join(DEFAULT_DELTAS)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with running_fake() as f:
        yield f


@pytest.fixture
def keyless_fake() -> Iterator[FakeOpenAI]:
    """A server that, like Ollama, wants no key."""
    with running_fake(api_key=None) as f:
        yield f


def _provider(fake: FakeOpenAI, **overrides: object) -> OpenAICompatProvider:
    return OpenAICompatProvider(make_settings(fake, **overrides), sleep=lambda seconds: None)


def _ask(provider: OpenAICompatProvider, model: str = "fake-gpt") -> str:
    return "".join(provider.stream(QUESTION, model, PARAMS))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- configuration and status ----------------------------------------------------------------


def test_unconfigured_is_unavailable_with_a_russian_reason() -> None:
    provider = OpenAICompatProvider(Settings(_env_file=None))
    status = provider.status()
    assert not status.available
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODELS", ".streamlit/secrets.toml"):
        assert name in status.reason
    assert "не настроен" in status.reason
    # The selector still gets a catalogue (without touching the network), and asking refuses clearly.
    assert [m.id for m in provider.models()] == [DEFAULT_MODEL]
    with pytest.raises(ConfigurationError) as err:
        provider.stream(QUESTION, DEFAULT_MODEL, PARAMS)
    assert "OPENAI_API_KEY" in err.value.user_message


def test_registry_builds_it_from_settings(fake: FakeOpenAI) -> None:
    provider = build_providers(make_settings(fake))["openai"]
    assert isinstance(provider, OpenAICompatProvider)
    assert provider.label == "OpenAI-совместимый"
    assert provider.status().available


def test_a_key_alone_means_openai_itself() -> None:
    provider = OpenAICompatProvider(Settings(_env_file=None, OPENAI_API_KEY=" sk-only-a-key \n"))
    assert provider.status().available
    client = provider.client()
    assert str(client.base_url).startswith("https://api.openai.com/v1")
    assert client.api_key == "sk-only-a-key"  # whitespace from a pasted secret is dropped
    assert client.max_retries == 0


def test_one_client_per_provider_shared_by_threads(fake: FakeOpenAI) -> None:
    provider = _provider(fake)
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(provider.client())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 1
    client = provider.client()
    assert client.timeout == 2
    assert client.max_retries == 0
    _ask(provider)
    _ask(provider)
    assert provider.client() is client


def test_an_injected_client_carries_the_requests() -> None:
    # No server at all: a mock transport answers, first with a web page, then with a stream.
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    stream = [
        {**chunk, "choices": [{"index": 0, "delta": {"content": d}, "finish_reason": None}]}
        for d in DEFAULT_DELTAS
    ]
    stream.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    sse = "".join(f"data: {json.dumps(c)}\n\n" for c in stream) + "data: [DONE]\n\n"
    paths: list[str] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        paths.append(request.url.path)
        if len(paths) == 1:
            return httpx2.Response(200, text="<html>Welcome to nginx!</html>")
        return httpx2.Response(200, text=sse, headers={"content-type": "text/event-stream"})

    http = httpx2.Client(transport=httpx2.MockTransport(answer))
    client = openai.OpenAI(api_key="sk-mock", base_url="http://llm.test/v1", http_client=http, max_retries=0)
    provider = OpenAICompatProvider(Settings(_env_file=None, OPENAI_API_KEY="sk-mock"), client=client)
    with pytest.raises(ConfigurationError) as err:
        _ask(provider)
    assert "OPENAI_BASE_URL" in err.value.user_message and "/v1" in err.value.user_message
    completion = provider.stream(QUESTION, "m", PARAMS)
    assert "".join(completion) == ANSWER
    assert completion.usage is not None and completion.usage.completion_tokens > 0  # estimated
    assert paths == ["/v1/chat/completions"] * 2


# --- the model catalogue -----------------------------------------------------------------------


def test_openai_models_drive_the_catalogue(fake: FakeOpenAI) -> None:
    provider = _provider(fake, OPENAI_MODELS=" gpt-4o , llama3.1:8b,,gpt-4o, yandexgpt-32k/rc ")
    models = provider.models()
    assert [m.id for m in models] == ["gpt-4o", "llama3.1:8b", "yandexgpt-32k/rc"]
    assert [m.context_tokens for m in models] == [128000, 8192, 32768]
    assert fake.model_list_requests == 0, "configured names need no request"


def test_without_openai_models_the_server_list_is_used_and_cached(fake: FakeOpenAI) -> None:
    fake.models = ["qwen2.5:7b", "llama3.2", "nomic-embed-text", "gpt-4o-mini"]
    provider = _provider(fake, OPENAI_MODELS=None)
    ids = [m.id for m in provider.models()]
    assert ids == ["gpt-4o-mini", "llama3.2", "qwen2.5:7b"]  # default first, no embedding model
    assert provider.models()[0].context_tokens == 128000
    assert fake.model_list_requests == 1
    fake.models = ["mistral"]
    assert [m.id for m in provider.models()] == ids, "cached for a while"
    assert fake.model_list_requests == 1
    provider.models_ttl_s = 0
    assert [m.id for m in provider.models()] == ["mistral"]
    assert fake.model_list_requests == 2
    # A served model answers.
    assert _ask(provider, "mistral") == ANSWER


def test_a_failing_model_list_falls_back_and_is_cached(fake: FakeOpenAI) -> None:
    fake.models_status = 500
    provider = _provider(fake, OPENAI_MODELS=None)
    assert [m.id for m in provider.models()] == [DEFAULT_MODEL]
    assert [m.id for m in provider.models()] == [DEFAULT_MODEL]
    assert fake.model_list_requests == 1, "a failure is cached too: the sidebar must not wait each rerun"


def test_an_unreachable_server_does_not_hang_the_catalogue() -> None:
    settings = Settings(_env_file=None, OPENAI_BASE_URL=f"http://127.0.0.1:{_closed_port()}/v1")
    started = time.monotonic()
    assert [m.id for m in OpenAICompatProvider(settings).models()] == [DEFAULT_MODEL]
    assert time.monotonic() - started < 3.5


def test_a_stalled_model_list_times_out_quickly(fake: FakeOpenAI) -> None:
    fake.models_stall = 10
    provider = _provider(fake, OPENAI_MODELS=None, RAG_LLM_TIMEOUT_S=60)
    provider.models_timeout_s = 0.5
    started = time.monotonic()
    assert [m.id for m in provider.models()] == [DEFAULT_MODEL]
    assert time.monotonic() - started < 3.5, "the sidebar must not wait for the generation timeout"


# --- keyless servers (Ollama, vLLM) ------------------------------------------------------------


def test_a_server_without_a_key_works(keyless_fake: FakeOpenAI) -> None:
    provider = OpenAICompatProvider(
        Settings(_env_file=None, OPENAI_BASE_URL=keyless_fake.base_url, RAG_LLM_TIMEOUT_S=2)
    )
    assert provider.status().available
    assert "fake-gpt" in [m.id for m in provider.models()]  # from the server's /models
    completion = provider.stream(QUESTION, "fake-gpt", PARAMS)
    assert "".join(completion) == ANSWER
    assert completion.usage is not None and completion.usage.completion_tokens == len(DEFAULT_DELTAS)
    assert keyless_fake.requests[-1].headers["authorization"].startswith("Bearer ")


def test_a_server_that_then_wants_a_key_says_which(keyless_fake: FakeOpenAI) -> None:
    provider = OpenAICompatProvider(
        Settings(_env_file=None, OPENAI_BASE_URL=keyless_fake.base_url, RAG_LLM_TIMEOUT_S=2)
    )
    keyless_fake.fail_next(401)
    with pytest.raises(AuthenticationError) as err:
        _ask(provider)
    assert "укажите OPENAI_API_KEY" in err.value.user_message


# --- the request on the wire -------------------------------------------------------------------


def test_the_request_is_a_streamed_chat_completion(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="providers.openai_compat")
    completion = _provider(fake).stream(QUESTION, "fake-gpt", PARAMS)
    assert list(completion) == DEFAULT_DELTAS
    body = fake.bodies[-1]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 77 and "max_completion_tokens" not in body
    assert body["temperature"] == pytest.approx(0.2)
    assert body["messages"] == [
        {"role": "system", "content": "Отвечай по документам."},
        {"role": "user", "content": "Какой срок аренды?"},
    ]
    assert fake.requests[-1].headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 6  # the server's count, not an estimate
    lines = [r.getMessage() for r in caplog.records if r.name == "providers.openai_compat"]
    debug = [line for line in lines if "fake-gpt" in line and "max_tokens=77" in line]
    assert len(debug) == 1 and "temperature=0.2" in debug[0]
    assert not any(FAKE_KEY in line for line in lines)


def test_usage_is_estimated_when_the_server_sends_none(fake: FakeOpenAI) -> None:
    fake.usage_in_stream = False
    completion = _provider(fake).stream(QUESTION, "fake-gpt", PARAMS)
    assert "".join(completion) == ANSWER
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0 and completion.usage.prompt_tokens > 0


def test_a_model_refusing_max_tokens_gets_max_completion_tokens(fake: FakeOpenAI) -> None:
    # Newer OpenAI models (o1, gpt-5) refuse max_tokens; Ollama, vLLM and Yandex want it.
    fake.rejected_params = {"max_tokens"}
    provider = _provider(fake)
    assert _ask(provider) == ANSWER
    assert [("max_tokens" in b, b.get("max_completion_tokens")) for b in fake.bodies] == [
        (True, None),
        (False, 77),
    ]
    assert _ask(provider) == ANSWER
    assert fake.bodies[-1].get("max_completion_tokens") == 77, "remembered for the model"
    assert len(fake.bodies) == 3


# --- errors ------------------------------------------------------------------------------------


def test_a_wrong_key_is_an_authentication_error_without_the_key() -> None:
    with running_fake(api_key="sk-the-right-one") as fake:
        provider = _provider(fake)
        with pytest.raises(AuthenticationError) as err:
            _ask(provider)
    assert "OPENAI_API_KEY" in err.value.user_message
    assert FAKE_KEY not in err.value.user_message and FAKE_KEY[-4:] not in err.value.user_message


def test_forbidden_model_and_forbidden_key(fake: FakeOpenAI) -> None:
    provider = _provider(fake)
    fake.fail_next(403)
    with pytest.raises(ModelNotFoundError) as err:
        _ask(provider)
    assert "нет доступа" in err.value.user_message.lower() and "OPENAI_MODELS" in err.value.user_message
    fake.fail_next_with(403, {"error": {"message": "You are not allowed to do this.", "code": None}})
    with pytest.raises(AuthenticationError) as auth:
        _ask(provider)
    assert "OPENAI_API_KEY" in auth.value.user_message


def test_model_not_found_names_the_model_and_openai_models(fake: FakeOpenAI) -> None:
    fake.fail_next(404)
    with pytest.raises(ModelNotFoundError) as err:
        _ask(_provider(fake))
    assert "«fake-gpt»" in err.value.user_message and "OPENAI_MODELS" in err.value.user_message


def test_a_base_url_without_v1_points_at_it(fake: FakeOpenAI) -> None:
    provider = _provider(fake, OPENAI_BASE_URL=fake.base_url.removesuffix("/v1"))
    with pytest.raises(ModelNotFoundError) as err:
        _ask(provider)
    assert "OPENAI_BASE_URL" in err.value.user_message and "/v1" in err.value.user_message


def test_context_too_long_from_a_message_only(fake: FakeOpenAI) -> None:
    # vLLM says it in words, without OpenAI's code.
    fake.fail_next_with(
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 4096 tokens. However, "
            "you requested 5000 tokens.",
            "type": "BadRequestError",
            "code": 400,
        },
    )
    with pytest.raises(ContextTooLongError):
        _ask(_provider(fake))


def test_other_bad_requests_are_invalid_requests_with_the_servers_reason(fake: FakeOpenAI) -> None:
    provider = _provider(fake)
    fake.fail_next_with(
        400, {"error": {"message": f"Invalid 'messages': bad role near {FAKE_KEY}", "code": "invalid_value"}}
    )
    with pytest.raises(InvalidRequestError) as err:
        _ask(provider)
    assert not isinstance(err.value, ContextTooLongError)
    assert "bad role" in err.value.user_message and FAKE_KEY not in err.value.user_message
    fake.fail_next(422)
    with pytest.raises(InvalidRequestError):
        _ask(provider)
    assert len(fake.requests) == 2, "refusals of the request itself are not retried"


def test_retry_after_in_milliseconds_and_as_a_date(fake: FakeOpenAI) -> None:
    provider = _provider(fake, RAG_LLM_MAX_RETRIES=0)
    fake.fail_next_with(429, {}, {"retry-after-ms": "1500"})
    with pytest.raises(RateLimitError) as err:
        _ask(provider)
    assert err.value.retry_after == pytest.approx(1.5)
    fake.fail_next_with(429, {}, {"Retry-After": formatdate(time.time() + 30, usegmt=True)})
    with pytest.raises(RateLimitError) as err:
        _ask(provider)
    assert err.value.retry_after == pytest.approx(30, abs=2)


def test_exhausted_quota_is_not_retried(fake: FakeOpenAI) -> None:
    fake.fail_next_with(
        429,
        {
            "error": {
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
            }
        },
    )
    with pytest.raises(AuthenticationError) as err:
        _ask(_provider(fake))
    assert "квот" in err.value.user_message
    assert len(fake.requests) == 1


def test_service_unavailable_is_retried(fake: FakeOpenAI) -> None:
    fake.fail_next(503)
    assert _ask(_provider(fake, RAG_LLM_RETRY_MAX_WAIT_S=1)) == ANSWER
    assert len(fake.requests) == 2


def test_connection_refused_points_at_openai_base_url() -> None:
    settings = Settings(
        _env_file=None,
        OPENAI_BASE_URL=f"http://127.0.0.1:{_closed_port()}/v1",
        RAG_LLM_MAX_RETRIES=0,
    )
    with pytest.raises(ProviderUnavailableError) as err:
        _ask(OpenAICompatProvider(settings))
    assert "OPENAI_BASE_URL" in err.value.user_message


def test_all_translated_errors_keep_their_cause(fake: FakeOpenAI) -> None:
    fake.fail_next(404)
    with pytest.raises(ModelNotFoundError) as err:
        _ask(_provider(fake))
    assert isinstance(err.value.__cause__, openai.NotFoundError)
