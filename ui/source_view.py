"""The source view's pictures and text, cached per document and page within a memory bound.

The services check access and say what to show (``Library.source_view``); this module only
caches the expensive part, the picture of a page (``rag.library.render``) and the text around a
fragment, keyed by the document's bytes (sha256), page and marks. The cache holds at most
``PICTURES`` pictures (a page is 0.2–1 MB as PNG) and ``TEXTS`` texts, so its memory is bounded
whatever is opened; a re-indexed document has new marks and so new entries.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import streamlit as st

from rag.ingest.types import Box
from rag.library import Library, SourceView, TextAround
from rag.library import render as pictures

PICTURES = 48
TEXTS = 16


@st.cache_data(max_entries=PICTURES, show_spinner=False)
def _picture(
    sha256: str, kind: str, page: int | None, boxes: tuple[Box, ...], ocr: bool, _load: Callable[[], bytes]
) -> tuple[bytes, bytes | None]:
    data = _load()
    if kind == "pdf":
        image = pictures.pdf_page(data, page or 1, boxes, ocr)
    else:
        image = pictures.image_page(data, page, boxes)
    band = pictures.strip(image, boxes)
    return pictures.png(image), pictures.png(band) if band is not None else None


def page_picture(library: Library, view: SourceView) -> tuple[bytes, bytes | None]:
    """PNGs of the view's page with the fragment marked, and of the band holding the marks (cached)."""
    return _picture(
        view.document.sha256,
        view.kind,
        view.page,
        tuple(view.boxes),
        view.chunk.ocr,
        lambda: library.view_original(view),
    )


@st.cache_data(max_entries=TEXTS, show_spinner=False)
def _text(sha256: str, chunk_id: str, _read: Callable[[], TextAround]) -> TextAround:
    return _read()


def text_around(library: Library, view: SourceView) -> TextAround:
    """The document's text around the view's fragment (cached)."""
    return _text(view.document.sha256, view.chunk.id, lambda: library.text_around(view))


# A Markdown heading line of the extracted text («## Отпуск»), once escaped: shown bold, without «#».
_HEADING = re.compile(r"(?m)^#{1,6} +(.+)$")


def _inert(text: str) -> str:
    """Text as HTML that shows exactly it (every character escaped), headings in bold."""
    return _HEADING.sub(r"<strong>\1</strong>", html.escape(text))


def marked_html(around: TextAround) -> str:
    """The text around a fragment as inert HTML: every character escaped, the fragment in <mark>."""
    parts = (_inert(around.before), _inert(around.fragment), _inert(around.after))
    return (
        '<div data-testid="source-text" style="white-space: pre-wrap; line-height: 1.6">'
        f'{parts[0]}<mark data-testid="source-fragment" style="background: #ffdd33; color: #111;'
        f' padding: 0 2px">{parts[1]}</mark>{parts[2]}</div>'
    )
