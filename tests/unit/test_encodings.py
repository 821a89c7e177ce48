"""Text files in the encodings Russian documents really come in, and files that are not text."""

from __future__ import annotations

import codecs
import random
import re

import pytest

from rag import IngestError
from rag.ingest import extract
from rag.ingest.text import decode_text

# Only characters that every legacy Cyrillic code page can encode (no «», — or №).
LEASE = (
    "Договор аренды нежилого помещения.\n"
    "Срок аренды составляет 11 месяцев с момента подписания настоящего договора.\n"
    "Арендная плата составляет 45 000 рублей в месяц и вносится не позднее пятого числа.\n"
    "\n"
    "Арендатор обязуется содержать помещение в чистоте, а ещё своевременно оплачивать "
    "коммунальные услуги. Ёмкость склада - 300 кубических метров."
)

CYRILLIC = set("абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ")


def _family(name: str) -> str:
    return codecs.lookup(name).name


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf-16"),
        ("cp1251", "cp1251"),
        ("koi8_r", "koi8-r"),
        ("cp866", "cp866"),
    ],
)
def test_russian_text_round_trips(encoding: str, expected: str) -> None:
    data = LEASE.encode(encoding)
    if encoding == "utf-16":
        assert data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    text, detected = decode_text(data, "dogovor.txt")
    assert text == LEASE
    assert _family(detected) == expected


@pytest.mark.parametrize("encoding", ["cp1251", "koi8_r", "cp866"])
def test_short_all_caps_heading_is_read_as_russian(encoding: str) -> None:
    # Short upper-case text is where charset detectors confuse single-byte Cyrillic pages.
    heading = "ДОГОВОР АРЕНДЫ НЕЖИЛОГО ПОМЕЩЕНИЯ"
    text, detected = decode_text(heading.encode(encoding), "title.txt")
    assert text == heading
    assert _family(detected) == _family(encoding)


@pytest.mark.parametrize("encoding", ["utf-8", "cp1251", "koi8_r", "cp866", "utf-16"])
def test_extract_keeps_text_and_encoding(encoding: str) -> None:
    windows_lines = LEASE.replace("\n", "\r\n")
    got = extract(windows_lines.encode(encoding), "dogovor.txt")
    assert got.mime_type == "text/plain"
    assert _family(got.encoding or "") == _family(encoding)
    assert [p.number for p in got.pages] == [None]
    # Line endings are normalised; the words are untouched.
    assert got.pages[0].text == LEASE


def test_markdown_gets_markdown_mime_type() -> None:
    got = extract("# Договор\n\nСрок аренды составляет 11 месяцев.".encode(), "Договор.MD")
    assert got.mime_type == "text/markdown"
    assert extract(b"plain", "notes.txt").mime_type == "text/plain"


def _assert_russian_reason(exc: IngestError, filename: str) -> None:
    message = str(exc)
    assert filename in message
    # Mostly Cyrillic words: a reason the user can read, not a Python traceback.
    rest = re.sub(r"\.\w+", "", message.replace(filename, ""))  # file extensions are Latin
    letters = [c for c in rest if c.isalpha()]
    assert sum(c in CYRILLIC for c in letters) / len(letters) > 0.8


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   \n\t\r\n  ",
        codecs.BOM_UTF8 + b"  \n ",
        "  \n\n  ".encode("utf-16"),
    ],
    ids=["empty", "whitespace", "bom-whitespace", "utf16-whitespace"],
)
def test_empty_files_are_refused(data: bytes) -> None:
    with pytest.raises(IngestError) as err:
        extract(data, "пустой файл.txt")
    _assert_russian_reason(err.value, "пустой файл.txt")


@pytest.mark.parametrize(
    "data",
    [
        random.Random(1234).randbytes(4096),
        random.Random(99).randbytes(300),
        b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4 + b"\x00" * 512,
        b"MZ\x90\x00" + b"\x00" * 60 + "Договор".encode() * 10,
    ],
    ids=["random-4k", "random-300", "png-like", "exe-with-text"],
)
def test_binary_files_are_refused(data: bytes) -> None:
    with pytest.raises(IngestError) as err:
        extract(data, "photo.txt")
    _assert_russian_reason(err.value, "photo.txt")


@pytest.mark.parametrize("filename", ["slides.pptx", "table.xlsx", "archive.zip", "README"])
def test_unsupported_extension_is_refused(filename: str) -> None:
    with pytest.raises(IngestError) as err:
        extract(LEASE.encode(), filename)
    _assert_russian_reason(err.value, filename)
    assert "не поддерживается" in str(err.value)
    # The message lists what is accepted, so the user knows what to do.
    assert ".txt" in str(err.value) and ".pdf" in str(err.value)


def test_utf8_cut_inside_the_last_character_is_still_utf8() -> None:
    # Size-limited exports and interrupted copies end mid-character; the rest is fine.
    data = LEASE.encode("utf-8")
    assert LEASE.endswith("метров.")
    cut = (LEASE[:-1]).encode("utf-8")[:-1]  # «метров» loses half of its «в»
    assert data.startswith(cut)
    text, encoding = decode_text(cut, "dogovor.txt")
    assert _family(encoding) == "utf-8"
    assert text == LEASE[:-2]


@pytest.mark.parametrize("wrong", ["cp1251", "latin-1"])
def test_double_encoded_utf8_is_repaired(wrong: str) -> None:
    text = "Договор аренды нежилого помещения.\nСрок аренды составляет одиннадцать месяцев, плата 45 000 ₽."
    garbled = text.encode("utf-8").decode(wrong, errors="ignore" if wrong == "cp1251" else "strict")
    assert garbled != text and "Договор" not in garbled
    decoded, encoding = decode_text(garbled.encode("utf-8"), "dogovor.txt")
    assert "Договор аренды нежилого помещения." in decoded
    assert "одиннадцать месяцев" in decoded
    assert encoding == "utf-8 (исправлена двойная перекодировка)"


@pytest.mark.parametrize(
    "text",
    [
        "СССР. СРОЧНО. СЕКРЕТНО. РЕШЕНИЕ СОВЕТА СТОРОН: СРОК СДАЧИ РАБОТ — СЕНТЯБРЬ. " * 5,
        "Р. С. Сергеев, С. Р. Ростова: Россия, Саратов, Рязань, Самара, Ростов, Смоленск. " * 5,
    ],
)
def test_text_full_of_r_and_s_is_left_alone(text: str) -> None:
    for encoding in ("utf-8", "cp1251"):
        decoded, _ = decode_text(text.encode(encoding), "spisok.txt")
        assert decoded == text
