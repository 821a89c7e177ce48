"""Session-state helpers: which chat is open, and the sidebar's generation settings."""

from __future__ import annotations

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
