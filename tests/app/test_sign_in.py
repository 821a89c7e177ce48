"""Who gets in, and what they see: the sign-in modes through the whole app (AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rag.auth import BAD_CREDENTIALS, AuthService, session_secret
from rag.library import open_library
from settings import Settings
from storage.models import Role
from tests.app.conftest import make_app


def _auth(data_dir: Path) -> AuthService:
    settings = Settings(_env_file=None, RAG_DATA_DIR=data_dir, RAG_AUTH="password")  # type: ignore[call-arg]
    lib = open_library(settings, recover=False)
    return AuthService(lib.users, lib.access, session_secret(settings))


def _submit(at: AppTest, name: str, password: str, again: str | None = None) -> AppTest:
    at.text_input[0].set_value(name)
    at.text_input[1].set_value(password)
    if again is not None:
        at.text_input[2].set_value(again)
    return at.button[0].click().run()


def test_the_first_run_screen_creates_the_admin(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_AUTH", "password")
    at = make_app().run()
    assert not at.exception
    assert at.title[0].value == "Первый запуск"
    assert not at.chat_input and not at.sidebar.file_uploader  # nothing of the app yet
    at = _submit(at, "Админ", "short", "short")
    assert any("8" in e.value for e in at.error)  # the password rule, in Russian
    at = _submit(at, "Админ", "верный-пароль-1", "верный-пароль-1")
    assert not at.exception
    assert at.chat_input  # signed in: the chat page
    admin = _auth(data_dir).users.by_name("админ")
    assert admin is not None and admin.role == Role.ADMIN and admin.password_hash != "верный-пароль-1"


def test_sign_in_refuses_without_saying_which_part_was_wrong(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_AUTH", "password")
    auth = _auth(data_dir)
    boss = auth.create_first_admin("boss", "boss-password")
    auth.add_user(boss, "bob", Role.MEMBER, "bob-password")
    at = make_app().run()
    assert at.title[0].value == "Вход" and not at.chat_input
    for name, password in (("nobody", "bob-password"), ("bob", "wrong-password")):
        at = _submit(at, name, password)
        assert [e.value for e in at.error] == [BAD_CREDENTIALS]
        assert not at.chat_input
    at = _submit(at, "bob", "bob-password")
    assert not at.exception and at.chat_input
    assert any("bob" in c.value for c in at.sidebar.caption)


def test_a_member_never_gets_the_admin_page(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_AUTH", "password")
    auth = _auth(data_dir)
    boss = auth.create_first_admin("boss", "boss-password")
    bob = auth.add_user(boss, "bob", Role.MEMBER, "bob-password")
    # The page run on its own (a bookmarked /admin, any route) with bob's session.
    at = make_app("app_pages/admin.py")
    at.session_state["rag_user_id"] = bob.id
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Эта страница доступна только администраторам."]
    assert not at.button and not at.metric  # no totals, no clear, no user management
    # The admin gets the page.
    at = make_app("app_pages/admin.py")
    at.session_state["rag_user_id"] = boss.id
    at.run()
    assert not at.exception and not at.error
    assert at.title[0].value == "Администрирование"
    assert any(s.value == "Пользователи" for s in at.subheader)


def test_oidc_mode_shows_only_the_sign_in_button(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_AUTH", "oidc")
    at = make_app().run()
    assert not at.exception
    # Without the [auth] secrets there is nothing to sign in with: the app says what to add.
    assert any("[auth]" in e.value for e in at.error)
    assert not at.chat_input and not at.button
    at = make_app()
    at.secrets["auth"] = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "test-secret",
        "client_id": "rag-test",
        "client_secret": "secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
    }
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Войти"]
    assert not at.chat_input and not at.sidebar.file_uploader


def test_without_sign_in_the_chat_opens(data_dir: Path) -> None:
    at = make_app().run()
    assert not at.exception and not at.error
    assert at.chat_input
