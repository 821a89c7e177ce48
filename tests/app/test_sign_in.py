"""Who gets in, and what they see: the sign-in modes through the whole app (AppTest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from rag.identity.auth import BAD_CREDENTIALS, AuthService, session_secret
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


# -- issue 18 and 24: ways in -------------------------------------------------------------------

LONG = "x" * 300


def _signed_in_app(name: str, password: str, url: str | None = None) -> AppTest:
    at = make_app()
    if url is not None:
        at.context["url"] = url
    at.run()
    at = _submit(at, name, password)
    assert not at.exception and at.chat_input
    return at


def _text_input(at: AppTest, label: str) -> Any:
    return next(t for t in at.text_input if t.label == label)


def _button(at: AppTest, label: str) -> Any:
    return next(b for b in at.button if b.label == label)


def test_the_first_run_screen_never_returns_once_the_library_had_an_admin(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, child_env: dict[str, str]
) -> None:
    monkeypatch.setenv("RAG_AUTH", "password")
    auth = _auth(data_dir)
    boss = auth.create_first_admin("boss", "boss-password")
    # The operator disables the only admin from the command line (issue 18's reproduction).
    res = subprocess.run(
        [sys.executable, "-m", "rag", "users", "disable", "boss"],
        env={**child_env, "RAG_AUTH": "password", "RAG_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2 and "users add" in res.stderr, res.stdout + res.stderr
    assert auth.users.get(boss.id).active
    at = make_app().run()
    assert not at.exception and at.title[0].value == "Вход"
    # Whatever path takes the last admin away (SQL by hand, an older release), no visitor gets
    # to create a new one: repairing that is the operator's job, through the CLI.
    auth.users.update(boss.id, active=False)
    at = make_app().run()
    assert not at.exception and at.title[0].value == "Вход"
    assert not at.chat_input


def test_the_last_admin_cannot_demote_themselves_on_the_page(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = _auth(data_dir)
    auth.access.local_user()  # the password-less admin an earlier RAG_AUTH=none left behind
    monkeypatch.setenv("RAG_AUTH", "password")
    boss = auth.create_first_admin("boss", "boss-password")
    at = make_app("app_pages/admin.py")
    at.session_state["rag_user_id"] = boss.id
    at.run()
    demote = [b for b in at.button if "участник" in b.label.lower() or "лишить" in b.label.lower()]
    assert demote, [b.label for b in at.button]
    for button in demote:
        at = button.click().run()
    assert not at.exception
    assert auth.users.get(boss.id).role == Role.ADMIN
    assert any("последнего администратора" in e.value for e in at.error)


def test_a_password_change_ends_the_other_open_tab(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_AUTH", "password")
    auth = _auth(data_dir)
    boss = auth.create_first_admin("boss", "boss-password")
    auth.add_user(boss, "bob", Role.MEMBER, "bob-password")
    laptop, phone = _signed_in_app("bob", "bob-password"), _signed_in_app("bob", "bob-password")
    # The fields take no more than the sign-in field does.
    assert {_text_input(laptop, label).max_chars for label in ("Текущий пароль", "Новый пароль")} == {256}
    _text_input(laptop, "Текущий пароль").set_value("bob-password")
    _text_input(laptop, "Новый пароль").set_value("bob-new-password")
    _text_input(laptop, "Новый пароль ещё раз").set_value("bob-new-password")
    laptop = _button(laptop, "Сменить").click().run()
    assert not laptop.exception and laptop.chat_input  # this tab goes on
    phone.run()  # the tab left open on another device: its next rerun ends it
    assert not phone.exception and not phone.chat_input
    assert phone.title[0].value == "Вход"


def test_sign_out_is_clean_and_ends_the_users_other_sessions(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_AUTH", "password")
    auth = _auth(data_dir)
    boss = auth.create_first_admin("boss", "boss-password")
    bob = auth.add_user(boss, "bob", Role.MEMBER, "bob-password")
    other_device = auth.issue_token(bob)  # a cookie another browser keeps
    at = _signed_in_app("bob", "bob-password")
    at = _button(at, "Выйти").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Вход" and not at.chat_input
    assert auth.user_from_token(other_device) is None  # revoked on the server


def test_the_session_cookie_is_secure_over_https(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_AUTH", "password")
    auth = _auth(data_dir)
    auth.create_first_admin("boss", "boss-password")

    def cookie_options(url: str) -> dict[str, Any]:
        at = _signed_in_app("boss", "boss-password", url=url)
        for element in at.get("component_instance"):
            args = json.loads(element.proto.json_args)
            if args.get("method") == "set":
                options: dict[str, Any] = args["options"]
                return options
        raise AssertionError("no cookie was set")

    assert cookie_options("https://rag.example.ru/").get("secure") is True
    assert not cookie_options("http://localhost:8501/").get("secure")
