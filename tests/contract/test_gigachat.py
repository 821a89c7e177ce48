"""GigaChat only: the OAuth token's life, the model list, TLS settings and the rest of its errors.

The real ``gigachat`` SDK talks to ``fake_gigachat`` over HTTP (HTTPS for the TLS tests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gigachat import GigaChatSyncClient

from providers import (
    AuthenticationError,
    ChatMessage,
    ConfigurationError,
    ContextTooLongError,
    GenerationParams,
    InvalidRequestError,
    ModelNotFoundError,
    Provider,
    ProviderError,
    ProviderUnavailableError,
)
from providers.gigachat import MODELS, GigaChatProvider, chat_model_ids
from settings import Settings
from tests.contract.fake_gigachat import FakeGigaChat, make_case
from tests.contract.harness import DEFAULT_DELTAS, ProviderCase

QUESTION = [ChatMessage(role="user", content="Какой срок аренды?")]
PARAMS = GenerationParams(temperature=0.7, max_tokens=123)
ANSWER = "".join(DEFAULT_DELTAS)


@pytest.fixture
def case(tmp_path: Path) -> Iterator[ProviderCase]:
    with make_case(tmp_path) as c:
        yield c


def fake_of(case: ProviderCase) -> FakeGigaChat:
    assert isinstance(case.fake, FakeGigaChat)
    return case.fake


def ask(case: ProviderCase, params: GenerationParams = PARAMS, provider: Provider | None = None) -> str:
    return "".join((provider or case.provider).stream(QUESTION, case.model, params))


def assert_no_secrets(case: ProviderCase, text: str) -> None:
    for secret in case.secrets:
        assert secret not in text


# -- the OAuth token ---------------------------------------------------------------------------


def test_token_is_requested_once_for_many_answers(case: ProviderCase) -> None:
    for _ in range(3):
        assert ask(case) == ANSWER
    fake = fake_of(case)
    assert fake.token_requests == 1
    assert len(fake.requests) == 3
    assert fake.rejected_tokens == 0
    tokens = {r.headers["Authorization"] for r in fake.requests}
    assert len(tokens) == 1


def test_threads_share_one_client_and_one_token(case: ProviderCase) -> None:
    answers: list[str] = []

    def worker() -> None:
        answers.append(ask(case))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert answers == [ANSWER] * 6
    assert fake_of(case).token_requests == 1


def test_token_about_to_expire_is_renewed_before_the_request(case: ProviderCase) -> None:
    fake = fake_of(case)
    # The server's tokens now expire in 30 s: inside the SDK's one-minute margin.
    fake.token_ttl_s = 30
    assert ask(case) == ANSWER
    assert ask(case) == ANSWER
    assert fake.token_requests == 2, "the second answer must start with a fresh token"
    assert fake.rejected_tokens == 0, "renewed before the request, not after a 401"
    first, second = (r.headers["Authorization"] for r in fake.requests)
    assert first != second


def test_expired_token_is_renewed_after_one_401(case: ProviderCase) -> None:
    fake = fake_of(case)
    assert ask(case) == ANSWER
    fake.expire_token()
    assert ask(case) == ANSWER
    assert fake.token_requests == 2
    assert fake.rejected_tokens == 1


def test_scope_reaches_the_oauth_request(tmp_path: Path) -> None:
    with make_case(tmp_path, scope="GIGACHAT_API_B2B") as case:
        assert ask(case) == ANSWER
        assert fake_of(case).scopes == ["GIGACHAT_API_B2B"]


def test_scope_the_key_lacks_is_an_authentication_error(tmp_path: Path) -> None:
    # The key is registered for B2B; the settings ask for the personal scope.
    with make_case(tmp_path, scope="GIGACHAT_API_B2B", GIGACHAT_SCOPE="GIGACHAT_API_PERS") as case:
        with pytest.raises(AuthenticationError) as err:
            ask(case)
        message = err.value.user_message
        assert "GIGACHAT_SCOPE" in message and "GIGACHAT_CREDENTIALS" in message
        assert "GIGACHAT_API_B2B" in message  # names the scopes to choose from
        assert not fake_of(case).requests
        assert_no_secrets(case, message)


def test_wrong_key_is_an_authentication_error(tmp_path: Path) -> None:
    with make_case(tmp_path, GIGACHAT_CREDENTIALS="d3JvbmctY2xpZW50Ondyb25nLXNlY3JldA==") as case:
        with pytest.raises(AuthenticationError) as err:
            ask(case)
        assert "GIGACHAT_CREDENTIALS" in err.value.user_message
        assert "d3JvbmctY2xpZW50" not in err.value.user_message
        assert fake_of(case).token_requests == 1  # refused keys are not hammered


# -- the model list ----------------------------------------------------------------------------


def test_models_merge_what_the_api_lists(case: ProviderCase) -> None:
    fake_of(case).models.append("GigaChat-3-Preview")
    models = {m.id: m for m in case.provider.models()}
    assert models["GigaChat-2"].label == "GigaChat 2 Lite"  # the catalogue's labels stay
    new = models["GigaChat-3-Preview"]
    assert new.label == "GigaChat-3-Preview"
    assert new.context_tokens == 131072
    assert models["GigaChat-Pro"].context_tokens == 32768
    assert not any(m.startswith("Embeddings") for m in models), "embedding models are not chat models"
    assert list(models)[: len(MODELS)] == [m.id for m in MODELS]
    # A listed model can be used.
    assert "".join(case.provider.stream(QUESTION, "GigaChat-3-Preview", PARAMS)) == ANSWER


def test_chat_models_are_told_by_type_then_by_name() -> None:
    # GET /models entries as (id, type); the SDK 0.2.x drops "type", then the name decides.
    listed = [
        ("GigaChat-2-Max", "chat"),
        ("EmbeddingsGigaR", "embedder"),
        ("Giga-Retriever", "embedder"),
        ("GigaChat-3-Preview", None),
        ("Embeddings-2", None),
    ]
    assert chat_model_ids(listed) == ["GigaChat-2-Max", "GigaChat-3-Preview"]


def test_models_are_cached(case: ProviderCase) -> None:
    first = case.provider.models()
    fake_of(case).models.append("GigaChat-3-Preview")
    assert case.provider.models() == first
    assert fake_of(case).model_list_requests == 1


def test_models_fall_back_to_the_catalogue_when_the_api_fails(case: ProviderCase) -> None:
    fake = fake_of(case)
    fake.models_status = 500
    assert case.provider.models() == list(MODELS)
    fake.models_status = None
    assert case.provider.models() == list(MODELS), "a failure is cached too"
    assert fake.model_list_requests == 1


def test_models_do_not_wait_for_a_slow_api(case: ProviderCase) -> None:
    fake = fake_of(case)
    fake.models_stall_s = 5
    provider = case.provider
    assert isinstance(provider, GigaChatProvider)
    provider.models_timeout_s = 0.5
    started = time.monotonic()
    assert provider.models() == list(MODELS)
    assert time.monotonic() - started < 2


def test_models_without_key_are_the_catalogue() -> None:
    provider = GigaChatProvider(Settings(_env_file=None))  # type: ignore[call-arg]
    assert provider.models() == list(MODELS)


# -- configuration -----------------------------------------------------------------------------


def test_an_injected_client_is_used_and_left_open(case: ProviderCase) -> None:
    fake = fake_of(case)
    client = GigaChatSyncClient(
        credentials=fake.credentials, base_url=fake.base_url, auth_url=fake.auth_url, max_retries=0
    )
    # The settings name no server: only the injected client knows where the fake is.
    settings = Settings(_env_file=None, GIGACHAT_CREDENTIALS=fake.credentials)  # type: ignore[call-arg]
    provider = GigaChatProvider(settings, client=client)
    assert ask(case, provider=provider) == ANSWER
    provider.close()  # its owner closes it, not the provider
    assert ask(case, provider=provider) == ANSWER
    assert provider.client() is client
    client.close()


def test_status_without_credentials() -> None:
    provider = GigaChatProvider(Settings(_env_file=None))  # type: ignore[call-arg]
    status = provider.status()
    assert not status.available
    assert "GIGACHAT_CREDENTIALS" in status.reason and "GIGACHAT_SCOPE" in status.reason
    assert ".streamlit/secrets.toml" in status.reason
    assert "укажите" in status.reason
    with pytest.raises(ConfigurationError) as err:
        provider.stream(QUESTION, "GigaChat-2", PARAMS)
    assert "GIGACHAT_CREDENTIALS" in err.value.user_message


def test_temperature_zero_is_sent_as_the_smallest_allowed(case: ProviderCase) -> None:
    # GigaChat refuses temperature 0 (422); up to 0.001 it answers deterministically.
    assert ask(case, GenerationParams(temperature=0, max_tokens=50)) == ANSWER
    assert fake_of(case).requests[-1].temperature == pytest.approx(0.001)


def test_request_is_logged_without_secrets(case: ProviderCase, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="providers.gigachat")
    ask(case)
    lines = [r.getMessage() for r in caplog.records if r.name == "providers.gigachat"]
    requests = [line for line in lines if line.startswith("GigaChat request:")]
    assert len(requests) == 1
    assert "model=GigaChat-2" in requests[0] and "max_tokens=123" in requests[0]
    for line in lines:
        assert_no_secrets(case, line)


# -- errors beyond the contract ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (403, ModelNotFoundError, "нет доступа к модели"),
        (413, ContextTooLongError, "контекст"),
        (422, InvalidRequestError, "отклонил запрос"),
        (402, ProviderError, "пополните"),
    ],
)
def test_other_refusals(case: ProviderCase, status: int, error: type[ProviderError], words: str) -> None:
    fake_of(case).fail_next(status)
    with pytest.raises(error) as err:
        ask(case)
    assert words in err.value.user_message
    if status == 422:
        assert not isinstance(err.value, ContextTooLongError)
    assert len(fake_of(case).requests) == 1, "a refusal of the request itself is not retried"


def test_503_is_retried(case: ProviderCase) -> None:
    fake_of(case).fail_next(503)
    assert ask(case) == ANSWER
    assert len(fake_of(case).requests) == 2


def test_unreachable_server_is_unavailable(tmp_path: Path) -> None:
    with make_case(tmp_path, RAG_LLM_MAX_RETRIES="0") as case:
        fake_of(case).stop()
        with pytest.raises(ProviderUnavailableError) as err:
            ask(case)
        assert "недоступен" in err.value.user_message
        assert "127.0.0.1" in err.value.user_message


# -- TLS ---------------------------------------------------------------------------------------


def test_untrusted_certificate_says_to_set_the_ca_bundle(tmp_path: Path) -> None:
    with make_case(tmp_path, tls=True, RAG_LLM_MAX_RETRIES="0") as case:
        with pytest.raises(ProviderUnavailableError) as err:
            ask(case)
        message = err.value.user_message
        assert "GIGACHAT_CA_BUNDLE_FILE" in message
        assert "GIGACHAT_VERIFY_SSL_CERTS=false" in message
        assert fake_of(case).token_requests == 0


def test_ca_bundle_file_is_trusted(tmp_path: Path) -> None:
    bundle = str(tmp_path / "gigachat-ca.pem")  # written by make_case(tls=True)
    with make_case(tmp_path, tls=True, GIGACHAT_CA_BUNDLE_FILE=bundle) as case:
        assert ask(case) == ANSWER
        assert fake_of(case).token_requests == 1


def test_missing_ca_bundle_file_is_a_configuration_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.pem")
    with make_case(tmp_path, GIGACHAT_CA_BUNDLE_FILE=missing) as case:
        with pytest.raises(ConfigurationError) as err:
            ask(case)
        assert "GIGACHAT_CA_BUNDLE_FILE" in err.value.user_message


def test_verification_off_works_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="providers.gigachat")
    with make_case(tmp_path, tls=True, GIGACHAT_VERIFY_SSL_CERTS="false") as case:
        assert case.provider.status().available
        assert case.provider.status().available
        assert ask(case) == ANSWER
    warnings = [r for r in caplog.records if r.name == "providers.gigachat" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "GIGACHAT_VERIFY_SSL_CERTS" in warnings[0].getMessage()
