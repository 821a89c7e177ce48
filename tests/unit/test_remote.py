"""The shared core of remote providers, without a server: Retry-After, server words, error tables."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from providers.base import (
    ContextTooLongError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from providers.remote import TIMEOUT, Refusal, Rule, retry_after, server_words, too_long, translate

FIELDS = {"label": "Fake", "who": "Fake", "model": "m-1", "timeout": "2", "where": "secrets.toml"}
RULES = (
    Rule(ModelNotFoundError, "{label}: модели «{model}» нет.", (404,)),
    Rule(ContextTooLongError, "{who}: не помещается.", (400,), too_long),
    Rule(RateLimitError, "{who}: подождите.", (429,)),
    Rule(InvalidRequestError, "{who} отклонил запрос ({status}: {detail}).", range(400, 500)),
)


def test_retry_after_reads_seconds_milliseconds_and_dates() -> None:
    assert retry_after([("Retry-After", "7")]) == 7.0
    assert retry_after([("retry-after", b"2")]) == 2.0  # gRPC metadata may be bytes
    assert retry_after([("retry-after", "9"), ("retry-after-ms", "1500")]) == 1.5
    in_half_a_minute = formatdate(time.time() + 30, usegmt=True)
    assert retry_after([("Retry-After", in_half_a_minute)]) == pytest.approx(30, abs=2)
    assert retry_after([("Retry-After", "-3")]) == 0.0
    assert retry_after([("Retry-After", "soon")]) is None
    assert retry_after([]) is None


def test_server_words_come_from_any_error_body() -> None:
    assert server_words(b'{"status": 400, "message": "Tokens limit exceeded"}') == "Tokens limit exceeded"
    assert server_words({"detail": "context too long"}) == "context too long"
    assert server_words("Bad Gateway") == "Bad Gateway"
    assert server_words(b"") == "" and server_words(None) == ""


def test_too_long_knows_each_vendors_words_and_nothing_else() -> None:
    for words in (
        "Tokens limit exceeded: the prompt has 140000 tokens",  # GigaChat
        "This model's maximum context length is 8192 tokens.",  # OpenAI, vLLM
        "number of input tokens must be no more than 32768, got 59830",  # YandexGPT
    ):
        assert too_long(Refusal(400, words))
    assert too_long(Refusal(413)) and too_long(Refusal(400, reason="context_length_exceeded"))
    assert not too_long(Refusal(422, "Invalid params: repetition_penalty must be in range (0, +inf)"))


def test_the_first_covering_row_wins_then_the_shared_ones() -> None:
    def error(refusal: Refusal) -> Exception:
        return translate(RULES, refusal, FIELDS, "fake")

    assert str(error(Refusal(404))) == "Fake: модели «m-1» нет."
    assert isinstance(error(Refusal(400, "maximum context length is 4096")), ContextTooLongError)
    refused = error(Refusal(400, "bad role"))
    assert type(refused) is InvalidRequestError and "(400: bad role)" in str(refused)
    assert "(418: неверные параметры)" in str(error(Refusal(418)))
    limited = error(Refusal(429, retry_after=3.0))
    assert isinstance(limited, RateLimitError) and limited.retry_after == 3.0
    # No row of the provider's: the shared ones.
    assert isinstance(error(Refusal(TIMEOUT)), ProviderTimeoutError)
    assert "не ответил за 2 с" in str(error(Refusal(TIMEOUT)))
    unknown = error(Refusal(503))
    assert type(unknown) is ProviderUnavailableError and "(503)" in str(unknown)
