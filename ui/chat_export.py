"""The chat's download buttons: Markdown and DOCX, made only when clicked (rag.chats.export)."""

from __future__ import annotations

from functools import partial
from typing import Any

import streamlit as st

from rag.chats.export import MEDIA_TYPES, export_chat, export_name
from storage import Chat
from ui.resources import get_chat_service

LABELS = {"md": "Markdown", "docx": "Word (DOCX)"}


def export_buttons(container: Any, chat: Chat, user: Any) -> None:
    """A popover with one download button per format; the file is built (and access checked) on click."""
    with container.popover("Экспорт", icon=":material/download:", width="stretch"):
        for fmt, label in LABELS.items():
            st.download_button(
                label,
                # Deferred: built from the database only when clicked, never with every rerun.
                data=partial(export_chat, get_chat_service(), chat.id, fmt, user),
                file_name=export_name(chat, fmt),
                mime=MEDIA_TYPES[fmt],
                on_click="ignore",
                key=f"export_{fmt}",
                width="stretch",
            )
