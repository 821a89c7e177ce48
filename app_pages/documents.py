"""Documents page: upload files and see what is indexed."""

from __future__ import annotations

import streamlit as st

from storage import DocumentStatus
from ui.components import upload_panel
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

docs = library.docs.list_all()
if not docs:
    st.info("Документов пока нет.")
else:
    ready = sum(d.status == DocumentStatus.READY for d in docs)
    st.subheader(f"Загружено: {len(docs)} (готово к поиску: {ready})")
    st.dataframe(documents_frame(docs), hide_index=True, width="stretch")
