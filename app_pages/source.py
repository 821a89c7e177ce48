"""Source view: a cited fragment on its page, marked, with the way back to the chat.

Reached at ``/source?chunk=<id>`` (``&chat=<id>``: the chat to go back to, ``&page=<n>``: another
page of the same PDF). The service decides what the user may see; a fragment they may not read
is «Фрагмент не найден», as one that never existed.
"""

from __future__ import annotations

import streamlit as st

from rag.library import SourceMissing
from ui.auth import current_user
from ui.markup import literal
from ui.resources import get_library
from ui.source_view import marked_html, page_picture, text_around

CHAT_PAGE = "app_pages/chat.py"

library = get_library()
user = current_user()
chunk_id = st.query_params.get("chunk", "")
chat_id = st.query_params.get("chat", "")
asked = st.query_params.get("page", "")

st.page_link(
    CHAT_PAGE,
    label="Назад к чату",
    icon=":material/arrow_back:",
    query_params={"chat": chat_id} if chat_id else None,
)
try:
    view = library.source_view(chunk_id, user, page=int(asked) if asked.isdigit() else None)
except SourceMissing as exc:
    st.title("Источник")
    st.warning(literal(str(exc)), icon=":material/search_off:")
    st.stop()

st.title(literal(view.name))
facts = [f"Коллекция «{view.collection}»"]
if view.page is not None:
    facts.append(f"стр. {view.page} из {view.pages}" if view.pages else f"стр. {view.page}")
if view.chunk.anchor:
    facts.append(view.chunk.anchor)
if view.chunk.ocr:
    facts.append("распознано (OCR)")
st.markdown(literal(" · ".join(facts)))
if view.chunk.heading:
    st.caption(literal(view.chunk.heading.replace("\n", " ")))
if view.note:
    st.info(literal(view.note), icon=":material/info:")
if view.document.stored_path:
    document_id = view.document.id
    st.download_button(
        "Скачать оригинал",
        # Read, and checked again, only when clicked: nothing of the file is sent with the page.
        data=lambda: library.original(document_id, user)[1],
        file_name=view.name,
        icon=":material/download:",
        on_click="ignore",
        key="download_original",
    )
else:
    st.caption("Исходный файл не сохранён.")

if view.kind == "text":
    try:
        st.html(marked_html(text_around(library, view)))
    except SourceMissing as exc:
        st.warning(literal(str(exc)))
        st.text(view.chunk.text)
else:
    if view.kind == "pdf" and view.pages and view.pages > 1:
        back, where, forward = st.columns([1, 2, 1], vertical_alignment="center")
        page = view.page or 1
        if back.button("← Предыдущая", disabled=page <= 1, width="stretch"):
            st.query_params["page"] = str(page - 1)
            st.rerun()
        if forward.button("Следующая →", disabled=page >= view.pages, width="stretch"):
            st.query_params["page"] = str(page + 1)
            st.rerun()
        where.caption(
            f"стр. {page} из {view.pages}"
            + ("" if view.on_fragment_page else f" · фрагмент на стр. {view.chunk.page}")
        )
    try:
        whole, band = page_picture(library, view)
        if band is not None:  # the fragment in sight at once, then the whole page to read around it
            st.image(band, width="stretch", output_format="PNG", caption="Фрагмент (отмечен жёлтым)")
        st.image(
            whole,
            width="stretch",  # the column's width: a phone's screen as well (a fixed width overflowed it)
            output_format="PNG",  # as rendered: JPEG would blur the letters
            caption=f"Страница {view.page or 1}",
        )
    except SourceMissing as exc:
        st.warning(literal(str(exc)))
    with st.expander("Текст фрагмента"):
        st.text(view.chunk.text)
