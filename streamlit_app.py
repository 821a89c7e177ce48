"""Entry point: page config and navigation over the pages."""

import logging
import os

import streamlit as st

from ui.resources import begin_run

st.set_page_config(page_title="Мультимодальный RAG", page_icon=":material/library_books:", layout="wide")

pages = [
    st.Page("app_pages/chat.py", title="Чат", icon=":material/chat:", default=True),
    st.Page("app_pages/documents.py", title="Документы", icon=":material/description:"),
    st.Page("app_pages/admin.py", title="Администрирование", icon=":material/admin_panel_settings:"),
]
try:
    settings = begin_run()  # settings are read once per run, and a bad one is reported like any page error
    if settings.auth != "none":
        # Sign-in pages are not built yet: an app configured to need them must not open to anyone.
        st.error(
            f"RAG_AUTH={settings.auth}: вход по паролю и через OpenID Connect ещё не поддерживается "
            "в этой версии. Уберите RAG_AUTH (или укажите none) либо закройте приложение от посторонних.",
            icon=":material/lock:",
        )
        st.stop()
    st.navigation(pages).run()
except Exception:  # Streamlit's rerun/stop signals are BaseExceptions and pass through
    if os.environ.get("RAG_RAISE_ERRORS"):  # the tests want the real exception
        raise
    # A user never sees a traceback: the details go to the log, the page says what to do.
    logging.getLogger("rag.app").exception("page failed")
    st.error(
        "Внутренняя ошибка страницы. Подробности записаны в журнал приложения. "
        "Обновите страницу; если ошибка повторится, сообщите администратору.",
        icon=":material/error:",
    )
