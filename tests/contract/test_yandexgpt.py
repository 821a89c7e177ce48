"""YandexGPT specifics: the real SDK against the fake gRPC TextGenerationService."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

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
    StreamInterruptedError,
)
from providers.yandexgpt import YandexGPTProvider
from settings import Settings
from tests.contract.fake_yandexgpt import (
    API_KEY,
    FOLDER_ID,
    IAM_TOKEN,
    MODEL,
    OAUTH_TOKEN,
    FakeYandexGPT,
    running_fake,
    settings_for,
)

QUESTION = [ChatMessage(role="user", content="Какой срок аренды?")]
PARAMS = GenerationParams(temperature=0.5, max_tokens=200)
SEED_MODELS = [
    "yandexgpt-lite/latest",
    "yandexgpt-lite/rc",
    "yandexgpt/latest",
    "yandexgpt/rc",
    "yandexgpt-32k/rc",
]


@pytest.fixture
def fake() -> Iterator[FakeYandexGPT]:
    with running_fake() as f:
        yield f


def _provider(fake: FakeYandexGPT, **overrides: str) -> YandexGPTProvider:
    return YandexGPTProvider(settings_for(fake, **overrides), sleep=lambda seconds: None)


def test_cumulative_chunks_become_deltas_without_repetition(fake: FakeYandexGPT) -> None:
    fake.deltas = ["Арендатор ", "вносит ", "плату ", "ежемесячно ", "[2]."]
    completion = _provider(fake).stream(QUESTION, MODEL, PARAMS)
    # The server sends "Арендатор ", "Арендатор вносит ", ... and the whole text again as FINAL.
    assert list(completion) == fake.deltas
    assert completion.text == "Арендатор вносит плату ежемесячно [2]."
    # Usage is the server's own, from the final message.
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 5)


def test_model_ids_become_model_uris(fake: FakeYandexGPT) -> None:
    provider = _provider(fake)
    list(provider.stream(QUESTION, "yandexgpt/latest", PARAMS))
    assert fake.requests[-1].model == f"gpt://{FOLDER_ID}/yandexgpt/latest"
    uri = f"gpt://{FOLDER_ID}/yandexgpt-32k/rc"
    list(provider.stream(QUESTION, uri, PARAMS))
    assert fake.requests[-1].model == uri
    list(provider.stream(QUESTION, "yandexgpt-lite", PARAMS))
    assert fake.requests[-1].model == f"gpt://{FOLDER_ID}/yandexgpt-lite/latest"


def test_messages_and_parameters_as_sent(fake: FakeYandexGPT) -> None:
    messages = [
        ChatMessage(role="system", content="Отвечай по документам."),
        ChatMessage(role="user", content="Какой срок аренды?"),
        ChatMessage(role="assistant", content="Одиннадцать месяцев [1]."),
        ChatMessage(role="user", content="А цена?"),
    ]
    # YandexGPT takes a temperature up to 1: the app's higher values are capped.
    list(_provider(fake).stream(messages, MODEL, GenerationParams(temperature=1.6, max_tokens=77)))
    sent = fake.requests[-1]
    assert sent.messages == [(m.role, m.content) for m in messages]
    assert sent.temperature == pytest.approx(1.0)
    assert sent.max_tokens == 77
    assert sent.headers["authorization"] == f"Api-Key {API_KEY}"


def test_iam_token_is_sent_as_bearer(fake: FakeYandexGPT) -> None:
    provider = _provider(fake, YC_API_KEY="", YC_IAM_TOKEN=IAM_TOKEN)
    assert "".join(provider.stream(QUESTION, MODEL, PARAMS)) == "".join(fake.deltas)
    assert fake.requests[-1].headers["authorization"] == f"Bearer {IAM_TOKEN}"
    # An IAM token pasted into YC_API_KEY is recognised by its form, as the SDK does.
    list(_provider(fake, YC_API_KEY=IAM_TOKEN).stream(QUESTION, MODEL, PARAMS))
    assert fake.requests[-1].headers["authorization"] == f"Bearer {IAM_TOKEN}"


def test_oauth_token_is_exchanged_for_an_iam_token_once(fake: FakeYandexGPT) -> None:
    provider = _provider(fake, YC_API_KEY="", YC_OAUTH_TOKEN=OAUTH_TOKEN)
    for _ in range(2):
        assert "".join(provider.stream(QUESTION, MODEL, PARAMS)) == "".join(fake.deltas)
    assert fake.token_requests == 1
    auth = fake.requests[-1].headers["authorization"]
    assert auth.startswith("Bearer t1.") and OAUTH_TOKEN not in auth


def test_an_injected_sdk_is_used(fake: FakeYandexGPT) -> None:
    from yandex_ai_studio_sdk import AIStudio
    from yandex_ai_studio_sdk.retry import NoRetryPolicy

    sdk = AIStudio(
        folder_id=FOLDER_ID,
        auth=API_KEY,
        endpoint=None,
        service_map={"ai-foundation-models": f"127.0.0.1:{fake.port}"},
        verify=False,
        retry_policy=NoRetryPolicy(),
    )
    # The settings name no endpoint: only the injected SDK knows where the fake is.
    provider = YandexGPTProvider(
        Settings(_env_file=None, YC_FOLDER_ID=FOLDER_ID, YC_API_KEY=API_KEY), client=sdk
    )
    assert "".join(provider.stream(QUESTION, MODEL, PARAMS)) == "".join(fake.deltas)
    assert provider.client() is sdk


def test_status_names_what_to_set() -> None:
    empty = YandexGPTProvider(Settings(_env_file=None))
    status = empty.status()
    assert not status.available
    assert "YC_FOLDER_ID" in status.reason and "YC_API_KEY" in status.reason
    assert ".streamlit/secrets.toml" in status.reason and "окружени" in status.reason
    with pytest.raises(ConfigurationError) as err:
        empty.stream(QUESTION, MODEL, PARAMS)
    assert "YC_FOLDER_ID" in err.value.user_message

    no_key = YandexGPTProvider(Settings(_env_file=None, YC_FOLDER_ID=FOLDER_ID))
    reason = no_key.status().reason
    assert not no_key.status().available and "YC_API_KEY" in reason and "YC_FOLDER_ID" not in reason
    no_folder = YandexGPTProvider(Settings(_env_file=None, YC_IAM_TOKEN=IAM_TOKEN))
    reason = no_folder.status().reason
    assert not no_folder.status().available and "YC_FOLDER_ID" in reason and "YC_API_KEY" not in reason
    assert (
        YandexGPTProvider(Settings(_env_file=None, YC_FOLDER_ID="f", YC_OAUTH_TOKEN="y0_x"))
        .status()
        .available
    )


def test_catalogue_is_what_the_api_serves() -> None:
    models = {m.id: m for m in YandexGPTProvider(Settings(_env_file=None)).models()}
    assert list(models) == ["yandexgpt-lite", "yandexgpt/latest", "yandexgpt/rc", "aliceai-llm"]
    assert {m.context_tokens for m in models.values()} == {32768}


def test_seed_models_resolve_to_served_ones(fake: FakeYandexGPT) -> None:
    provider = _provider(fake)
    served = {m.id for m in provider.models()}
    resolved = {model: provider.resolve_model(model) for model in SEED_MODELS}
    assert {current for current, _ in resolved.values()} <= served
    assert resolved["yandexgpt-32k/rc"] == (
        "yandexgpt/rc",
        "Модель yandexgpt-32k/rc снята с обслуживания в августе 2025 г.; "
        "выбрана её замена YandexGPT Pro 5.1.",
    )
    current, note = resolved["yandexgpt-lite/rc"]
    assert current == "yandexgpt-lite" and "снята с обслуживания" in note
    # Still served, under the same or a shorter name: nothing to tell the user.
    assert resolved["yandexgpt-lite/latest"] == ("yandexgpt-lite", "")
    assert resolved["yandexgpt/latest"] == ("yandexgpt/latest", "")
    assert resolved["yandexgpt/rc"] == ("yandexgpt/rc", "")
    current, _ = resolved["yandexgpt-32k/rc"]
    assert "".join(provider.stream(QUESTION, current, PARAMS)) == "".join(fake.deltas)
    assert fake.requests[-1].model == f"gpt://{FOLDER_ID}/yandexgpt/rc"


def test_foreign_folder_is_a_permission_error(fake: FakeYandexGPT) -> None:
    provider = _provider(fake, YC_FOLDER_ID="b1gotherfolder")
    with pytest.raises(AuthenticationError) as err:
        list(provider.stream(QUESTION, MODEL, PARAMS))
    message = err.value.user_message
    assert "YC_FOLDER_ID" in message and "ai.languageModels.user" in message
    assert API_KEY not in message and API_KEY not in str(err.value)
    fake.fail_next(403)
    with pytest.raises(AuthenticationError):
        list(_provider(fake).stream(QUESTION, MODEL, PARAMS))


def test_unauthenticated_mentions_iam_token_lifetime(fake: FakeYandexGPT) -> None:
    provider = _provider(fake, YC_API_KEY="AQVN-revoked-key")
    with pytest.raises(AuthenticationError) as err:
        list(provider.stream(QUESTION, MODEL, PARAMS))
    assert "YC_API_KEY" in err.value.user_message and "12 час" in err.value.user_message
    assert "AQVN-revoked-key" not in err.value.user_message


def test_unknown_model_is_not_found(fake: FakeYandexGPT) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        list(_provider(fake).stream(QUESTION, "yandexgpt-9000/latest", PARAMS))
    assert "yandexgpt-9000/latest" in err.value.user_message


def test_other_invalid_argument_is_not_context_too_long(fake: FakeYandexGPT) -> None:
    with pytest.raises(InvalidRequestError) as err:
        list(_provider(fake).stream([], MODEL, PARAMS))
    assert not isinstance(err.value, ContextTooLongError)
    assert "messages" in err.value.user_message


def test_context_too_long_quotes_the_limit(fake: FakeYandexGPT) -> None:
    fake.fail_next(400)
    with pytest.raises(ContextTooLongError) as err:
        list(_provider(fake).stream(QUESTION, MODEL, PARAMS))
    assert "32768" in err.value.user_message and "Error in session" not in err.value.user_message


def test_retry_after_is_read_from_trailing_metadata(fake: FakeYandexGPT) -> None:
    provider = _provider(fake, RAG_LLM_MAX_RETRIES="0")
    fake.fail_next(429, retry_after=7)
    with pytest.raises(RateLimitError) as err:
        list(provider.stream(QUESTION, MODEL, PARAMS))
    assert err.value.retry_after == 7
    fake.fail_next(429)
    with pytest.raises(RateLimitError) as err:
        list(provider.stream(QUESTION, MODEL, PARAMS))
    assert err.value.retry_after is None
    assert len(fake.requests) == 2  # no retries by the SDK


def test_unavailable_is_reported_without_sdk_retries(fake: FakeYandexGPT) -> None:
    fake.fail_next(503, times=5)
    with pytest.raises(ProviderUnavailableError) as err:
        list(_provider(fake, RAG_LLM_MAX_RETRIES="0").stream(QUESTION, MODEL, PARAMS))
    assert "недоступ" in err.value.user_message
    assert len(fake.requests) == 1


def test_stream_ending_without_final_keeps_partial_text(fake: FakeYandexGPT) -> None:
    fake.cut_next("drop")
    completion = _provider(fake).stream(QUESTION, MODEL, PARAMS)
    received = []
    with pytest.raises(StreamInterruptedError) as err:
        for delta in completion:
            received.append(delta)
    assert received == [fake.deltas[0]]
    assert err.value.partial == fake.deltas[0]


def test_tls_against_a_plain_server_is_unavailable(fake: FakeYandexGPT) -> None:
    provider = _provider(fake, YC_VERIFY_SSL="true", RAG_LLM_MAX_RETRIES="0")
    with pytest.raises(ProviderUnavailableError) as err:
        list(provider.stream(QUESTION, MODEL, PARAMS))
    assert "YC_API_ENDPOINT" in err.value.user_message and "YC_VERIFY_SSL" in err.value.user_message


def test_one_provider_serves_concurrent_answers(fake: FakeYandexGPT) -> None:
    provider = _provider(fake)
    answers: list[str] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            answers.append("".join(provider.stream(QUESTION, MODEL, PARAMS)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert answers == ["".join(fake.deltas)] * 4
    assert len({r.headers["x-client-request-id"] for r in fake.requests}) == 4


def test_stopping_early_cancels_the_call(fake: FakeYandexGPT) -> None:
    fake.deltas = [f"слово{i} " for i in range(100)]
    fake.chunk_delay = 0.05
    completion = _provider(fake, RAG_LLM_TIMEOUT_S="30").stream(QUESTION, MODEL, PARAMS)
    assert next(completion) == "слово0 "
    started = time.monotonic()
    del completion  # the user pressed "stop": the generators close, the SDK cancels the RPC
    while not fake.abandoned and time.monotonic() - started < 3:
        time.sleep(0.02)
    assert fake.abandoned == 1
    assert time.monotonic() - started < 3  # not the 5 s the whole answer would take


def test_a_stream_leaves_no_error_in_the_logs(fake: FakeYandexGPT, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    provider = _provider(fake)
    for _ in range(2):
        assert "".join(provider.stream(QUESTION, MODEL, PARAMS)) == "".join(fake.deltas)
    fake.fail_next(404)
    with pytest.raises(ModelNotFoundError):
        list(provider.stream(QUESTION, MODEL, PARAMS))
    time.sleep(0.1)  # callbacks run on the SDK's event loop thread
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert any(r.name == "providers.yandexgpt" and "yandexgpt-lite" in r.getMessage() for r in caplog.records)
