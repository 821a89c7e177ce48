"""PDF text as a person reads it (issue 25), on PDFs laid out here with fpdf2 and read for real.

Running heads and feet, page numbers, tables of contents, words hyphenated at line ends, two
columns drawn row by row, a text layer whose spaces are lost: each is built the way real
typesetters leave it, and read through ``extract`` (PDFium, pypdf, Tesseract; nothing mocked).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageDraw, ImageFont

from rag.ingest import extract, ocr
from rag.ingest.pdf_text import Damage, damage, gauge_label, read_pdf_texts
from rag.library import Library
from ui.tables import documents_frame

fpdf = pytest.importorskip("fpdf")

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
pytestmark = pytest.mark.skipif(
    not FONT.exists(), reason=f"Cyrillic PDFs need the DejaVu TTF at {FONT} (Debian fonts-dejavu-core)"
)

BODY = [
    "Оператор склада принимает груз по накладной и сверяет количество мест с документами.",
    "Паллеты с повреждённой упаковкой откладываются в зону брака до решения старшего смены.",
    "Температура в камере охлаждения проверяется каждые четыре часа и записывается в журнал.",
    "Погрузчик разрешается использовать только после ежесменного осмотра и записи в журнале.",
    "Штрихкод каждой паллеты сканируется терминалом при размещении в ячейку хранения.",
    "Отгрузка начинается после проверки пломбы на кузове и подписи водителя в накладной.",
]
HEAD = "ООО «Ромашка» · Руководство оператора склада · редакция 2"


def new_pdf(size: int = 11) -> Any:
    pdf = fpdf.FPDF()
    pdf.add_font("DejaVu", fname=str(FONT))
    pdf.set_font("DejaVu", size=size)
    pdf.set_auto_page_break(False)
    return pdf


def page_texts(data: bytes) -> list[str]:
    return [p.text for p in extract(data, "doc.pdf").pages]


def with_furniture(pages: int = 6) -> bytes:
    """A manual: a running head, body lines, a page number at the foot of every page."""
    pdf = new_pdf()
    for n in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font_size(8)
        pdf.text(20, 12, f"{HEAD} · стр. {n} из {pages}")
        pdf.set_font_size(11)
        for k in range(6):
            pdf.text(20, 30 + 6 * k, f"{n}.{k + 1}. {BODY[(n + k) % len(BODY)]}")
        pdf.text(104, 287, str(n))
    return bytes(pdf.output())


def test_running_heads_and_page_numbers_are_not_indexed() -> None:
    texts = page_texts(with_furniture())
    assert len(texts) == 6
    for n, text in enumerate(texts, start=1):
        assert "Руководство оператора склада" not in text, text
        assert "стр." not in text
        lines = text.splitlines()
        assert str(n) not in lines, lines  # the page number line
        assert f"{n}.1. " in text and f"{n}.6. " in text  # the body stays, all of it


def test_a_table_header_on_every_page_stays() -> None:
    # A price list continued over pages: its header row repeats at the same place, as far from
    # the first row as the rows are from each other. It carries content and must stay.
    pdf = new_pdf()
    for n in range(4):
        pdf.add_page()
        for k, row in enumerate(
            [("Код", "Услуга", "Цена, руб.")]
            + [(f"Х-{n}{j}", BODY[j][:40], f"{j + 1}0,00") for j in range(5)]
        ):
            y = 20 + 8 * k
            pdf.text(20, y, row[0])
            pdf.text(45, y, row[1])
            pdf.text(170, y, row[2])
    texts = page_texts(bytes(pdf.output()))
    assert len(texts) == 4
    for text in texts:
        assert "Код Услуга Цена, руб." in text, text  # one row, read across


def test_table_of_contents_is_not_indexed() -> None:
    pdf = new_pdf()
    pdf.add_page()
    pdf.text(20, 20, "Содержание")
    entries = ["Приёмка груза", "Размещение на хранение", "Температурный режим", "Работа погрузчика"]
    for k, title in enumerate(entries):
        y = 32 + 7 * k
        pdf.text(20, y, f"{k + 1}.1 {title}")
        pdf.text(20 + pdf.get_string_width(f"{k + 1}.1 {title}") + 3, y, " ." * 40)
        pdf.text(186, y, str(k + 2))
    pdf.text(20, 32 + 7 * len(entries), "5 Отгрузка")
    pdf.text(186, 32 + 7 * len(entries), "6")
    for k, title in enumerate(entries):
        pdf.add_page()
        pdf.text(20, 20, f"{k + 1}.1 {title}")
        pdf.text(20, 30, BODY[k])
    texts = page_texts(bytes(pdf.output()))
    assert not re.search(r"(\. ?){4,}", "\n".join(texts)), texts[0]
    for title in entries:
        assert title not in texts[0], texts[0]
    assert "Отгрузка" not in texts[0]
    for k, title in enumerate(entries):
        assert title in texts[k + 1]


def hyphenated_pdf() -> bytes:
    pdf = new_pdf(12)
    pdf.add_page()
    lines = [
        "Проверка пломбы должна быть вы-",
        "полнена до начала разгрузки, а если что-",
        "то не так, звоните в Санкт-",
        "Петербург дежурному. Пере\u00ad",
        "дача смены оформляется актом приёма-",
        "передачи; номер акта: 17-",
        "2024 в журнале.",
    ]
    for k, line in enumerate(lines):
        pdf.text(20, 30 + 7 * k, line)
    return bytes(pdf.output())


def test_words_hyphenated_at_line_ends_are_joined_and_compounds_kept() -> None:
    (text,) = page_texts(hyphenated_pdf())
    flat = " ".join(text.split())
    assert "должна быть выполнена до начала" in flat, text
    assert "если что-то не так" in flat, text
    assert "звоните в Санкт-Петербург дежурному" in flat, text
    assert "Передача смены" in flat, text
    # The document writes «приёма-передачи» only here, broken at its own hyphen: a word the
    # document does not spell elsewhere is joined (the rule: a lowercase letter follows).
    assert "\ufffe" not in text and "\u00ad" not in text
    assert "17-\n2024" in text or "17-2024" in flat  # a number after the hyphen: not a broken word


def test_a_compound_the_document_spells_elsewhere_keeps_its_hyphen() -> None:
    pdf = new_pdf(12)
    pdf.add_page()
    pdf.text(20, 30, "Акт приёма-передачи подписывают обе стороны. Акт приёма-")
    pdf.text(20, 37, "передачи хранится три года.")
    (text,) = page_texts(bytes(pdf.output()))
    assert " ".join(text.split()).count("приёма-передачи") == 2, text


def test_two_columns_drawn_row_by_row_are_read_column_by_column() -> None:
    left = [f"Слева, строка {k}: груз сверяют по накладной." for k in range(1, 9)]
    right = [f"Справа, строка {k}: тариф идёт за сутки." for k in range(1, 9)]
    pdf = new_pdf(8)
    pdf.add_page()
    pdf.set_font_size(12)
    pdf.text(20, 20, "Памятка водителю: приёмка и тарифы")
    pdf.set_font_size(8)
    for k, (a, b) in enumerate(zip(left, right, strict=True)):
        pdf.text(15, 32 + 5 * k, a)  # each row draws the left half, then the right one
        pdf.text(110, 32 + 5 * k, b)
    (text,) = page_texts(bytes(pdf.output()))
    positions = [text.find(s) for s in left + right]
    assert -1 not in positions, text
    assert positions == sorted(positions), text  # all of the left column, then the right
    assert text.startswith("Памятка водителю")


def test_page_text_maps_back_to_pdfium_characters() -> None:
    data = hyphenated_pdf()
    doc = pdfium.PdfDocument(data)
    try:
        (page_text,) = read_pdf_texts(doc)
        textpage = doc[0].get_textpage()
        raw = textpage.get_text_range()
        assert len(page_text.source) == len(page_text.text)
        for ch, src in zip(page_text.text, page_text.source, strict=True):
            if src < 0:
                assert ch in " \n"  # only line breaks and spaces are written here
            else:
                assert raw[src] == ch or (raw[src] == "\ufffe" and ch == "-"), (ch, raw[src])
        start = page_text.text.index("выполнена")
        chars = page_text.char_indices(start, start + len("выполнена"))
        assert "".join(raw[i] for i in chars) == "выполнена"
        boxes = [textpage.get_charbox(i) for i in chars]
        assert len({round(b[1]) for b in boxes}) == 2  # the word's boxes lie on two lines
    finally:
        doc.close()


def test_gauge_counts_glued_words_bad_characters_and_nonwords() -> None:
    clean = damage(" ".join(BODY))
    assert clean == Damage(clean.tokens, 0, 0, clean.chars, 0) and not clean.damaged
    glued = damage(" ".join(s.replace(" ", "") for s in BODY))
    assert glued.glued >= 5 and glued.damaged
    assert damage("Срок \ufffd\ufffd\ufffd поставки " * 5).damaged
    nonwords = damage("Chjr gjcnfdrb cjcnfdkztn nhbltcznm lytq c vjvtynf gjlgbcfybz " * 5)
    assert nonwords.nonwords >= 10 and nonwords.damaged


def render(text: str, width: int = 1400) -> Image.Image:
    font = ImageFont.truetype(str(FONT), 30)
    image = Image.new("L", (width, 60 + 50 * len(text.splitlines())), 255)
    draw = ImageDraw.Draw(image)
    for k, line in enumerate(text.splitlines()):
        draw.text((30, 30 + 50 * k), line, font=font, fill=0)
    return image


@pytest.mark.skipif(not ocr.tesseract_available(), reason="needs Tesseract (rus) for OCR")
def test_a_text_layer_with_glued_words_is_recognised_instead() -> None:
    # A scan with an invisible text layer that lost its spaces, as some exporters write it.
    lines = [BODY[0][:60], BODY[1][:60], BODY[2][:60], BODY[3][:60]]
    scan = io.BytesIO()
    render("\n".join(lines)).save(scan, format="PNG")
    pdf = new_pdf(10)
    pdf.add_page()
    pdf.image(scan, x=10, y=10, w=190)
    pdf.text_mode = "INVISIBLE"
    for k, line in enumerate(lines):
        pdf.text(12, 20 + 7 * k, line.replace(" ", ""))
    got = extract(bytes(pdf.output()), "skleennyi.pdf")
    assert got.damaged_pages == 1
    assert [(p.number, p.ocr) for p in got.pages] == [(1, True)]
    assert "принимает груз по накладной" in " ".join(got.pages[0].text.split())


def test_the_gauge_is_stored_and_shown(library: Library) -> None:
    res = library.ingest("rukovodstvo.pdf", with_furniture(3))
    assert res.status == "indexed", res.message
    assert res.document is not None
    doc = library.docs.get(res.document.id)
    assert doc is not None and (doc.damaged_pages, doc.ocr_pages) == (0, 0)
    (row,) = documents_frame([doc])
    assert row["Текстовый слой"] == "хороший"
    assert gauge_label(2, 3) == "повреждён (2 стр.), распознано OCR: 3 стр."
    assert gauge_label(None, 1) == "распознано OCR: 1 стр."
    assert gauge_label(None, 0) == "—"
