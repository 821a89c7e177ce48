"""Session-state helpers: which chat is open, and the sidebar's generation settings."""

from __future__ import annotations

from collections import Counter
from typing import Any

import streamlit as st

from rag.library import Library
from storage import Chat

DEFAULTS: dict[str, Any] = {
    "provider": "offline",
    "model": None,
    "temperature": 0.3,
    "max_tokens": 1024,
    "system_prompt": "",
    "use_documents": True,
}


def select_chat(chat_id: str | None) -> None:
    """Open a chat (None: a new, not yet saved one); the URL remembers it across reloads."""
    st.session_state["chat_id"] = chat_id
    st.session_state["chat_chosen"] = True
    if chat_id:
        st.query_params["chat"] = chat_id
    elif "chat" in st.query_params:
        del st.query_params["chat"]


def current_chat(library: Library, chats: list[Chat]) -> Chat | None:
    """The open chat: chosen in this session, named in the URL, or the most recent one."""
    by_id = {c.id: c for c in chats}
    if st.session_state.get("chat_chosen"):
        return by_id.get(st.session_state.get("chat_id") or "")
    wanted = st.query_params.get("chat")
    chat = by_id.get(wanted or "") or (chats[0] if chats else None)
    st.session_state["chat_chosen"] = True
    st.session_state["chat_id"] = chat.id if chat else None
    if chat is not None:
        load_chat_settings(chat)
    return chat


def load_chat_settings(chat: Chat) -> None:
    """Put a chat's saved generation settings into the sidebar widgets."""
    st.session_state["provider"] = chat.provider or "offline"
    st.session_state["model"] = chat.model or None
    st.session_state["temperature"] = min(1.0, max(0.0, chat.temperature))
    st.session_state["max_tokens"] = min(4096, max(64, chat.max_tokens))
    st.session_state["system_prompt"] = chat.system_prompt
    st.session_state["use_documents"] = chat.use_documents
    st.session_state["chat_assistant"] = chat.assistant_id or ""  # ui.lab.CHAT_ASSISTANT


def chat_labels(chats: list[Chat]) -> dict[str, str]:
    """Each chat's title in the list, numbered by age where several share one.

    The list's selection is kept by its label: with two chats of one title, the one asked in moved
    to the top, the list kept the selected label's first place, and the next question went to the
    other chat. Numbered («Когда обед? · 2»), every label is one chat's, whatever the order.
    """
    counts = Counter(c.title for c in chats)
    seen: Counter[str] = Counter()
    labels: dict[str, str] = {}
    for c in sorted(chats, key=lambda c: (c.created_at, c.id)):
        seen[c.title] += 1
        labels[c.id] = f"{c.title} · {seen[c.title]}" if counts[c.title] > 1 else c.title
    return labels
