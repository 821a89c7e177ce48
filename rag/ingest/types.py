"""What every extractor shares: ``Page``, ``Extracted``, ``Options``, the ``Extractor`` signature."""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from rag import IngestError

# A rectangle on a page as fractions of its width and height, from its top-left corner:
# (left, top, right, bottom). The same for a PDF page however it is rendered, and for a scan
# however Tesseract was given it.
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class WordBoxes:
    """Where a page's words are drawn: word k is ``text[spans[2k]:spans[2k + 1]]`` inside
    ``rects[4k:4k + 4]`` (a ``Box``). A word broken across two lines has an entry per line.

    Packed in arrays: a 2,000-page PDF holds about a million words while it is indexed.
    """

    spans: array[int] = field(default_factory=lambda: array("i"))
    rects: array[float] = field(default_factory=lambda: array("f"))

    def add(self, start: int, end: int, box: Box) -> None:
        """Record one word (or its part on one line)."""
        self.spans.extend((start, end))
        self.rects.extend(box)

    def __len__(self) -> int:
        return len(self.spans) // 2

    def covering(self, start: int, end: int) -> list[Box]:
        """The boxes of the words of ``text[start:end]``, joined into one box per line run."""
        out: list[list[float]] = []
        for k in range(len(self)):
            a, b = self.spans[2 * k], self.spans[2 * k + 1]
            if b <= start or a >= end:
                continue
            left, top, right, bottom = self.rects[4 * k : 4 * k + 4]
            if out:
                last = out[-1]
                height = min(last[3] - last[1], bottom - top)
                overlap = min(last[3], bottom) - max(last[1], top)
                # The next word on the same line, not far to the right: one marker stroke.
                if overlap > 0.5 * height and -height < left - last[2] < 3 * height:
                    last[1], last[2], last[3] = min(last[1], top), max(last[2], right), max(last[3], bottom)
                    continue
            out.append([left, top, right, bottom])
        return [(round(a, 5), round(b, 5), round(c, 5), round(d, 5)) for a, b, c, d in out]


@dataclass(frozen=True)
class Page:
    """Text of one page (``number`` is 1-based; None for files without pages)."""

    number: int | None
    text: str
    ocr: bool = False  # the text was recognised from an image, not read from a text layer
    # Where the text's words are on the page (PDF text layers and OCR); None for other formats.
    words: WordBoxes | None = None


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
