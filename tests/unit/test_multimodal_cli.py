"""Every supported type through ``python -m rag``: one folder, one file of each kind.

The fixtures are made here: fpdf2, python-docx, odfpy, RTF with cp1251 escapes, HTML with
boilerplate, CSV and JSON. (Images and scanned pages join this folder with OCR.)
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
pytestmark = pytest.mark.skipif(not FONT.exists(), reason="needs the DejaVu font (fonts-dejavu-core)")


def text_pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_font("DejaVu", fname=str(FONT))
    pdf.set_font("DejaVu", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "Отчёт отдела продаж. Выручка за квартал выросла на двенадцать процентов.")
    return bytes(pdf.output())


def docx() -> bytes:
    import docx as python_docx

    doc = python_docx.Document()
    doc.add_heading("Регламент закупок", level=1)
    doc.add_paragraph("Закупки свыше миллиона рублей согласует финансовый директор.")
    table = doc.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Этап", "Срок"
    table.cell(1, 0).text, table.cell(1, 1).text = "Согласование", "пять рабочих дней"
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def odt() -> bytes:
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P

    doc = OpenDocumentText()
    doc.text.addElement(H(outlinelevel=1, text="Памятка сотруднику"))
    doc.text.addElement(P(text="Пропуск в офис выдаёт служба безопасности на первом этаже."))
    buf = io.BytesIO()
    doc.write(buf)
    return buf.getvalue()


def rtf() -> bytes:
    sentence = "Командировочные расходы возмещаются в течение десяти дней."
    escaped = "".join(c if ord(c) < 128 else f"\\'{c.encode('cp1251')[0]:02x}" for c in sentence)
    return (
        "{\\rtf1\\ansi\\ansicpg1251\\deff0{\\fonttbl{\\f0 Times New Roman;}}\\f0 " + escaped + "\\par}"
    ).encode("ascii")


def html() -> bytes:
    page = """<html><head><meta charset="windows-1251"><title>Новости компании</title>
<script>var TRACKING = "TRACKING_TOKEN_42";</script><style>body{color:red}</style></head>
<body><nav><a href="/">Главная</a> <a href="/about">О нас</a></nav>
<article><h1>Новый офис в Самаре</h1>
<p>Компания открыла новый офис в Самаре на улице Молодогвардейской. В офисе работают сорок сотрудников
отдела разработки, и к концу года их станет шестьдесят.</p>
<p>Офис оборудован переговорными комнатами и библиотекой технической литературы.</p></article>
<footer>Все права защищены</footer></body></html>"""
    return page.encode("cp1251")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("multimodal")
    docs = root / "docs"
    docs.mkdir()
    files = {
        "zametka.txt": "Совещание перенесено на четверг.".encode("koi8_r"),
        "readme.md": "# Инструкция\n\nСервер перезагружают по воскресеньям.".encode(),
        "otchet.pdf": text_pdf(),
        "reglament.docx": docx(),
        "pamyatka.odt": odt(),
        "komandirovki.rtf": rtf(),
        "novosti.html": html(),
        "goroda.csv": "Город;Население\nКазань;1300000\n".encode("cp1251"),
        "nastroiki.json": json.dumps(
            {"сервис": {"порт": 8080, "режим": "боевой"}}, ensure_ascii=False
        ).encode(),
    }
    for name, data in files.items():
        (docs / name).write_bytes(data)
    return root


def rag(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rag", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_every_type_indexes_and_answers_cite_it(folder: Path, child_env: dict[str, str]) -> None:
    data = folder / "data"
    out = rag(["ingest", str(folder / "docs"), "--data-dir", str(data)], folder, child_env)
    statuses = {
        Path(m[2]).name: m[1]
        for m in re.finditer(r"^(indexed|duplicate|failed): (\S+?):?(?:\s|$)", out.stdout, re.M)
    }
    assert out.returncode == 0, out.stdout + out.stderr
    expected = {p.name for p in (folder / "docs").iterdir()}
    assert set(statuses) == expected
    assert all(s == "indexed" for s in statuses.values()), statuses

    for question, file, fact in [
        ("Сколько дней длится согласование закупки?", "reglament.docx", "пять рабочих дней"),
        ("Кто выдаёт пропуск в офис?", "pamyatka.odt", "служба безопасности"),
        ("В какой срок возмещаются командировочные расходы?", "komandirovki.rtf", "десяти дней"),
        ("Сколько сотрудников работает в офисе в Самаре?", "novosti.html", "сорок сотрудников"),
        ("Какое население Казани?", "goroda.csv", "Казань"),
    ]:
        ask = rag(["ask", question, "--data-dir", str(data), "--json"], folder, child_env)
        assert ask.returncode == 0, ask.stderr
        result = json.loads(ask.stdout)
        hits = [s for s in result["sources"][:3] if s["filename"] == file]
        assert hits and fact in hits[0]["text"], (question, result["sources"])
        assert "TRACKING_TOKEN_42" not in ask.stdout


SCAN_FACT = "Гарантийный срок оборудования составляет тридцать шесть месяцев"


def _render(lines: list[str]) -> bytes:
    """Russian text on white as a PNG, large enough for OCR."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("L", (1700, 500), 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(str(FONT), 40)
    for i, line in enumerate(lines):
        draw.text((60, 60 + i * 70), line, font=font, fill=0)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _scanned_pdf() -> bytes:
    """Two image-only pages; the fact is only on page 2."""
    from PIL import Image

    first = Image.open(
        io.BytesIO(_render(["Приложение к договору поставки.", "Перечень оборудования ниже."]))
    )
    second = Image.open(io.BytesIO(_render([SCAN_FACT + ".", "Обслуживание выполняет поставщик."])))
    buf = io.BytesIO()
    first.convert("RGB").save(
        buf, format="PDF", save_all=True, append_images=[second.convert("RGB")], resolution=150
    )
    return buf.getvalue()


def test_fact_only_on_a_scanned_page_is_found_and_cited(tmp_path: Path, child_env: dict[str, str]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "skan.pdf").write_bytes(_scanned_pdf())
    (docs / "obyavlenie.png").write_bytes(_render(["Парковка закрыта на ремонт до пятницы."]))
    (docs / "zametka.txt").write_bytes("Совещание перенесено на четверг.".encode("koi8_r"))
    data = tmp_path / "data"
    out = rag(["ingest", str(docs), "--data-dir", str(data)], tmp_path, child_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("indexed:") == 3, out.stdout

    ask = rag(
        ["ask", "Какой гарантийный срок оборудования?", "--data-dir", str(data), "--json"],
        tmp_path,
        child_env,
    )
    assert ask.returncode == 0, ask.stderr
    top = json.loads(ask.stdout)["sources"][0]
    assert top["filename"] == "skan.pdf"
    assert top["page"] == 2
    assert "тридцать шесть месяцев" in top["text"].lower()
    text = rag(["ask", "Какой гарантийный срок оборудования?", "--data-dir", str(data)], tmp_path, child_env)
    assert "skan.pdf, стр. 2, OCR" in text.stdout
