"""Provider faults in the app: the question and any partial answer survive every failure.

Each remote provider runs through its real SDK against its fake server, and the fake breaks
the next answer: an HTTP (or mapped gRPC) refusal, a stream cut after its first delta, or
silence until the client times out. After the failed turn the page explains it in Russian,
the question is in the feed and in SQLite (with the partial text of a cut stream, marked as
broken off), the next question is answered, and a new session shows the chat in order.
What the contract suite checks about each error class is not repeated here.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage import Chat, ChatRepo, Message, make_engine
from tests.app.conftest import make_app
from tests.contract.harness import DEFAULT_DELTAS, FakeControl, ProviderCase
from ui.markup import literal

REMOTE = ("gigachat", "yandexgpt", "openai")
QUESTION = "Какой срок аренды?"
FOLLOW_UP = "А какая арендная плата?"
FULL_ANSWER = "".join(DEFAULT_DELTAS)
PARTIAL = DEFAULT_DELTAS[0]
CYRILLIC = re.compile("[а-яё]", re.IGNORECASE)
STALL_TIMEOUT_S = 1.0  # the client's patience in the stall case; the fake stays silent longer
RUN_TIMEOUT_S = 60  # per AppTest run: a hang fails the case instead of the whole session


@dataclass(frozen=True)
class Fault:
    """One way the next answer breaks, and a word the explanation must contain."""

    arm: Callable[[FakeControl, str], None]  # (fake, provider name)
    words: tuple[str, ...]  # any of these, lower case, in the error shown
    partial: str = ""  # what the stored answer keeps


def _refuse(status: int, times: int = 1) -> Callable[[FakeControl, str], None]:
    def arm(fake: FakeControl, name: str) -> None:
        # GigaChat's SDK takes a 401 for an expired token and asks for a new one once.
        fake.fail_next(status, times=times + (name == "gigachat" and status == 401))

    return arm


FAULTS = {
    "401": Fault(_refuse(401), ("ключ",)),
    "403": Fault(_refuse(403), ("доступ",)),
    "404": Fault(_refuse(404), ("модел",)),
    # Retries are off (RAG_LLM_MAX_RETRIES=0): one refusal is final.
    "429": Fault(_refuse(429), ("запрос", "лимит")),
    "500": Fault(_refuse(500), ("недоступ",)),
    "503": Fault(_refuse(503), ("недоступ",)),
    # The pipeline answers a too-long refusal by resending a trimmed prompt: refuse that too.
    "400-context": Fault(_refuse(400, times=2), ("контекст",)),
    "cut": Fault(lambda fake, _: fake.cut_next(), ("оборвал",), partial=PARTIAL),
    "stall": Fault(lambda fake, _: fake.stall_next(STALL_TIMEOUT_S + 3), ("не ответил",)),
}


@contextmanager
def _provider_app(
    name: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch, timeout_s: float | None
) -> Iterator[ProviderCase]:
    fake_module = importlib.import_module(f"tests.contract.fake_{name}")
    with fake_module.make_case(data_dir.parent) as case:
        env = {
            **case.env,  # the fake's own timeout (2 s) unless a case needs a shorter one
            "RAG_PROVIDER": name,
            "RAG_LLM_MAX_RETRIES": "0",
            "RAG_LLM_RETRY_MAX_WAIT_S": "0",
            # The faults are aimed at the answer; the rewrite request has its own fault tests
            # (tests/contract/test_rewrite.py) and would otherwise take the first one.
            "RAG_REWRITE": "false",
        }
        if timeout_s is not None:
            env["RAG_LLM_TIMEOUT_S"] = str(timeout_s)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield case


def _stored(data_dir: Path) -> tuple[Chat, list[Message]]:
    """The only chat in the app's SQLite file, and its messages, read as a new process would."""
    engine = make_engine(f"sqlite:///{data_dir / 'rag.sqlite3'}")
    try:
        repo = ChatRepo(engine)
        (chat,) = repo.list_all()
        return chat, repo.messages(chat.id)
    finally:
        engine.dispose()


def _feed(at) -> list[tuple[str, str, list[str]]]:  # type: ignore[no-untyped-def]
    """(role, text, errors) of every message bubble, top to bottom."""
    feed = []
    for m in at.chat_message:
        feed.append((m.name, "\n".join(md.value for md in m.markdown), [e.value for e in m.error]))
    return feed


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("name", REMOTE)
def test_fault_keeps_question_and_partial_answer(
    name: str, fault: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = FAULTS[fault]
    timeout_s = STALL_TIMEOUT_S if fault == "stall" else None
    with _provider_app(name, data_dir, monkeypatch, timeout_s) as case:
        at = make_app()
        at.session_state["model"] = case.model
        at.run(timeout=RUN_TIMEOUT_S)
        assert at.sidebar.selectbox(key="provider").value == name

        spec.arm(case.fake, name)
        at.chat_input[0].set_value(QUESTION).run(timeout=RUN_TIMEOUT_S)
        assert not at.exception
        page = str(at)
        assert "Traceback" not in page and "Exception" not in page

        # (1) One Russian explanation, inside the answer's bubble, naming what went wrong.
        (user, answer) = _feed(at)
        assert user == ("user", QUESTION, [])
        assert answer[1] == spec.partial.strip()  # (3) the streamed part is shown...
        (error,) = answer[2]  # ...marked by the reason it stopped
        assert CYRILLIC.search(error)
        assert any(word in error.lower() for word in spec.words), error
        assert [e.value for e in at.error] == [error]
        assert any(b.label == "Повторить" for b in at.button)
        for secret in case.secrets:
            assert secret not in page

        # (2) The question and the failed answer are in SQLite.
        chat, stored = _stored(data_dir)
        assert chat.title == QUESTION
        assert [(m.role, m.content) for m in stored] == [("user", QUESTION), ("assistant", spec.partial)]
        assert stored[0].error is None
        assert stored[1].error is not None and literal(stored[1].error) == error
        assert stored[1].provider == name and stored[1].model == case.model

        # (4) The next question is answered; the failed turn stays where it was.
        at.chat_input[0].set_value(FOLLOW_UP).run(timeout=RUN_TIMEOUT_S)
        assert not at.exception
        expected_feed = [
            ("user", QUESTION, []),
            ("assistant", spec.partial.strip(), [error]),
            ("user", FOLLOW_UP, []),
            ("assistant", FULL_ANSWER, []),
        ]
        assert _feed(at) == expected_feed
        sent = case.fake.requests[-1].messages
        assert sent[-1] == ("user", FOLLOW_UP)
        # A failed answer is not history: the partial text never goes back to the model.
        assert all(role != "assistant" for role, _ in sent)
        assert [(m.role, m.content) for m in _stored(data_dir)[1]] == [
            ("user", QUESTION),
            ("assistant", spec.partial),
            ("user", FOLLOW_UP),
            ("assistant", FULL_ANSWER),
        ]

        # A reload is a new session on the same data directory: the same chat, in the same order.
        reloaded = make_app()
        reloaded.run(timeout=RUN_TIMEOUT_S)
        assert not reloaded.exception
        assert _feed(reloaded) == expected_feed
