"""Ratings in a real browser: a member's 👍 and 👎 with a comment are stored with the answer, shown
on the admin page's «Отзывы» to an admin and not to the member, and exported as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from rag.chats.ratings import DOWN, UP
from rag.identity.auth import AuthService, session_secret
from rag.library import open_library
from settings import Settings
from storage.models import Role
from storage.ratings import RatingRepo
from tests.backends import backend_overrides
from tests.e2e.harness import AppServer, ask, browser, running_app, wait_for_app
from tests.e2e.test_source_view import _environment

PASSWORDS = {"boss": "boss-password", "alice": "alice-password"}
HANDBOOK = (
    "Справочник сотрудника.\n\n"
    "Обед длится один час, с 13:00 до 14:00, в столовой на втором этаже.\n\n"
    "Отпуск составляет 28 календарных дней в году и делится не более чем на три части."
)
GOOD = "Сколько длится обед?"
BAD = "Сколько дней отпуска?"
COMMENT = "Не сказано, можно ли делить отпуск на четыре части"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    root = tmp_path_factory.mktemp("ratings")
    data_dir = root / "data"
    with running_app(data_dir, root / "app.log", env={"RAG_AUTH": "password"}) as server:
        with _environment({**backend_overrides(data_dir), "RAG_AUTH": "password"}):
            settings = Settings(_env_file=None, RAG_DATA_DIR=data_dir)  # type: ignore[call-arg]
            lib = open_library(settings, recover=False)
            auth = AuthService(lib.users, lib.access, session_secret(settings))
            boss = auth.create_first_admin("boss", PASSWORDS["boss"])
            alice = auth.add_user(boss, "alice", Role.MEMBER, PASSWORDS["alice"])
            assert lib.ingest("spravochnik.txt", HANDBOOK.encode(), user=alice).status == "indexed"
            lib.engine.dispose()
        yield server


def _sign_in(page: Any, url: str, name: str) -> None:
    page.goto(url)
    wait_for_app(page)
    page.get_by_label("Имя пользователя", exact=True).fill(name)
    page.get_by_label("Пароль", exact=True).fill(PASSWORDS[name])
    page.get_by_role("button", name="Войти").click()
    wait_for_app(page)
    expect(page.get_by_test_id("stSidebar").get_by_text(f"Вы вошли как {name}", exact=False)).to_be_visible(
        timeout=30_000
    )
    for _ in range(80):  # the signed cookie is written after the render: later visits need it
        if any(c["name"] == "rag_session" for c in page.context.cookies()):
            break
        page.wait_for_timeout(250)


def _stored(app: AppServer) -> list[Any]:
    with _environment({**backend_overrides(Path(app.data_dir)), "RAG_AUTH": "password"}):
        lib = open_library(Settings(_env_file=None, RAG_DATA_DIR=app.data_dir), recover=False)  # type: ignore[call-arg]
        try:
            return RatingRepo(lib.engine).find()
        finally:
            lib.engine.dispose()


def test_thumbs_and_a_comment_reach_the_admin_only(app: AppServer) -> None:
    with browser() as b:
        member = b.new_context(viewport={"width": 1280, "height": 900})
        member.set_default_timeout(90_000)
        page = member.new_page()
        _sign_in(page, app.url, "alice")

        good = ask(page, GOOD, network_idle=False)
        expect(good).to_contain_text("13:00")
        good.get_by_test_id("stFeedbackButton").nth(0).click()  # 👍
        wait_for_app(page, 90_000, network_idle=False)
        bad = ask(page, BAD, network_idle=False)
        expect(bad).to_contain_text("28")
        bad.get_by_test_id("stFeedbackButton").nth(1).click()  # 👎
        wait_for_app(page, 90_000, network_idle=False)
        bad = page.get_by_test_id("stChatMessage").last
        bad.get_by_role("button", name="Комментарий к оценке").click()
        page.get_by_label("Что в ответе верно или неверно?").fill(COMMENT)
        page.get_by_role("button", name="Сохранить отзыв").click()
        wait_for_app(page, 90_000, network_idle=False)
        expect(page.get_by_text("Спасибо, отзыв сохранён.")).to_be_visible(timeout=30_000)

        ratings = {r.question: r for r in _stored(app)}
        assert set(ratings) == {GOOD, BAD}
        assert ratings[GOOD].value == UP and ratings[GOOD].comment == ""
        assert ratings[BAD].value == DOWN and ratings[BAD].comment == COMMENT
        assert all(r.provider == "offline" and r.sources for r in ratings.values())
        assert ratings[BAD].sources[0].filename == "spravochnik.txt"

        # The member: no admin page, no «Отзывы».
        page.goto(f"{app.url}/admin")
        wait_for_app(page, 90_000, network_idle=False)
        expect(page.get_by_text("Эта страница доступна только администраторам.")).to_be_visible()
        expect(page.get_by_role("heading", name="Отзывы")).to_have_count(0)
        expect(page.get_by_text(COMMENT)).to_have_count(0)
        member.close()

        admin = b.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        admin.set_default_timeout(90_000)
        page = admin.new_page()
        _sign_in(page, app.url, "boss")
        page.goto(f"{app.url}/admin")
        wait_for_app(page, 90_000, network_idle=False)
        expect(page.get_by_role("heading", name="Отзывы")).to_be_visible()
        expect(page.get_by_text("Найдено отзывов: 2")).to_be_visible()
        expect(page.get_by_text(f"Комментарий: {COMMENT}")).to_be_visible()
        expect(page.get_by_text(GOOD, exact=True)).to_be_visible()
        expect(page.get_by_text(BAD, exact=True)).to_be_visible()
        with page.expect_download() as download:
            page.get_by_role("button", name="Скачать CSV").click()
        text = Path(download.value.path()).read_text(encoding="utf-8-sig")
        rows = {row["question"]: row for row in csv.DictReader(io.StringIO(text))}
        assert set(rows) == {GOOD, BAD}
        assert rows[GOOD]["rating"] == "👍" and rows[BAD]["rating"] == "👎"
        assert rows[BAD]["comment"] == COMMENT and rows[BAD]["user"] == "alice"
        assert "spravochnik.txt" in rows[BAD]["sources"] and rows[BAD]["model"]
        admin.close()


def test_a_search_result_opens_its_chat_scrolled_to_the_message(app: AppServer) -> None:
    # Two stored chats of alice: a long one whose first answer mentions lunch, and a newer one.
    with _environment({**backend_overrides(Path(app.data_dir)), "RAG_AUTH": "password"}):
        lib = open_library(Settings(_env_file=None, RAG_DATA_DIR=app.data_dir), recover=False)  # type: ignore[call-arg]
        alice = lib.users.by_name("alice")
        assert alice is not None
        long_chat = lib.chats.create(title="Длинный чат", owner_id=alice.id)
        lib.chats.add_message(long_chat.id, "user", "Когда у нас перерыв?")
        first = lib.chats.add_message(long_chat.id, "assistant", "Перерыв на обед — с 13:00 до 14:00.")
        for k in range(10):
            lib.chats.add_message(long_chat.id, "user", f"Вопрос номер {k} про склад?")
            lib.chats.add_message(
                long_chat.id, "assistant", f"Ответ номер {k}: склад открыт.\n\nПодробности {k}."
            )
        newer = lib.chats.create(title="Новее", owner_id=alice.id)
        lib.chats.add_message(newer.id, "user", "Сколько дней отпуска?")
        lib.engine.dispose()
    with browser() as b:
        context = b.new_context(viewport={"width": 1280, "height": 700})
        context.set_default_timeout(90_000)
        page = context.new_page()
        _sign_in(page, app.url, "alice")

        # «обеды» is an inflected form of the answer's «обед».
        page.get_by_test_id("stSidebar").get_by_placeholder("Слова из вопросов и ответов").fill("обеды")
        page.keyboard.press("Enter")
        wait_for_app(page, 90_000, network_idle=False)
        hit = page.get_by_test_id("stSidebar").get_by_role("button").filter(has_text="Длинный чат")
        expect(hit).to_have_count(1)
        expect(hit).to_contain_text("Перерыв на обед")
        hit.click()
        wait_for_app(page, 90_000, network_idle=False)
        expect(page.get_by_test_id("stChatMessage")).to_have_count(22)
        marked = page.get_by_text("Найдено поиском")
        expect(marked).to_have_count(1)
        # The marked message is the answer found, and the page was scrolled to it.
        expect(page.locator(f".st-key-msg_{first.id}")).to_contain_text("Найдено поиском")
        expect(marked).to_be_in_viewport(timeout=30_000)
        context.close()
