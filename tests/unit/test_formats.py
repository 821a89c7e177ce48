"""Word, web pages, CSV, JSON, RTF and ODT: fixtures built here, read through the real libraries."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any

import docx
import pytest
from docx.enum.style import WD_STYLE_TYPE
from docx.oxml import parse_xml
from docx.oxml.ns import nsdecls
from odf.opendocument import OpenDocumentText
from odf.style import Style
from odf.table import Table, TableCell, TableColumn, TableRow
from odf.text import H, List, ListItem, Note, NoteBody, NoteCitation, P, S

import rag.ingest
import rag.ingest.html
from rag import IngestError
from rag.chunking import chunk_pages
from rag.ingest import Extracted, Options, extract
from rag.ingest.html import extract_html
from rag.ingest.office import DOCX_MIME, ODT_MIME, extract_docx, extract_odt, extract_rtf
from rag.ingest.tabular import extract_csv, extract_json
from rag.library import Library

OPTS = Options()
# The formats this file covers, by extension.
FORMAT_EXTRACTORS = {
    ".docx": extract_docx,
    ".html": extract_html,
    ".htm": extract_html,
    ".csv": extract_csv,
    ".json": extract_json,
    ".rtf": extract_rtf,
    ".odt": extract_odt,
}
FACT = "Штраф за просрочку — 0,1 % в день"


def text_of(result: Extracted) -> str:
    assert len(result.pages) == 1 and result.pages[0].number is None
    return result.pages[0].text


def docx_bytes(document: Any) -> bytes:
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def make_contract_docx() -> bytes:
    d = docx.Document()
    d.add_heading("Договор поставки", level=1)
    d.add_paragraph("Поставщик обязуется передать товар покупателю до десятого марта.")
    d.add_heading("Ответственность сторон", level=2)
    d.add_paragraph("Стороны несут ответственность согласно таблице.")
    table = d.add_table(rows=4, cols=2)
    for (a, b), row in zip(
        [("Пункт", "Условие"), ("4.1", "Неустойка за недопоставку — 5 %"), ("4.2", FACT)],
        table.rows,
        strict=False,
    ):
        row.cells[0].text, row.cells[1].text = a, b
    merged = table.cell(3, 0).merge(table.cell(3, 1))
    merged.text = "Объединённая строка таблицы"
    d.add_paragraph("# 5 — это не заголовок, а текст абзаца")
    d.add_paragraph("После таблицы стороны подписывают акт приёма-передачи.")
    return docx_bytes(d)


@pytest.fixture(scope="module")
def contract_docx() -> bytes:
    return make_contract_docx()


# -- DOCX -----------------------------------------------------------------------------------------


def test_docx_keeps_reading_order_headings_and_table_rows(contract_docx: bytes) -> None:
    result = extract_docx(contract_docx, "договор.docx", OPTS)
    text = text_of(result)
    assert result.mime_type == DOCX_MIME and result.has_headings
    lines = text.split("\n\n")
    heading = lines.index("# Договор поставки")
    paragraph = lines.index("Поставщик обязуется передать товар покупателю до десятого марта.")
    section = lines.index("## Ответственность сторон")
    header_row = lines.index("| Пункт | Условие |")
    fact_row = lines.index(f"| 4.2 | {FACT} |")
    after = lines.index("После таблицы стороны подписывают акт приёма-передачи.")
    assert heading < paragraph < section < header_row < fact_row < after
    # A horizontally merged cell is one cell, not repeated per grid column.
    assert "| Объединённая строка таблицы |" in lines
    # Body text that looks like Markdown must not become a heading.
    assert "\\# 5 — это не заголовок, а текст абзаца" in lines


def test_docx_headings_lead_their_chunks(contract_docx: bytes) -> None:
    pages = extract_docx(contract_docx, "договор.docx", OPTS).pages
    chunks = chunk_pages(pages, max_words=60, markdown=True)
    fact_chunk = next(c for c in chunks if FACT in c.text)
    # The heading path: the document's title, then the section the row belongs to.
    assert fact_chunk.text.startswith("Договор поставки › Ответственность сторон\n")
    assert "| 4.2 |" in fact_chunk.text


def test_docx_russian_styles_tracked_changes_and_word_markup() -> None:
    d = docx.Document()
    russian = d.styles.add_style("Заголовок 2", WD_STYLE_TYPE.PARAGRAPH)
    derived = d.styles.add_style("Мой раздел", WD_STYLE_TYPE.PARAGRAPH)
    derived.base_style = russian
    d.add_paragraph("Порядок расчётов", style=russian)
    d.add_paragraph("Особые условия", style=derived)
    p = d.add_paragraph("Оплата в течение ")
    p._p.append(parse_xml(f"<w:ins {nsdecls('w')}><w:r><w:t>пяти</w:t></w:r></w:ins>"))
    p._p.append(parse_xml(f"<w:del {nsdecls('w')}><w:r><w:delText>десяти</w:delText></w:r></w:del>"))
    p.add_run(" дней.")
    toc = (
        f"<w:sdt {nsdecls('w')}><w:sdtPr><w:docPartObj><w:docPartGallery w:val='Table of Contents'/>"
        "</w:docPartObj></w:sdtPr><w:sdtContent><w:p><w:r><w:t>Порядок расчётов ... 1</w:t></w:r></w:p>"
        "</w:sdtContent></w:sdt>"
    )
    d.element.body.insert(0, parse_xml(toc))
    # A text box is stored twice (DrawingML and a VML fallback); a content control holds text.
    box = (
        f"<w:p {nsdecls('w')} xmlns:mc='http://schemas.openxmlformats.org/markup-compatibility/2006'>"
        "<w:hyperlink><w:r><w:t>Ссылка</w:t></w:r></w:hyperlink><w:r><mc:AlternateContent>"
        "<mc:Choice><w:txbxContent><w:p><w:r><w:t>Врезка</w:t></w:r></w:p></w:txbxContent></mc:Choice>"
        "<mc:Fallback><w:txbxContent><w:p><w:r><w:t>Врезка</w:t></w:r></w:p></w:txbxContent></mc:Fallback>"
        "</mc:AlternateContent></w:r></w:p>"
    )
    control = (
        f"<w:sdt {nsdecls('w')}><w:sdtContent><w:p><w:r><w:t>Поле формы</w:t></w:r></w:p>"
        "</w:sdtContent></w:sdt>"
    )
    d.element.body.append(parse_xml(box))
    d.element.body.append(parse_xml(control))
    d.element.body.append(d.element.body.sectPr)  # the section properties stay last
    text = text_of(extract_docx(docx_bytes(d), "правки.docx", OPTS))
    assert text.split("\n\n") == [
        "## Порядок расчётов",
        "## Особые условия",
        "Оплата в течение пяти дней.",
        "Ссылка\nВрезка",
        "Поле формы",
    ]


def test_docx_fact_is_retrievable_through_library(library: Library, contract_docx: bytes) -> None:
    result = library.ingest("договор.docx", contract_docx)
    assert result.status == "indexed", result.message
    assert result.document is not None and result.document.mime_type == DOCX_MIME
    hits = library.retriever.search("Какой штраф за просрочку по договору?", k=3)
    assert hits and FACT in hits[0].text
    assert "4.2" in hits[0].text  # the row's other cell travels with the fact


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """A "DOCX" whose document.xml inflates 1.4 MB into 300 MB of zeros (streamed, level 1: fast)."""
    buf = io.BytesIO()
    chunk = b"\0" * (1 << 20)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("word/document.xml", "w", force_zip64=True) as member:
            for _ in range(300):
                member.write(chunk)
    return buf.getvalue()


@pytest.fixture
def nothing_unpacked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a member was unpacked")

    monkeypatch.setattr(zipfile.ZipFile, "open", refuse)
    monkeypatch.setattr(docx, "Document", refuse)
    yield


@pytest.mark.usefixtures("nothing_unpacked")
def test_docx_zip_bomb_is_refused_without_unpacking(zip_bomb: bytes) -> None:
    assert len(zip_bomb) < 3 * 1024 * 1024
    with pytest.raises(IngestError, match=r"«бомба.docx»: в распакованном виде документ занимает 300 МБ"):
        extract_docx(zip_bomb, "бомба.docx", OPTS)
    # Within a generous size limit the compression ratio still gives it away.
    roomy = Options(max_unpacked_bytes=1024 * 1024 * 1024)
    with pytest.raises(IngestError, match=r"«бомба.docx».*сжата в \d+ раз.*ZIP-бомба"):
        extract_docx(zip_bomb, "бомба.docx", roomy)


def test_docx_unpacked_size_limit_applies_to_ordinary_documents(contract_docx: bytes) -> None:
    with pytest.raises(IngestError, match=r"«договор.docx».*не больше 2 КБ"):
        extract_docx(contract_docx, "договор.docx", Options(max_unpacked_bytes=2048))


def test_old_doc_and_password_protected_docx_are_refused_with_advice() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600
    with pytest.raises(IngestError, match=r"«старый.doc».*Word 97–2003.*сохраните как \.docx"):
        extract_docx(ole, "старый.doc", OPTS)
    protected = ole + "EncryptedPackage".encode("utf-16-le")
    with pytest.raises(IngestError, match=r"«секрет.docx».*защищён паролем"):
        extract_docx(protected, "секрет.docx", OPTS)


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (b"just some text, not a zip", r"не является документом Word.*сохраните как \.docx"),
        (zip_of({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<x/>"}), "нет word/document.xml"),
        (make_contract_docx()[:-200], r"повреждён|не является документом"),
        (b"{\\rtf1\\ansi Text}", r"на самом деле файл \.rtf.*Переименуйте"),
    ],
    ids=["not-zip", "not-word", "truncated", "renamed-rtf"],
)
def test_broken_docx_is_refused(data: bytes, pattern: str) -> None:
    with pytest.raises(IngestError, match=rf"^«плохой.docx»: .*{pattern}"):
        extract_docx(data, "плохой.docx", OPTS)


def test_docx_without_text_says_so() -> None:
    with pytest.raises(IngestError, match=r"«пусто.docx»: в документе нет текста"):
        extract_docx(docx_bytes(docx.Document()), "пусто.docx", OPTS)


# -- HTML -----------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html><html><head><meta charset="windows-1251"><title>Новости города Тулы</title>
<style>.menu { color: red } body::before { content: "STYLE_TOKEN_7" }</style>
<script>var t = "TRACKING_TOKEN_42"; window.dataLayer = [];</script></head>
<body>
<header><div class="logo">Городской портал</div></header>
<nav class="menu"><ul><li><a href="/">Главная</a></li><li><a href="/afisha">Афиша мероприятий</a></li>
<li><a href="/kontakty">Контакты редакции</a></li></ul></nav>
<div id="cookie-banner" class="cookie-consent">Мы используем куки-файлы. Продолжая просмотр, вы
соглашаетесь с политикой обработки данных. <button>Принять</button></div>
<main><article>
<h1>Открытие нового моста через Упу</h1>
<p>В субботу в Туле открыли новый пешеходный мост через реку Упу. Длина моста составляет 148 метров,
а строительство заняло два года.</p>
<h2>Стоимость строительства</h2>
<p>Строительство обошлось городскому бюджету в 412 миллионов рублей. Подрядчиком выступила местная
компания «Тулмостстрой».</p>
<table><tr><th>Показатель</th><th>Значение</th></tr><tr><td>Ширина пролёта</td><td>6,5 метра</td></tr></table>
<p>Мост освещается ночью светодиодными фонарями, а по краям установлены скамейки для отдыха.</p>
</article></main>
<aside>Реклама: купите пластиковые окна со скидкой</aside>
<footer><p>© 2024 Редакция портала. Все права защищены. Телефон 8-800-000-00-00.</p></footer>
<script>console.log("TRACKING_TOKEN_42")</script>
</body></html>"""
BOILERPLATE = [
    "TRACKING_TOKEN_42",
    "STYLE_TOKEN_7",
    "dataLayer",
    "Афиша мероприятий",
    "Контакты редакции",
    "Городской портал",
    "куки-файлы",
    "Принять",
    "пластиковые окна",
    "Все права защищены",
]


def assert_article(text: str) -> None:
    assert "Длина моста составляет 148 метров" in text
    assert "412 миллионов рублей" in text
    assert "скамейки для отдыха" in text
    for word in BOILERPLATE:
        assert word not in text


def test_html_article_in_cp1251_without_boilerplate(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_guessing(*_args: object) -> None:
        raise AssertionError("the declared charset is enough")

    monkeypatch.setattr(rag.ingest.html, "decode_text", no_guessing)
    result = extract_html(PAGE.encode("cp1251"), "мост.html", OPTS)
    text = text_of(result)
    assert result.encoding == "cp1251" and result.has_headings
    assert_article(text)
    lines = text.split("\n\n")
    assert lines[0] == "# Новости города Тулы"  # the <title>, missing from the article text
    assert lines.index("# Открытие нового моста через Упу") < lines.index("## Стоимость строительства")
    assert "| Ширина пролёта | 6,5 метра |" in lines


def test_html_keeps_the_article_heading_next_to_the_title() -> None:
    page = (
        "<html><head><title>Отчёт компании</title></head><body><h1>Годовой отчёт</h1>"
        "<p>Выручка за год выросла на десять процентов, а расходы снизились на пять процентов.</p>"
        "<p>Второй абзац рассказывает про обучение сотрудников новым технологиям.</p></body></html>"
    )
    lines = text_of(extract_html(page.encode("utf-8"), "otchet.html", OPTS)).split("\n\n")
    assert lines[:2] == ["# Отчёт компании", "# Годовой отчёт"]
    assert sum("Годовой отчёт" in line for line in lines) == 1


def test_html_in_koi8r_without_declared_charset() -> None:
    page = PAGE.replace('<meta charset="windows-1251">', "").replace("©", "(c)")
    page = page.replace("«", '"').replace("»", '"')  # not in KOI8-R
    result = extract_html(page.encode("koi8-r"), "мост.htm", OPTS)
    assert result.encoding == "koi8-r"
    assert_article(text_of(result))


def test_html_with_wrong_western_charset_is_still_read_as_russian() -> None:
    declared = '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
    page = PAGE.replace('<meta charset="windows-1251">', declared)
    result = extract_html(page.encode("cp1251"), "мост.html", OPTS)
    assert result.encoding == "cp1251"
    assert_article(text_of(result))


def test_html_fallback_when_trafilatura_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rag.ingest.html.trafilatura, "extract", lambda *_a, **_k: None)
    text = text_of(extract_html(PAGE.encode("cp1251"), "мост.html", OPTS))
    assert_article(text)
    lines = text.split("\n\n")
    assert lines.index("# Открытие нового моста через Упу") < lines.index("## Стоимость строительства")
    assert "| Показатель | Значение |" in lines


def test_html_page_of_only_menus_has_no_text() -> None:
    page = "<html><body><nav>Главная Афиша</nav><script>TRACKING_TOKEN_42</script><footer>(c)</footer>"
    with pytest.raises(IngestError, match=r"«меню.html»: в документе нет текста"):
        extract_html(page.encode(), "меню.html", OPTS)


# -- CSV ------------------------------------------------------------------------------------------


def test_csv_semicolon_cp1251_rows_carry_column_names() -> None:
    data = "Город;Население;Доля, %\r\nКазань;1 300 000;0,9\r\nМосква;13 000 000;8,9\r\n;;\r\nСамара;;\r\n"
    result = extract_csv(data.encode("cp1251"), "города.csv", OPTS)
    assert result.encoding == "cp1251"
    assert text_of(result).split("\n\n") == [
        "Город: Казань; Население: 1 300 000; Доля, %: 0,9",
        "Город: Москва; Население: 13 000 000; Доля, %: 8,9",
        "Город: Самара",
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("sep=,\nИмя,Отдел\nАнна,Бухгалтерия\n", ["Имя: Анна; Отдел: Бухгалтерия"]),
        ('Имя,Заметка\nАнна,"две строки,\nс запятой"\n', ["Имя: Анна; Заметка: две строки, с запятой"]),
        ("1;2,5\n3;4\n", ["Столбец 1: 1; Столбец 2: 2,5", "Столбец 1: 3; Столбец 2: 4"]),
        ("Имя\nАнна\nБорис\n", ["Имя: Анна", "Имя: Борис"]),
        ("Показатель\t2022\t2023\nВВП\t100\t120\n", ["Показатель: ВВП; 2022: 100; 2023: 120"]),
    ],
    ids=["excel-sep-line", "quoted-newline", "no-header", "one-column", "tab-years-header"],
)
def test_csv_dialects(data: str, expected: list[str]) -> None:
    assert text_of(extract_csv(data.encode(), "t.csv", OPTS)).split("\n\n") == expected


def test_csv_with_only_a_header_is_refused() -> None:
    with pytest.raises(IngestError, match=r"«t.csv»: в таблице только строка заголовков"):
        extract_csv("Город;Население\n".encode(), "t.csv", OPTS)


# -- JSON -----------------------------------------------------------------------------------------


def test_json_nested_values_flattened_with_paths() -> None:
    data = (
        '{"компания": {"название": "Ромашка", "адрес": {"город": "Тверь"}},'
        ' "сотрудники": [{"имя": "Иван", "роль": "бухгалтер"}, {"имя": "Ольга"}],'
        ' "теги": ["опт", "розница"], "активна": true, "долг": null, "пусто": {}}'
    )
    text = text_of(extract_json(data.encode(), "компания.json", OPTS))
    assert text.split("\n\n") == [
        "компания.название: Ромашка",
        "компания.адрес.город: Тверь",
        "сотрудники[0].имя: Иван",
        "сотрудники[0].роль: бухгалтер",
        "сотрудники[1].имя: Ольга",
        "теги: опт, розница",
        "активна: true",
        "долг: null",
    ]


def test_json_escaped_cyrillic_comes_out_readable() -> None:
    text = text_of(
        extract_json(
            b'{"\\u0433\\u043e\\u0440\\u043e\\u0434": "\\u041a\\u0430\\u0437\\u0430\\u043d\\u044c"}',
            "j.json",
            OPTS,
        )
    )
    assert text == "город: Казань"


def test_json_lines_are_read_record_by_record() -> None:
    data = '{"город": "Казань"}\n{"город": "Тверь"}\n'.encode()
    assert text_of(extract_json(data, "j.json", OPTS)).split("\n\n") == [
        "[0].город: Казань",
        "[1].город: Тверь",
    ]


def test_invalid_json_names_the_position() -> None:
    data = '{\n  "город": "Казань"\n  "население": 1300000\n}'.encode()
    with pytest.raises(IngestError) as err:
        extract_json(data, "город.json", OPTS)
    assert str(err.value) == (
        "«город.json»: файл не является корректным JSON — ожидалась запятая (строка 3, столбец 3). "
        "Исправьте файл и загрузите снова."
    )


def test_empty_json_has_no_text() -> None:
    with pytest.raises(IngestError, match=r"«j.json»: в документе нет текста"):
        extract_json(b'{"list": [], "obj": {}}', "j.json", OPTS)


# -- RTF ------------------------------------------------------------------------------------------

SENTENCE = "Срок поставки — десять рабочих дней с даты оплаты счёта."


def rtf_escaped(text: str) -> str:
    return "".join(f"\\'{b:02x}" if b > 127 else chr(b) for b in text.encode("cp1251"))


def test_rtf_cp1251_hex_escapes() -> None:
    head = r"{\rtf1\ansi\ansicpg1251\deff0{\fonttbl{\f0\fnil\fcharset204 Times New Roman;}}"
    info = r"{\info{\title " + rtf_escaped("Служебное") + "}}"
    picture = r"{\*\shppict{\pict\pngblip 89504e470d0a1a0a}}"
    second = rtf_escaped("Второй абзац ") + r"\{" + rtf_escaped("в скобках") + r"\}."
    rtf = head + info + r"\f0\fs24 " + picture + rtf_escaped(SENTENCE) + r"\par " + second + r"\par}"
    result = extract_rtf(rtf.encode("ascii"), "договор.rtf", OPTS)
    assert text_of(result).split("\n\n") == [SENTENCE, "Второй абзац {в скобках}."]


def test_rtf_unicode_escapes_and_cyrillic_in_a_western_font() -> None:
    unicode_rtf = r"{\rtf1\ansi\ansicpg1251\uc1 " + "".join(f"\\u{ord(c)}?" for c in "Привет") + r"!\par}"
    assert text_of(extract_rtf(unicode_rtf.encode(), "u.rtf", OPTS)) == "Привет!"
    # Some exporters declare \fcharset0 (Western) for Cyrillic text: the bytes are still cp1251.
    western = r"{\rtf1\ansi\deff0{\fonttbl{\f0\fnil\fcharset0 Arial;}}\f0 " + rtf_escaped(SENTENCE) + r"\par}"
    assert text_of(extract_rtf(western.encode(), "w.rtf", OPTS)) == SENTENCE


def test_not_rtf_is_refused() -> None:
    with pytest.raises(IngestError, match=r"«x.rtf»: файл не является документом RTF"):
        extract_rtf("Просто текст".encode(), "x.rtf", OPTS)


# -- ODT ------------------------------------------------------------------------------------------


def make_odt() -> bytes:
    doc = OpenDocumentText()
    title = Style(name="Title", family="paragraph")
    doc.styles.addElement(title)
    doc.text.addElement(P(stylename=title, text="Положение о премировании"))
    doc.text.addElement(H(outlinelevel=1, text="Общие условия"))
    p = P(text="Премия выплачивается ежеквартально.")
    p.addElement(S(c=2))
    note = Note(noteclass="footnote", id="n1")
    note.addElement(NoteCitation(text="1"))
    body = NoteBody()
    body.addElement(P(text="ТЕКСТ_СНОСКИ"))
    note.addElement(body)
    p.addElement(note)
    p.addText("Размер определяет директор.")
    doc.text.addElement(p)
    doc.text.addElement(H(outlinelevel=2, text="Размеры премий"))
    table = Table(name="Премии")
    table.addElement(TableColumn(numbercolumnsrepeated=3))
    for a, b in [("Должность", "Премия"), ("Инженер", "25 % оклада")]:
        row = TableRow()
        for value in (a, b):
            cell = TableCell()
            cell.addElement(P(text=value))
            row.addElement(cell)
        row.addElement(TableCell(numbercolumnsrepeated=1000))  # LibreOffice pads rows like this
        table.addElement(row)
    doc.text.addElement(table)
    items = List()
    item = ListItem()
    item.addElement(P(text="Премия не выплачивается при выговоре."))
    items.addElement(item)
    doc.text.addElement(items)
    doc.text.addElement(P(text="Положение вступает в силу с первого января."))
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def test_odt_headings_paragraphs_tables_and_lists_in_order() -> None:
    result = extract_odt(make_odt(), "положение.odt", OPTS)
    assert result.mime_type == ODT_MIME and result.has_headings
    assert text_of(result).split("\n\n") == [
        "# Положение о премировании",
        "# Общие условия",
        "Премия выплачивается ежеквартально. Размер определяет директор.",
        "## Размеры премий",
        "| Должность | Премия |",
        "| Инженер | 25 % оклада |",
        "Премия не выплачивается при выговоре.",
        "Положение вступает в силу с первого января.",
    ]


def test_odt_that_is_not_a_text_document_is_refused(contract_docx: bytes) -> None:
    data = zip_of({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet", "content.xml": b"<x/>"})
    with pytest.raises(IngestError, match=r"«таблица.odt»: это не текстовый документ.*spreadsheet"):
        extract_odt(data, "таблица.odt", OPTS)
    with pytest.raises(IngestError, match=r"«договор.odt»: это документ Word \(\.docx\).*Переименуйте"):
        extract_odt(contract_docx, "договор.odt", OPTS)
    with pytest.raises(IngestError, match=r"«положение.docx»: это документ OpenDocument \(\.odt\)"):
        extract_docx(make_odt(), "положение.docx", OPTS)


def test_odt_limits_and_passwords() -> None:
    with pytest.raises(IngestError, match=r"«положение.odt».*не больше 1 КБ"):
        extract_odt(make_odt(), "положение.odt", Options(max_unpacked_bytes=1024))
    encrypted = zip_of(
        {
            "mimetype": ODT_MIME.encode(),
            "META-INF/manifest.xml": b"<manifest><manifest:encryption-data/></manifest>",
            "content.xml": b"\x93garbage",
        }
    )
    with pytest.raises(IngestError, match=r"«секрет.odt»: документ защищён паролем"):
        extract_odt(encrypted, "секрет.odt", OPTS)
    broken = zip_of({"mimetype": ODT_MIME.encode(), "content.xml": b"<office:document-content"})
    with pytest.raises(IngestError, match=r"«сломан.odt»: документ ODT повреждён"):
        extract_odt(broken, "сломан.odt", OPTS)


# -- registration ---------------------------------------------------------------------------------


def test_registered_extractors_dispatch_by_extension() -> None:
    assert {ext: rag.ingest.EXTRACTORS[ext] for ext in FORMAT_EXTRACTORS} == FORMAT_EXTRACTORS
    seen: list[float] = []
    options = Options(progress=lambda fraction, _text: seen.append(fraction))
    result = extract("Город;Код\nТверь;69\n".encode(), "Отчёт.CSV", options)
    assert text_of(result) == "Город: Тверь; Код: 69"
    assert seen and seen[-1] == 1.0


def test_every_format_is_searchable_in_a_library(library: Library, contract_docx: bytes) -> None:
    files = {
        "мост.html": (
            PAGE.encode("cp1251"),
            "Сколько стоило строительство моста через Упу?",
            "412 миллионов",
        ),
        "города.csv": ("Город;Население\nКазань;1 300 000\n".encode("cp1251"), "Население Казани", "Казань"),
        "компания.json": (
            '{"компания": {"директор": "Пётр Сидоров"}}'.encode(),
            "Кто директор компании?",
            "Сидоров",
        ),
        "поставка.rtf": (
            (r"{\rtf1\ansi\ansicpg1251 " + rtf_escaped(SENTENCE) + r"\par}").encode(),
            "Каков срок поставки?",
            "десять рабочих дней",
        ),
        "положение.odt": (make_odt(), "Какая премия у инженера?", "25 % оклада"),
        "договор.docx": (contract_docx, "Какой штраф за просрочку?", FACT),
    }
    for name, (data, _q, _a) in files.items():
        result = library.ingest(name, data)
        assert result.status == "indexed", result.message
    for name, (_data, question, answer) in files.items():
        # Among the fragments an answer is built from (the app sends five).
        hits = library.retriever.search(question, k=3)
        assert any(h.filename == name and answer in h.text for h in hits), (question, [h.text for h in hits])
