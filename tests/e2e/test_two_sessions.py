"""Two browser sessions chatting and indexing at the same time against one app process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storage import ChatRepo
from storage.db import make_engine
from tests.e2e.harness import browser, running_app, wait_for_app
from tests.e2e.test_browser import CONTRACT, shot, upload
from tests.e2e.test_crashes import long_text

SAFETY = (
    "Инструкция по охране труда на складе.\n\n"
    "Огнетушители находятся у каждого выхода и на втором этаже возле лифта. "
    "Погрузчиком разрешено управлять только сотрудникам с удостоверением."
)
MESSAGES = '[data-testid="stChatMessage"]'


def send(page: Any, question: str) -> None:
    """Type and send a question without waiting for the answer."""
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")


def wait_messages(page: Any, count: int) -> list[str]:
    """Wait until the feed shows ``count`` messages and the run is over; return their texts."""
    page.wait_for_function(
        f"n => document.querySelectorAll('{MESSAGES}').length >= n", arg=count, timeout=120_000
    )
    wait_for_app(page, 120_000)
    return [m.inner_text() for m in page.get_by_test_id("stChatMessage").all()]


def test_two_sessions_chat_and_index_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_app(data, tmp_path / "app.log") as app, browser() as chromium:
        # Two contexts: two cookie jars, two Streamlit sessions, like two colleagues.
        first = chromium.new_context(locale="ru-RU", viewport={"width": 1280, "height": 900}).new_page()
        second = chromium.new_context(locale="ru-RU", viewport={"width": 1280, "height": 900}).new_page()
        for page in (first, second):
            page.goto(app.url)
            page.get_by_test_id("stChatInputTextArea").wait_for(timeout=60_000)
            wait_for_app(page)

        # Both upload at once, then both chat while the files are still being indexed (a long
        # appendix makes indexing last several seconds).
        appendix = "\n\n" + long_text(60)
        contract = (CONTRACT + appendix).encode("cp1251")
        upload(first, [{"name": "dogovor.txt", "mimeType": "text/plain", "buffer": contract}])
        upload(
            second, [{"name": "ohrana.txt", "mimeType": "text/plain", "buffer": (SAFETY + appendix).encode()}]
        )
        # Each page has taken its file (the queue shows it) before its user types: a question
        # typed in the very instant of choosing a file is a race inside Streamlit's frontend.
        for page in (first, second):
            page.get_by_test_id("stProgress").first.wait_for(timeout=60_000)
        rounds = [
            ("Первый сотрудник: какой срок аренды?", "Второй сотрудник: где огнетушители?"),
            ("Первый сотрудник: где расположено помещение?", "Второй сотрудник: кто управляет погрузчиком?"),
            ("Первый сотрудник: какая арендная плата?", "Второй сотрудник: что на втором этаже?"),
        ]
        try:
            for n, (q1, q2) in enumerate(rounds, start=1):
                send(first, q1)
                send(second, q2)
                wait_messages(first, 2 * n)
                wait_messages(second, 2 * n)
            for page, name in ((first, "dogovor.txt"), (second, "ohrana.txt")):
                sidebar = page.get_by_test_id("stSidebar")
                sidebar.get_by_text(f"Проиндексирован: {name}").wait_for(timeout=180_000)
        except Exception:
            shot(first, "20-failed-session-one")
            shot(second, "21-failed-session-two")
            raise

        # Once both files are in, each session's answer comes from the other's upload too.
        send(first, "Где находятся огнетушители на складе?")
        send(second, "На какой улице расположено арендуемое помещение?")
        feed_first = wait_messages(first, 8)
        feed_second = wait_messages(second, 8)
        shot(first, "20-session-one")
        shot(second, "21-session-two")
        assert "втором этаже" in feed_first[-1]
        assert "Баумана" in feed_second[-1]
        # Each session sees only its own chat.
        assert all("Второй сотрудник" not in text for text in feed_first)
        assert all("Первый сотрудник" not in text for text in feed_second)
        for page in (first, second):
            assert "database is locked" not in page.content()
            assert page.get_by_test_id("stException").count() == 0

    log = app.log()
    assert "database is locked" not in log and "Traceback" not in log, log
    # No message lost: two chats, four questions and four answers each, in order.
    chats = ChatRepo(make_engine(f"sqlite:///{data / 'rag.sqlite3'}"))
    stored = {c.title: chats.messages(c.id) for c in chats.list_all()}
    assert len(stored) == 2, stored.keys()
    for title, messages in stored.items():
        speaker = title.split(":")[0]
        assert [m.role for m in messages] == ["user", "assistant"] * 4
        questions = [m.content for m in messages if m.role == "user"]
        assert all(q.startswith(speaker) for q in questions[:3]), questions
        assert all(m.content and not m.error for m in messages), [(m.content, m.error) for m in messages]
