"""Retries of a refused request before its first token: rate limits and server errors.

A stream that has started is never retried (the user already sees its text); a refusal
before the first token is retried with exponential backoff, honouring Retry-After.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from providers.base import ProviderTimeoutError, ProviderUnavailableError, RateLimitError, Usage

log = logging.getLogger(__name__)

StreamOpener = Callable[[], Iterator[str | Usage]]


def stream_with_retries(
    open_stream: StreamOpener,
    *,
    retries: int,
    max_wait: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str | Usage]:
    """Yield from ``open_stream()``, reopening it after a refusal that came before any text."""
    attempt = 0
    while True:
        started = False
        try:
            for item in open_stream():
                started = True
                yield item
            return
        except (RateLimitError, ProviderUnavailableError) as exc:
            if started or attempt >= retries or isinstance(exc, ProviderTimeoutError):
                raise _final(exc, attempt) from exc
            wait = _wait(exc, attempt)
            if wait > max_wait:
                raise _final(exc, attempt) from exc
            attempt += 1
            log.info(
                "provider %s refused (%s); retry %d in %.1f s",
                exc.provider,
                type(exc).__name__,
                attempt,
                wait,
            )
            sleep(wait)


def _wait(exc: Exception, attempt: int) -> float:
    if isinstance(exc, RateLimitError) and exc.retry_after is not None:
        return max(0.0, float(exc.retry_after))
    return float(min(2**attempt, 8))


def _final(exc: RateLimitError | ProviderUnavailableError, attempts: int) -> Exception:
    if isinstance(exc, RateLimitError):
        when = f"через {int(exc.retry_after + 0.999)} с" if exc.retry_after is not None else "через минуту"
        tried = f" (повторено {attempts} раз)" if attempts else ""
        return RateLimitError(
            f"{exc.user_message} Попробуйте снова {when}{tried}.",
            provider=exc.provider,
            retry_after=exc.retry_after,
        )
    return exc
