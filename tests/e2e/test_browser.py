"""A user's path through the real app in a real browser (Debian's chromium via Playwright).

`streamlit run` on a free port with an empty data directory and the offline provider; every
step leaves a screenshot in ``artifacts/e2e/`` (git-ignored; CI keeps it as an artifact).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.harness import (
    REPO_ROOT,
    AppServer,
    ask,
    browser,
    running_app,
    wait_for_app,
)

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
SHOTS = REPO_ROOT / "artifacts" / "e2e"

CONTRACT = (
    "Договор аренды нежилого помещения.\n\n"
    "Срок аренды составляет одиннадцать месяцев с даты подписания договора. "
    "Арендная плата составляет 45 000 рублей в месяц.\n\n"
    "Помещение расположено по адресу: город Казань, улица Баумана, дом 7."
)
REPORT_PAGES = [
    "Отчёт отдела продаж за третий квартал. Выручка выросла на двенадцать процентов.",
    "Штраф за просрочку поставки составляет половину процента от суммы заказа за каждый день.",
]


def report_pdf() -> bytes:
    """A two-page PDF with a text layer; the penalty clause is only on page 2."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_font("DejaVu", fname=str(FONT))
    pdf.set_font("DejaVu", size=12)
    for text in REPORT_PAGES:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def shot(page: Any, name: str) -> None:
    """Keep a full-page screenshot of this step."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


BACKGROUND_JS = "getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor"


def background(page: Any) -> str:
    """The app's computed background colour."""
    color: str = page.evaluate(BACKGROUND_JS)
    return color


def choose_theme(page: Any, name: str) -> None:
    """Pick a theme in Streamlit's main menu (System, Light, Dark)."""
    item = page.get_by_test_id(f"stMainMenuItem-theme-{name}")
    for _ in range(3):  # the first click can land while the page is still settling
        page.get_by_test_id("stMainMenu").click()
        try:
            item.wait_for(timeout=3_000)
            break
        except Exception:
            page.keyboard.press("Escape")
    item.click()


def upload(page: Any, files: list[dict[str, Any]]) -> None:
    """Choose files in the sidebar uploader, as a user's file dialog would."""
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(files)


def sources_text(message: Any) -> str:
    """Open an answer's sources expander and return its text."""
    expander = message.get_by_test_id("stExpander")
    expander.locator("summary").click()
    # The details open with an animation; reading at once can catch only the summary.
    details = expander.get_by_test_id("stExpanderDetails")
    details.wait_for(state="visible")
    expect(details).not_to_have_text("")
    text: str = expander.inner_text()
    return text


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """One app on an empty data directory, offline provider, for the whole user path."""
    root = tmp_path_factory.mktemp("e2e")
    with running_app(root / "data", root / "app.log") as server:
        yield server
    log = server.log()
    assert "Traceback" not in log, log
    assert "database is locked" not in log, log


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """The headless system chromium."""
    with browser() as b:
        yield b


def test_user_path(app: AppServer, chromium: Any) -> None:
    page = chromium.new_page(viewport={"width": 1280, "height": 900}, locale="ru-RU")
    page.goto(app.url)
    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=60_000)
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Чат с документами")).to_be_visible()
    expect(page.get_by_text("Загрузить документы")).to_be_visible()
    placeholder = page.get_by_test_id("stChatInputTextArea").get_attribute("placeholder")
    assert placeholder == "Задайте вопрос по документам…"
    shot(page, "01-loaded")

    # Light ↔ dark through Streamlit's main menu (the palette in .streamlit/config.toml).
    light = background(page)
    assert light == "rgb(242, 242, 242)"
    choose_theme(page, "Dark")
    page.wait_for_function(f"c => {BACKGROUND_JS} != c", arg=light)
    assert background(page) == "rgb(46, 46, 46)"
    page.keyboard.press("Escape")
    shot(page, "02-dark")
    choose_theme(page, "Light")
    page.wait_for_function(f"c => {BACKGROUND_JS} == c", arg=light)
    page.keyboard.press("Escape")

    # Upload a cp1251 text and a PDF; progress shows, then both are reported indexed.
    upload(
        page,
        [
            {"name": "dogovor.txt", "mimeType": "text/plain", "buffer": CONTRACT.encode("cp1251")},
            {"name": "otchet.pdf", "mimeType": "application/pdf", "buffer": report_pdf()},
        ],
    )
    page.get_by_test_id("stProgress").first.wait_for(timeout=30_000)
    shot(page, "03-indexing")
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Проиндексирован: dogovor.txt").wait_for(timeout=180_000)
    sidebar.get_by_text("Проиндексирован: otchet.pdf").wait_for(timeout=60_000)
    expect(page.get_by_test_id("stProgress")).to_have_count(0)
    expect(sidebar.get_by_text("В поиске: 2 док.")).to_be_visible()
    shot(page, "04-indexed")

    # Both files on the admin page.
    page.get_by_test_id("stSidebarNav").get_by_text("Администрирование").click()
    page.get_by_role("heading", name="Проиндексированные файлы").wait_for()
    wait_for_app(page)
    # The grid is drawn on a canvas; its accessible table carries the cell texts.
    page.get_by_test_id("stDataFrame").locator("td[role=gridcell]").first.wait_for(state="attached")
    files = " | ".join(page.get_by_test_id("stDataFrame").locator("td[role=gridcell]").all_text_contents())
    assert "dogovor.txt" in files and "otchet.pdf" in files, files
    assert files.count("готов") == 2, files
    shot(page, "05-admin")
    page.get_by_test_id("stSidebarNav").get_by_text("Чат", exact=True).click()
    page.get_by_test_id("stChatInputTextArea").wait_for()
    wait_for_app(page)

    # A Russian question: answered from the PDF's page 2, cited with the file and the page.
    answer = ask(page, "Какой штраф за просрочку поставки?")
    assert "половину процента" in answer.inner_text()
    cited = sources_text(answer)
    assert "otchet.pdf" in cited and "стр. 2" in cited, cited
    # From the cp1251 text: decoded right, cited by name.
    answer = ask(page, "Где расположено помещение?")
    assert "Казань" in answer.inner_text()
    assert "dogovor.txt" in sources_text(answer)
    shot(page, "06-answered")
    # A follow-up that means nothing alone ("which street?") is answered from the previous turn.
    answer = ask(page, "А на какой улице?")
    assert "Баумана" in answer.inner_text()
    shot(page, "07-follow-up")

    # A reload is a new session: the chat comes back from SQLite.
    messages = page.get_by_test_id("stChatMessage")
    before = [m.inner_text() for m in messages.all()]
    assert len(before) == 6
    page.reload()
    page.get_by_test_id("stChatInputTextArea").wait_for()
    wait_for_app(page)
    after = [m.inner_text() for m in page.get_by_test_id("stChatMessage").all()]
    assert [t.split("\n")[0] for t in after] == [t.split("\n")[0] for t in before]
    assert "А на какой улице?" in after[4]
    shot(page, "08-reloaded")

    # Clearing asks first, then the messages are gone, also after another reload.
    page.get_by_role("button", name="Очистить чат").click()
    page.get_by_role("button", name="Да, очистить").click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stChatMessage\"]').length == 0")
    wait_for_app(page)
    page.reload()
    page.get_by_test_id("stChatInputTextArea").wait_for()
    wait_for_app(page)
    assert page.get_by_test_id("stChatMessage").count() == 0
    shot(page, "09-cleared")
    page.close()


def test_phone_viewport_has_no_horizontal_scroll(app: AppServer, chromium: Any) -> None:
    phone = {"width": 390, "height": 844}
    page = chromium.new_page(viewport=phone, locale="ru-RU", is_mobile=True, has_touch=True)
    page.goto(app.url)
    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=60_000)
    wait_for_app(page)
    last = ask(page, "Сколько составляет арендная плата по договору аренды нежилого помещения в месяц?")
    assert "45 000" in last.inner_text()
    page.wait_for_timeout(500)  # the feed scrolls to the newest message
    shot(page, "10-phone")

    widths = page.evaluate(
        "() => ({doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,"
        " inner: window.innerWidth, main: document.querySelector('main.stMain').scrollWidth})"
    )
    assert widths["inner"] == 390
    assert max(widths["doc"], widths["body"], widths["main"]) <= 390, widths
    for element in (page.get_by_test_id("stChatInputTextArea"), last):
        box = element.bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        assert box["y"] < 844 and box["y"] + box["height"] > 0, box
    expect(page.get_by_test_id("stChatInputTextArea")).to_be_visible()
    expect(last).to_be_visible()
    page.close()


HOSTILE_NAME = "счёт\u202efdp :red[x] www.evil.example.txt"
HOSTILE_TEXT = (
    "Памятка о пропусках.\n\n"
    "Пропуск выдаёт охрана: пишите a@evil.example или https://evil.example/form "
    ":red[срочно] :material/lock: ![](http://evil.example/p.png) -> ок.\n\n"
    "Срок действия пропуска один год."
)
# What would be live in the page if any of that text were rendered as Markdown.
LIVE_SELECTOR = ", ".join(
    [
        '[data-testid="stMarkdownContainer"] a[href*="evil"]',
        'img[src*="evil"]',
        ".stMarkdownColoredText",
        ".stMarkdownColoredBackground",
        '[data-testid="stMarkdownContainer"] span[role="img"]',
    ]
)


def outside_requests(requests: list[str], app_url: str) -> list[str]:
    """Requests to any host but the app's own (data: and blob: URLs never leave the browser)."""
    own = app_url.rstrip("/")
    return [u for u in requests if not u.startswith((own, "data:", "blob:"))]


def test_no_request_leaves_the_app_and_hostile_text_stays_text(
    app: AppServer, chromium: Any, tmp_path: Path
) -> None:
    page = chromium.new_page(viewport={"width": 1280, "height": 900}, locale="ru-RU")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(app.url)
    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=60_000)
    wait_for_app(page)
    nav = page.get_by_test_id("stSidebarNav")
    for title, heading in (("Документы", "Документы"), ("Администрирование", "Администрирование")):
        nav.get_by_text(title, exact=True).click()
        page.get_by_role("heading", name=heading).first.wait_for()
        wait_for_app(page)
    nav.get_by_text("Чат", exact=True).click()
    page.get_by_test_id("stChatInputTextArea").wait_for()
    wait_for_app(page)
    assert requests and outside_requests(requests, app.url) == []  # the page icon came from a font host

    # A file whose name and text carry bidi overrides, bare addresses, directives and icons.
    upload(page, [{"name": HOSTILE_NAME, "mimeType": "text/plain", "buffer": HOSTILE_TEXT.encode()}])
    sidebar = page.get_by_test_id("stSidebar")
    clean = "счётfdp :red[x] www.evil.example.txt"  # the override is gone, the rest is as typed
    # Word joiners (invisible) keep addresses from becoming links: compare the text without them.
    page.wait_for_function(
        """t => document.querySelector('[data-testid="stSidebar"]').innerText
                .replaceAll('\u2060', '').includes(t)""",
        arg=f"Проиндексирован: {clean}",
        timeout=180_000,
    )
    answer = ask(page, "Кто выдаёт пропуск? https://evil.example :red[x]")
    cited = sources_text(answer).replace("\u2060", "")
    assert clean in cited, cited
    assert "https://evil.example/form" in answer.inner_text().replace("\u2060", "")
    shot(page, "11-hostile-text")
    assert page.locator(LIVE_SELECTOR).count() == 0, page.locator(LIVE_SELECTOR).first.evaluate(
        "e => e.outerHTML"
    )
    assert outside_requests(requests, app.url) == []

    # A file over RAG_MAX_FILE_MB (50 by default) gets a Russian refusal that names the setting.
    big = tmp_path / "большой.txt"  # Playwright takes a buffer of at most 50 MB: a file, then
    big.write_bytes(b"x" * (51 * 1024 * 1024))
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(big))
    refusal = sidebar.get_by_text("допускается не больше 50 МБ (RAG_MAX_FILE_MB)")
    refusal.wait_for(timeout=120_000)
    expect(sidebar.get_by_text("«большой.txt»: файл слишком большой", exact=False)).to_be_visible()
    shot(page, "12-too-large")
    page.close()
