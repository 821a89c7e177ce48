"""The model lab in real chromium (issue 21): two assistants side by side with figures, a vote on the
leaderboard, a failing fake's Russian error beside a column that completes, and a check of five
questions for two assistants whose table and chart the test recomputes on its own.

The remote models are the fakes the contract tests run (tests/contract: OpenAI-compatible, GigaChat,
YandexGPT), each speaking its real wire protocol; the fourth assistant is the offline provider.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from providers.base import GenerationParams
from providers.offline import MODEL_ID, OfflineProvider, embedder_similarity
from rag.answer.pipeline import answer
from rag.eval import norm_answer
from rag.lab.assistants import AssistantService, AssistantSpec
from rag.lab.checks import CheckQuestion, TestSetService
from rag.library import Library, open_library
from tests.conftest import make_settings
from tests.contract import fake_gigachat, fake_yandexgpt
from tests.contract.fake_openai import FAKE_KEY, FakeOpenAI, running_fake
from tests.e2e.harness import AppServer, browser, running_app, wait_for_app

CONTRACT = (
    "Договор аренды нежилого помещения.\n\n"
    "Срок аренды составляет одиннадцать месяцев с даты подписания договора. "
    "Арендная плата составляет 45 000 рублей в месяц.\n\n"
    "Залог равен двум месячным платежам. Арендатор оплачивает коммунальные услуги отдельно.\n\n"
    "Помещение расположено по адресу: город Казань, улица Баумана, дом 7."
)
QUESTIONS = [
    CheckQuestion("Какой срок аренды?", "одиннадцать месяцев", "dogovor.txt"),
    CheckQuestion("Какая арендная плата?", "45 000 рублей"),
    CheckQuestion("Чему равен залог?", "двум месячным платежам"),
    CheckQuestion("Где расположено помещение?", "улица Баумана"),
    CheckQuestion("Сколько стоит парковка?", "бесплатно"),
]
OFFLINE_NAME, REMOTE_NAME = "А · офлайн", "Б · OpenAI"
GIGACHAT_NAME, YANDEX_NAME = "В · GigaChat", "Г · YandexGPT"


def _seed(data: Path) -> None:
    """The contract, two assistants and a test set, made through the services before the app starts."""
    lib = open_library(make_settings(data))
    try:
        assert lib.ingest("dogovor.txt", CONTRACT.encode()).status == "indexed"
        assistants = AssistantService(lib.engine, lib.access, lib.actor)
        assistants.create(AssistantSpec(name=OFFLINE_NAME, provider="offline", model=MODEL_ID))
        # No rewrite: the fake's only requests are the answers, so a failure set on it hits one.
        assistants.create(AssistantSpec(name=REMOTE_NAME, provider="openai", model="fake-gpt", rewrite=False))
        assistants.create(
            AssistantSpec(name=GIGACHAT_NAME, provider="gigachat", model="GigaChat-2", rewrite=False)
        )
        assistants.create(
            AssistantSpec(name=YANDEX_NAME, provider="yandexgpt", model=fake_yandexgpt.MODEL, rewrite=False)
        )
        TestSetService(lib.engine, lib.access, lib.actor).create("Аренда", QUESTIONS)
    finally:
        lib.engine.dispose()


@pytest.fixture(scope="module")
def lab_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppServer, FakeOpenAI, Path]]:
    root = tmp_path_factory.mktemp("e2e-lab")
    data = root / "data"
    _seed(data)
    with (
        running_fake() as fake,
        fake_gigachat.make_case(root) as giga,
        fake_yandexgpt.make_case(root) as yandex,
    ):
        env = {
            **giga.env,
            **yandex.env,
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_API_KEY": FAKE_KEY,
            "OPENAI_MODELS": "fake-gpt",
            "RAG_LLM_MAX_RETRIES": "0",
            "RAG_LLM_TIMEOUT_S": "5",
            "RAG_MODEL_PRICES": '{"openai/fake-gpt": [1.0, 2.0]}',
        }
        with running_app(data, root / "app.log", env=env) as server:
            yield server, fake, data
        log = server.log()
        assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as b:
        yield b


def _compare(page: Any, question: str) -> None:
    page.get_by_label("Вопрос").fill(question)
    page.get_by_role("button", name="Сравнить").click()
    # The finished comparison is drawn with the vote form under it.
    page.get_by_text("Ваша оценка").wait_for(timeout=120_000)
    wait_for_app(page, 120_000, network_idle=False)


def _pick(page: Any, label: str, names: list[str]) -> None:
    """Add options to a multiselect, as a user clicks them."""
    picker = page.get_by_test_id("stMultiSelect").filter(has_text=label)
    for name in names:
        picker.locator("input").click()
        page.get_by_role("option", name=name).click()
        wait_for_app(page, 60_000, network_idle=False)
    page.keyboard.press("Escape")


def _column(page: Any, name: str) -> Any:
    return page.get_by_test_id("stColumn").filter(has=page.get_by_role("heading", name=name))


def test_two_assistants_side_by_side_a_vote_and_a_failing_fake(
    lab_app: tuple[AppServer, FakeOpenAI, Path], chromium: Any
) -> None:
    server, fake, _data = lab_app
    page = chromium.new_page(viewport={"width": 1400, "height": 1000}, locale="ru-RU")
    page.goto(f"{server.url}/compare")
    wait_for_app(page, 120_000, network_idle=False)
    _pick(page, "Ассистенты", [GIGACHAT_NAME, YANDEX_NAME])  # the first two are chosen already
    _compare(page, "Какой срок аренды?")
    offline, remote = _column(page, OFFLINE_NAME), _column(page, REMOTE_NAME)
    giga, yandex = _column(page, GIGACHAT_NAME), _column(page, YANDEX_NAME)
    expect(offline).to_contain_text("одиннадцать месяцев")
    for column in (remote, giga, yandex):
        expect(column).to_contain_text("Срок аренды составляет одиннадцать месяцев")
    for column in (offline, remote, giga, yandex):
        expect(column).to_contain_text("Первый токен")
        expect(column.get_by_test_id("stPageLink")).not_to_have_count(0)  # sources, clickable
    expect(offline).to_contain_text("стоимость: 0.0000 ₽")
    # The fake reports its usage; the cost is what RAG_MODEL_PRICES says per 1000 tokens.
    figures = remote.get_by_test_id("stCaptionContainer").inner_text()
    tokens_in, tokens_out = map(int, re.search(r"токены: (\d+) → (\d+)", figures).groups())  # type: ignore[union-attr]
    assert f"стоимость: {(tokens_in * 1.0 + tokens_out * 2.0) / 1000:.4f} ₽" in figures

    page.get_by_text(f"«{OFFLINE_NAME}» лучше остальных").click()
    page.get_by_label("Комментарий (необязательно)").fill("точнее")
    page.get_by_role("button", name="Проголосовать").click()
    expect(page.get_by_text("Голос учтён.")).to_be_visible(timeout=60_000)
    board = page.get_by_test_id("stTable")
    expect(board).to_contain_text(OFFLINE_NAME)
    row = board.locator("tr", has_text=OFFLINE_NAME)
    expect(row).to_contain_text("100 %")
    expect(board.locator("tr", has_text=REMOTE_NAME)).to_contain_text("0 %")

    # The remote server fails: its column says so in Russian, the offline one still answers.
    fake.fail_next(500)
    _compare(page, "Где расположено помещение?")
    offline, remote = _column(page, OFFLINE_NAME), _column(page, REMOTE_NAME)
    giga, yandex = _column(page, GIGACHAT_NAME), _column(page, YANDEX_NAME)
    expect(offline).to_contain_text("Баумана")
    for column in (giga, yandex):
        expect(column).to_contain_text("Срок аренды составляет одиннадцать месяцев")
        expect(column.get_by_test_id("stAlertContentError")).to_have_count(0)
    error = remote.get_by_test_id("stAlertContentError")
    expect(error).to_be_visible()
    assert re.search("[а-яА-Я]{5,}", error.inner_text()), error.inner_text()
    page.close()


def _expected(data: Path) -> dict[str, dict[str, float]]:
    """Per assistant: R@5, MRR@10 and the share of answers with the fact, computed here."""
    lib: Library = open_library(make_settings(data), recover=False)
    try:
        offline = OfflineProvider(embedder_similarity(lib.embedder))
        r5 = rr = 0.0
        facts = {OFFLINE_NAME: 0, REMOTE_NAME: 0}
        for q in QUESTIONS:
            hits = lib.retriever.search(q.question, k=10, method="hybrid")
            rank = next(
                (
                    pos
                    for pos, h in enumerate(hits, start=1)
                    if (q.expected_file is None or h.filename == q.expected_file)
                    and norm_answer(q.expected_fact) in norm_answer(h.text)
                ),
                None,
            )
            r5 += rank is not None and rank <= 5
            rr += 1 / rank if rank else 0.0
            prepared = answer(lib.retriever, offline, q.question, MODEL_ID, GenerationParams())
            text = "".join(prepared.completion)
            facts[OFFLINE_NAME] += norm_answer(q.expected_fact) in norm_answer(text)
            # The fake always says the same sentence.
            facts[REMOTE_NAME] += norm_answer(q.expected_fact) in norm_answer(
                "Срок аренды составляет одиннадцать месяцев [1]."
            )
    finally:
        lib.engine.dispose()
    n = len(QUESTIONS)
    return {name: {"r5": r5 / n, "mrr": rr / n, "facts": facts[name] / n} for name in facts}


def test_a_check_of_five_questions_for_two_assistants(
    lab_app: tuple[AppServer, FakeOpenAI, Path], chromium: Any
) -> None:
    server, _fake, data = lab_app
    page = chromium.new_page(viewport={"width": 1400, "height": 1000}, locale="ru-RU")
    page.goto(f"{server.url}/checks")
    wait_for_app(page, 120_000, network_idle=False)
    _pick(page, "Ассистенты", [OFFLINE_NAME, REMOTE_NAME])
    page.get_by_role("button", name="Запустить проверку").click()
    results = page.get_by_test_id("stTable").filter(has_text="R@5")
    expect(results).to_be_visible(timeout=180_000)
    expect(page.get_by_test_id("stVegaLiteChart")).to_be_visible()
    expected = _expected(data)
    for name, want in expected.items():
        cells = results.locator("tr", has_text=name).locator("td").all_inner_texts()
        # Ассистент, Вопросов, R@5, MRR, Доля фактов, Отказы, Ошибки, p50, p95, Стоимость
        assert cells[1] == "5", cells
        assert cells[2] == f"{want['r5']:.2f}" and cells[3] == f"{want['mrr']:.2f}", (cells, want)
        assert cells[4] == f"{100 * want['facts']:.0f} %", (cells, want)
    page.close()
