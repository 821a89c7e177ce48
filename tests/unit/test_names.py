"""names: one cleaning rule for every name a person types or uploads."""

from __future__ import annotations

import pytest

from names import UNNAMED, clean_filename, clean_name, clean_text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("счёт\u202efdp.txt", "счётfdp.txt"),  # RIGHT-TO-LEFT OVERRIDE: showed as «счётtxt.pdf»
        ("a\u202ab\u202bc\u202cd\u202de\u2066f\u2067g\u2068h\u2069i", "abcdefghi"),
        ("до\u200bго\u200cвор\u200d\u2060\ufeff.txt", "договор.txt"),
        ("\u200b\u200b.txt", f"{UNNAMED}.txt"),  # showed as «.txt»
        (".pdf", f"{UNNAMED}.pdf"),
        ("отчёт\x00\x07\x1b.txt", "отчёт.txt"),  # control characters showed as boxes
        ("две\nстроки\tи\u2028ещё.txt", "две строки и ещё.txt"),
        ("e\u0301.txt", "é.txt"),  # NFC
        ("C:\\Users\\x\\план.docx", "план.docx"),
        ("../../etc/passwd", "passwd"),
        ("   ", UNNAMED),
        ("\u202e", UNNAMED),
    ],
)
def test_file_names_are_cleaned(raw: str, clean: str) -> None:
    assert clean_filename(raw) == clean


def test_names_are_cleaned_and_never_empty() -> None:
    assert clean_name("  Отдел\u202e  продаж\u200b ") == "Отдел продаж"
    assert clean_name("\u200b\u2066") == UNNAMED
    assert clean_name("x" * 100, max_chars=10) == "x" * 10
    assert clean_text("\u200b") == ""
