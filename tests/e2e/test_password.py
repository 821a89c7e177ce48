"""RAG_AUTH=password in a real browser: the first-run screen, a session that survives a reload
(the signed cookie), sign-out, and a member who sees neither the admin page nor another's file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from rag.identity.auth import AuthService, session_secret
from rag.library import open_library
from settings import Settings
from storage.models import Role
from tests.e2e.harness import AppServer, browser, running_app, wait_for_app

SECRET = "Служебная записка: кодовое слово проекта — «Белуга», бюджет 12 миллионов рублей."


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    root = tmp_path_factory.mktemp("password")
    with running_app(root / "data", root / "app.log", env={"RAG_AUTH": "password"}) as server:
        yield server


def _fill(page: Any, labels: list[tuple[str, str]], button: str) -> None:
    for label, value in labels:
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name=button).click()
    wait_for_app(page)


def _signed_in_as(page: Any, name: str) -> None:
    expect(page.get_by_test_id("stSidebar").get_by_text(f"Вы вошли как {name}", exact=False)).to_be_visible(
        timeout=30_000
    )


def test_first_run_reload_sign_out_and_a_member(app: AppServer) -> None:
    with browser() as b:
        context = b.new_context()
        page = context.new_page()
        page.goto(app.url)
        wait_for_app(page)
        expect(page.get_by_role("heading", name="Первый запуск")).to_be_visible(timeout=20_000)
        _fill(
            page,
            [("Имя пользователя", "boss"), ("Пароль", "boss-password"), ("Пароль ещё раз", "boss-password")],
            "Создать администратора",
        )
        _signed_in_as(page, "boss")
        expect(page.get_by_role("link", name="Администрирование")).to_be_visible(timeout=20_000)

        # A reload is a new Streamlit session: only the signed cookie can keep boss signed in.
        # The cookie component runs in the browser after the render: wait for it (a busy machine
        # took longer than a fixed 1.5 s).
        for _ in range(60):
            if any(c["name"] == "rag_session" for c in context.cookies()):
                break
            page.wait_for_timeout(250)
        assert any(c["name"] == "rag_session" for c in context.cookies())
        page.reload()
        wait_for_app(page)
        _signed_in_as(page, "boss")

        expect(page.get_by_role("link", name="Администрирование")).to_be_visible(timeout=20_000)
        page.get_by_role("button", name="Выйти").click()
        wait_for_app(page)
        expect(page.get_by_role("heading", name="Вход")).to_be_visible(timeout=20_000)
        # Signing out of a session the cookie restored raises nothing (it once failed with
        # KeyError 'rag_session' and flashed «Внутренняя ошибка страницы»), and the admin's
        # menu does not stay behind on the sign-in screen.
        expect(page.get_by_role("link", name="Администрирование")).to_have_count(0)
        page.wait_for_timeout(1500)
        assert "page failed" not in app.log_path.read_text(encoding="utf-8", errors="replace")
        page.reload()
        wait_for_app(page)
        expect(page.get_by_role("heading", name="Вход")).to_be_visible(timeout=20_000)  # the cookie is gone

        # Boss's private file, and a member bob (made through the service, as the admin page does).
        settings = Settings(_env_file=None, RAG_DATA_DIR=app.data_dir, RAG_AUTH="password")  # type: ignore[call-arg]
        lib = open_library(settings, recover=False)
        auth = AuthService(lib.users, lib.access, session_secret(settings))
        boss = lib.users.by_name("boss")
        assert boss is not None
        auth.add_user(boss, "bob", Role.MEMBER, "bob-password")
        assert lib.ingest("zapiska.txt", SECRET.encode(), user=boss).status == "indexed"
        lib.engine.dispose()

        _fill(page, [("Имя пользователя", "bob"), ("Пароль", "wrong-password")], "Войти")
        expect(page.get_by_text("Неверное имя пользователя или пароль.")).to_be_visible(timeout=20_000)
        _fill(page, [("Имя пользователя", "bob"), ("Пароль", "bob-password")], "Войти")
        _signed_in_as(page, "bob")
        expect(page.get_by_role("link", name="Администрирование")).to_have_count(0)
        # Opened by address, a new session: bob is still signed in through his cookie (the click
        # on the menu link could land in the rerun the cookie component triggers right after).
        page.wait_for_timeout(1500)
        page.goto(f"{app.url}/documents")
        wait_for_app(page)
        _signed_in_as(page, "bob")
        expect(page.get_by_text("Документов пока нет.")).to_be_visible(timeout=20_000)
        expect(page.get_by_text("zapiska.txt")).to_have_count(0)
        page.goto(f"{app.url}/admin")
        wait_for_app(page)
        expect(page.get_by_text("Эта страница доступна только администраторам.")).to_be_visible(
            timeout=20_000
        )
        expect(page.get_by_role("button", name="Очистить все чаты")).to_have_count(0)
        context.close()


def test_data_dir_is_where_the_app_keeps_its_secret(app: AppServer) -> None:
    # The cookie's signing key was made once, private to the app's user.
    key = Path(app.data_dir) / "secret_key"
    assert key.exists() and oct(key.stat().st_mode & 0o777) == "0o600"
