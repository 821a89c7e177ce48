"""What every extractor shares: ``Page``, ``Extracted``, ``Options``, the ``Extractor`` signature."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rag import IngestError


@dataclass(frozen=True)
class Page:
    """Text of one page (``number`` is 1-based; None for files without pages)."""

    number: int | None
    text: str
    ocr: bool = False  # the text was recognised from an image, not read from a text layer


@dataclass
class Extracted:
    """What a file yielded: its pages and how it was read."""

    pages: list[Page]
    mime_type: str
    encoding: str | None = None
    page_count: int | None = None
    warnings: list[str] = field(default_factory=list)
    # Headings are Markdown '#' lines (Markdown, DOCX, ODT, HTML): the chunker keeps a heading
    # with its section.
    has_headings: bool = False
    # PDF only: pages whose text layer was unreadable or damaged (glued words, bad characters);
    # they were recognised (OCR) where Tesseract could. None for files without a text layer.
    damaged_pages: int | None = None


@dataclass(frozen=True)
class Options:
    """Limits and progress reporting for one extraction."""

    max_pages: int = 2000
    # Bound on what an archive-based format (DOCX, ODT) may unpack: no decompression bombs.
    max_unpacked_bytes: int = 200 * 1024 * 1024
    # Pages one upload may send to OCR (RAG_MAX_OCR_PAGES); None: no limit.
    max_ocr_pages: int | None = None
    progress: Callable[[float, str], None] | None = None

    def report(self, fraction: float, text: str) -> None:
        """Tell the caller how far extraction got (0..1)."""
        if self.progress is not None:
            self.progress(fraction, text)


Extractor = Callable[[bytes, str, Options], Extracted]


def no_text(filename: str, hint: str = "") -> IngestError:
    """The error for a document that holds no text; ``hint`` says what to try instead."""
    return IngestError(f"«{filename}»: в документе нет текста.{hint}")
