"""The admin page's accounts that wait for approval (a first OIDC sign-in under RAG_OIDC_NEW_USERS=pending).

Approving and rejecting go through ``rag.identity.auth.AuthService``, which checks again that the
acting user is an admin now.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from rag import RagError
from storage.models import User
from ui.markup import literal
from ui.resources import get_auth_service, get_settings

_NOTICE = "pending_notice"


def pending_section(me: User) -> None:
    """List the waiting accounts with «Одобрить» and «Отклонить» (nothing when none wait and none can)."""
    settings = get_settings()
    auth = get_auth_service()
    try:
        waiting = auth.pending_users(me)
    except RagError as exc:
        st.error(literal(str(exc)))
        return
    expected = settings.auth_mode == "oidc" and settings.oidc_new_users == "pending"
    notice = st.session_state.pop(_NOTICE, None)
    if not waiting and not expected and not notice:
        return
    st.subheader("Ждут одобрения")
    if notice:
        st.success(literal(notice))
    if not waiting:
        st.caption("Новых учётных записей, ждущих одобрения, нет.")
        return
    st.caption(
        "Эти люди вошли через провайдера впервые (RAG_OIDC_NEW_USERS=pending). Одобренный получает "
        "права участника; отклонённый остаётся отключённым и не сможет войти."
    )
    for user in waiting:
        left, approve, reject = st.columns([4, 1, 1], vertical_alignment="center")
        when = user.created_at.strftime("%d.%m.%Y %H:%M UTC")  # stored in UTC
        left.markdown(f"{literal(user.email or user.name)} · {when}")
        label = user.email or user.name
        if approve.button("Одобрить", key=f"pending_approve_{user.id}", type="primary"):
            _settle(auth.approve_user, me, user, f"«{label}» одобрен и может входить.")
        if reject.button("Отклонить", key=f"pending_reject_{user.id}"):
            _settle(auth.reject_user, me, user, f"«{label}» отклонён: учётная запись отключена.")


def _settle(action: Callable[[User, str], User], me: User, user: User, done: str) -> None:
    try:
        action(me, user.id)
    except RagError as exc:
        st.error(literal(str(exc)))
    else:
        st.session_state[_NOTICE] = done
        st.rerun()
