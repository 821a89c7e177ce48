"""Messages of a chat and the sources under an answer."""

from __future__ import annotations

import streamlit as st

from storage import Message, Source
from ui.markup import answer_markdown, literal

# Answers of this provider are sentences quoted from documents: shown exactly as written.
VERBATIM_PROVIDER = "offline"


def source_label(src: Source) -> str:
    """``[n] file, стр. p · OCR · score`` for a source."""
    page = f", стр. {src.page}" if src.page else ""
    ocr = " · распознано (OCR)" if src.ocr else ""
    return f"[{src.n}] {src.filename}{page}{ocr} · релевантность {src.score:.2f}"


def render_sources(sources: list[Source]) -> None:
    """An expander listing the fragments an answer was built from."""
    if not sources:
        return
    with st.expander(f"Источники ({len(sources)})"):
        for src in sources:
            st.markdown(f"**{literal(source_label(src))}**")
            # Fragments are shown as plain text: document content is never rendered as markup.
            st.text(src.text)


def render_message(msg: Message) -> None:
    """One stored message in the feed."""
    role = "user" if msg.role == "user" else "assistant"
    with st.chat_message(role):
        if msg.content:
            # The user's words are shown as typed; an answer keeps its formatting, nothing live.
            verbatim = role == "user" or msg.provider == VERBATIM_PROVIDER
            st.markdown(answer_markdown(msg.content, verbatim=verbatim))
        if msg.error:
            st.error(literal(msg.error))
        if role == "assistant":
            render_sources(msg.sources or [])
            meta = _meta(msg)
            if meta:
                st.caption(literal(meta))


def _meta(msg: Message) -> str:
    parts = []
    if msg.model:
        parts.append(f"{msg.provider or ''} · {msg.model}".strip(" ·"))
    if msg.latency_ms is not None:
        parts.append(f"{msg.latency_ms / 1000:.1f} с")
    if msg.completion_tokens:
        parts.append(f"токены: {msg.prompt_tokens or 0} → {msg.completion_tokens}")
    return " · ".join(parts)
