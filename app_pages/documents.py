"""Documents page: upload files and see what is indexed."""

from __future__ import annotations

import streamlit as st

from rag import RagError
from storage import NotFoundError
from storage.models import SEARCHABLE, Access
from storage.teams import AlreadyExists
from ui.auth import current_user
from ui.components import collection_labels, upload_panel
from ui.markup import literal
from ui.resources import get_library
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
        doc_id = st.selectbox(
            "Документ", list(names), format_func=lambda i: literal(names[i]), key="move_doc"
        )
        entry = next(e for e in movable if e.document.id == doc_id)
        sources = [c for c in entry.collections if c in writable_labels]
        source = st.selectbox(
            "Из коллекции", sources, format_func=lambda i: literal(writable_labels[i]), key="move_from"
        )
        target = st.selectbox(
            "В коллекцию",
            [c for c in writable_labels if c != source],
            format_func=lambda i: literal(writable_labels[i]),
            key="move_to",
        )
        if st.button("Переместить") and target:
            try:
                library.move(doc_id, source, target, user)
            except (RagError, NotFoundError) as exc:
                st.error(literal(str(exc)) if isinstance(exc, RagError) else "Документ не найден.")
            else:
                st.rerun()

with st.expander("Коллекции"):
    for c in readable:
        st.write(f"- {literal(labels[c.id])}")
    with st.form("new_collection", clear_on_submit=True):
        name = st.text_input("Новая коллекция", max_chars=80)
        everyone = st.radio(
            "Доступ",
            [Access.NONE, Access.READ, Access.WRITE],
            format_func=lambda a: {
                Access.NONE: "только я",
                Access.READ: "все участники читают",
                Access.WRITE: "все участники читают и загружают",
            }[a],
            horizontal=True,
        )
        if st.form_submit_button("Создать") and name.strip():
            try:
                library.collections.create(name, user.id, everyone=everyone)
            except AlreadyExists:
                st.error(f"Коллекция «{literal(name.strip())}» у вас уже есть.")
            else:
                st.rerun()
