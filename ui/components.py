"""Reusable renderers: messages with sources, the upload panel, byte sizes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import streamlit as st

from rag.extract import SUPPORTED_EXTENSIONS
from rag.library import Library
from storage import Message
from ui.markup import answer_markdown, literal

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
            st.markdown(f"**{literal(source_label(src))}**")
            # Fragments are shown as plain text: document content is never rendered as markup.
            st.text(str(src.get("text", "")))


def render_message(msg: Message) -> None:
    """One stored message in the feed."""
    role = "user" if msg.role == "user" else "assistant"
    with st.chat_message(role):
        if msg.content:
            # The user's words are shown as typed; an answer keeps its formatting, nothing live.
            st.markdown(literal(msg.content) if role == "user" else answer_markdown(msg.content))
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


def progress_to(bar: Any) -> Callable[[float, str], None]:
    """A library progress callback that drives an ``st.progress`` bar."""

    def update(fraction: float, text: str) -> None:
        bar.progress(min(1.0, max(0.0, fraction)), text=literal(text))

    return update


def upload_panel(library: Library, container: Any, key: str = "uploads") -> None:
    """File uploader that queues files for background indexing and shows their progress."""
    counter_key, jobs_key, results_key = f"{key}_counter", f"{key}_jobs", f"{key}_results"
    st.session_state.setdefault(counter_key, 0)
    widget_key = f"{key}_{st.session_state[counter_key]}"
    container.file_uploader(
        "Загрузить документы",
        type=UPLOAD_TYPES,
        accept_multiple_files=True,
        key=widget_key,
        on_change=_queue_uploads,
        args=(widget_key, counter_key, jobs_key, results_key),
        help=(
            "TXT, Markdown, CSV, JSON (любая распространённая кодировка), PDF (с текстом или скан), "
            "DOCX, ODT, RTF, HTML и изображения (распознавание текста на русском и английском)."
        ),
    )
    with container:
        if st.session_state.get(jobs_key):
            _live_progress(jobs_key, results_key)
        for status, message in st.session_state.get(results_key, []):
            # Messages carry file names, which are the uploader's text, not markup.
            if status == "indexed":
                st.success(f"Проиндексирован: {literal(message)}", icon=":material/check_circle:")
            elif status == "duplicate":
                st.info(literal(message), icon=":material/info:")
            elif status == "warning":
                st.warning(literal(message), icon=":material/warning:")
            else:
                st.error(literal(message), icon=":material/error:")


def _queue_uploads(widget_key: str, counter_key: str, jobs_key: str, results_key: str) -> None:
    # A callback, not code after the widget: callbacks run before the script, so the files are
    # queued even when this run is cut short by another rerun (a question sent right after).
    from ui.resources import get_indexing_queue

    files = st.session_state.get(widget_key) or []
    if not files:
        return
    queue = get_indexing_queue()
    jobs = st.session_state.setdefault(jobs_key, [])
    jobs.extend(queue.submit(f.name, f.getvalue()).id for f in files)
    st.session_state[results_key] = []
    # A new uploader key empties the widget, so the same files are not queued again.
    st.session_state[counter_key] += 1


@st.fragment(run_every=1.0)
def _live_progress(jobs_key: str, results_key: str) -> None:
    """Per-file and overall progress, refreshed every second while files are indexed."""
    from ui.resources import get_indexing_queue

    queue = get_indexing_queue()
    jobs = [j for j in (queue.get(i) for i in st.session_state.get(jobs_key, [])) if j is not None]
    if not jobs:
        st.session_state[jobs_key] = []
        return
    finished = [j for j in jobs if j.state == "done"]
    if len(jobs) > 1:
        overall = sum(j.fraction for j in jobs) / len(jobs)
        st.progress(min(1.0, overall), text=f"Всего: готово {len(finished)} из {len(jobs)}")
    for job in jobs:
        if job.state == "done":
            continue
        st.progress(min(1.0, job.fraction), text=literal(f"{job.filename}: {job.text}"))
        if st.button("Отменить", key=f"cancel_{job.id}", icon=":material/cancel:"):
            job.cancel.set()
    if len(finished) == len(jobs):
        # Idempotent on purpose: with fast reruns a stopping run and the new one can both get
        # here; both must produce the same report, and neither may hide it from the other.
        results: list[tuple[str, str]] = []
        for job in jobs:
            r = job.result
            if r is not None:
                results.append((r.status, r.message or r.filename))
                results.extend(("warning", f"«{r.filename}»: {w}") for w in r.warnings)
        st.session_state[results_key] = results
        st.session_state[jobs_key] = []
        st.rerun(scope="app")
