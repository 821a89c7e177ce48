"""One contract, every provider: the offline one as it is, each remote one through its real SDK
against a fake speaking the real protocol (``any_case``: all four; ``case``: the remote ones)."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from providers import (
    AuthenticationError,
    ChatMessage,
    Completion,
    ContextTooLongError,
    Fragment,
    GenerationParams,
    ModelNotFoundError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    StreamInterruptedError,
)
from rag.answer.prompts import build_messages
from tests.contract.harness import DEFAULT_DELTAS, Case, ProviderCase

QUESTION = [ChatMessage(role="user", content="Какой срок аренды?")]
PARAMS = GenerationParams(temperature=0.7, max_tokens=123)


def _run(
    case: Case, messages: list[ChatMessage] = QUESTION, params: GenerationParams = PARAMS
) -> tuple[list[str], Completion]:
    completion = case.provider.stream(messages, case.model, params)
    deltas = list(completion)
    return deltas, completion


# -- every provider ----------------------------------------------------------------------------


def test_models_are_listed(any_case: Case) -> None:
    ids = [m.id for m in any_case.provider.models()]
    assert any_case.model in ids
    assert any_case.provider.status().available


def test_streamed_deltas_join_to_the_answer(any_case: Case) -> None:
    deltas, completion = _run(any_case)
    assert len(deltas) >= 2, "the answer must arrive in pieces, not at once"
    assert "".join(deltas) == any_case.answer
    assert completion.text == any_case.answer
    usage = completion.usage
    assert usage is not None and usage.completion_tokens > 0


@pytest.mark.parametrize(
    "params",
    [
        GenerationParams(temperature=0.0, max_tokens=1),
        GenerationParams(temperature=2.0, max_tokens=32768),
    ],
    ids=["lowest", "highest"],
)
def test_every_valid_parameter_is_accepted(any_case: Case, params: GenerationParams) -> None:
    # The slider's ends are legal everywhere: a provider fits them to its API's range itself.
    deltas, completion = _run(any_case, params=params)
    assert deltas and completion.usage is not None


def test_invalid_parameters_are_refused_before_any_provider() -> None:
    for bad in ({"temperature": -0.1}, {"temperature": 2.1}, {"max_tokens": 0}, {"top_k": 5}):
        with pytest.raises(ValidationError):
            GenerationParams(**bad)  # type: ignore[arg-type]


def test_catalogue_models_resolve_to_themselves(any_case: Case) -> None:
    for model in any_case.provider.models():
        assert any_case.provider.resolve_model(model.id) == (model.id, "")
    assert any_case.provider.resolve_model("no-such-model") == ("no-such-model", "")


# -- remote providers: what takes a server to provoke ------------------------------------------


def test_generation_parameters_reach_the_api(case: ProviderCase) -> None:
    _run(case)
    sent = case.fake.requests[-1]
    assert sent.temperature == pytest.approx(0.7)
    assert sent.max_tokens == 123
    assert case.model.split("/")[0] in sent.model


def test_retrieved_fragments_reach_the_prompt(case: ProviderCase) -> None:
    fragment = Fragment(1, "dogovor.txt", 2, "Срок аренды составляет одиннадцать месяцев.", 0.9)
    messages, _ = build_messages("Какой срок аренды?", [fragment])
    _run(case, messages)
    sent = case.fake.requests[-1].messages
    prompt = "\n".join(text for _, text in sent)
    assert "Срок аренды составляет одиннадцать месяцев." in prompt
    assert "dogovor.txt, стр. 2" in prompt
    assert sent[-1] == ("user", "Какой срок аренды?")
    assert sent[0][0] == "system"


def test_unauthorized(case: ProviderCase) -> None:
    if case.name == "gigachat":
        # An expired token is refreshed once, transparently.
        _run(case)
        before = case.fake.token_requests
        case.fake.expire_token()
        deltas, _ = _run(case)
        assert "".join(deltas) == "".join(DEFAULT_DELTAS)
        assert case.fake.token_requests == before + 1
        # A key that stays refused is an authentication error.
        case.fake.fail_next(401, times=5)
    else:
        case.fake.fail_next(401)
    with pytest.raises(AuthenticationError) as err:
        _run(case)
    message = err.value.user_message
    assert any(ch in message for ch in "абвгдеж"), "the message must be Russian"
    assert any(var in message for var in ("GIGACHAT_CREDENTIALS", "YC_", "OPENAI_API_KEY"))
    for secret in case.secrets:
        assert secret not in message


def test_rate_limit_is_retried_honouring_retry_after(case: ProviderCase) -> None:
    case.fake.fail_next(429, retry_after=1)
    deltas, _ = _run(case)
    assert "".join(deltas) == "".join(DEFAULT_DELTAS)
    assert case.waits == [1.0]
    case.fake.fail_next(429, retry_after=1, times=10)
    with pytest.raises(RateLimitError) as err:
        _run(case)
    assert err.value.retry_after == pytest.approx(1, abs=0.5)
    assert "через 1 с" in err.value.user_message
    assert case.waits == [1.0] * 3  # RAG_LLM_MAX_RETRIES=2: two more waits, then the error


def test_server_error_is_retried_then_reported(case: ProviderCase) -> None:
    case.fake.fail_next(500)
    deltas, _ = _run(case)
    assert "".join(deltas) == "".join(DEFAULT_DELTAS)
    assert case.waits == [1.0]
    case.fake.fail_next(500, times=10)
    with pytest.raises(ProviderUnavailableError) as err:
        _run(case)
    assert "недоступ" in err.value.user_message or "ошибк" in err.value.user_message.lower()
    assert case.waits == [1.0, 1.0, 2.0]  # exponential backoff, no Retry-After


def test_timeout_is_reported(case: ProviderCase) -> None:
    case.fake.stall_next(6)
    with pytest.raises(ProviderTimeoutError) as err:
        _run(case)
    assert "не ответил" in err.value.user_message


def test_model_not_found(case: ProviderCase) -> None:
    case.fake.fail_next(404)
    with pytest.raises(ModelNotFoundError) as err:
        _run(case)
    assert "модел" in err.value.user_message.lower()


def test_context_too_long(case: ProviderCase) -> None:
    case.fake.fail_next(400)
    with pytest.raises(ContextTooLongError):
        _run(case)


def test_stream_cut_keeps_partial_text(case: ProviderCase) -> None:
    case.fake.cut_next()
    completion = case.provider.stream(QUESTION, case.model, PARAMS)
    received = []
    with pytest.raises(StreamInterruptedError) as err:
        for delta in completion:
            received.append(delta)
    assert received == [DEFAULT_DELTAS[0]]
    assert err.value.partial == DEFAULT_DELTAS[0]
    assert completion.text == DEFAULT_DELTAS[0]


def test_keys_never_reach_the_logs(case: ProviderCase, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _run(case)
    case.fake.fail_next(401, times=5)
    with pytest.raises(AuthenticationError) as err:
        _run(case)
    texts = [r.getMessage() for r in caplog.records] + [str(err.value), repr(err.value)]
    texts += [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert caplog.records, "the SDKs log at DEBUG: the capture must not be empty"
    for secret in case.secrets:
        for text in texts:
            assert secret not in text
