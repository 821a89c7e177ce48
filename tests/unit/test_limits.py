"""Fair indexing's limits: no single upload may hold the indexing queue for long.

A document may have at most RAG_MAX_CHUNKS_PER_DOCUMENT fragments (each one is a vector to
compute), and an upload at most RAG_MAX_OCR_PAGES pages to recognise. Beyond that the upload is
refused with a Russian message that names the setting, and nothing of it stays in the index.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from PIL import Image, ImageDraw, ImageFont

from rag import IngestError
from rag.ingest import Options, extract
from rag.ingest.ocr import tesseract_available
from rag.library import Library
from storage import DocumentStatus

SENTENCE = "Арендатор обязан своевременно вносить арендную плату и содержать помещение в порядке. "


def test_a_document_over_the_fragment_limit_is_refused_and_says_which_setting(
    make_library: Callable[..., Library],
) -> None:
    library = make_library(RAG_MAX_CHUNKS_PER_DOCUMENT=3)
    res = library.ingest("long.txt", (SENTENCE * 80).encode())  # about ten fragments
    assert res.status == "failed"
    assert "RAG_MAX_CHUNKS_PER_DOCUMENT" in res.message and "не больше 3" in res.message
    (doc,) = library.docs.list_all()
    assert doc.status == DocumentStatus.FAILED and library.docs.chunks(doc.id) == []
    assert library.vectors.count(library.embedding_model) == 0
    small = library.ingest("short.txt", SENTENCE.encode())  # under the limit: indexed as ever
    assert small.status == "indexed"


def _scan(pages: int) -> bytes:
    """A multi-page TIFF, each page a line of large printed text (what a scanner gives)."""
    font = ImageFont.load_default(size=48)
    frames = []
    for n in range(pages):
        img = Image.new("L", (1400, 300), 255)
        ImageDraw.Draw(img).text((40, 100), f"Страница {n + 1}: договор аренды склада", fill=0, font=font)
        frames.append(img)
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


@pytest.mark.skipif(not tesseract_available(), reason="Tesseract is not installed")
def test_an_upload_with_more_pages_to_recognise_than_allowed_is_refused() -> None:
    scan = _scan(4)
    with pytest.raises(IngestError) as refused:
        extract(scan, "scan.tiff", Options(max_ocr_pages=2))
    assert "RAG_MAX_OCR_PAGES" in str(refused.value) and "не больше 2" in str(refused.value)
    assert len(extract(_scan(2), "scan.tiff", Options(max_ocr_pages=2)).pages) == 2


@pytest.mark.skipif(not tesseract_available(), reason="Tesseract is not installed")
def test_the_library_applies_the_ocr_page_limit(make_library: Callable[..., Library]) -> None:
    library = make_library(RAG_MAX_OCR_PAGES=1)
    res = library.ingest("scan.tiff", _scan(3))
    assert res.status == "failed" and "RAG_MAX_OCR_PAGES" in res.message
