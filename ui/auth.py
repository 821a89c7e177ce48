"""Who is using this browser session: sign-in screens and the session cookie.

Three modes (``RAG_AUTH``): ``none`` (the local admin, no screen), ``password`` (our own
accounts: a first-run screen, sign-in, a signed cookie that survives a reload) and ``oidc``
(Streamlit's ``st.login`` with the ``[auth]`` secrets). The rules of what a user may do are not
here: the services enforce them (``rag.identity.access``); this module only establishes who asks.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

import streamlit as st

from rag import RagError
from rag.identity.auth import SignInRefused
from rag.identity.oidc import OidcPolicy
from rag.identity.passwords import MAX_PASSWORD_LENGTH
from rag.identity.throttle import client_address
from storage import NotFoundError
from storage.models import User
from ui.markup import literal
from ui.resources import get_auth_service, get_library, get_settings

SESSION_USER = "rag_user_id"
# The user's session version when this session began: a later one (password change, sign-out
# elsewhere, reset, disabling) ends it at its next rerun.
SESSION_VERSION = "rag_session_version"
COOKIE = "rag_session"
COOKIE_DAYS = 14
_PENDING_COOKIE = "rag_cookie_pending"  # a token to hand to the browser, until it confirms
_COOKIE_SETTER = "rag_cookie_set"  # the setter component's key: its value is True once it ran
_DROP_COOKIE = "rag_cookie_drop"
_SIGNED_OUT = "rag_signed_out"


def signed_in_user() -> User | None:
    """The acting user; None when a sign-in screen was rendered instead (the page must stop)."""
    settings = get_settings()
    library = get_library()
    if settings.auth_mode == "none":
        return library.actor(None)
    user = _session_user()
    if user is None:
        user = _oidc_user() if settings.auth_mode == "oidc" else _password_user()
    if user is not None:
        _sync_cookie()
    return user


def current_user() -> User:
    """The user this run acts for (pages call it after ``signed_in_user`` let them run)."""
    user = _session_user() if get_settings().auth_mode != "none" else None
    return user if user is not None else get_library().actor(None)


def _session_user() -> User | None:
    user_id = st.session_state.get(SESSION_USER)
    if not user_id:
        return None
    version = st.session_state.get(SESSION_VERSION)
    if version is None:
        # A session begun by a path that recorded no version (OIDC): from now on it counts.
        try:
            version = get_library().users.get(user_id).session_version
        except NotFoundError:
            version = -1
        st.session_state[SESSION_VERSION] = version
    user = get_auth_service().session_user(user_id, version)
    if user is None:
        # Disabled, signed out elsewhere or its password changed: this rerun ends the session.
        st.session_state.pop(SESSION_USER, None)
        st.session_state.pop(SESSION_VERSION, None)
        return None
    return user


def _begin_session(user: User, remember: bool) -> None:
    st.session_state[SESSION_USER] = user.id
    st.session_state[SESSION_VERSION] = user.session_version
    st.session_state.pop(_SIGNED_OUT, None)
    if remember:
        # The expiry is fixed here: the setter, rendered on every run until it reports back,
        # must keep the same arguments, or the browser would start it afresh each run.
        expires_at = datetime.now(UTC) + timedelta(days=COOKIE_DAYS)
        st.session_state[_PENDING_COOKIE] = (get_auth_service().issue_token(user), expires_at)
    else:
        st.session_state.pop(_PENDING_COOKIE, None)  # an earlier sign-in's, not handed over yet


def sign_out() -> None:
    """End this session and every other of the user, and forget the browser's cookie (a button callback)."""
    user_id = st.session_state.get(SESSION_USER)
    if user_id and get_settings().auth_mode == "password":
        user = get_auth_service().session_user(user_id, st.session_state.get(SESSION_VERSION, -1))
        if user is not None:
            # On the server: the cookie, a copy of it, and tabs open elsewhere all stop working.
            get_auth_service().sign_out(user)
    st.session_state.pop(SESSION_USER, None)
    st.session_state.pop(SESSION_VERSION, None)
    st.session_state.pop(_PENDING_COOKIE, None)  # a cookie not handed over yet is not handed over now
    st.session_state[_DROP_COOKIE] = True
    # The request that opened this session carried the cookie, and st.context keeps showing it:
    # it must not sign the user back in on the next rerun.
    st.session_state[_SIGNED_OUT] = True
    if get_settings().auth_mode == "oidc":
        st.logout()


def _cookie_manager() -> object:
    import extra_streamlit_components as stx

    return stx.CookieManager(key="rag_cookies")


def _sync_cookie() -> None:
    """Hand a pending cookie to the browser, on every run until the browser says it set it.

    The setter runs in an iframe after the render. A rerun that comes first (the cookie
    reader's own report, a click: common with many sessions on a busy server) would drop a
    setter rendered only once, before it ran, and the next reload would sign the user out.
    """
    pending = st.session_state.get(_PENDING_COOKIE)
    if pending:
        token, expires_at = pending
        manager = _cookie_manager()
        manager.set(  # type: ignore[attr-defined]
            COOKIE,
            token,
            expires_at=expires_at,
            same_site="lax",
            secure=_over_https(),
            key=_COOKIE_SETTER,
        )
        if st.session_state.get(_COOKIE_SETTER) is True:  # the component's report: cookie set
            st.session_state.pop(_PENDING_COOKIE, None)


def _client_address() -> str | None:
    """The browser's IP address as the server sees it (None on loopback or when unknown)."""
    remote = st.context.ip_address
    # Behind a proxy this is the proxy's, shared by everyone behind it: RAG_TRUSTED_PROXIES lets
    # its X-Forwarded-For name the browser instead (rag.identity.throttle.client_address).
    forwarded = st.context.headers.get("X-Forwarded-For")
    address = client_address(
        remote if isinstance(remote, str) and remote else None,
        forwarded if isinstance(forwarded, str) else None,
        get_settings().trusted_proxies,
    )
    return address or None


def _over_https() -> bool:
    """Whether the browser reached the app over HTTPS (directly, or through a TLS-ending proxy)."""
    url = st.context.url or ""
    forwarded = str(st.context.headers.get("X-Forwarded-Proto") or "").split(",")[0].strip().lower()
    return url.lower().startswith("https://") or forwarded == "https"


def _password_user() -> User | None:
    auth = get_auth_service()
    if st.session_state.pop(_DROP_COOKIE, False):
        # Signing out: the browser's cookie is deleted before anything reads it again. The
        # component's delete sends the order to the browser, then drops the name from its own
        # copy of the cookies, which a manager made in this run has not read yet (KeyError): the
        # order has gone out by then, so that part is moot.
        with contextlib.suppress(KeyError):
            _cookie_manager().delete(COOKIE, key="rag_cookie_delete")  # type: ignore[attr-defined]
    else:
        token = None if st.session_state.get(_SIGNED_OUT) else st.context.cookies.get(COOKIE)
        if token and not st.session_state.get("rag_cookie_rejected"):
            user = auth.user_from_token(token)
            if user is not None:
                st.session_state[SESSION_USER] = user.id
                st.session_state[SESSION_VERSION] = user.session_version
                return user
            st.session_state["rag_cookie_rejected"] = True  # expired, or its password changed
    if auth.needs_first_admin():
        _first_run_form()
    else:
        _sign_in_form()
    return None


def _first_run_form() -> None:
    st.title("Первый запуск")
    st.write("Создайте учётную запись администратора. Он управляет пользователями и видит все документы.")
    with st.form("first_admin"):
        name = st.text_input("Имя пользователя", max_chars=64)
        password = st.text_input("Пароль", type="password", max_chars=MAX_PASSWORD_LENGTH)
        again = st.text_input("Пароль ещё раз", type="password", max_chars=MAX_PASSWORD_LENGTH)
        submitted = st.form_submit_button("Создать администратора", type="primary")
    if submitted:
        if not name.strip():
            st.error("Укажите имя пользователя.")
        elif password != again:
            st.error("Пароли не совпадают.")
        else:
            try:
                user = get_auth_service().create_first_admin(name, password)
            except RagError as exc:
                st.error(str(exc))
            else:
                _begin_session(user, remember=True)
                st.rerun()


def _sign_in_form() -> None:
    st.title("Вход")
    with st.form("sign_in"):
        name = st.text_input("Имя пользователя", max_chars=64)
        password = st.text_input("Пароль", type="password", max_chars=MAX_PASSWORD_LENGTH)
        remember = st.checkbox("Запомнить на этом устройстве", value=True)
        submitted = st.form_submit_button("Войти", type="primary")
    if submitted:
        try:
            user = get_auth_service().sign_in(name, password, address=_client_address())
        except SignInRefused as exc:
            st.error(str(exc))
        else:
            st.session_state.pop("rag_cookie_rejected", None)
            _begin_session(user, remember)
            st.rerun()


def _oidc_user() -> User | None:
    if "auth" not in st.secrets:
        st.error(
            "RAG_AUTH=oidc: в .streamlit/secrets.toml нет раздела [auth] (redirect_uri, cookie_secret, "
            "client_id, client_secret, server_metadata_url). Добавьте его и перезапустите приложение.",
            icon=":material/lock:",
        )
        return None
    if not st.user.get("is_logged_in", False):
        st.title("Вход")
        st.write("Войдите через учётную запись вашей организации.")
        if st.button("Войти", type="primary"):
            st.login()
        return None
    try:
        # The service reads who this is (issuer and sub) and whether the address is verified.
        user = get_auth_service().oidc_user(st.user, OidcPolicy.from_settings(get_settings()))
    except RagError as exc:
        st.error(literal(str(exc)))  # it quotes the provider's address, which the user may choose
        if st.button("Выйти"):
            st.logout()
        return None
    st.session_state[SESSION_USER] = user.id
    return user


def account_panel(user: User) -> None:
    """The sidebar's account block: who is signed in, sign-out and password change."""
    settings = get_settings()
    sb = st.sidebar
    if settings.auth_mode == "none":
        if not _bound_to_loopback():
            sb.warning(
                "Вход выключен (RAG_AUTH=none), а приложение доступно с других компьютеров: любой, "
                "у кого есть ссылка, видит все документы и чаты. Включите RAG_AUTH=password или oidc.",
                icon=":material/warning:",
            )
        return
    role = "администратор" if user.role.value == "admin" else "участник"
    sb.caption(f"Вы вошли как **{literal(user.email or user.name)}** ({role})")
    sb.button("Выйти", on_click=sign_out, icon=":material/logout:")
    if settings.auth_mode == "password":
        with sb.expander("Сменить пароль"), st.form("change_password", clear_on_submit=True):
            old = st.text_input("Текущий пароль", type="password", max_chars=MAX_PASSWORD_LENGTH)
            new = st.text_input("Новый пароль", type="password", max_chars=MAX_PASSWORD_LENGTH)
            again = st.text_input("Новый пароль ещё раз", type="password", max_chars=MAX_PASSWORD_LENGTH)
            if st.form_submit_button("Сменить"):
                if new != again:
                    st.error("Новые пароли не совпадают.")
                else:
                    try:
                        changed = get_auth_service().change_password(
                            user, old, new, address=_client_address()
                        )
                    except RagError as exc:
                        st.error(str(exc))
                    else:
                        # Other devices' cookies stop working; this one gets a fresh one.
                        _begin_session(changed, remember=True)
                        st.success("Пароль изменён.")


def _bound_to_loopback() -> bool:
    address = str(st.get_option("server.address") or "")
    if not address:
        return False  # Streamlit's default listens on every interface
    if address == "localhost":
        return True
    try:
        return ip_address(address).is_loopback
    except ValueError:
        return False
