"""Eight browser sessions at once against one app process on a fresh data directory (issue 24).

A new team's first minutes: everyone opens the app at the same moment (in ``password`` mode,
eight accounts made beforehand through the CLI sign in at the same moment), uploads a file of
their own with a fact nobody else has, and asks about it with the offline provider. Every step is
started in all sessions before any is awaited, so first-use creation, sign-in, indexing and
answering overlap. Every wait is on a condition (the offline provider and the indexing queue are
slow on a busy 2-core machine); no timing is asserted.

Checked: no page shows an error, each session gets its own fact cited from its own file, no
member sees another's file (``password``), the app log has no traceback, and the browser asks no
host but the app's own.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.backends import backend_overrides
from tests.e2e.harness import REPO_ROOT, AppServer, app_env, browser, running_app
from tests.e2e.test_browser import shot

APP_HOST = "127.0.0.1"
PASSWORD = "load-test-password"
WAIT_MS = 600_000  # one condition on a busy machine: eight sessions and a cold app share two cores
ERROR_TEXT = "Внутренняя ошибка страницы"
ERROR_SELECTOR = f'[data-testid="stException"], :text("{ERROR_TEXT}")'
MESSAGES = '[data-testid="stChatMessage"]'


@dataclass(frozen=True)
class Doc:
    """A member's file: a short Russian note with one fact only it has, and a question about it."""

    name: str
    text: str
    question: str
    fact: str


DOCS = [
    Doc(
        "parkovka.txt",
        "Правила парковки у офиса.\n\nПропуск на парковку выдаёт охранник Семёнов в будке у шлагбаума. "
        "Гостевые машины оставляют на нижнем ярусе.",
        "Кто выдаёт пропуск на парковку?",
        "Семёнов",
    ),
    Doc(
        "arkhiv.txt",
        "Порядок работы с архивом.\n\nКлючи от архива хранятся в сейфе бухгалтерии. "
        "Папки возвращают в архив до конца рабочего дня.",
        "Где хранятся ключи от архива?",
        "сейфе бухгалтерии",
    ),
    Doc(
        "stolovaya.txt",
        "Столовая для сотрудников.\n\nКомплексный обед в столовой стоит 350 рублей. "
        "Столовая закрыта по субботам.",
        "Сколько стоит комплексный обед в столовой?",
        "350 рублей",
    ),
    Doc(
        "otpusk.txt",
        "Оформление отпуска.\n\nЗаявление на отпуск подают за 14 дней до его начала. "
        "Подписанное заявление хранится в отделе кадров.",
        "За сколько дней подают заявление на отпуск?",
        "14 дней",
    ),
    Doc(
        "wifi.txt",
        "Гостевая беспроводная сеть.\n\nПароль гостевой сети сообщает секретарь Петрова. "
        "Пароль меняется каждый понедельник.",
        "Кто сообщает пароль гостевой сети?",
        "Петрова",
    ),
    Doc(
        "komandirovki.txt",
        "Командировки сотрудников.\n\nСуточные в командировке составляют 700 рублей. "
        "Авансовый отчёт сдают в течение трёх дней после возвращения.",
        "Какие суточные в командировке?",
        "700 рублей",
    ),
    Doc(
        "trevoga.txt",
        "Пожарная безопасность.\n\nПри учебной пожарной тревоге сотрудники собираются у главного входа. "
        "Учебная тревога проводится раз в квартал.",
        "Где собираются сотрудники при учебной пожарной тревоге?",
        "у главного входа",
    ),
    Doc(
        "kartridzhi.txt",
        "Обслуживание принтеров.\n\nКартриджи для принтеров заказывает системный администратор Козлов. "
        "Пустые картриджи складывают в коробку у лифта.",
        "Кто заказывает картриджи для принтеров?",
        "Козлов",
    ),
]


@dataclass
class Session:
    """One colleague: a browser context of their own (cookies, Streamlit session) and a page."""

    who: str
    doc: Doc
    context: Any
    page: Any
    hosts: set[str] = field(default_factory=set)

    def check(self, step: str) -> None:
        """Fail, with a screenshot, when this page shows an error of any kind."""
        errors = self.page.locator(ERROR_SELECTOR)
        body = self.page.inner_text("body")
        if errors.count() or "Traceback" in body:
            shot(self.page, f"40-load-{self.who}-error")
            pytest.fail(f"{self.who}: an error on the page ({step}):\n{body}")

    def wait(self, locator: Any, step: str) -> None:
        """Wait until ``locator`` shows or an error does (which fails at once, not at the timeout)."""
        try:
            locator.or_(self.page.locator(ERROR_SELECTOR)).first.wait_for(timeout=WAIT_MS)
        except Exception:
            shot(self.page, f"40-load-{self.who}-stuck")
            raise
        self.check(step)


def settle(page: Any) -> None:
    """Wait until the page's script run is over.

    Not the harness's ``wait_for_app``: its "network idle" never comes for a page whose cookie
    component frame was replaced mid-request (seen with eight sessions at once), a quirk of
    Playwright's request bookkeeping, not of the app.
    """
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=WAIT_MS)


def _record_hosts(session: Session) -> None:
    """Keep the host of every request and websocket the session's browser makes."""

    def note(url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss"):
            session.hosts.add(parts.hostname or url)

    session.context.on("request", lambda request: note(request.url))
    session.page.on("websocket", lambda ws: note(ws.url))


@contextmanager
def sessions(chromium: Any, names: list[str]) -> Iterator[list[Session]]:
    """One browser context per name (lighter than a browser each), closed at the end."""
    out = []
    for who, doc in zip(names, DOCS, strict=True):
        context = chromium.new_context(locale="ru-RU", viewport={"width": 1280, "height": 900})
        context.set_default_timeout(WAIT_MS)  # also for the harness's waits and every click
        session = Session(who, doc, context, context.new_page())
        _record_hosts(session)
        out.append(session)
    try:
        yield out
    finally:
        for session in out:
            session.context.close()


def add_users_through_cli(data: Path, names: list[str]) -> None:
    """An admin, then the members, each by ``python -m rag users add`` as an operator would."""
    env = app_env(data, {**backend_overrides(data), "RAG_AUTH": "password"})

    def add(name: str, role: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "rag", "users", "add", name, "--role", role, "--password-stdin"]
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdin is not None
        process.stdin.write(f"{PASSWORD}\n".encode())
        process.stdin.close()
        return process

    def finish(process: subprocess.Popen[bytes]) -> None:
        output = process.stdout.read().decode() if process.stdout else ""
        assert process.wait(timeout=120) == 0, output

    # The admin first (they also migrate the fresh database); the members at once, as a script
    # filling a new team in would: a database of a team's size must take that.
    finish(add("boss", "admin"))
    for process in [add(name, "member") for name in names]:
        finish(process)


def open_all(app: AppServer, group: list[Session]) -> None:
    """Every session opens the app in the same moment (nobody waits for the page to load)."""
    for s in group:
        s.page.goto(app.url, wait_until="commit")


def sign_in_all(group: list[Session]) -> None:
    """Fill every sign-in form, then press «Войти» in all of them at once."""
    for s in group:
        s.wait(s.page.get_by_role("heading", name="Вход"), "the sign-in screen")
        settle(s.page)
        s.page.get_by_label("Имя пользователя", exact=True).fill(s.who)
        s.page.get_by_label("Пароль", exact=True).fill(PASSWORD)
    for s in group:
        s.page.get_by_role("button", name="Войти").click(no_wait_after=True)
    for s in group:
        s.wait(s.page.get_by_text(f"Вы вошли как {s.who}"), "sign-in")
    for s in group:
        # The session cookie is set by a component after the render, which reruns the page:
        # an upload chosen during that rerun is a race inside Streamlit's frontend, not ours.
        _wait_cookie(s)


def _wait_cookie(s: Session) -> None:
    """Wait until the browser holds the signed session cookie (set by a component, not a page)."""
    for _ in range(WAIT_MS // 250):
        if any(c["name"] == "rag_session" for c in s.context.cookies()):
            return
        s.page.wait_for_timeout(250)
    pytest.fail(
        f"{s.who} signed in with «Запомнить на этом устройстве» on but the browser got no session "
        "cookie: a reload would sign them out"
    )


def upload_all(group: list[Session]) -> None:
    """Every session chooses its file in the same moment, then each waits for its own to index."""
    for s in group:
        s.wait(s.page.get_by_test_id("stChatInputTextArea"), "the chat page")
        settle(s.page)
    for s in group:
        payload = {"name": s.doc.name, "mimeType": "text/plain", "buffer": s.doc.text.encode()}
        s.page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files([payload])
    for s in group:
        s.wait(s.page.get_by_test_id("stSidebar").get_by_text(f"Проиндексирован: {s.doc.name}"), "indexing")


def ask_all(group: list[Session]) -> None:
    """Every session sends its question in the same moment, then each waits for its answer."""
    for s in group:
        settle(s.page)
        box = s.page.get_by_test_id("stChatInputTextArea")
        box.fill(s.doc.question)
        box.press("Enter")
    for s in group:
        # The question and a non-empty answer (a just-opened message holds only its avatar).
        s.page.wait_for_function(
            """() => {
                const all = document.querySelectorAll('[data-testid="stChatMessage"]');
                if (all.length < 2) return false;
                const body = all[all.length - 1].querySelector('[data-testid="stChatMessageContent"]');
                return body !== null && body.innerText.trim().length > 0;
            }""",
            timeout=WAIT_MS,
        )
        settle(s.page)
        s.check("the answer")


def sources_of(answer: Any) -> str:
    """Open an answer's sources and return their text."""
    expander = answer.get_by_test_id("stExpander")
    expander.locator("summary").click()
    details = expander.get_by_test_id("stExpanderDetails")
    details.wait_for(state="visible", timeout=WAIT_MS)
    answer.page.wait_for_function(
        "el => el.innerText.trim().length > 0", arg=details.element_handle(), timeout=WAIT_MS
    )
    text: str = expander.inner_text()
    return text


def check_answers(group: list[Session]) -> None:
    """Each session's answer states its own fact, cites it as [1], and [1] is its own file."""
    for s in group:
        answer = s.page.get_by_test_id("stChatMessage").last
        text = answer.inner_text()
        assert s.doc.fact in text and "[1]" in text, f"{s.who} asked «{s.doc.question}» and got:\n{text}"
        cited = sources_of(answer)
        assert f"[1] {s.doc.name}" in cited, f"{s.who}: the first source is not {s.doc.name}:\n{cited}"
        s.check("the sources")


def check_privacy(group: list[Session]) -> None:
    """No member's pages (chat with its sources, the document list) name another member's file."""
    for s in group:
        # text_content, not inner_text: it also reads what is in the page but hidden.
        text = s.page.locator("body").text_content() or ""
        leaked = [o.doc.name for o in group if o is not s and o.doc.name in text]
        assert not leaked, f"{s.who} sees others' files {leaked} in the chat:\n{s.page.inner_text('body')}"
    for s in group:
        s.page.get_by_test_id("stSidebarNav").get_by_text("Документы").click()
    for s in group:
        # Each member's list holds one document: their own.
        s.wait(s.page.get_by_text("Загружено: 1 (готово к поиску: 1)"), "the documents page")
        settle(s.page)
    for s in group:
        # The table is drawn on a canvas; its cells are also in the page as a hidden grid, which
        # the data grid fills after the script run is over (seen empty on a loaded machine).
        grid = s.page.get_by_test_id("stDataFrame").locator('[role="gridcell"]')
        try:
            grid.filter(has_text=s.doc.name).first.wait_for(state="attached", timeout=WAIT_MS)
        except Exception:
            shot(s.page, f"40-load-{s.who}-no-own-file")
            raise
        cells = grid.all_text_contents()
        assert s.doc.name in cells, f"{s.who} does not see their own file in the list: {cells}"
        text = s.page.locator("body").text_content() or ""
        others = [o.doc.name for o in group if o is not s and o.doc.name in text]
        assert not others, f"{s.who} sees others' files {others}: {cells}"


def run_load(tmp_path: Path, mode: str) -> None:
    """The whole scenario in one auth mode; the log and the hosts are checked after the app stops."""
    data = tmp_path / "data"
    names = [f"user{i}" for i in range(1, len(DOCS) + 1)]
    if mode == "password":
        add_users_through_cli(data, names)
    hosts: set[str] = set()
    with (
        running_app(data, tmp_path / "app.log", env={"RAG_AUTH": mode}) as app,
        browser() as chromium,
        sessions(chromium, names) as group,
    ):
        try:
            open_all(app, group)
            if mode == "password":
                sign_in_all(group)
            upload_all(group)
            ask_all(group)
            check_answers(group)
            if mode == "password":  # with sign-in off everyone is the one local user
                check_privacy(group)
            for s in group:
                s.check("the end")
                hosts |= s.hosts
        except BaseException:
            print(app.log())  # pytest shows it with the failure
            raise
    log = app.log()
    assert "Traceback" not in log, log
    assert "database is locked" not in log, log
    assert hosts == {APP_HOST}, f"the browser asked other hosts than the app's: {sorted(hosts - {APP_HOST})}"


def test_eight_first_visits_at_once_without_sign_in(tmp_path: Path) -> None:
    run_load(tmp_path, "none")


def test_eight_members_sign_in_upload_and_ask_at_once(tmp_path: Path) -> None:
    run_load(tmp_path, "password")
