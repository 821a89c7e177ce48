"""The search box above the chat list: finds the user's chats by words, opens one at the message."""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

from rag.chats.search import ChatHit
from ui.markup import literal
from ui.resources import get_chat_search, get_chat_service
from ui.state import load_chat_settings, select_chat

SEARCH_KEY = "chat_search"
# The message a search result opened: the feed marks it and scrolls to it once.
FOCUS = "focus_message"
RESULTS = 10
_ID = re.compile(r"[0-9a-f]{32}")  # a message id (storage.models.new_id): safe inside the script


def _open(hit: ChatHit, user: Any) -> None:
    select_chat(hit.chat_id)
    load_chat_settings(get_chat_service().chat(hit.chat_id, user))
    st.session_state[FOCUS] = hit.message_id


def chat_search_box(container: Any, user: Any) -> None:
    """A search field and, under it, the matching messages as buttons that open their chats."""
    query = container.text_input(
        "Поиск по чатам",
        key=SEARCH_KEY,
        placeholder="Слова из вопросов и ответов",
        label_visibility="collapsed",
        icon=":material/search:",
    )
    if not query.strip():
        return
    hits = get_chat_search().search(query, user, limit=RESULTS)
    if not hits:
        container.caption("Ничего не найдено.")
        return
    for hit in hits:
        who = "Вопрос" if hit.role == "user" else "Ответ"
        container.button(
            f"**{literal(hit.title)}**  \n{who}: {literal(hit.line)}",
            key=f"chat_hit_{hit.message_id}",
            on_click=_open,
            args=(hit, user),
            width="stretch",
        )


def focus_marker(message_id: str) -> bool:
    """Whether this message is the one a search opened (shown marked, scrolled to)."""
    return st.session_state.get(FOCUS) == message_id


def scroll_to_focus() -> None:
    """Scroll the page to the message a search opened, once, then forget it."""
    message_id = st.session_state.pop(FOCUS, None)
    if not message_id or not _ID.fullmatch(message_id):
        return
    # The container of each message carries the class st-key-msg_<id> (its key); the script
    # runs in a same-origin frame, so it reaches the page. Nothing here comes from the user.
    # Scrolled again for three seconds: the message may be drawn after this frame loads, and the
    # chat scrolls itself to the bottom as it settles (seen in chromium: the scroll was lost).
    st.iframe(
        "<script>let tries = 0, done = 0; const go = () => {"
        f"const el = window.parent.document.querySelector('.st-key-msg_{message_id}');"
        "if (el) { el.scrollIntoView({block: 'center'}); done++; }"
        "if (done < 12 && ++tries < 60) setTimeout(go, 250); }; go();</script>",
        height=1,
    )
