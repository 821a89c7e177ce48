"""Reusable renderers: messages with sources, the upload panel, byte sizes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import streamlit as st

from rag.extract import SUPPORTED_EXTENSIONS
from rag.library import IngestResult, Library
from storage import Message

log = logging.getLogger(__name__)

UPLOAD_TYPES = [e.lstrip(".") for e in SUPPORTED_EXTENSIONS]


def human_size(n: int | float) -> str:
    """Bytes as a short Russian string."""
    size = float(n)
    for unit in ("Б", "КБ", "МБ", "ГБ"):
        if size < 1024 or unit == "ГБ":
            return f"{size:.0f} {unit}" if unit == "Б" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} ГБ"


def source_label(src: dict[str, Any]) -> str:
    """``[n] file, стр. p · OCR · score`` for a stored source."""
    page = f", стр. {src['page']}" if src.get("page") else ""
    ocr = " · распознано (OCR)" if src.get("ocr") else ""
    score = float(src.get("score", 0))
    return f"[{src.get('n', '?')}] {src.get('file', '?')}{page}{ocr} · релевантность {score:.2f}"


def render_sources(sources: list[dict[str, Any]]) -> None:
    """An expander listing the fragments an answer was built from."""
    if not sources:
        return
    with st.expander(f"Источники ({len(sources)})"):
        for src in sources:
            st.markdown(f"**{_escape_md(source_label(src))}**")
            # Fragments are shown as plain text: document content is never rendered as markup.
            st.text(str(src.get("text", "")))


def render_message(msg: Message) -> None:
    """One stored message in the feed."""
    role = "user" if msg.role == "user" else "assistant"
    with st.chat_message(role):
        if msg.content:
            st.markdown(msg.content)
        if msg.error:
            st.error(msg.error)
        if role == "assistant":
            render_sources(msg.sources or [])
            meta = _meta(msg)
            if meta:
                st.caption(meta)


def _meta(msg: Message) -> str:
    parts = []
    if msg.model:
        parts.append(f"{msg.provider or ''} · {msg.model}".strip(" ·"))
    if msg.latency_ms is not None:
        parts.append(f"{msg.latency_ms / 1000:.1f} с")
    if msg.completion_tokens:
        parts.append(f"токены: {msg.prompt_tokens or 0} → {msg.completion_tokens}")
    return " · ".join(parts)


def _escape_md(text: str) -> str:
    for ch in "\\`*_[]<>#|":
        text = text.replace(ch, "\\" + ch)
    return text


def progress_to(bar: Any) -> Callable[[float, str], None]:
    """A library progress callback that drives an ``st.progress`` bar."""

    def update(fraction: float, text: str) -> None:
        bar.progress(min(1.0, max(0.0, fraction)), text=text)

    return update


def upload_panel(library: Library, container: Any, key: str = "uploads") -> None:
    """File uploader that indexes new files with a progress bar and keeps the outcome visible."""
    counter_key = f"{key}_counter"
    results_key = f"{key}_results"
    st.session_state.setdefault(counter_key, 0)
    files = container.file_uploader(
        "Загрузить документы",
        type=UPLOAD_TYPES,
        accept_multiple_files=True,
        key=f"{key}_{st.session_state[counter_key]}",
        help="TXT и Markdown в любой кодировке (UTF-8, UTF-16, cp1251, KOI8-R, cp866) и PDF с текстом.",
    )
    if files:
        results = ingest_files(library, [(f.name, f.getvalue()) for f in files], container)
        st.session_state[results_key] = [(r.status, r.message or r.filename) for r in results]
        # A new uploader key empties the widget, so the same files are not indexed again.
        st.session_state[counter_key] += 1
        st.rerun()
    for status, message in st.session_state.get(results_key, []):
        if status == "indexed":
            container.success(f"Проиндексирован: {message}", icon=":material/check_circle:")
        elif status == "duplicate":
            container.info(message, icon=":material/info:")
        else:
            container.error(message, icon=":material/error:")


def ingest_files(library: Library, files: list[tuple[str, bytes]], container: Any) -> list[IngestResult]:
    """Index files one by one with an overall progress bar; a failure never stops the batch."""
    bar = container.progress(0.0, text="Индексация…")
    results: list[IngestResult] = []
    total = len(files)
    for i, (name, data) in enumerate(files):

        def progress(fraction: float, text: str, i: int = i) -> None:
            bar.progress(min(1.0, (i + fraction) / total), text=f"{i + 1}/{total}: {text}")

        try:
            results.append(library.ingest(name, data, progress))
        except Exception:  # the library reports bad files itself; this is a last resort
            log.exception("ingest crashed for %s", name)
            results.append(
                IngestResult(name, "failed", message=f"«{name}»: внутренняя ошибка при индексации.")
            )
    bar.progress(1.0, text="Готово")
    return results
