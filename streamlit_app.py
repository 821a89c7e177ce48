"""Entry point: page config and navigation over the pages."""

import streamlit as st

st.set_page_config(page_title="Мультимодальный RAG", page_icon="📚", layout="wide")

pages = [
    st.Page("pages/chat.py", title="Чат", icon="💬", default=True),
    st.Page("pages/documents.py", title="Документы", icon="📄"),
    st.Page("pages/admin.py", title="Администрирование", icon="🛠️"),
]
st.navigation(pages).run()
