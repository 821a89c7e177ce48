"""What every fake provider server offers the contract suite.

Each ``tests/contract/fake_<provider>.py`` defines ``make_case(tmp_path) -> ContextManager[ProviderCase]``:
it starts a local server that speaks the provider's real wire protocol, builds our provider
(``providers.<module>``) from ``Settings`` pointed at that server, with a ``sleep`` that records
the waits between retries instead of waiting, and stops the server on exit. The offline
provider needs no server: its ``Case`` joins the tests that every provider passes.

Every fake also recognises the question-rewrite request of ``rag.search.rewrite`` (by the marker that
opens its system prompt) and answers it with ``fake.rewrite``, a canned rewrite a test sets;
by default it echoes the question as its own rewrite. The rewrite request is recorded and
subject to ``fail_next``, ``stall_next`` and ``cut_next`` like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from providers import Provider
from rag.search.rewrite import MARKER as REWRITE_MARKER
from rag.search.rewrite import QUESTION_LABEL

# The answer every fake streams unless told otherwise: several deltas, Cyrillic, a citation.
DEFAULT_DELTAS = ["Срок аренды ", "составляет ", "одиннадцать месяцев ", "[1]."]


@dataclass
class RecordedRequest:
    """What a fake received in one generation request, in provider-neutral form."""

    model: str
    temperature: float | None
    max_tokens: int | None
    messages: list[tuple[str, str]]  # (role, text) as sent, system prompt included
    headers: dict[str, str] = field(default_factory=dict)


def is_rewrite(messages: list[tuple[str, str]]) -> bool:
    """Whether a request is ``rag.search.rewrite``'s question rewrite (its system prompt opens so)."""
    return bool(messages) and messages[0][0] == "system" and messages[0][1].startswith(REWRITE_MARKER)


def rewrite_deltas(messages: list[tuple[str, str]], canned: str | None) -> list[str] | None:
    """What a fake streams for a rewrite request, line by line; None for any other request.

    ``canned`` is the answer a test set; None echoes the question as its Russian and English
    rewrite (searching with it is then the same as searching with the question).
    """
    if not is_rewrite(messages):
        return None
    if canned is None:
        question = messages[-1][1].rpartition(QUESTION_LABEL)[2].strip()
        canned = f"RU: {question}\nEN: {question}"
    return canned.splitlines(keepends=True) or [canned]


class FakeControl(Protocol):
    """Knobs and records of a running fake server (thread-safe enough for tests)."""

    requests: list[RecordedRequest]
    deltas: list[str]  # the text deltas the next successful answers stream
    models: list[str]  # model ids the server lists
    token_requests: int  # OAuth token requests received (GigaChat); 0 where there is none
    rewrite: str | None  # the answer to question-rewrite requests; None echoes the question

    def fail_next(self, status: int, retry_after: int | None = None, times: int = 1) -> None:
        """Answer the next ``times`` generation requests with this HTTP status (gRPC: mapped code).

        401 unauthenticated, 403 permission denied, 404 model not found, 400 context too long
        (the vendor's message for an over-long prompt), 429 rate limit (with Retry-After),
        500 internal error, 503 unavailable.
        """
        ...

    def cut_next(self) -> None:
        """The next stream sends its first delta, then the connection breaks."""
        ...

    def stall_next(self, seconds: float) -> None:
        """The next generation request gets no answer for ``seconds`` (client timeout)."""
        ...

    def expire_token(self) -> None:
        """Tokens issued so far become invalid (401); only GigaChat refreshes. No-op elsewhere."""
        ...


@dataclass(kw_only=True)
class Case:
    """A provider, one of its models, and the answer the contract's question gets."""

    name: str  # registry name: "offline", "gigachat", "yandexgpt", "openai"
    provider: Provider
    model: str  # a model id from provider.models() (that the fake serves)
    answer: str = "".join(DEFAULT_DELTAS)


@dataclass(kw_only=True)
class ProviderCase(Case):
    """A remote provider wired to its fake server."""

    fake: FakeControl
    secrets: list[str]  # every key/token value that must never appear in logs or messages
    env: dict[str, str]  # environment that points Settings (app, CLI) at this fake
    waits: list[float] = field(default_factory=list)  # what the provider's sleep was asked for
