"""Documents page: upload files and see what is indexed."""

from __future__ import annotations

import streamlit as st

from rag import RagError
from storage import NotFoundError
from storage.models import SEARCHABLE, Access
from ui.auth import current_user
from ui.components import collection_labels, upload_panel
from ui.markup import literal, plain
from ui.resources import get_collection_service, get_library
from ui.tables import documents_frame

library = get_library()

st.title("Документы")
st.write(
    "Загрузите TXT, Markdown, CSV или JSON (в любой распространённой кодировке), PDF (с текстом "
    "или скан), DOCX, ODT, RTF, HTML или изображение (текст распознаётся на русском и английском). "
    "Одинаковые файлы не индексируются дважды."
)
upload_panel(st.container(), key="doc_uploads")

user = current_user()
entries = library.documents(user)
readable = library.access.readable(user)
labels = collection_labels(readable, user)
if not entries:
    st.info("Документов пока нет.")
else:
    # Each reader sees a file under the name they (or their collection) gave it.
    docs = [e.document.model_copy(update={"filename": e.name}) for e in entries]
    ready = sum(d.status in SEARCHABLE for d in docs)
    st.subheader(f"Загружено: {len(docs)} (готово к поиску: {ready})")
    rows = documents_frame(docs)
    for row, e in zip(rows, entries, strict=True):
        row["Коллекции"] = ", ".join(labels.get(c, "—") for c in e.collections)
    st.dataframe(rows, hide_index=True, width="stretch")

writable = library.access.writable(user)
writable_labels = collection_labels(writable, user)
movable = [e for e in entries if set(e.collections) & set(writable_labels)]
with st.expander("Переместить документ в другую коллекцию"):
    if not movable or len(writable_labels) < 2:
        st.caption("Нужны свой документ и хотя бы две коллекции, в которые вы можете писать.")
    else:
        names = {e.document.id: e.name for e in movable}
        doc_id = st.selectbox("Документ", list(names), format_func=lambda i: plain(names[i]), key="move_doc")
        entry = next(e for e in movable if e.document.id == doc_id)
        sources = [c for c in entry.collections if c in writable_labels]
        source = st.selectbox(
            "Из коллекции", sources, format_func=lambda i: plain(writable_labels[i]), key="move_from"
        )
        target = st.selectbox(
            "В коллекцию",
            [c for c in writable_labels if c != source],
            format_func=lambda i: plain(writable_labels[i]),
            key="move_to",
        )
        if st.button("Переместить") and target:
            try:
                library.move(doc_id, source, target, user)
            except (RagError, NotFoundError) as exc:
                st.error(literal(str(exc)) if isinstance(exc, RagError) else "Документ не найден.")
            else:
                st.rerun()

with st.expander("Удалить документ"):
    # A member takes their documents out of the collections they may write to; the file itself
    # (index, vectors, original) goes once no collection holds it. An admin deletes it outright.
    removable = {e.document.id: e.name for e in movable}
    if not removable:
        st.caption("Здесь можно удалить документы из коллекций, в которые вы можете загружать.")
    else:
        doc_id = st.selectbox(
            "Документ", list(removable), format_func=lambda i: plain(removable[i]), key="remove_doc"
        )
        if st.button("Удалить документ", key="remove_document"):
            st.session_state["confirm_remove"] = doc_id
        if st.session_state.get("confirm_remove") == doc_id:
            st.warning(literal(f"Удалить «{removable[doc_id]}» из ваших коллекций? Это нельзя отменить."))
            r1, r2 = st.columns(2)
            if r1.button("Да, удалить", type="primary", key="confirm_remove_document"):
                st.session_state.pop("confirm_remove", None)
                try:
                    library.remove(doc_id, user)
                except RagError as exc:
                    st.error(literal(str(exc)))
                except NotFoundError:
                    st.error("Документ не найден: возможно, его уже удалили. Обновите страницу.")
                else:
                    st.session_state["documents_notice"] = f"Документ «{removable[doc_id]}» удалён."
                    st.rerun()
            if r2.button("Отмена", key="cancel_remove_document"):
                st.session_state.pop("confirm_remove", None)
                st.rerun()
    if notice := st.session_state.pop("documents_notice", None):
        st.success(literal(notice))

collections = get_collection_service()
ACCESS_RU = {
    Access.NONE: "только я",
    Access.READ: "все участники читают",
    Access.WRITE: "все участники читают и загружают",
}
with st.expander("Коллекции"):
    for c in readable:
        st.write(f"- {literal(labels[c.id])}")
    with st.form("new_collection", clear_on_submit=True):
        name = st.text_input("Новая коллекция", max_chars=80)
        everyone = st.radio(
            "Доступ",
            [Access.NONE, Access.READ, Access.WRITE],
            format_func=lambda a: ACCESS_RU[a],
            horizontal=True,
        )
        if st.form_submit_button("Создать") and name.strip():
            try:
                collections.create(user, name, everyone=everyone)
            except RagError as exc:
                st.error(literal(str(exc)))
            else:
                st.rerun()
    managed = {c.id: c for c in collections.managed_by(user)}
    if managed:
        managed_labels = collection_labels(list(managed.values()), user)
        chosen = st.selectbox(
            "Настроить коллекцию",
            list(managed),
            format_func=lambda i: plain(managed_labels[i]),
            key="manage_collection",
        )
        coll = managed[chosen]
        access = st.radio(
            "Доступ для всех участников",
            [Access.NONE, Access.READ, Access.WRITE],
            index=[Access.NONE, Access.READ, Access.WRITE].index(coll.everyone),
            format_func=lambda a: ACCESS_RU[a],
            horizontal=True,
            key=f"share_{coll.id}",
        )
        m1, m2 = st.columns(2)
        try:
            if m1.button("Сохранить доступ", key="share_collection") and access != coll.everyone:
                collections.share(user, coll.id, access)
                st.rerun()
            if m2.button("Удалить коллекцию", key="delete_collection"):
                collections.delete(user, coll.id)
                st.rerun()
        except (RagError, NotFoundError) as exc:
            st.error(literal(str(exc)) if isinstance(exc, RagError) else "Коллекция не найдена.")
