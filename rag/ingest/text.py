"""Plain text and Markdown: encoding detection for Russian text files and double-encoding repair.

``decode_text`` is shared with the formats that are text underneath (HTML, CSV, JSON);
``wrong_code_page`` with the PDF text-layer check.
"""

from __future__ import annotations

import codecs
import math
import re

import charset_normalizer
import ftfy

from language import CYRILLIC
from rag import IngestError
from rag.ingest.types import Extracted, Page

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
        cyr = CYRILLIC.findall(line)
        total += len(cyr)
        if len(cyr) >= 20 and wrong_code_page(cyr, floor=0.0):
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
    markdown = filename.lower().endswith((".md", ".markdown"))
    mime = "text/markdown" if markdown else "text/plain"
    return Extracted(pages=[Page(None, text)], mime_type=mime, encoding=encoding, has_headings=markdown)


def wrong_code_page(cyr: list[str], floor: float = -1.0) -> bool:
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
