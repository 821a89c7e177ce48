"""Streamlit's file uploader in Russian: its button says «Upload» and its note «200MB per file» in
English on every page, and no Streamlit release translates them.

The texts are replaced by CSS on the uploader's own markup (test ids as Streamlit 1.67 draws
them): the English text is set to size 0 and the Russian one drawn after it (``::after``). The
browser test ``tests/e2e/test_source_view.py::test_the_uploader_speaks_russian`` reads the
computed styles of those very elements, so a Streamlit update that renames them fails it.
"""

from __future__ import annotations

import streamlit as st

from ui.components import upload_limit

BUTTON = (
    '[data-testid="stFileUploaderDropzone"] [data-testid="stBaseButton-secondary"] '
    '[data-testid="stMarkdownContainer"] p'
)
NOTE = '[data-testid="stFileUploaderDropzoneInstructions"] span'
BUTTON_TEXT = "Выберите файлы"


def russian_uploader() -> None:
    """Put the CSS that makes every uploader on the page read Russian."""
    limit, _ = upload_limit()
    note = f"до {limit:g} МБ на файл"
    st.html(
        "<style>"
        f"{BUTTON} {{ font-size: 0 !important; }}"
        f'{BUTTON}::after {{ content: "{BUTTON_TEXT}"; font-size: 0.875rem; }}'
        f"{NOTE} {{ font-size: 0 !important; }}"
        f'{NOTE}::after {{ content: "{note}"; font-size: 0.875rem; }}'
        "</style>"
    )
