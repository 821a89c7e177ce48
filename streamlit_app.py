"""Entry point: page config and navigation over the pages."""

import streamlit as st

st.set_page_config(page_title="Мультимодальный RAG", page_icon=":material/library_books:", layout="wide")

pages = [
    st.Page("pages/chat.py", title="Чат", icon=":material/chat:", default=True),
    st.Page("pages/documents.py", title="Документы", icon=":material/description:"),
    st.Page("pages/admin.py", title="Администрирование", icon=":material/admin_panel_settings:"),
]
st.navigation(pages).run()
