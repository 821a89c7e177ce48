"""Messages of a chat and the sources under an answer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

from storage import Message, Source
from ui.markup import answer_markdown, citation_links_in, literal

# Answers of this provider are sentences quoted from documents: shown exactly as written.
VERBATIM_PROVIDER = "offline"
# The source view at /source?chunk=…, never listed in the menu; one object for the navigation
# (streamlit_app.py) and the links, by absolute path: a page script run alone links to it too.
SOURCE_PATH = "source"
SOURCE_PAGE = st.Page(
    Path(__file__).resolve().parents[1] / "app_pages" / "source.py",
    title="Источник",
    url_path=SOURCE_PATH,
    visibility="hidden",
)


def source_place(src: Source) -> str:
    """``[n] file · п. 2.1 · стр. 1``: where a source stands."""
    parts = [f"[{src.n}] {src.filename}"]
    if src.anchor:
        parts.append(src.anchor)
    if src.page:
        parts.append(f"стр. {src.page}")
    return " · ".join(parts)


def source_label(src: Source) -> str:
    """``[n] file · п. 2.1 · стр. p · OCR · score`` for a source."""
    ocr = " · распознано (OCR)" if src.ocr else ""
    return f"{source_place(src)}{ocr} · релевантность {src.score:.2f}"


def _query(src: Source, chat_id: str | None) -> dict[str, str]:
    return {"chunk": src.chunk_id, **({"chat": chat_id} if chat_id else {})}


def citation_addresses(sources: list[Source], chat_id: str | None) -> dict[int, str]:
    """The view's address for each cited number, relative to the page (a base path is kept)."""
    return {src.n: f"{SOURCE_PATH}?{urlencode(_query(src, chat_id))}" for src in sources}


def source_links(sources: list[Source], chat_id: str | None) -> None:
    """One link per source to its view, in this tab: «[1] dogovor.txt · п. 2.1 · стр. 1»."""
    for src in sources:
        label = literal(source_place(src))
        st.page_link(
            SOURCE_PAGE, label=label, icon=":material/find_in_page:", query_params=_query(src, chat_id)
        )


def render_sources(sources: list[Source], chat_id: str | None = None) -> None:
    """Links to the fragments an answer was built from, and an expander with their texts."""
    if not sources:
        return
    source_links(sources, chat_id)
    with st.expander(f"Источники ({len(sources)})"):
        for src in sources:
            st.markdown(f"**{literal(source_label(src))}**")
            # Fragments are shown as plain text: document content is never rendered as markup.
            st.text(src.text)


def render_message(
    msg: Message, found: bool = False, footer: Callable[[Message], None] | None = None
) -> None:
    """One stored message in the feed; ``found`` marks the one a chat search opened, ``footer``
    draws under an answer (its rating)."""
    role = "user" if msg.role == "user" else "assistant"
    # Keyed by the message id, so a search result can scroll to it (ui.chat_search).
    with st.container(key=f"msg_{msg.id}"), st.chat_message(role):
        if found:
            st.caption(":material/search: Найдено поиском")
        if msg.content:
            # The user's words are shown as typed; an answer keeps its formatting, nothing live.
            verbatim = role == "user" or msg.provider == VERBATIM_PROVIDER
            # The answer's [n] open their sources in this tab, as the links under it do.
            links = citation_addresses(msg.sources or [], msg.chat_id) if role == "assistant" else None
            body = answer_markdown(msg.content, verbatim=verbatim, links=links)
            st.markdown(body, unsafe_allow_html=citation_links_in(body))
        if msg.error:
            st.error(literal(msg.error))
        if role == "assistant":
            render_sources(msg.sources or [], msg.chat_id)
            meta = _meta(msg)
            if meta:
                st.caption(literal(meta))
            if footer is not None:
                footer(msg)


def _meta(msg: Message) -> str:
    parts = []
    if msg.model:
        parts.append(f"{msg.provider or ''} · {msg.model}".strip(" ·"))
    if msg.latency_ms is not None:
        parts.append(f"{msg.latency_ms / 1000:.1f} с")
    if msg.completion_tokens:
        parts.append(f"токены: {msg.prompt_tokens or 0} → {msg.completion_tokens}")
    return " · ".join(parts)
