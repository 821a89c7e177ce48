"""The question rewriter (rag.search.rewrite) against scripted providers: format, deadline, fallbacks."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from providers import (
    ChatMessage,
    Completion,
    RateLimitError,
    Usage,
)
from providers.offline import MODEL_ID, OfflineProvider
from rag.search.rewrite import (
    MARKER,
    MAX_HISTORY_CHARS,
    QUESTION_LABEL,
    QueryRewriter,
    parse_rewrite,
    rewrite_messages,
    rewriter_from,
)
from settings import Settings
from tests.stand_in import StandInModel


class ScriptedModel(StandInModel):
    """A stand-in for a remote model: ``reply`` makes the deltas of each request (or raises)."""

    def __init__(self, reply: Callable[[], Iterator[str]]) -> None:
        super().__init__()
        self.reply = reply
        self.closed = threading.Event()

    def deltas(self, messages: list[ChatMessage]) -> Iterator[str | Usage]:
        try:
            yield from self.reply()
            yield Usage(1, 1)
        finally:
            self.closed.set()


def replies(*deltas: str) -> Callable[[], Iterator[str]]:
    return lambda: iter(deltas)


HISTORY = [
    ChatMessage(role="system", content="Старая инструкция"),
    ChatMessage(role="user", content="Какой срок аренды?"),
    ChatMessage(role="assistant", content="Одиннадцать месяцев [1]. " * 50),
]


@pytest.mark.parametrize(
    ("text", "queries"),
    [
        ("RU: Какая арендная плата?\nEN: What is the rent?", ["Какая арендная плата?", "What is the rent?"]),
        ("EN: What is the rent?\nRU: Какая плата?", ["Какая плата?", "What is the rent?"]),
        ("**RU:** «Какая плата?»\n- en: 'What is the rent?'", ["Какая плата?", "What is the rent?"]),
        ("Вот запросы:\n\nRU：Какая плата?\n", ["Какая плата?"]),
        ("RU: Какая плата?\nRU: Другое\nEN:", ["Какая плата?"]),
        ("Какая арендная плата?", []),
        ("RU:\nEN: ", []),
        ("RU: " + "плата " * 100, []),
        ("", []),
    ],
)
def test_parse_rewrite(text: str, queries: list[str]) -> None:
    assert parse_rewrite(text) == queries


def test_the_request_carries_the_dialogue_and_the_question() -> None:
    system, user = rewrite_messages("А какая  плата?", HISTORY)
    assert system.role == "system" and system.content.startswith(MARKER)
    assert "RU:" in system.content and "EN:" in system.content
    assert user.role == "user"
    assert "Старая инструкция" not in user.content  # a system prompt is no part of the dialogue
    assert "Пользователь: Какой срок аренды?" in user.content
    answer_line = next(line for line in user.content.splitlines() if line.startswith("Ассистент:"))
    assert len(answer_line) <= len("Ассистент: ") + MAX_HISTORY_CHARS
    assert user.content.endswith(f"{QUESTION_LABEL} А какая плата?")
    assert "(истории нет)" in rewrite_messages("Какая плата?", [])[1].content


def test_a_rewrite_is_asked_deterministically_and_read() -> None:
    model = ScriptedModel(replies("RU: Какая арендная плата?\n", "EN: What is the rent?"))
    queries = QueryRewriter().rewrite(model, "s-1", "А плата?", HISTORY)
    assert queries == ["Какая арендная плата?", "What is the rent?"]
    ((messages, name, params),) = model.requests
    assert name == "s-1" and params.temperature == 0 and params.max_tokens <= 256
    assert messages[0].content.startswith(MARKER)


def test_a_provider_error_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    def refuse() -> Iterator[str]:
        raise RateLimitError("Слишком много запросов.", provider="scripted")
        yield ""

    assert QueryRewriter().rewrite(ScriptedModel(refuse), "s-1", "А плата?") == []
    assert "RateLimitError" in caplog.text


def test_any_failure_falls_back() -> None:
    def crash() -> Iterator[str]:
        raise KeyError("boom")
        yield ""

    assert QueryRewriter().rewrite(ScriptedModel(crash), "s-1", "А плата?") == []
    assert QueryRewriter().rewrite(ScriptedModel(replies("Не знаю.")), "s-1", "А плата?") == []


def test_a_slow_rewrite_is_abandoned_at_its_deadline() -> None:
    gate = threading.Event()

    def slow() -> Iterator[str]:
        yield "RU: Какая"
        gate.wait(5)
        yield " плата?\n"
        yield "EN: What is the rent?"

    model = ScriptedModel(slow)
    # It returns while the stream is still held at the gate: the deadline ended the wait.
    assert QueryRewriter(timeout_s=0.3).rewrite(model, "s-1", "А плата?") == []
    assert not gate.is_set()
    # The worker closes the abandoned stream itself at its next delta.
    assert not model.closed.is_set()
    gate.set()
    assert model.closed.wait(2)


def test_the_offline_provider_and_overlong_questions_are_not_rewritten() -> None:
    class RecordingOffline(OfflineProvider):
        calls = 0

        def stream(self, *args: object, **kwargs: object) -> Completion:
            RecordingOffline.calls += 1
            return super().stream(*args, **kwargs)  # type: ignore[arg-type]

    rewriter = QueryRewriter()
    assert rewriter.rewrite(RecordingOffline(), MODEL_ID, "А плата?", HISTORY) == []
    assert RecordingOffline.calls == 0
    model = ScriptedModel(replies("RU: x"))
    assert rewriter.rewrite(model, "s-1", "Какая плата? " * 100) == []
    assert rewriter.rewrite(model, "s-1", "   ") == []
    assert model.requests == []


def test_the_setting_turns_it_on_and_off(tmp_path: Path) -> None:
    on = rewriter_from(Settings(_env_file=None, RAG_DATA_DIR=tmp_path))
    assert on is not None and on.timeout_s == 4
    short = rewriter_from(Settings(_env_file=None, RAG_LLM_TIMEOUT_S=1))
    assert short is not None and short.timeout_s == 1  # never longer than an answer's own timeout
    assert rewriter_from(Settings(_env_file=None, RAG_REWRITE=False)) is None
