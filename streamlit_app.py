"""Entry point: page config and navigation over the pages."""

import logging
import os

import streamlit as st

from ui.auth import account_panel, signed_in_user
from ui.messages import SOURCE_PAGE
from ui.resources import begin_run, get_library
from ui.uploader_ru import russian_uploader

# An emoji icon is drawn by the browser itself (a data: URL); a :material/…: page icon would be
# fetched from fonts.gstatic.com on every page load.
st.set_page_config(page_title="Мультимодальный RAG", page_icon="📚", layout="wide")

CHAT = st.Page("app_pages/chat.py", title="Чат", icon=":material/chat:", default=True)
DOCUMENTS = st.Page("app_pages/documents.py", title="Документы", icon=":material/description:")
# The model lab (issue 21).
ASSISTANTS = st.Page("app_pages/assistants.py", title="Ассистенты", icon=":material/smart_toy:")
COMPARE = st.Page("app_pages/compare.py", title="Сравнение", icon=":material/compare_arrows:")
CHECKS = st.Page("app_pages/checks.py", title="Проверка", icon=":material/fact_check:")
# A cited fragment on its page (/source?chunk=…): reached from the chat's sources, never listed.
SOURCE = SOURCE_PAGE
ADMIN_PAGE = "app_pages/admin.py"
ADMIN_TITLE = "Администрирование"
try:
    begin_run()  # settings are read once per run, and a bad one is reported like any page error
    user = signed_in_user()
    if user is None:  # a sign-in or first-run screen was drawn instead
        # The browser keeps the last menu it was sent: send one with nothing in it, or the menu
        # of the session that just signed out (with «Администрирование») would stay.
        st.navigation(
            [CHAT, DOCUMENTS, ASSISTANTS, COMPARE, CHECKS, SOURCE, st.Page(ADMIN_PAGE, title=ADMIN_TITLE)],
            position="hidden",
        )
        st.stop()
    account_panel(user)
    russian_uploader()  # Streamlit's uploader says «Upload» and «200MB per file» otherwise
    # A member's menu has no admin page; a bookmarked /admin still reaches it, hidden, and the
    # page itself says it is for administrators (the services check the role again all the same).
    admin = get_library().access.is_admin(user)
    ADMIN = st.Page(
        ADMIN_PAGE,
        title=ADMIN_TITLE,
        icon=":material/admin_panel_settings:",
        visibility="visible" if admin else "hidden",
    )
    pages = [CHAT, DOCUMENTS, ASSISTANTS, COMPARE, CHECKS, SOURCE, ADMIN]
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
