"""Sign-in through OpenID Connect (RAG_AUTH=oidc) against a real provider, in a real browser.

The provider is panva's ``oidc-provider`` on Node (tests/e2e/oidc, see ``oidc_provider.py``); the
app signs in with Streamlit's ``st.login()`` (Authlib). Streamlit reads the ``[auth]`` section from
``.streamlit/secrets.toml`` of its working directory (or of the home directory), so the app runs
from a temporary directory holding that file (and a copy of the repository's ``config.toml``),
with the repository on ``PYTHONPATH``: the deployment layout, where the app's own settings
(settings.py, RAG_SECRETS_FILE unset) read the same secrets file.

The browser opens the app at ``http://localhost:PORT``, the host of ``redirect_uri``: Authlib keeps
the sign-in state in a cookie of the host that started the sign-in, and the provider sends the
browser back to the redirect URI's host.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shutil
import sqlite3
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.harness import REPO_ROOT, AppServer, browser, free_port, wait_for_app
from tests.e2e.oidc_provider import ALICE, BOB, CAROL, EVE, MALLORY, TWIN, Provider, run_provider

SHOTS = REPO_ROOT / "artifacts" / "e2e"
ADMIN_BUTTONS = ("Очистить все чаты", "Проверить целостность", "Пересчитать векторы")


def shot(page: Any, name: str) -> None:
    """Keep a full-page screenshot of this step."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"oidc-{name}.png"), full_page=True)


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as r:
        data: dict[str, Any] = json.load(r)
        return data


def pkce_pair() -> tuple[str, str]:
    """A code verifier and its S256 challenge, as Authlib makes them."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(provider: Provider, challenge: str, state: str = "state-1") -> str:
    """The authorization request Streamlit's st.login() sends (see starlette_auth_routes.py)."""
    query = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": provider.redirect_uris[0],
        "scope": "openid email profile",
        "state": state,
        "nonce": "nonce-1",
        "prompt": "select_account",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return f"{provider.issuer}/auth?{urllib.parse.urlencode(query)}"


def fill_login_form(page: Any, email: str, password: str) -> None:
    page.locator('input[name="login"]').fill(email)
    page.locator('input[name="password"]').fill(password)
    page.get_by_role("button", name="Sign in").click()


# ---------------------------------------------------------------- the provider by itself


def test_provider_serves_discovery_and_login_page() -> None:
    redirect = f"http://localhost:{free_port()}/oauth2callback"
    with run_provider([redirect]) as provider, browser() as chromium:
        meta = get_json(provider.metadata_url)
        assert meta["issuer"] == provider.issuer
        assert meta["authorization_endpoint"] == f"{provider.issuer}/auth"
        assert meta["token_endpoint"] == f"{provider.issuer}/token"
        assert meta["jwks_uri"].startswith(provider.issuer)
        assert meta["end_session_endpoint"] == f"{provider.issuer}/session/end"
        # Streamlit switches PKCE to S256 when it is advertised, and always asks for select_account.
        assert "S256" in meta["code_challenge_methods_supported"]
        assert "select_account" in meta["prompt_values_supported"]
        assert {"openid", "email", "profile"} <= set(meta["scopes_supported"])
        assert {"email", "email_verified", "name"} <= set(meta["claims_supported"])

        page = chromium.new_context(locale="ru-RU").new_page()
        _, challenge = pkce_pair()
        page.goto(authorize_url(provider, challenge))
        page.wait_for_url(f"{provider.issuer}/interaction/**")
        expect(page.locator('form input[name="login"]')).to_be_visible()
        expect(page.locator('form input[name="password"][type="password"]')).to_be_visible()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_provider_signs_in_and_puts_email_into_the_id_token() -> None:
    """The whole code flow without the app: the claims st.user shows come from the ID token."""
    redirect = f"http://localhost:{free_port()}/oauth2callback"
    with run_provider([redirect]) as provider, browser() as chromium:
        page = chromium.new_context(locale="ru-RU").new_page()
        landed: list[str] = []

        def callback(route: Any) -> None:
            landed.append(route.request.url)
            route.fulfill(status=200, body="callback", content_type="text/plain")

        page.route(f"{redirect}**", callback)
        verifier, challenge = pkce_pair()
        page.goto(authorize_url(provider, challenge))
        fill_login_form(page, ALICE[0], "wrong-password")
        expect(page.get_by_role("alert")).to_be_visible()
        fill_login_form(page, *ALICE)
        page.wait_for_url(f"{redirect}**")
        params = urllib.parse.parse_qs(urllib.parse.urlsplit(landed[-1]).query)
        assert params["state"] == ["state-1"]
        assert params["iss"] == [provider.issuer]

        form = urllib.parse.urlencode(
            {
                "grant_type": "authorization_code",
                "code": params["code"][0],
                "redirect_uri": redirect,
                "code_verifier": verifier,
            }
        ).encode()
        basic = base64.b64encode(f"{provider.client_id}:{provider.client_secret}".encode()).decode()
        request = urllib.request.Request(
            f"{provider.issuer}/token",
            data=form,
            headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            token = json.load(r)
        payload = token["id_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["iss"] == provider.issuer
        assert claims["aud"] == provider.client_id
        assert claims["nonce"] == "nonce-1"
        assert claims["email"] == ALICE[0]
        assert claims["email_verified"] is True
        assert claims["name"] == "Alice Admin"


# ---------------------------------------------------------------- the app signing in through it


@dataclass
class OidcApp(AppServer):
    """The app run the way a deployment runs it: its own working directory with ``.streamlit/``."""

    @property
    def url(self) -> str:
        """The app's address on the host of the redirect URI."""
        return f"http://localhost:{self.port}"


def toml_str(value: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these values)."""
    return json.dumps(value)


def write_secrets(workdir: Path, provider: Provider, redirect_uri: str) -> None:
    """The ``[auth]`` section st.login() needs: one unnamed ("default") provider."""
    streamlit_dir = workdir / ".streamlit"
    streamlit_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / ".streamlit" / "config.toml", streamlit_dir / "config.toml")
    (streamlit_dir / "secrets.toml").write_text(
        "[auth]\n"
        f"redirect_uri = {toml_str(redirect_uri)}\n"
        f"cookie_secret = {toml_str(secrets.token_hex(32))}\n"
        f"client_id = {toml_str(provider.client_id)}\n"
        f"client_secret = {toml_str(provider.client_secret)}\n"
        f"server_metadata_url = {toml_str(provider.metadata_url)}\n",
        encoding="utf-8",
    )


@dataclass
class Stack:
    app: OidcApp
    provider: Provider
    chromium: Any


@contextmanager
def running_stack(root: Path, env: dict[str, str], chromium: Any) -> Iterator[Stack]:
    """A provider and the app (RAG_AUTH=oidc and ``env``), seen through the module's browser."""
    port = free_port()
    redirect_uri = f"http://localhost:{port}/oauth2callback"
    with run_provider([redirect_uri]) as provider:
        workdir = root / "cwd"
        write_secrets(workdir, provider, redirect_uri)
        app = OidcApp(
            data_dir=root / "data",
            log_path=root / "app.log",
            env={"RAG_AUTH": "oidc", **env},
            port=port,
            workdir=workdir,
        )
        app.start()
        try:
            yield Stack(app=app, provider=provider, chromium=chromium)
        finally:
            app.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One browser for the module (Playwright's sync API allows one at a time)."""
    with browser() as running:
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, chromium: Any) -> Iterator[Stack]:
    """One provider and one app: alice an admin, anyone the provider knows may come in."""
    env = {"RAG_ADMIN_EMAILS": ALICE[0]}
    with running_stack(tmp_path_factory.mktemp("oidc"), env, chromium) as running:
        yield running


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, chromium: Any) -> Iterator[Stack]:
    """An app that admits only verified addresses of example.test, whose newcomers wait for approval."""
    env = {
        "RAG_ADMIN_EMAILS": ALICE[0],
        "RAG_OIDC_ALLOWED_DOMAINS": "example.test",
        "RAG_OIDC_NEW_USERS": "pending",
    }
    with running_stack(tmp_path_factory.mktemp("oidc-strict"), env, chromium) as running:
        yield running


def shown(address: str) -> re.Pattern[str]:
    """An address as the page shows it: a word joiner may follow the «@» (ui.markup.literal)."""
    local, _, domain = address.partition("@")
    return re.compile(f"{re.escape(local)}@\u2060?{re.escape(domain)}")


def user_rows(stack: Stack) -> list[tuple[str, str | None, bool]]:
    """Every account of the app's library: name, e-mail, active."""
    with sqlite3.connect(stack.app.data_dir / "rag.sqlite3") as conn:
        rows = conn.execute('SELECT name, email, active FROM "user" ORDER BY name').fetchall()
    return [(name, email, bool(active)) for name, email, active in rows]


def new_page(stack: Stack) -> Any:
    """A fresh browser context (its own cookies: a separate person) and a page in it."""
    context = stack.chromium.new_context(locale="ru-RU", viewport={"width": 1280, "height": 900})
    return context.new_page()


@contextmanager
def diagnosed(stack: Stack, page: Any, name: str) -> Iterator[None]:
    """On failure: a screenshot, and the ends of the app's and the provider's logs in the report."""
    try:
        yield
    except Exception:
        shot(page, f"{name}-failed")
        print(f"---- app log:\n{stack.app.log()[-6000:]}\n---- provider log:\n{stack.provider.log()[-3000:]}")
        raise


def sign_in_button(page: Any) -> Any:
    return page.get_by_role("button", name="Войти").or_(page.get_by_role("link", name="Войти"))


def open_signed_out(page: Any, stack: Stack) -> None:
    page.goto(stack.app.url)
    wait_for_app(page)
    expect(sign_in_button(page)).to_be_visible(timeout=20_000)


def through_provider(page: Any, stack: Stack, login: str, password: str) -> None:
    """From the signed-out page through the provider's form back to the app."""
    open_signed_out(page, stack)
    sign_in_button(page).click()
    page.wait_for_url(f"{stack.provider.issuer}/interaction/**", timeout=30_000)
    fill_login_form(page, login, password)
    page.wait_for_url(f"{stack.app.url}/**", timeout=30_000)


def sign_in(page: Any, stack: Stack, email: str, password: str) -> None:
    """Sign in through the provider and wait for the app's chat page."""
    through_provider(page, stack, email, password)
    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=120_000)
    wait_for_app(page)


def sign_in_refused(page: Any, stack: Stack, login: str, password: str, reason: str) -> None:
    """Sign in through the provider; the app shows ``reason`` and nothing of the library."""
    through_provider(page, stack, login, password)
    main = page.get_by_test_id("stMain")
    expect(main.get_by_text(reason)).to_be_visible(timeout=120_000)
    wait_for_app(page)
    expect(page.get_by_test_id("stChatInputTextArea")).to_have_count(0)
    expect(page.get_by_role("link", name="Администрирование")).to_have_count(0)


def expect_signed_in_as(page: Any, email: str) -> None:
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text(shown(email))).to_be_visible(timeout=20_000)
    expect(sidebar.get_by_role("button", name="Выйти")).to_be_visible()
    expect(sign_in_button(page)).to_have_count(0)


def test_signed_out_page_shows_only_sign_in(stack: Stack) -> None:
    page = new_page(stack)
    with diagnosed(stack, page, "signed-out"):
        open_signed_out(page, stack)
        shot(page, "10-signed-out")
        expect(page.get_by_test_id("stChatInputTextArea")).to_have_count(0)
        expect(page.get_by_test_id("stFileUploader")).to_have_count(0)
        expect(page.get_by_role("link", name="Администрирование")).to_have_count(0)


def test_admin_signs_in_keeps_session_on_reload_and_signs_out(stack: Stack) -> None:
    page = new_page(stack)
    with diagnosed(stack, page, "alice"):
        sign_in(page, stack, *ALICE)
        shot(page, "20-alice-signed-in")
        expect_signed_in_as(page, ALICE[0])
        admin_link = page.get_by_role("link", name="Администрирование")
        expect(admin_link).to_be_visible()

        admin_link.click()
        page.get_by_role("heading", name="Проиндексированные файлы").wait_for(timeout=60_000)
        wait_for_app(page)
        expect(page.get_by_role("button", name=ADMIN_BUTTONS[0])).to_be_visible()

        # A reload opens a new Streamlit session: the sign-in cookie keeps the user signed in.
        page.reload()
        wait_for_app(page)
        expect_signed_in_as(page, ALICE[0])
        shot(page, "21-alice-after-reload")

        # Sign-out goes through the provider's end_session_endpoint and back to the app.
        page.get_by_test_id("stSidebar").get_by_role("button", name="Выйти").click()
        expect(sign_in_button(page)).to_be_visible(timeout=30_000)
        wait_for_app(page)
        expect(page.get_by_test_id("stChatInputTextArea")).to_have_count(0)
        shot(page, "22-alice-signed-out")
        # Signed out for good: the cookie is gone, a reload shows the sign-in page again.
        page.reload()
        wait_for_app(page)
        expect(sign_in_button(page)).to_be_visible(timeout=20_000)
        expect(page.get_by_text(shown(ALICE[0]))).to_have_count(0)


def test_member_sees_no_admin_page(stack: Stack) -> None:
    page = new_page(stack)
    with diagnosed(stack, page, "bob"):
        sign_in(page, stack, *BOB)
        expect_signed_in_as(page, BOB[0])
        expect(page.get_by_role("link", name="Администрирование")).to_have_count(0)
        shot(page, "30-bob-signed-in")

        page.goto(f"{stack.app.url}/admin")
        wait_for_app(page)
        shot(page, "31-bob-opens-admin")
        main = page.get_by_test_id("stMain")
        message = main.get_by_text(re.compile("администратор", re.IGNORECASE)).first
        expect(message).to_be_visible(timeout=20_000)
        for label in ADMIN_BUTTONS:
            expect(page.get_by_role("button", name=label)).to_have_count(0)
        expect(page.get_by_role("heading", name="Проиндексированные файлы")).to_have_count(0)
        # Still bob, still signed in.
        expect_signed_in_as(page, BOB[0])


# ---------------------------------------------------------------- who the app lets in (issue 18)


def test_an_unverified_address_equal_to_the_admins_gets_no_rights(stack: Stack) -> None:
    """mallory's provider account claims alice's address, unverified: her own member account, not alice's."""
    page = new_page(stack)
    with diagnosed(stack, page, "mallory"):
        sign_in(page, stack, *MALLORY)
        shot(page, "40-mallory-signed-in")
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_text("(участник)")).to_be_visible(timeout=20_000)
        expect(page.get_by_role("link", name="Администрирование")).to_have_count(0)
        page.goto(f"{stack.app.url}/admin")
        wait_for_app(page)
        for label in ADMIN_BUTTONS:
            expect(page.get_by_role("button", name=label)).to_have_count(0)
    accounts = {name: (email, active) for name, email, active in user_rows(stack)}
    # No account holds alice's address for mallory, so alice still gets hers (and admin rights).
    assert ALICE[0] not in accounts or accounts[ALICE[0]] == (ALICE[0], True)
    assert [n for n in accounts if n.startswith(ALICE[0]) and n != ALICE[0]], accounts


def test_a_second_account_with_the_same_address_is_refused(stack: Stack) -> None:
    bob = new_page(stack)
    with diagnosed(stack, bob, "bob-first"):
        sign_in(bob, stack, *BOB)
        expect_signed_in_as(bob, BOB[0])
    before = user_rows(stack)
    page = new_page(stack)
    with diagnosed(stack, page, "twin"):
        sign_in_refused(page, stack, *TWIN, reason="уже принадлежит другой учётной записи")
        shot(page, "41-twin-refused")
    assert user_rows(stack) == before


def test_a_domain_outside_the_list_is_refused(strict: Stack) -> None:
    page = new_page(strict)
    with diagnosed(strict, page, "eve"):
        sign_in_refused(page, strict, *EVE, reason="вход в это приложение не разрешён")
        shot(page, "50-eve-refused")
        page.reload()
        wait_for_app(page)
        expect(page.get_by_test_id("stChatInputTextArea")).to_have_count(0)
    assert [row for row in user_rows(strict) if "elsewhere" in row[0]] == []


def test_an_unverified_address_is_refused_under_an_allow_list(strict: Stack) -> None:
    page = new_page(strict)
    with diagnosed(strict, page, "mallory-strict"):
        sign_in_refused(page, strict, *MALLORY, reason="не подтверждён")
        shot(page, "51-mallory-refused")
    assert [row for row in user_rows(strict) if row[0].startswith(ALICE[0])] == []


def test_a_newcomer_waits_until_an_admin_approves(strict: Stack) -> None:
    carol = new_page(strict)
    with diagnosed(strict, carol, "carol-pending"):
        sign_in_refused(carol, strict, *CAROL, reason="ждёт одобрения администратора")
        shot(carol, "52-carol-waits")
    assert (CAROL[0], CAROL[0], False) in user_rows(strict)

    alice = new_page(strict)
    with diagnosed(strict, alice, "alice-approves"):
        sign_in(alice, strict, *ALICE)
        alice.get_by_role("link", name="Администрирование").click()
        alice.get_by_role("heading", name="Ждут одобрения").wait_for(timeout=60_000)
        wait_for_app(alice)
        expect(alice.get_by_test_id("stMain").get_by_text(shown(CAROL[0])).first).to_be_visible()
        shot(alice, "53-alice-sees-carol")
        alice.get_by_role("button", name="Одобрить").click()
        notice = re.compile(f"«{shown(CAROL[0]).pattern}» одобрен")
        expect(alice.get_by_text(notice)).to_be_visible(timeout=30_000)
        expect(alice.get_by_role("button", name="Одобрить")).to_have_count(0)
    assert (CAROL[0], CAROL[0], True) in user_rows(strict)

    with diagnosed(strict, carol, "carol-approved"):
        carol.reload()
        carol.get_by_test_id("stChatInputTextArea").wait_for(timeout=120_000)
        wait_for_app(carol)
        expect_signed_in_as(carol, CAROL[0])
        shot(carol, "54-carol-approved")
