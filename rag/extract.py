"""Turn uploaded bytes into text pages: encoding detection for text files, pypdf for PDFs.

Every failure is an ``IngestError`` whose message tells the user, in Russian, what is wrong.
"""

from __future__ import annotations

import codecs
import io
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath

import charset_normalizer
from pypdf import PdfReader
from pypdf.errors import DependencyError, PdfReadError

from rag import IngestError

log = logging.getLogger(__name__)


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


# Encodings a Russian text file plausibly uses, besides UTF-8/16 which are tried first.
_CANDIDATES = ["cp1251", "koi8_r", "cp866", "mac_cyrillic", "iso8859_5", "cp1252"]

# Relative frequencies (per cent) of Russian letters; used to break ties between single-byte
# Cyrillic encodings, which charset-normalizer cannot tell apart on short or all-caps text.
_RU_FREQ = dict(
    zip(
        "оеаинтсрвлкмдпуяыьгзбчйхжшюцщэфъё",
        [
            10.97,
            8.45,
            8.01,
            7.35,
            6.70,
            6.26,
            5.47,
            4.73,
            4.54,
            4.40,
            3.49,
            3.21,
            2.98,
            2.81,
            2.62,
            2.01,
            1.90,
            1.74,
            1.70,
            1.65,
            1.59,
            1.44,
            1.21,
            0.97,
            0.94,
            0.73,
            0.64,
            0.48,
            0.36,
            0.32,
            0.26,
            0.04,
            0.04,
        ],
        strict=True,
    )
)


def _russian_likelihood(text: str) -> float:
    """Mean log-frequency of the non-ASCII letters: higher means more like Russian."""
    # Letters outside both alphabets (Serbian, Greek, ...) are what a wrong guess produces.
    letters = [c for c in text.lower() if c.isalpha() and not c.isascii()]
    if not letters:
        return -100.0
    return sum(math.log(_RU_FREQ.get(c, 0.001)) for c in letters) / len(letters)


def decode_text(data: bytes, filename: str) -> tuple[str, str]:
    """Decode a text file; return (text, encoding name) or raise IngestError."""
    if not data.strip():
        raise IngestError(f"«{filename}»: файл пуст.")
    for bom, enc in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(enc), enc
            except UnicodeDecodeError as exc:
                raise IngestError(
                    f"«{filename}»: файл начинается с метки {enc}, но не читается в этой кодировке."
                ) from exc
    # A few NUL bytes happen in sloppy exports; many mean a binary file.
    if data.count(b"\x00") > max(8, len(data) // 100):
        raise IngestError(
            f"«{filename}»: файл не похож на текст (двоичные данные). "
            "Загрузите текстовый файл, PDF или сохраните документ как .txt."
        )
    try:
        return data.decode("utf-8").replace("\x00", ""), "utf-8"
    except UnicodeDecodeError as exc:
        # Cut inside its last character (size-limited export, interrupted copy): still UTF-8.
        if exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
            return data[: exc.start].decode("utf-8").replace("\x00", ""), "utf-8"
    matches = charset_normalizer.from_bytes(data, cp_isolation=_CANDIDATES)
    best = matches.best()
    if best is None:
        raise IngestError(
            f"«{filename}»: не удалось определить кодировку текста. Сохраните файл в UTF-8 и загрузите снова."
        )
    close = [m for m in matches if m.chaos <= best.chaos + 0.02]
    chosen = max(close, key=lambda m: (_russian_likelihood(str(m)), m is best))
    # Record the common spelling (koi8-r, not Python's koi8_r): it is shown to users.
    return str(chosen).replace("\x00", ""), chosen.encoding.replace("_", "-")


def extract_text_file(data: bytes, filename: str) -> Extracted:
    """Plain text and Markdown: one page-less text."""
    text, encoding = decode_text(data, filename)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise IngestError(f"«{filename}»: в файле нет текста.")
    mime = "text/markdown" if filename.lower().endswith((".md", ".markdown")) else "text/plain"
    return Extracted(pages=[Page(None, text)], mime_type=mime, encoding=encoding)


def extract_pdf(data: bytes, filename: str, max_pages: int) -> Extracted:
    """PDF text layer page by page, keeping 1-based page numbers."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password only to restrict editing.
            try:
                ok = reader.decrypt("")
            except Exception as exc:  # pypdf raises several types for unsupported crypto
                raise IngestError(f"«{filename}»: PDF зашифрован, его нельзя прочитать.") from exc
            if not ok:
                raise IngestError(
                    f"«{filename}»: PDF защищён паролем. Снимите защиту и загрузите файл снова."
                )
        count = len(reader.pages)
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise IngestError(f"«{filename}»: PDF повреждён или не является PDF ({exc}).") from exc
    if count == 0:
        raise IngestError(f"«{filename}»: в PDF нет страниц.")
    if count > max_pages:
        raise IngestError(f"«{filename}»: в PDF {count} страниц, а допускается не больше {max_pages}.")
    pages: list[Page] = []
    warnings: list[str] = []
    for i, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text() or ""
        except DependencyError as exc:  # AES needs the `cryptography` package
            raise IngestError(
                f"«{filename}»: PDF зашифрован (AES), а пакет cryptography для расшифровки не "
                "установлен. Установите его (pip install cryptography) или сохраните PDF без защиты."
            ) from exc
        except Exception as exc:  # a broken content stream should cost one page, not the file
            log.warning("page %d of %s unreadable: %s", i, filename, exc)
            warnings.append(f"стр. {i}: не удалось прочитать текст")
            continue
        if text.strip():
            pages.append(Page(i, text))
    if not pages:
        raise IngestError(
            f"«{filename}»: в PDF нет текстового слоя (похоже на скан). "
            "Распознавание сканов (OCR) пока не поддерживается."
        )
    return Extracted(pages=pages, mime_type="application/pdf", page_count=count, warnings=warnings)


@dataclass(frozen=True)
class Options:
    """Limits and progress reporting for one extraction."""

    max_pages: int = 2000
    # Bound on what an archive-based format (DOCX, ODT) may unpack: no decompression bombs.
    max_unpacked_bytes: int = 200 * 1024 * 1024
    progress: Callable[[float, str], None] | None = None

    def report(self, fraction: float, text: str) -> None:
        """Tell the caller how far extraction got (0..1)."""
        if self.progress is not None:
            self.progress(fraction, text)


Extractor = Callable[[bytes, str, Options], Extracted]

EXTRACTORS: dict[str, Extractor] = {
    ".txt": lambda d, n, _o: extract_text_file(d, n),
    ".text": lambda d, n, _o: extract_text_file(d, n),
    ".md": lambda d, n, _o: extract_text_file(d, n),
    ".markdown": lambda d, n, _o: extract_text_file(d, n),
    ".pdf": lambda d, n, o: extract_pdf(d, n, o.max_pages),
}

# rag.formats imports this module's Page, Extracted and decode_text, so it comes after them.
from rag.formats import FORMAT_EXTRACTORS  # noqa: E402

EXTRACTORS.update(FORMAT_EXTRACTORS)
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
    return extractor(data, filename, options or Options())
