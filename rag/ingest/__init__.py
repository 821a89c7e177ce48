"""Ingestion: turn uploaded bytes into text pages, one module per format family.

    types    Page, Extracted, Options, the Extractor signature and the shared "no text" error
    blocks   Markdown-style blocks the chunker understands: '#' headings, table rows, paragraphs
    text     plain text and Markdown: encoding detection, double-encoding repair (decode_text)
    ocr      Tesseract OCR with cheap preprocessing, several pages at once (run_parallel)
    pdf      PDF text layers, with OCR for scans and unreadable layers (looks_like_garbage)
    pdf_text PDFium's text page as read: spaced words, joined hyphens, no page furniture; the gauge
    images   PNG, JPEG, TIFF, WebP, BMP through OCR; one page per TIFF frame
    office   Word (DOCX), OpenDocument text (ODT), RTF
    html     saved web pages (trafilatura, with a fallback of its own)
    tabular  CSV and JSON

This module is the public API: the registry (file extension -> extractor), ``extract`` and
``SUPPORTED_EXTENSIONS``, and the types. Family modules import ``types`` and ``blocks`` (``text``
and ``ocr`` where they decode or recognise), never this module, so there is no import circle.

Every failure is an ``IngestError`` whose message tells the user, in Russian, what is wrong.
"""

from __future__ import annotations

from pathlib import PurePath

from rag import IngestError
from rag.ingest.html import extract_html
from rag.ingest.images import IMAGE_EXTENSIONS, extract_image
from rag.ingest.ocr import page_limit as ocr_page_limit
from rag.ingest.office import extract_docx, extract_odt, extract_rtf
from rag.ingest.pdf import extract_pdf
from rag.ingest.tabular import extract_csv, extract_json
from rag.ingest.text import extract_text_file
from rag.ingest.types import Extracted, Extractor, Options, Page

__all__ = ["EXTRACTORS", "SUPPORTED_EXTENSIONS", "Extracted", "Extractor", "Options", "Page", "extract"]

# The order is the order users see in the upload widget and in the "not supported" message.
EXTRACTORS: dict[str, Extractor] = {
    ".txt": lambda d, n, _o: extract_text_file(d, n),
    ".text": lambda d, n, _o: extract_text_file(d, n),
    ".md": lambda d, n, _o: extract_text_file(d, n),
    ".markdown": lambda d, n, _o: extract_text_file(d, n),
    ".pdf": extract_pdf,
    **dict.fromkeys(IMAGE_EXTENSIONS, extract_image),
    ".docx": extract_docx,
    ".html": extract_html,
    ".htm": extract_html,
    ".csv": extract_csv,
    ".json": extract_json,
    ".rtf": extract_rtf,
    ".odt": extract_odt,
}
SUPPORTED_EXTENSIONS = tuple(EXTRACTORS)


def extract(data: bytes, filename: str, options: Options | None = None) -> Extracted:
    """Dispatch on the file extension; unknown types are refused with the list of known ones."""
    ext = PurePath(filename).suffix.lower()
    extractor = EXTRACTORS.get(ext)
    if extractor is None:
        known = ", ".join(SUPPORTED_EXTENSIONS)
        raise IngestError(f"«{filename}»: формат {ext or 'без расширения'} не поддерживается ({known}).")
    if not data:
        raise IngestError(f"«{filename}»: файл пуст.")
    options = options or Options()
    # Recognition is the slow part: the page budget holds across the file's every OCR call.
    with ocr_page_limit(options.max_ocr_pages, filename):
        return extractor(data, filename, options)
