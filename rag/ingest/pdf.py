"""PDF page by page: PDFium text layers read as printed (``pdf_text``), Tesseract OCR (PDFium
renders) for scans and for pages whose text layer is unreadable (``looks_like_garbage``) or
damaged (``pdf_text.damage``: glued words, bad characters, non-words). pypdf checks the file
(encryption, page count) and reads a page only where PDFium cannot.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import re
import threading
import unicodedata
from typing import Any

from PIL import Image
from pypdf import PdfReader
from pypdf.errors import DependencyError, PdfReadError

from language import CYRILLIC, has_cyrillic
from rag import IngestError
from rag.ingest import ocr
from rag.ingest.pdf_text import PageText, damage, read_pdf_texts
from rag.ingest.text import wrong_code_page
from rag.ingest.types import Extracted, Options, Page

log = logging.getLogger(__name__)

_SPACE_RUNS = re.compile(r"[ \t]{2,}")
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
        cyr = [c for c in letters if CYRILLIC.match(c)]
        if latin1 / len(letters) > 0.3 and len(cyr) / len(letters) < 0.1:
            return True  # «Ñðîê ïîñòàâêè», «Ð¡Ñ€Ð¾Ðº»
        if len(cyr) >= 20 and wrong_code_page(cyr):
            return True
    tokens = text.split()
    if len(tokens) < 8:
        return False
    if sum(1 for t in tokens if _is_clean_token(t)) / len(tokens) < 0.5:
        return True  # letters, digits and symbols interleaved
    words = [t.strip(_PUNCT_STRIP) for t in tokens]
    words = [w for w in words if len(w) >= 3 and w.isalpha()]
    if len(words) >= 8:
        mixed = sum(1 for w in words if has_cyrillic(w) and _has_latin(w))
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


def _has_latin(word: str) -> bool:
    return any("a" <= c.lower() <= "z" for c in word)


# Pages are rendered for OCR at this resolution (Tesseract's own recommendation).
RENDER_DPI = 300
# A text layer this short on a page with an image is a scan's stamp («Scanned by …», a page
# number), not the page's text: the page is recognised too and the longer text kept.
SPARSE_TEXT = 40
# PDFium is not thread-safe, and the app indexes uploads from several sessions at once.
_PDFIUM_LOCK = threading.Lock()
PDFIUM_LOCK = _PDFIUM_LOCK  # for the source view's renders (rag.library.render)


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

    def page_texts(self) -> list[PageText]:
        """Every page's text as indexed (``pdf_text.read_pdf_texts``)."""
        with _PDFIUM_LOCK:
            document = self._document()
        return read_pdf_texts(document, _PDFIUM_LOCK)

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
    damaged: list[int] = []  # pages whose text layer was unreadable or damaged
    done = 0
    renderer = _PdfRenderer(data, password)
    try:
        options.report(0.0, f"Чтение «{filename}»: стр. 1/{count}")
        texts = _pdfium_texts(renderer, count, filename)
        # Pass 1: text layers (fast); pages that need OCR are set aside.
        for i, page in enumerate(reader.pages, start=1):
            if i % 10 == 1:
                options.report(done / count, f"Чтение «{filename}»: стр. {i}/{count}")
            if texts and not texts[i - 1].text.strip() and texts[i - 1].layer_chars:
                done += 1  # only furniture (a table of contents, a running head): nothing to index
                continue
            text, unreadable = (texts[i - 1].text, False) if texts else _pypdf_text(page, i, filename)
            gauge = damage(text)
            if texts and gauge.damaged:
                # PDFium's layer is damaged here: pypdf's may not be (each where it is better).
                other, broken = _pypdf_text(page, i, filename)
                if not broken and not damage(other).damaged and not looks_like_garbage(other):
                    text, gauge = other, damage(other)
            bad = looks_like_garbage(text)
            if bad or unreadable or gauge.damaged:
                damaged.append(i)
            usable = "" if bad else text  # what the layer gives without OCR
            if i in damaged and usable.strip() and ocr.tesseract_available():
                todo.append((i, usable, unreadable))  # a damaged layer: recognised, as a scan is
            elif usable.strip() and (_nonspace(usable) >= SPARSE_TEXT or not _has_images(renderer, i - 1)):
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
        with contextlib.closing(ocr.run_parallel(jobs)) as results:
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
                elif _nonspace(result) > _nonspace(usable) or _better_than_damaged(result, usable):
                    pages.append(Page(i, result, ocr=True))
                elif usable.strip():
                    pages.append(Page(i, usable))
                elif unreadable:
                    warnings.append(f"стр. {i}: не удалось прочитать текст")
    finally:
        renderer.close()
    pages.sort(key=lambda p: p.number or 0)
    pages = [_with_words(p, texts) for p in pages]
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
    return Extracted(
        pages=pages,
        mime_type="application/pdf",
        page_count=count,
        warnings=warnings,
        damaged_pages=len(damaged),
    )


def _pdfium_texts(renderer: _PdfRenderer, count: int, filename: str) -> list[PageText] | None:
    """Every page's text from PDFium, or None when PDFium cannot read the file (pypdf then does)."""
    try:
        texts = renderer.page_texts()
    except Exception as exc:  # PdfiumError, or anything a damaged file provokes
        log.warning("PDFium cannot read the text of %s: %s", filename, exc)
        return None
    if len(texts) != count:  # the two readers disagree about the file: trust neither's pages
        log.warning("PDFium sees %d pages in %s, pypdf %d", len(texts), filename, count)
        return None
    return texts


def _pypdf_text(page: Any, number: int, filename: str) -> tuple[str, bool]:
    """pypdf's text of one page, and whether the page could not be read at all."""
    try:
        text = page.extract_text() or ""
    except DependencyError as exc:  # AES needs the `cryptography` package
        raise IngestError(
            f"«{filename}»: PDF зашифрован (AES), а пакет cryptography для расшифровки не "
            "установлен. Установите его (pip install cryptography) или сохраните PDF без защиты."
        ) from exc
    except Exception as exc:  # a broken content stream should cost one page, not the file
        log.warning("page %d of %s unreadable: %s", number, filename, exc)
        return "", True
    # Justified lines come out of pypdf with runs of spaces between words.
    return _SPACE_RUNS.sub(" ", text), False


def _better_than_damaged(recognised: str, layer: str) -> bool:
    """OCR wins over a damaged text layer when it reads clean and about as much."""
    return (
        bool(layer.strip())
        and damage(layer).damaged
        and not damage(recognised).damaged
        and _nonspace(recognised) >= 0.5 * _nonspace(layer)
    )


def _with_words(page: Page, texts: list[PageText] | None) -> Page:
    """The page with its words' boxes: Tesseract's for a recognised page, PDFium's for a page
    indexed from its text layer (none for a page read by pypdf: its offsets are another text's)."""
    if page.ocr:
        words = page.text.words if isinstance(page.text, ocr.Recognised) else None
    elif texts and page.number is not None and texts[page.number - 1].text == page.text:
        words = texts[page.number - 1].words
    else:
        words = None
    return Page(page.number, str(page.text), page.ocr, words)


def _recognise_pdf_page(renderer: _PdfRenderer, index: int) -> str:
    return ocr.ocr_image(renderer.render(index))


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
