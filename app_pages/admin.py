"""Admin page: totals, indexed files (preview, delete, re-index), clearing chats, consistency.

Every change to the library is a job of the indexing queue: the page only submits it and
shows its progress, so no click can interrupt it halfway.
"""

from __future__ import annotations

import contextlib

import streamlit as st

from storage import DocumentStatus, NotFoundError
from storage.keywords import keyword_ranking_note
from ui.auth import current_user
from ui.components import human_size, job_panel, track_job
from ui.feedback import ratings_section
from ui.markup import literal, plain
from ui.queue import queue_section
from ui.resources import get_chat_service, get_indexing_queue, get_library
from ui.tables import documents_frame, status_label
from ui.users import users_section

JOBS = "admin"
library = get_library()
me = current_user()
if not library.access.is_admin(me):
    # Members never get this page in the navigation; this answers a page run any other way.
    st.error("Эта страница доступна только администраторам.", icon=":material/lock:")
    st.stop()
queue = get_indexing_queue()
st.title("Администрирование")
job_panel(JOBS)

# -- totals ---------------------------------------------------------------------------------
docs = library.docs.list_all()
totals = library.docs.totals()
n_chats, n_messages = library.chats.counts()
cols = st.columns(5)
cols[0].metric("Документы", len(docs), help=f"Готовы к поиску: {totals['documents']}")
cols[1].metric("Фрагменты", totals["chunks"])
cols[2].metric("Чаты", n_chats)
cols[3].metric("Сообщения", n_messages)
cols[4].metric("На диске", human_size(library.disk_usage()))

# -- chats ----------------------------------------------------------------------------------
st.subheader("Чаты")
if st.button("Очистить все чаты", disabled=n_chats == 0):
    st.session_state["confirm_clear_all"] = True
if st.session_state.get("confirm_clear_all"):
    st.warning(f"Удалить все чаты ({n_chats}) и сообщения ({n_messages})? Это нельзя отменить.")
    c1, c2 = st.columns(2)
    if c1.button("Да, удалить все чаты", type="primary"):
        removed = get_chat_service().clear_all(me)
        st.session_state.pop("confirm_clear_all", None)
        st.session_state["admin_notice"] = f"Удалено чатов: {removed}."
        st.rerun()
    if c2.button("Отмена"):
        st.session_state.pop("confirm_clear_all", None)
        st.rerun()
if notice := st.session_state.pop("admin_notice", None):
    st.success(literal(notice))

# -- documents ------------------------------------------------------------------------------
st.subheader("Проиндексированные файлы")
if not docs:
    st.info("Документов пока нет. Загрузите их на странице чата или «Документы».")
else:
    st.dataframe(documents_frame(docs), hide_index=True, width="stretch")
    by_id = {d.id: d for d in docs}
    picked = st.selectbox(
        "Файл",
        list(by_id),
        format_func=lambda i: plain(f"{by_id[i].filename} ({status_label(by_id[i])})"),
        # A key keeps the choice when a file's status (part of its label) changes.
        key="admin_document",
    )
    doc = by_id[picked]
    if doc.error:
        st.error(literal(doc.error))
    # A file that is being written (or has work queued) cannot be re-indexed or deleted now.
    busy = doc.status in (DocumentStatus.INDEXING, DocumentStatus.QUEUED) or (
        queue.pending(document_id=doc.id) is not None
    )
    c1, c2 = st.columns(2)
    if c1.button("Переиндексировать", disabled=busy):
        track_job(JOBS, queue.reindex(doc.id, me))
        st.rerun()
    if c2.button("Удалить файл", type="primary", disabled=busy):
        st.session_state["confirm_delete"] = doc.id
    if busy:
        st.caption("Файл сейчас индексируется: удалить или переиндексировать его можно после окончания.")
    if st.session_state.get("confirm_delete") == doc.id and not busy:
        st.warning(literal(f"Удалить «{doc.filename}» из базы, поиска и векторного индекса?"))
        d1, d2 = st.columns(2)
        if d1.button("Да, удалить файл", type="primary"):
            with contextlib.suppress(NotFoundError):  # already deleted in another session
                track_job(JOBS, queue.delete(doc.id, me))
            st.session_state.pop("confirm_delete", None)
            st.rerun()
        if d2.button("Отмена", key="cancel_delete"):
            st.session_state.pop("confirm_delete", None)
            st.rerun()
    chunks = library.docs.chunks(doc.id)
    with st.expander(literal(f"Фрагменты «{doc.filename}» ({len(chunks)})"), expanded=False):
        for c in chunks[:200]:
            page = f", стр. {c.page}" if c.page else ""
            st.caption(f"#{c.ordinal + 1}{page} · символы {c.char_start}–{c.char_end}")
            st.text(c.text)
        if len(chunks) > 200:
            st.caption(f"…и ещё {len(chunks) - 200}")

# -- embeddings and consistency -------------------------------------------------------------
st.subheader("Индекс")
stale = library.stale_documents()
st.write(f"Модели эмбеддингов: **{literal(library.embedding_signature)}**")
if note := keyword_ranking_note(library.engine):
    st.caption(note)
if stale:
    st.warning(
        f"{len(stale)} док. без векторов текущей модели (проиндексированы другой моделью "
        "эмбеддингов или векторизация прервалась): для них работает только поиск по словам, "
        "пока векторы не пересчитаны."
    )
    if st.button("Пересчитать векторы", disabled=queue.pending("reembed") is not None):
        track_job(JOBS, queue.reembed(me))
        st.rerun()
if st.button("Проверить целостность"):
    report = library.check()
    if report.ok:
        st.success("Расхождений нет: база, поиск по словам и векторы согласованы.")
    else:
        st.session_state["check_report"] = report.findings()
if findings := st.session_state.get("check_report"):
    st.warning("\n".join(["Найдены расхождения:", *(f"- {literal(line)}" for line in findings)]))
    if st.button("Исправить", disabled=queue.pending("repair") is not None):
        track_job(JOBS, queue.repair(me))
        st.session_state.pop("check_report", None)
        st.rerun()

# -- the indexing queue: who uses it; an admin cancels any job --------------------------------
queue_section(me)

# -- users ----------------------------------------------------------------------------------
users_section(me)

# -- ratings of answers: «Отзывы» (last: the sections above keep their widgets' order) --------
ratings_section(me)
