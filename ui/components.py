"""Reusable renderers: the upload panel, indexing progress, collection labels, byte sizes."""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from names import clean_filename
from rag.ingest import SUPPORTED_EXTENSIONS
from rag.jobs.local import Job
from rag.library import too_large_message
from storage.models import Access, Collection, User
from ui.markup import literal, plain

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


def collection_labels(collections: list[Collection], user: User) -> dict[str, str]:
    """Display names of collections: someone else's carries its owner's name («Мои документы» of whom)."""
    from ui.resources import get_library

    users = {u.id: u.name for u in get_library().users.list_all()}
    out = {}
    for c in collections:
        shared = " · общая" if c.everyone != Access.NONE else ""
        owner = "" if c.owner_id in (None, user.id) else f" ({users.get(c.owner_id or '', '?')})"
        out[c.id] = f"{c.name}{owner}{shared}"
    return out


def upload_panel(container: Any, key: str = "uploads") -> None:
    """File uploader that queues files for background indexing and shows their progress."""
    from ui.auth import current_user
    from ui.resources import get_library

    library = get_library()
    user = current_user()
    personal = library.access.personal_collection(user)
    writable = library.access.writable(user)
    if len(writable) > 1:
        labels = collection_labels(writable, user)
        ids = list(labels)
        if st.session_state.get(f"{key}_collection") not in ids:
            st.session_state[f"{key}_collection"] = personal.id
        container.selectbox(
            "Коллекция для загрузки",
            ids,
            format_func=lambda i: plain(labels[i]),  # options are plain text: no escapes
            key=f"{key}_collection",
        )
    else:
        st.session_state[f"{key}_collection"] = personal.id
    counter_key = f"{key}_counter"
    st.session_state.setdefault(counter_key, 0)
    widget_key = f"{key}_{st.session_state[counter_key]}"
    limit_mb, limit_name = upload_limit()
    container.file_uploader(
        "Загрузить документы",
        type=UPLOAD_TYPES,
        accept_multiple_files=True,
        key=widget_key,
        on_change=_queue_uploads,
        args=(widget_key, counter_key, key),
        help=(
            "TXT, Markdown, CSV, JSON (любая распространённая кодировка), PDF (с текстом или скан), "
            "DOCX, ODT, RTF, HTML и изображения (распознавание текста на русском и английском)."
        ),
    )
    # Visible, not only on hover, and in Russian: Streamlit's own refusal is neither.
    container.caption(f"Файл — не больше {limit_mb:g} МБ ({limit_name}).")
    with container:
        job_panel(key)


def upload_limit() -> tuple[float, str]:
    """The size limit a file is checked against (MB) and the setting that sets it.

    Streamlit refuses a file over ``server.maxUploadSize`` in the browser, in English, before
    the app sees it; the config keeps that cap above RAG_MAX_FILE_MB so a larger file reaches
    the app and gets the Russian refusal. Should RAG_MAX_FILE_MB be set above the cap, the cap
    is the real limit, and the page names it.
    """
    from streamlit import config

    from ui.resources import get_settings

    settings = get_settings()
    cap = float(config.get_option("server.maxUploadSize"))
    if settings.max_file_mb < cap:
        return settings.max_file_mb, "RAG_MAX_FILE_MB"
    return cap, "server.maxUploadSize в .streamlit/config.toml"


def track_job(key: str, job: Job) -> None:
    """Show this job's progress and outcome in the ``job_panel`` named ``key``."""
    jobs = st.session_state.setdefault(f"{key}_jobs", [])
    if job.id not in jobs:
        jobs.append(job.id)
    st.session_state[f"{key}_results"] = []


def job_panel(key: str) -> None:
    """Live progress of this session's jobs under ``key``, then their outcomes."""
    jobs_key, results_key = f"{key}_jobs", f"{key}_results"
    if st.session_state.get(jobs_key):
        _live_progress(jobs_key, results_key)
    refused = st.session_state.get(f"{key}_refused", [])
    for level, message in [*refused, *st.session_state.get(results_key, [])]:
        # Messages carry file names, which are the uploader's text, not markup.
        if level == "indexed":
            st.success(f"Проиндексирован: {literal(message)}", icon=":material/check_circle:")
        elif level == "done":
            st.success(literal(message), icon=":material/check_circle:")
        elif level == "duplicate":
            st.info(literal(message), icon=":material/info:")
        elif level == "warning":
            st.warning(literal(message), icon=":material/warning:")
        else:
            st.error(literal(message), icon=":material/error:")


def _queue_uploads(widget_key: str, counter_key: str, key: str) -> None:
    # A callback, not code after the widget: callbacks run before the script, so the files are
    # queued even when this run is cut short by another rerun (a question sent right after).
    from ui.resources import get_indexing_queue

    files = st.session_state.get(widget_key) or []
    if not files:
        return
    from ui.auth import current_user
    from ui.resources import get_settings

    queue = get_indexing_queue()
    user = current_user()
    settings = get_settings()
    target = st.session_state.get(f"{key}_collection")  # None: the user's own collection
    refused = []
    st.session_state[f"{key}_results"] = []  # this upload's outcomes replace the last one's
    for f in files:
        name = clean_filename(f.name)  # the job's label too: cleaned before anything shows it
        if f.size > settings.max_file_bytes:
            # Refused here, before the bytes are copied into a job, with the setting to change.
            refused.append(("failed", too_large_message(name, f.size, settings)))
            continue
        track_job(key, queue.submit(name, f.getvalue(), user=user, collection_id=target))
    st.session_state[f"{key}_refused"] = refused
    # A new uploader key empties the widget, so the same files are not queued again.
    st.session_state[counter_key] += 1


def _outcomes(job: Job) -> list[tuple[str, str]]:
    r = job.result
    if r is None:
        return [("failed" if job.failed else "done", job.message)]
    first = (
        (r.status, r.message or r.filename)
        if job.kind == "ingest"
        else ("failed" if job.failed else "done", job.message)
    )
    return [first, *(("warning", f"«{r.filename}»: {w}") for w in r.warnings)]


@st.fragment(run_every=1.0)
def _live_progress(jobs_key: str, results_key: str) -> None:
    """Per-job and overall progress, refreshed every second while the jobs run."""
    from ui.auth import current_user
    from ui.resources import get_indexing_queue

    queue = get_indexing_queue()
    # The queue shows a job only to whoever queued it (or an admin), and lets only them cancel it.
    user = current_user()
    jobs = [j for j in (queue.get(i, user) for i in st.session_state.get(jobs_key, [])) if j is not None]
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
            queue.cancel(job.id, user)
    if len(finished) == len(jobs):
        # Idempotent on purpose: with fast reruns a stopping run and the new one can both get
        # here; both must produce the same report, and neither may hide it from the other.
        st.session_state[results_key] = [item for job in jobs for item in _outcomes(job)]
        st.session_state[jobs_key] = []
        st.rerun(scope="app")
