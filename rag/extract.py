"""Turn uploaded bytes into text pages: encoding detection for text files, pypdf for PDFs,
Tesseract OCR (``rag.ocr``) for images, scans and PDF pages whose text layer is unreadable.

Every failure is an ``IngestError`` whose message tells the user, in Russian, what is wrong.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import io
import itertools
import logging
import math
import re
import threading
import unicodedata
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import charset_normalizer
import ftfy
from PIL import Image
from pypdf import PdfReader
from pypdf.errors import DependencyError, PdfReadError

from rag import IngestError, ocr

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


# C0 control bytes other than whitespace (tab, line feeds, form feed) and escape: text has none,
# binary data about one in ten. NUL is the common one in sloppy exports.
_BINARY_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20)])
# Control characters are never text: they are dropped from decoded text (invisible in a chunk).
_DROP_CONTROLS = dict.fromkeys([*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F])
# What Russian or English text is made of; binary data read as UTF-16 is mostly CJK and controls.
_NOT_EUROPEAN = re.compile(r"[^\t\n\r\x20-\x7e\u00a0-\u052f\u2000-\u21ff]")
_CYRILLIC_LETTER = re.compile(r"[\u0400-\u04ff]")
_SPACE_RUNS = re.compile(r"[ \t]{2,}")


def _utf16_without_bom(data: bytes) -> tuple[str, str] | None:
    """Text saved as UTF-16 without a byte order mark (a NUL in every other byte), or None."""
    if len(data) % 2:
        return None
    for encoding in ("utf-16-le", "utf-16-be"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if len(_NOT_EUROPEAN.findall(text)) <= len(text) // 100:
            return text, encoding
    return None


def _garbled_share(text: str) -> float:
    """Share of the Cyrillic letters that sit on lines reading as another code page would show them."""
    total = garbled = 0
    for line in text.splitlines():
        cyr = _CYRILLIC_LETTER.findall(line)
        total += len(cyr)
        if len(cyr) >= 20 and _wrong_code_page(cyr, floor=0.0):
            garbled += len(cyr)
    return garbled / total if total else 0.0


def decode_text(data: bytes, filename: str) -> tuple[str, str]:
    """Decode a text file; return (text, encoding name) or raise IngestError."""
    text, encoding = _decode(data, filename)
    if _looks_double_encoded(text):
        # UTF-8 once read as cp1251 or Latin-1 and saved again («Р”РѕРіРѕРІРѕСЂ», «ÐÐ¾Ð³Ð¾Ð²Ð¾Ñ€»)
        # is common in Russian exports; ftfy reverses exactly that and leaves clean text alone.
        fixed = ftfy.fix_encoding(text)
        if fixed != text:
            text, encoding = fixed, f"{encoding} (исправлена двойная перекодировка)"
    return text.translate(_DROP_CONTROLS), encoding


def _looks_double_encoded(text: str) -> bool:
    """Cheap pre-check: in such text every Russian letter turns into 'Р'/'С' (or 'Ð'/'Ñ') + one more."""
    marks = text.count("Р") + text.count("С") + text.count("Ð") + text.count("Ñ")
    return marks > 20 and marks > len(text) // 20


def _decode(data: bytes, filename: str) -> tuple[str, str]:
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
    # A few control bytes happen in sloppy exports; many mean UTF-16 without a BOM, or binary data.
    controls = len(data) - len(data.translate(None, _BINARY_BYTES))
    if controls > max(8, len(data) // 100):
        utf16 = _utf16_without_bom(data)
        if utf16 is not None:
            return utf16
        raise IngestError(
            f"«{filename}»: файл не похож на текст (двоичные данные). "
            "Загрузите текстовый файл, PDF или сохраните документ как .txt."
        )
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        # Cut inside its last character (size-limited export, interrupted copy): still UTF-8.
        if exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
            return data[: exc.start].decode("utf-8"), "utf-8"
    matches = charset_normalizer.from_bytes(data, cp_isolation=_CANDIDATES)
    best = matches.best()
    if best is None:
        raise IngestError(
            f"«{filename}»: не удалось определить кодировку текста. Сохраните файл в UTF-8 и загрузите снова."
        )
    close = [m for m in matches if m.chaos <= best.chaos + 0.02]
    chosen = max(close, key=lambda m: (_russian_likelihood(str(m)), m is best))
    text = str(chosen)
    # Files glued together from two code pages (KOI8-R and cp1251, say) read well in neither:
    # whatever is chosen, part of the text comes out as letter soup, which must not be indexed.
    if _garbled_share(text) > 0.05:
        raise IngestError(
            f"«{filename}»: не удалось определить кодировку текста — часть файла не читается ни в одной "
            "кодировке (похоже, в нём смешаны разные кодировки). Сохраните файл в UTF-8 и загрузите снова."
        )
    # Record the common spelling (koi8-r, not Python's koi8_r): it is shown to users.
    return text, chosen.encoding.replace("_", "-")


def extract_text_file(data: bytes, filename: str) -> Extracted:
    """Plain text and Markdown: one page-less text."""
    text, encoding = decode_text(data, filename)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise IngestError(f"«{filename}»: в файле нет текста.")
    mime = "text/markdown" if filename.lower().endswith((".md", ".markdown")) else "text/plain"
    return Extracted(pages=[Page(None, text)], mime_type=mime, encoding=encoding)


# -- PDF text layers ----------------------------------------------------------------------------

_VOWELS = frozenset("aeiouy")
_PUNCT_STRIP = "\"'«»„“”‘’()[]{}<>.,;:!?…-–—/\\|*•·_"


def _bad_char(c: str) -> bool:
    """Characters a real text layer does not consist of: control, private use, unassigned."""
    if c == "\ufffd":
        return True
    cat = unicodedata.category(c)
    if cat in ("Co", "Cn", "Cs"):
        return True
    return cat == "Cc" and c not in "\t\n\r"


def _is_clean_token(token: str) -> bool:
    """A word or a number, as prose and tables are made of (hyphens, dots inside allowed)."""
    core = token.strip(_PUNCT_STRIP)
    if not any(c.isalnum() for c in core):
        return True  # a dash, a bullet, a leader of dots, «=», «§»
    parts = re.split(r"[-'’./,:%№]", core)
    return all(p.isalnum() or p == "" for p in parts)  # «10кг», «COVID-19», «п.3.2», «1,5%»


def looks_like_garbage(text: str) -> bool:
    """True when a PDF text layer is unusable and the page should be recognised instead.

    Catches what fonts without a Unicode map produce: control and private-use characters,
    replacement characters, cp1251 read as Latin-1 («Ñðîê»), KOI8/cp1251 swaps with broken
    case («уПЙЛ»), Cyrillic typed on Latin keys («Chjr gjcnfdrb»), glyph-number soup
    («5:+8/%»), Latin look-alikes mixed into Cyrillic words. Conservative: ordinary Russian or
    English text, tables of numbers, lists and tables of contents are never garbage.
    """
    chars = [c for c in text if not c.isspace()]
    n = len(chars)
    if n == 0:
        return False
    bad = sum(1 for c in chars if _bad_char(c))
    if bad / n > 0.1:
        return True
    if n < 20:
        return False
    # Leaders and rules («........», «____», «|») are not counted: tables of contents, forms.
    counted = [c for c in chars if c not in ".-_…·|–—=*"]
    if counted and sum(1 for c in counted if c.isalnum()) / len(counted) < 0.4:
        return True  # mostly symbols: glyph numbers shown as punctuation
    letters = [c for c in chars if c.isalpha()]
    if letters:
        latin1 = sum(1 for c in letters if "\u00c0" <= c <= "\u024f")
        cyr = [c for c in letters if "\u0400" <= c <= "\u04ff"]
        if latin1 / len(letters) > 0.3 and len(cyr) / len(letters) < 0.1:
            return True  # «Ñðîê ïîñòàâêè», «Ð¡Ñ€Ð¾Ðº»
        if len(cyr) >= 20 and _wrong_code_page(cyr):
            return True
    tokens = text.split()
    if len(tokens) < 8:
        return False
    if sum(1 for t in tokens if _is_clean_token(t)) / len(tokens) < 0.5:
        return True  # letters, digits and symbols interleaved
    words = [t.strip(_PUNCT_STRIP) for t in tokens]
    words = [w for w in words if len(w) >= 3 and w.isalpha()]
    if len(words) >= 8:
        mixed = sum(1 for w in words if _has_cyrillic(w) and _has_latin(w))
        if mixed / len(words) > 0.25:
            return True  # Latin look-alikes inside Cyrillic words
        flipped = sum(1 for w in words if re.search(r"[a-zа-яё][A-ZА-ЯЁ]", w))
        if flipped / len(words) > 0.3:
            return True  # «уПЙЛ ОПЯРЮБЙХ»: case inverted inside words
    latin = [w for w in words if w.isascii() and any(c.islower() for c in w)]
    if len(latin) >= 8:
        voiceless = sum(1 for w in latin if not _VOWELS & set(w.lower()))
        letters_l = "".join(latin).lower()
        vowel_share = sum(1 for c in letters_l if c in _VOWELS) / len(letters_l)
        if voiceless / len(latin) > 0.4 or vowel_share < 0.2:
            return True  # «Chjr gjcnfdrb cjcnfdkztn»: Russian typed on a Latin layout
    return False


def _wrong_code_page(cyr: list[str], floor: float = -1.0) -> bool:
    """True when Cyrillic letters read as another code page shows them, not as any real language.

    ``floor`` is the lowest likelihood taken for a real language: a PDF text layer may be Kazakh
    (about -0.5), but no Russian code page holds Kazakh, so a line of a text file read in one
    that scores below 0 is in another code page.
    """
    odd = sum(1 for c in cyr if not ("А" <= c <= "я" or c in "Ёё"))
    if odd / len(cyr) > 0.3:
        return True  # cp866 shown as cp1251 and similar
    likelihood = _russian_likelihood("".join(cyr))
    upper = sum(1 for c in cyr if c.isupper()) / len(cyr)
    # Real Russian scores about 1.5 (in capitals too), Ukrainian 1.1, Serbian and
    # Belarusian about 1.0, Kazakh -0.5; KOI8-R and cp1251 swapped score 0.9 and come
    # out in capitals; cp1251 shown as cp866 or ISO 8859-5 scores below -1.3.
    return likelihood < floor or (upper > 0.7 and likelihood < 1.0)


def _has_cyrillic(word: str) -> bool:
    return any("\u0400" <= c <= "\u04ff" for c in word)


def _has_latin(word: str) -> bool:
    return any("a" <= c.lower() <= "z" for c in word)


# Pages are rendered for OCR at this resolution (Tesseract's own recommendation).
RENDER_DPI = 300
# A text layer this short on a page with an image is a scan's stamp («Scanned by …», a page
# number), not the page's text: the page is recognised too and the longer text kept.
SPARSE_TEXT = 40
# PDFium is not thread-safe, and the app indexes uploads from several sessions at once.
_PDFIUM_LOCK = threading.Lock()


def _nonspace(text: str) -> int:
    return sum(1 for c in text if not c.isspace())


def _page_ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> '1–3, 5'."""
    parts: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}–{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


class _PdfRenderer:
    """Renders pages of one PDF with PDFium for OCR; opens the document on first use."""

    def __init__(self, data: bytes, password: str | None) -> None:
        self._data = data
        self._password = password
        self._doc: Any = None
        self._error: Exception | None = None

    def _document(self) -> Any:
        if self._error is not None:
            raise self._error
        if self._doc is None:
            import pypdfium2 as pdfium

            try:
                self._doc = pdfium.PdfDocument(self._data, password=self._password)
            except Exception as exc:  # PdfiumError, or anything a damaged file provokes
                self._error = exc
                raise
        return self._doc

    def is_blank(self, index: int) -> bool:
        """Whether the page draws nothing at all: no text, image, path or form object."""
        with _PDFIUM_LOCK:
            page = self._document()[index]
            try:
                return next(iter(page.get_objects(max_depth=1)), None) is None
            finally:
                page.close()

    def has_images(self, index: int) -> bool:
        """Whether the page draws any raster image (a scan, a photo)."""
        import pypdfium2.raw as pdfium_c

        with _PDFIUM_LOCK:
            page = self._document()[index]
            try:
                objects = page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3)
                return next(iter(objects), None) is not None
            finally:
                page.close()

    def render(self, index: int) -> Image.Image:
        """The page as a grayscale image at RENDER_DPI (less for huge pages)."""
        with _PDFIUM_LOCK:
            page = self._document()[index]
            try:
                width, height = page.get_size()
                scale = RENDER_DPI / 72
                if width * height * scale * scale > ocr.MAX_OCR_PIXELS:
                    scale = math.sqrt(ocr.MAX_OCR_PIXELS / max(width * height, 1.0))
                bitmap = page.render(scale=scale, grayscale=True)
                try:
                    image: Image.Image = bitmap.to_pil().copy()  # to_pil shares the bitmap's buffer
                finally:
                    bitmap.close()
                return image
            finally:
                page.close()

    def close(self) -> None:
        if self._doc is not None:
            with _PDFIUM_LOCK:
                self._doc.close()
            self._doc = None


def extract_pdf(data: bytes, filename: str, options: Options | None = None) -> Extracted:
    """PDF page by page, keeping 1-based page numbers.

    A page's text layer is used when it is good; a page without one (a scan), with an
    unreadable one (fonts without a Unicode map) or with only a stamp over an image is rendered
    and recognised with Tesseract (``Page.ocr``). A page that cannot be recognised costs a
    warning, not the document.
    """
    options = options or Options()
    password: str | None = None
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
            password = ""
        count = len(reader.pages)
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        log.warning("unreadable PDF %s: %s", filename, exc)  # pypdf's English reason is for the log
        raise IngestError(
            f"«{filename}»: PDF повреждён (например, загружен не до конца) или не является PDF. "
            "Откройте его в программе для PDF, сохраните заново и загрузите снова."
        ) from exc
    if count == 0:
        raise IngestError(f"«{filename}»: в PDF нет страниц.")
    if count > options.max_pages:
        raise IngestError(
            f"«{filename}»: в PDF {count} страниц, а допускается не больше {options.max_pages}."
        )
    pages: list[Page] = []
    warnings: list[str] = []
    no_ocr: list[int] = []  # pages that needed OCR where Tesseract is missing
    failed: list[int] = []  # pages whose recognition failed
    blank: list[int] = []  # pages that draw nothing: nothing to read, nothing to recognise
    todo: list[tuple[int, str, bool]] = []  # (page number, usable text layer, unreadable)
    done = 0
    renderer = _PdfRenderer(data, password)
    try:
        # Pass 1: text layers (fast); pages that need OCR are set aside.
        for i, page in enumerate(reader.pages, start=1):
            options.report(done / count, f"Чтение «{filename}»: стр. {i}/{count}")
            unreadable = False
            try:
                text = page.extract_text() or ""
            except DependencyError as exc:  # AES needs the `cryptography` package
                raise IngestError(
                    f"«{filename}»: PDF зашифрован (AES), а пакет cryptography для расшифровки не "
                    "установлен. Установите его (pip install cryptography) или сохраните PDF без защиты."
                ) from exc
            except Exception as exc:  # a broken content stream should cost one page, not the file
                log.warning("page %d of %s unreadable: %s", i, filename, exc)
                text, unreadable = "", True
            # Justified lines come out of pypdf with runs of spaces between words.
            text = _SPACE_RUNS.sub(" ", text)
            usable = "" if looks_like_garbage(text) else text  # what the layer gives without OCR
            if usable.strip() and (_nonspace(usable) >= SPARSE_TEXT or not _has_images(renderer, i - 1)):
                pages.append(Page(i, usable))  # a good layer, or a short page (title, table)
                done += 1
            elif not text.strip() and not unreadable and _is_blank(renderer, page, i - 1):
                blank.append(i)  # rendering an empty page for OCR costs a second and finds nothing
                done += 1
            elif not ocr.tesseract_available():
                if usable.strip():
                    pages.append(Page(i, usable))
                elif unreadable:
                    warnings.append(f"стр. {i}: не удалось прочитать текст")
                else:
                    no_ocr.append(i)
                done += 1
            else:
                todo.append((i, usable, unreadable))
        # Pass 2: render and recognise, several pages at once.
        jobs = (functools.partial(_recognise_pdf_page, renderer, i - 1) for i, _, _ in todo)
        if todo:
            options.report(done / count, f"Распознавание «{filename}»: стр. {todo[0][0]}/{count}")
        with contextlib.closing(_run_parallel(jobs)) as results:
            for k, ((i, usable, unreadable), result) in enumerate(zip(todo, results, strict=True)):
                done += 1
                if k + 1 < len(todo):
                    following = todo[k + 1][0]
                    options.report(done / count, f"Распознавание «{filename}»: стр. {following}/{count}")
                if isinstance(result, Exception):
                    log.warning("OCR of page %d of %s failed: %s", i, filename, result)
                    failed.append(i)
                    warnings.append(f"стр. {i}: не удалось распознать")
                    if usable.strip():
                        pages.append(Page(i, usable))
                elif _nonspace(result) > _nonspace(usable):
                    pages.append(Page(i, result, ocr=True))
                elif usable.strip():
                    pages.append(Page(i, usable))
                elif unreadable:
                    warnings.append(f"стр. {i}: не удалось прочитать текст")
    finally:
        renderer.close()
    pages.sort(key=lambda p: p.number or 0)
    problem = ocr.tesseract_problem()
    if no_ocr and problem is not None:
        if not pages:
            raise IngestError(
                f"«{filename}»: в PDF нет читаемого текстового слоя (скан или шрифты без таблицы "
                f"Unicode), а распознать страницы нельзя. {problem}"
            )
        warnings.append(
            f"стр. {_page_ranges(no_ocr)}: нет читаемого текстового слоя, а распознавание (OCR) недоступно — "
            "эти страницы не проиндексированы"
        )
    if not pages and len(blank) == count:
        raise IngestError(
            f"«{filename}»: в PDF нет текста — все страницы ({count}) пустые: на них нет ни текстового "
            "слоя, ни изображений."
        )
    if not pages:
        why = f" (не удалось распознать стр. {_page_ranges(failed)})" if failed else ""
        raise IngestError(
            f"«{filename}»: в PDF нет читаемого текстового слоя, а распознавание (OCR) не нашло "
            f"на страницах текста{why}."
        )
    options.report(1.0, f"Прочитан «{filename}»")
    return Extracted(pages=pages, mime_type="application/pdf", page_count=count, warnings=warnings)


def _recognise_pdf_page(renderer: _PdfRenderer, index: int) -> str:
    return ocr.ocr_image(renderer.render(index))


def _run_parallel(jobs: Iterable[Callable[[], str]]) -> Generator[str | Exception, None, None]:
    """Results of ``jobs`` in their order, ``ocr.workers()`` at a time (each job one Tesseract).

    Jobs are taken from the iterable only a few ahead of the consumer, so a long scan is never
    rendered into memory at once. A job's exception is yielded, not raised. Closing the
    generator (the consumer stopped, e.g. indexing was cancelled) drops the jobs not started.
    """
    workers = ocr.workers()
    source = iter(jobs)
    if workers == 1:
        for job in source:
            try:
                yield job()
            except Exception as exc:
                yield exc
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocr") as pool:
        pending: deque[Future[str]] = deque(pool.submit(job) for job in itertools.islice(source, 2 * workers))
        try:
            while pending:
                future = pending.popleft()
                try:
                    result: str | Exception = future.result()
                except Exception as exc:
                    result = exc
                upcoming = next(source, None)
                if upcoming is not None:
                    pending.append(pool.submit(upcoming))
                yield result
        finally:
            for future in pending:
                future.cancel()


def _is_blank(renderer: _PdfRenderer, page: Any, index: int) -> bool:
    if "/Annots" in page:  # annotations (stamps, notes, form fields) are drawn on the page too
        return False
    try:
        return renderer.is_blank(index)
    except Exception as exc:  # PDFium cannot open the file: let recognition try (and report)
        log.debug("blank check failed: %s", exc)
        return False


def _has_images(renderer: _PdfRenderer, index: int) -> bool:
    try:
        return renderer.has_images(index)
    except Exception as exc:  # PDFium cannot open the file: keep the text layer
        log.debug("image check failed: %s", exc)
        return False


# -- images -----------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")


def _open_image(data: bytes, filename: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise IngestError(
            f"«{filename}»: изображение слишком большое (больше {ocr.MAX_IMAGE_PIXELS // 1_000_000} "
            "мегапикселей). Уменьшите его разрешение и загрузите снова."
        ) from exc
    except Exception as exc:  # UnidentifiedImageError, SyntaxError, struct.error, ...
        log.warning("unreadable image %s: %r", filename, exc)
        raise IngestError(
            f"«{filename}»: файл повреждён или не является изображением (PNG, JPEG, TIFF, WebP, BMP). "
            "Откройте его в графическом редакторе, сохраните заново и загрузите снова."
        ) from exc
    return image


def _check_size(image: Image.Image, filename: str) -> None:
    width, height = image.size
    if width * height > ocr.MAX_IMAGE_PIXELS:
        raise IngestError(
            f"«{filename}»: изображение слишком большое ({width}×{height} пикселей, допускается не "
            f"больше {ocr.MAX_IMAGE_PIXELS // 1_000_000} мегапикселей). Уменьшите его разрешение и "
            "загрузите снова."
        )
    if width < 1 or height < 1:
        raise IngestError(f"«{filename}»: изображение пустое (0 пикселей).")


class _FrameUnreadable(Exception):
    """A frame of an image file could not be decoded."""


def _load_frames(image: Image.Image, frames: int, filename: str) -> Iterator[Callable[[], str]]:
    """One OCR job per frame; frames are decoded here, in order, as the jobs are taken."""
    for index in range(frames):
        try:
            image.seek(index)
            _check_size(image, filename)
            image.load()
            frame = image.copy()
        except IngestError:
            raise
        except Exception as exc:  # truncated or corrupt pixel data
            error = _FrameUnreadable(str(exc) or type(exc).__name__)
            yield functools.partial(_raise, error)
            continue
        yield functools.partial(ocr.ocr_image, frame)


def _raise(error: Exception) -> str:
    raise error


def extract_image(data: bytes, filename: str, options: Options | None = None) -> Extracted:
    """Recognise text on an image; a multi-page TIFF gives one page per frame."""
    options = options or Options()
    image = _open_image(data, filename)
    _check_size(image, filename)
    mime = Image.MIME.get(image.format or "", "image/" + PurePath(filename).suffix.lower().lstrip("."))
    # Only TIFF has pages; other formats' extra frames are animation.
    frames = int(getattr(image, "n_frames", 1) or 1) if image.format == "TIFF" else 1
    if frames > options.max_pages:
        raise IngestError(
            f"«{filename}»: в изображении {frames} страниц, а допускается не больше {options.max_pages}."
        )
    problem = ocr.tesseract_problem()
    if problem is not None:
        raise IngestError(f"«{filename}»: {problem}")

    def label(index: int) -> str:
        return f"Распознавание «{filename}»" + (f": стр. {index + 1}/{frames}" if frames > 1 else "")

    pages: list[Page] = []
    warnings: list[str] = []
    options.report(0.0, label(0))
    with contextlib.closing(_run_parallel(_load_frames(image, frames, filename))) as results:
        for index, result in enumerate(results):
            if index + 1 < frames:
                options.report((index + 1) / frames, label(index + 1))
            if isinstance(result, Exception):
                log.warning("frame %d of %s failed: %s", index + 1, filename, result)
                if frames == 1 and isinstance(result, _FrameUnreadable):
                    raise IngestError(
                        f"«{filename}»: изображение повреждено (например, загружено не до конца), его "
                        "не удалось прочитать. Сохраните его заново и загрузите снова."
                    ) from result
                if frames == 1:
                    # OcrError says in Russian what Tesseract did (timed out, crashed); others are ours.
                    why = str(result) if isinstance(result, ocr.OcrError) else "ошибка обработки изображения"
                    raise IngestError(f"«{filename}»: не удалось распознать текст ({why}).") from result
                what = "прочитать изображение" if isinstance(result, _FrameUnreadable) else "распознать"
                warnings.append(f"стр. {index + 1}: не удалось {what}")
            elif result.strip():
                pages.append(Page(index + 1 if frames > 1 else None, result, ocr=True))
    if not pages:
        raise IngestError(
            f"«{filename}»: на изображении не удалось распознать текст — его нет, или он слишком "
            "мелкий, размытый или рукописный."
        )
    options.report(1.0, f"Распознан «{filename}»")
    return Extracted(
        pages=pages, mime_type=mime, page_count=frames if frames > 1 else None, warnings=warnings
    )


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
    ".pdf": extract_pdf,
    **dict.fromkeys(IMAGE_EXTENSIONS, extract_image),
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
