"""The admin page's user management: add, deactivate, reset a password, change a role, clear chats.

Every action goes through ``rag.identity.auth.AuthService``, which checks the acting admin again and
refuses to leave the app without an active admin.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from rag import RagError
from storage.models import Role, User
from ui.markup import literal, plain
from ui.pending import pending_section
from ui.resources import get_auth_service, get_chat_service, get_library, get_settings

ROLE_RU = {Role.ADMIN: "администратор", Role.MEMBER: "участник"}


def users_section(me: User) -> None:
    """Render the users table and the forms that change users (admins only)."""
    settings = get_settings()
    library = get_library()
    auth = get_auth_service()
    pending_section(me)  # accounts waiting for approval (ui/pending.py)
    st.subheader("Пользователи")
    if settings.auth_mode == "none":
        st.caption(
            "Вход выключен (RAG_AUTH=none): работает один локальный администратор. "
            "Включите RAG_AUTH=password или oidc, чтобы пользоваться приложением командой."
        )
    users = library.users.list_all()
    st.dataframe(
        pd.DataFrame(
            {
                "Пользователь": [u.name for u in users],
                "E-mail": [u.email or "" for u in users],
                "Роль": [ROLE_RU[u.role] for u in users],
                "Активен": ["да" if u.active else "нет" for u in users],
            }
        ),
        hide_index=True,
        width="stretch",
    )
    if notice := st.session_state.pop("users_notice", None):
        st.success(literal(notice))
    if settings.auth_mode == "password":
        with st.expander("Добавить пользователя"), st.form("add_user", clear_on_submit=True):
            name = st.text_input("Имя пользователя", max_chars=64)
            password = st.text_input("Пароль", type="password", max_chars=256)
            admin = st.checkbox("Администратор")
            if st.form_submit_button("Добавить"):
                role = Role.ADMIN if admin else Role.MEMBER
                _act(lambda: auth.add_user(me, name, role, password), f"Пользователь «{name}» добавлен.")
    if not users:
        return
    by_id = {u.id: u for u in users}
    picked = st.selectbox(
        # Options are plain text: escapes would show there as backslashes.
        "Пользователь",
        list(by_id),
        format_func=lambda i: plain(by_id[i].name),
        key="admin_user",
    )
    user = by_id[picked]
    cols = st.columns(3)
    if user.active:
        if cols[0].button("Отключить", key="user_disable", disabled=user.id == me.id):
            _act(lambda: auth.set_active(me, user.id, False), f"«{user.name}» отключён.")
    elif cols[0].button("Включить", key="user_enable"):
        _act(lambda: auth.set_active(me, user.id, True), f"«{user.name}» снова может входить.")
    other = Role.MEMBER if user.role == Role.ADMIN else Role.ADMIN
    if cols[1].button(f"Сделать: {ROLE_RU[other]}", key="user_role"):
        _act(lambda: auth.set_role(me, user.id, other), f"«{user.name}»: теперь {ROLE_RU[other]}.")
    if cols[2].button("Удалить чаты пользователя", key="user_chats"):
        try:
            n = get_chat_service().clear_chats_of(user.id, me)
        except RagError as exc:
            st.error(literal(str(exc)))
        else:
            st.session_state["users_notice"] = f"Удалено чатов пользователя «{user.name}»: {n}."
            st.rerun()
    if settings.auth_mode == "password":
        with st.form("reset_password", clear_on_submit=True):
            # A widget label is Markdown: the name is someone's text, shown as text.
            new = st.text_input(f"Новый пароль для «{literal(user.name)}»", type="password", max_chars=256)
            if st.form_submit_button("Сбросить пароль"):
                _act(lambda: auth.reset_password(me, user.id, new), f"Пароль «{user.name}» сброшен.")


def _act(action: Callable[[], object], done: str) -> None:
    try:
        action()
    except RagError as exc:
        st.error(literal(str(exc)))
    else:
        st.session_state["users_notice"] = done
        st.rerun()
