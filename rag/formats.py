"""More document formats: Word (DOCX), web pages (HTML), CSV, JSON, RTF and OpenDocument text (ODT).

Every extractor has the ``Extractor`` signature of ``rag.extract`` and fails with an
``IngestError`` whose Russian message names the file and says what to do. Formats with a
document structure (DOCX, ODT, HTML) write headings as Markdown ``#`` lines, so the chunker can
keep a heading with its section: their MIME types are in ``HEADING_MIMES``. Table rows become
one line each (``| cell | cell |``) and every row, CSV record and JSON value is its own
paragraph, so the chunker never cuts one in half.
"""

from __future__ import annotations

import codecs
import copy
import csv
import io
import json
import logging
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import docx
import lxml.etree
import lxml.html
import trafilatura
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from odf import opendocument
from odf.element import Node
from striprtf.striprtf import rtf_to_text

from rag import IngestError

if TYPE_CHECKING:
    from rag.extract import Extractor, Options

log = logging.getLogger(__name__)

# rag.extract registers FORMAT_EXTRACTORS by importing this module, so what this module needs from
# rag.extract at run time is imported at the bottom: either module can then be imported first.

DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT_MIME = "application/vnd.oasis.opendocument.text"
HTML_MIME = "text/html"
CSV_MIME = "text/csv"
JSON_MIME = "application/json"
RTF_MIME = "application/rtf"

# Text of these types marks headings with Markdown '#' lines: chunk it with markdown=True.
HEADING_MIMES = frozenset({"text/markdown", DOCX_MIME, ODT_MIME, HTML_MIME})

# Archive limits besides Options.max_unpacked_bytes: a member that inflates more than
# _MAX_RATIO times and to more than _RATIO_FLOOR bytes is a decompression bomb, not a document.
_MAX_RATIO = 200
_RATIO_FLOOR = 10 * 1024 * 1024
_MAX_MEMBERS = 20_000

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_MB = 1024 * 1024
_HEADING_MAX_WORDS = 25


def _no_text(filename: str, hint: str = "") -> IngestError:
    return IngestError(f"«{filename}»: в документе нет текста.{hint}")


def _escape_heading(line: str) -> str:
    """A body line that would read as a Markdown heading gets a backslash (as Markdown escapes it)."""
    return "\\" + line.lstrip() if _MD_HEADING.match(line) else line


def _heading(level: int, text: str) -> str:
    """A '#' line; a "heading" longer than a title is a paragraph styled by mistake, kept as text."""
    words = text.split()
    if len(words) > _HEADING_MAX_WORDS:  # it would be repeated in front of every chunk of its section
        return _escape_heading(" ".join(words))
    return "#" * max(1, min(level, 6)) + " " + " ".join(words)


def _row(cells: Iterable[str]) -> str:
    """One table row on one line; empty cells are kept so columns stay aligned."""
    return "| " + " | ".join(" ".join(c.split()) for c in cells) + " |"


def _join_blocks(blocks: Iterable[str]) -> str:
    """Blocks separated by blank lines: each is a hard boundary for the chunker."""
    return "\n\n".join(b.strip() for b in blocks if b.strip())


# -- archives (DOCX, ODT) -------------------------------------------------------------------------


def _open_archive(data: bytes, filename: str, options: Options, kind: str, resave: str) -> zipfile.ZipFile:
    """Open a ZIP-based document after checking it cannot inflate into a bomb; nothing is unpacked."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        log.warning("unreadable archive %s: %s", filename, exc)  # the library's English reason: log only
        raise IngestError(
            f"«{filename}»: файл повреждён или не является документом {kind}. {resave}"
        ) from exc
    infos = archive.infolist()
    if len(infos) > _MAX_MEMBERS:
        archive.close()
        raise IngestError(
            f"«{filename}»: в архиве документа {len(infos)} частей — это не похоже на документ {kind}."
        )
    total = sum(i.file_size for i in infos)
    if total > options.max_unpacked_bytes:
        archive.close()
        raise IngestError(
            f"«{filename}»: в распакованном виде документ занимает {_size(total)}, а допускается "
            f"не больше {_size(options.max_unpacked_bytes)}. Уберите из документа крупные "
            "вложения (картинки, видео) или разделите его на части."
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_FLOOR and ratio > _MAX_RATIO:
            archive.close()
            raise IngestError(
                f"«{filename}»: часть документа «{info.filename}» сжата в {ratio:.0f} раз — так "
                "выглядит «ZIP-бомба», а не документ. Файл не будет распакован."
            )
        if info.flag_bits & 0x1:
            archive.close()
            raise IngestError(f"«{filename}»: документ зашифрован. Снимите пароль и загрузите его снова.")
    return archive


def _size(n: int) -> str:
    return f"{n / _MB:.0f} МБ" if n >= _MB else f"{max(1, round(n / 1024))} КБ"


def _refuse_foreign(data: bytes, filename: str, old_format: str, new_format: str) -> None:
    """Files named .docx/.odt that are not: RTF or HTML renamed, old binary .doc, encrypted OOXML."""
    head = data[:1024].lstrip().lower()
    for magic, real in ((b"{\\rtf", ".rtf"), (b"<!doctype html", ".html"), (b"<html", ".html")):
        if head.startswith(magic):
            raise IngestError(
                f"«{filename}»: это на самом деле файл {real}, сохранённый с другим расширением. "
                f"Переименуйте его в {real} и загрузите снова."
            )
    if not data.startswith(_OLE_MAGIC):
        return
    if "EncryptedPackage".encode("utf-16-le") in data:
        raise IngestError(
            f"«{filename}»: документ защищён паролем. Снимите защиту (Файл → Сведения → Защита "
            "документа) и загрузите файл снова."
        )
    raise IngestError(
        f"«{filename}»: это документ старого формата {old_format}, он не поддерживается. Откройте его "
        f"в Word или LibreOffice, сохраните как {new_format} и загрузите снова."
    )


# -- DOCX -----------------------------------------------------------------------------------------

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_W_P, _W_TBL, _W_T, _W_VAL = f"{_W}p", f"{_W}tbl", f"{_W}t", f"{_W}val"
# Deleted or moved-away text (tracked changes) and the duplicate fallback copy of a drawing.
_W_SKIP = frozenset({f"{_W}del", f"{_W}moveFrom", f"{_W}pPr", f"{_W}rPr", _MC_FALLBACK})
_W_BREAKS = frozenset({f"{_W}br", f"{_W}cr"})
_HEADING_STYLE = re.compile(r"^(?:heading|заголовок)\s*(\d)$", re.IGNORECASE)
_TITLE_STYLES = frozenset({"title", "название", "заголовок"})
_TOC_STYLE = re.compile(r"^(?:toc|оглавление)\s*\d$", re.IGNORECASE)
_DOCX_RESAVE = "Откройте его в Word или LibreOffice, сохраните как .docx и загрузите снова."


def _docx_styles(document: Any) -> tuple[dict[str, int], set[str]]:
    """Paragraph style id → heading level (by name, outline level or base style); TOC style ids."""
    styles: dict[str, tuple[str, str | None, int | None]] = {}
    for st in document.styles.element.iterchildren(f"{_W}style"):
        if st.get(f"{_W}type", "paragraph") != "paragraph":
            continue
        name_el = st.find(f"{_W}name")
        based = st.find(f"{_W}basedOn")
        outline = st.find(f"{_W}pPr/{_W}outlineLvl")
        styles[st.get(f"{_W}styleId", "")] = (
            (name_el.get(_W_VAL, "") if name_el is not None else "").strip(),
            based.get(_W_VAL) if based is not None else None,
            _int(outline.get(_W_VAL)) if outline is not None else None,
        )

    def level(style_id: str | None) -> int:
        for _ in range(10):  # base-style chains are short; a cycle must not hang us
            if style_id is None or style_id not in styles:
                return 0
            name, based, outline = styles[style_id]
            m = _HEADING_STYLE.match(name)
            if m:
                return max(1, int(m.group(1)))
            if name.lower() in _TITLE_STYLES:
                return 1
            if outline is not None:
                return outline + 1 if outline < 9 else 0
            style_id = based
        return 0

    levels = {sid: lv for sid in styles if (lv := level(sid))}
    toc = {sid for sid, (name, _b, _o) in styles.items() if _TOC_STYLE.match(name)}
    return levels, toc


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _w_text(element: Any) -> str:
    """Visible text of a paragraph: runs, hyperlinks, insertions, fields' results, text boxes."""
    parts: list[str] = []

    def walk(el: Any) -> None:
        for child in el:
            tag = child.tag
            if not isinstance(tag, str) or tag in _W_SKIP:
                continue
            if tag == _W_T:
                parts.append(child.text or "")
            elif tag == f"{_W}tab":
                parts.append("\t")
            elif tag in _W_BREAKS:
                parts.append("\n")
            elif tag == f"{_W}noBreakHyphen":
                parts.append("-")
            elif tag == _W_P:  # a paragraph of a text box inside this one
                parts.append("\n")
                walk(child)
                parts.append("\n")
            else:
                walk(child)

    walk(element)
    return "".join(parts)


def _w_blocks(container: Any) -> Iterator[Any]:
    """Paragraphs and tables of a body or cell in reading order, looking into content controls."""
    for child in container:
        tag = child.tag
        if tag in (_W_P, _W_TBL):
            yield child
        elif tag == f"{_W}sdt":
            gallery = child.find(f"{_W}sdtPr/{_W}docPartObj/{_W}docPartGallery")
            if gallery is not None and "contents" in gallery.get(_W_VAL, "").lower():
                continue  # a generated table of contents repeats the headings
            content = child.find(f"{_W}sdtContent")
            if content is not None:
                yield from _w_blocks(content)
        elif tag == f"{_W}customXml":
            yield from _w_blocks(child)


def _docx_table(tbl: Any, parent: Any) -> list[str]:
    """One line per row; merged cells give their text to every row they span."""
    table = Table(tbl, parent)
    lines: list[str] = []
    for row in table.rows:
        try:
            tcs = [cell._tc for cell in row.cells]
        except ValueError:  # a malformed vertical merge: read the cells as they are
            tcs = list(row._tr.tc_lst)
        unique: list[Any] = []
        for tc in tcs:  # a horizontally merged cell is listed once per grid column
            if not unique or unique[-1] is not tc:
                unique.append(tc)
        cells = [_docx_cell_text(tc, parent) for tc in unique]
        if any(c.strip() for c in cells):
            lines.append(_row(cells))
    return lines


def _docx_cell_text(tc: Any, parent: Any) -> str:
    parts: list[str] = []
    for block in _w_blocks(tc):
        if block.tag == _W_P:
            parts.append(_w_text(block))
        else:
            parts.extend(_docx_table(block, parent))
    return " ".join(" ".join(p.split()) for p in parts if p.strip())


def extract_docx(data: bytes, filename: str, options: Options) -> Extracted:
    """Word 2007+ document: headings as '#' lines, paragraphs and tables in reading order."""
    _refuse_foreign(data, filename, ".doc (Word 97–2003)", ".docx")
    options.report(0.0, f"Чтение «{filename}»")
    with _open_archive(data, filename, options, "Word (.docx)", _DOCX_RESAVE) as archive:
        names = set(archive.namelist())
    if "word/document.xml" not in names and {"mimetype", "content.xml"} <= names:
        raise IngestError(
            f"«{filename}»: это документ OpenDocument (.odt), сохранённый с расширением .docx. "
            "Переименуйте его в .odt и загрузите снова."
        )
    if "word/document.xml" not in names:
        raise IngestError(
            f"«{filename}»: это ZIP-архив, но не документ Word (.docx): в нём нет word/document.xml. "
            + _DOCX_RESAVE
        )
    try:
        document = docx.Document(io.BytesIO(data))
        levels, toc = _docx_styles(document)
    except (
        PackageNotFoundError,
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        KeyError,
        ValueError,
        lxml.etree.XMLSyntaxError,
    ) as exc:
        log.warning("damaged DOCX %s: %s", filename, exc)
        raise IngestError(f"«{filename}»: документ Word повреждён. {_DOCX_RESAVE}") from exc
    body = document.element.body
    blocks: list[str] = []
    for block in _w_blocks(body):
        if block.tag == _W_TBL:
            blocks.extend(_docx_table(block, document._body))
            continue
        style = block.find(f"{_W}pPr/{_W}pStyle")
        style_id = style.get(_W_VAL) if style is not None else None
        if style_id in toc:
            continue
        text = _w_text(block)
        if not text.strip():
            continue
        outline = block.find(f"{_W}pPr/{_W}outlineLvl")
        own = _int(outline.get(_W_VAL)) if outline is not None else None
        level = own + 1 if own is not None and own < 9 else levels.get(style_id or "", 0)
        if level:
            blocks.append(_heading(level, text))
        else:
            blocks.append("\n".join(_escape_heading(" ".join(line.split())) for line in text.splitlines()))
    text = _join_blocks(blocks)
    if not text:
        raise _no_text(filename, " Если он состоит из картинок или сканов, загрузите его как PDF.")
    options.report(1.0, f"«{filename}» прочитан")
    return Extracted(pages=[Page(None, text)], mime_type=DOCX_MIME)


# -- HTML -----------------------------------------------------------------------------------------

_META_CHARSET = re.compile(rb"<meta\b[^>]*?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9_.:-]+)", re.IGNORECASE)
_XML_DECL_TEXT = re.compile(r"^\s*<\?xml[^>]*\?>")
# Western single-byte charsets are what servers and editors declare by default, often wrongly.
_WESTERN = frozenset(codecs.lookup(n).name for n in ("latin-1", "cp1252", "ascii", "iso-8859-15"))
_CYRILLIC = re.compile(r"[А-Яа-яЁё]")
# Never page content: code, styles, menus, side bars and form controls.
_BOILERPLATE_TAGS = (
    "script",
    "style",
    "noscript",
    "template",
    "nav",
    "aside",
    "button",
    "select",
    "textarea",
    "iframe",
    "object",
    "svg",
    "canvas",
    "head",
)
_LOWER = "translate(@{attr}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
# Cookie and consent banners rarely use a semantic tag; they name themselves in id or class.
_BANNER_XPATH = "//*[not(self::html or self::body or self::main or self::article)][{}]".format(
    " or ".join(
        f"contains({_LOWER.format(attr=attr)}, '{word}')"
        for word in ("cookie", "consent", "gdpr")
        for attr in ("id", "class")
    )
)
# The site's header and footer, not an article's own (which may hold its title or author).
_PAGE_FRAME_XPATH = (
    "//header[not(ancestor::article or ancestor::main)] | //footer[not(ancestor::article or ancestor::main)]"
    " | //*[@hidden] | //*[@aria-hidden='true'] | //*[@role='navigation' or @role='banner'"
    " or @role='contentinfo']"
)
_BANNER_MAX_CHARS = 3000
_BLOCK_TAGS = frozenset(
    "p div section article main header footer form li ul ol dl dt dd table thead tbody tfoot caption "
    "blockquote pre figure figcaption hr address center details summary body html".split()
)
_MD_TABLE_RULE = re.compile(r"^\s*\|?[\s:|-]*-[\s:|-]*\|?\s*$")
_MD_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _html_charset(data: bytes) -> str | None:
    """Python codec of the charset a page declares (meta charset, http-equiv or XML declaration)."""
    head = data[:65536]
    m = _XML_DECL.match(head) or _META_CHARSET.search(head)
    if not m:
        return None
    try:
        name = codecs.lookup(m.group(1).decode("ascii")).name
    except LookupError:
        return None
    # A page readable as ASCII cannot really be UTF-16/32 (the HTML standard reads it as UTF-8).
    return None if name.startswith(("utf-16", "utf-32")) else name


def _decode_html(data: bytes, filename: str) -> tuple[str, str]:
    declared = _html_charset(data)
    has_bom = data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if declared and not has_bom:
        try:
            text = data.decode(declared)
        except UnicodeDecodeError:
            pass  # the declaration is wrong: detect instead
        else:
            if declared not in _WESTERN or data.isascii():
                return text, declared
            detected, encoding = decode_text(data, filename)
            return (detected, encoding) if _CYRILLIC.search(detected) else (text, declared)
    return decode_text(data, filename)


def _drop_boilerplate(tree: Any) -> None:
    """Remove what is never the page's text, before trafilatura and the fallback see the page."""
    doomed = [*tree.iter(*_BOILERPLATE_TAGS), *tree.xpath(_PAGE_FRAME_XPATH)]
    # A long element naming "cookie" is a page about cookies, not a banner.
    doomed += [el for el in tree.xpath(_BANNER_XPATH) if len(el.text_content()) < _BANNER_MAX_CHARS]
    doomed += tree.iter(lxml.etree.Comment, lxml.etree.ProcessingInstruction)
    for el in doomed:
        if el.getparent() is not None:  # the root stays, whatever its attributes say
            el.drop_tree()


def _trafilatura_text(tree: Any) -> str:
    out = trafilatura.extract(
        tree,
        output_format="markdown",
        include_tables=True,
        include_comments=False,
        include_images=False,
        include_links=False,
        favor_recall=True,
        deduplicate=False,
    )
    if not out:
        return ""
    lines = []
    for line in out.splitlines():
        if not line.strip() or (line.lstrip().startswith("|") and _MD_TABLE_RULE.match(line)):
            continue
        line = _MD_BOLD.sub(r"\1", line.strip())
        if _MD_HEADING.match(line):
            line = _heading(len(line) - len(line.lstrip("#")), line.lstrip("#"))
        lines.append(line)
    # One line, one paragraph: table rows and list items are never merged into one "sentence".
    return _join_blocks(lines)


def _fallback_html_text(tree: Any) -> str:
    """Body text of a page trafilatura found nothing in: blocks, '#' headings, table rows."""
    parts: list[str] = []
    mark = "\x00"  # starts the headings made here, which must not be escaped as body text

    def inline(text: str | None) -> None:
        if text:  # source line breaks are spaces in HTML
            parts.append(re.sub(r"\s+", " ", text))

    def walk(el: Any) -> None:
        for child in el:
            tag = child.tag.lower() if isinstance(child.tag, str) else ""
            if len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
                text = " ".join(child.text_content().split())
                if text:
                    parts.append(f"\n\n{mark}{_heading(int(tag[1]), text)}\n\n")
            elif tag == "tr":
                cells = [c.text_content() for c in child if isinstance(c.tag, str)]
                if any(c.strip() for c in cells):
                    parts.append(f"\n\n{_row(cells)}\n\n")
            elif tag == "br":
                parts.append("\n")
            elif tag:
                block = tag in _BLOCK_TAGS
                parts.append("\n\n" if block else "")
                inline(child.text)
                walk(child)
                parts.append("\n\n" if block else "")
            inline(child.tail)

    walk(tree)
    lines = (" ".join(line.split()) for line in "".join(parts).split("\n"))
    return _join_blocks(line[1:] if line.startswith(mark) else _escape_heading(line) for line in lines)


def extract_html(data: bytes, filename: str, options: Options) -> Extracted:
    """A saved web page: the article text (trafilatura), headings as '#' lines, tables as rows."""
    options.report(0.0, f"Чтение «{filename}»")
    html, encoding = _decode_html(data, filename)
    html = _XML_DECL_TEXT.sub("", html)  # lxml refuses str input with an encoding declaration
    try:
        tree = lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError) as exc:
        raise _no_text(filename, " Страница пуста или не читается как HTML.") from exc
    title_el = tree.find(".//title")
    title = " ".join(title_el.text_content().split()) if title_el is not None else ""
    try:
        _drop_boilerplate(tree)
        text = _trafilatura_text(copy.deepcopy(tree)) or _fallback_html_text(tree)
    except RecursionError as exc:
        raise IngestError(
            f"«{filename}»: страница слишком глубоко вложена, её не удалось разобрать. "
            "Сохраните её текст как .txt и загрузите снова."
        ) from exc
    if not text:
        raise _no_text(filename, " На странице не найдено основного текста.")
    # trafilatura takes the page's <h1> for its title and leaves it out of the text when a
    # <title> exists; the article's own heading must stay (it is often what users ask about).
    h1_el = tree.find(".//h1")
    h1 = " ".join(h1_el.text_content().split()) if h1_el is not None else ""
    flat = " ".join(text.split()).casefold()
    for heading in (h1, title):
        if heading and heading.casefold() not in flat:
            text = f"{_heading(1, heading)}\n\n{text}"
            flat = f"{heading.casefold()} {flat}"
    options.report(1.0, f"«{filename}» прочитан")
    return Extracted(pages=[Page(None, text)], mime_type=HTML_MIME, encoding=encoding)


# -- CSV ------------------------------------------------------------------------------------------

_DELIMITERS = ";,\t|"
_NUMBER = re.compile(r"^[-+]?\d[\d\s\u00a0]*(?:[.,]\d+)?%?$")


def _csv_dialect(text: str) -> tuple[str, str]:
    """(delimiter, text without an Excel ``sep=`` line)."""
    first, _, rest = text.partition("\n")
    m = re.fullmatch(r"\s*sep=(.)\s*", first)
    if m:
        return m.group(1), rest
    sample = text[:65536]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        delimiter = ""
    if not delimiter or delimiter not in first:
        counts = {d: first.count(d) for d in _DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        delimiter = best if counts[best] else ","
    return delimiter, text


def extract_csv(data: bytes, filename: str, options: Options) -> Extracted:
    """A table export: one line per record, each value with its column name."""
    options.report(0.0, f"Чтение «{filename}»")
    text, encoding = decode_text(data, filename)
    delimiter, text = _csv_dialect(text.replace("\r\n", "\n").replace("\r", "\n"))
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        rows = [[" ".join(cell.split()) for cell in row] for row in reader]
    except csv.Error as exc:
        raise IngestError(
            f"«{filename}»: CSV не читается (строка {reader.line_num}: {exc}). "
            "Сохраните таблицу из Excel или LibreOffice как «CSV UTF-8» и загрузите снова."
        ) from exc
    rows = [row for row in rows if any(row)]
    if not rows:
        raise _no_text(filename)
    first = rows[0]
    # A first row of numbers only is data, not column names (years as headers are names).
    if all(_NUMBER.match(c) for c in first if c):
        header: list[str] = []
    else:
        header, rows = first, rows[1:]
        if not rows:
            raise IngestError(f"«{filename}»: в таблице только строка заголовков, данных нет.")
    names: list[str] = []
    for i in range(max(len(header), *(len(r) for r in rows))):
        name = header[i] if i < len(header) and header[i] else f"Столбец {i + 1}"
        names.append(name if name not in names else f"{name} ({i + 1})")
    lines = ["; ".join(f"{names[i]}: {value}" for i, value in enumerate(row) if value) for row in rows]
    options.report(1.0, f"«{filename}» прочитан")
    return Extracted(pages=[Page(None, _join_blocks(lines))], mime_type=CSV_MIME, encoding=encoding)


# -- JSON -----------------------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return " ".join(str(value).split())


def _json_lines(value: Any) -> Iterator[str]:
    """``path: value`` lines: objects by dotted keys, lists by [index]; scalar lists on one line."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            children = [(f"{path}.{k}" if path else str(k), v) for k, v in item.items()]
        elif isinstance(item, list) and any(isinstance(v, dict | list) for v in item):
            children = [(f"{path}[{i}]", v) for i, v in enumerate(item)]
        elif isinstance(item, list):
            if item:
                yield (
                    f"{path}: {', '.join(_scalar(v) for v in item)}"
                    if path
                    else ", ".join(_scalar(v) for v in item)
                )
            continue
        else:
            text = _scalar(item)
            if text:
                yield f"{path}: {text}" if path else text
            continue
        stack.extend(reversed(children))


def extract_json(data: bytes, filename: str, options: Options) -> Extracted:
    """JSON (or JSON Lines): one ``path: value`` line per value, Cyrillic as is."""
    options.report(0.0, f"Чтение «{filename}»")
    text, encoding = decode_text(data, filename)
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        value = _json_lines_file(text)
        if value is None:
            raise IngestError(
                f"«{filename}»: файл не является корректным JSON — {_json_error(exc)} "
                f"(строка {exc.lineno}, столбец {exc.colno}). Исправьте файл и загрузите снова."
            ) from exc
    except RecursionError as exc:
        raise IngestError(f"«{filename}»: JSON вложен слишком глубоко, его нельзя разобрать.") from exc
    body = _join_blocks(_json_lines(value))
    if not body:
        raise _no_text(filename, " JSON не содержит значений.")
    options.report(1.0, f"«{filename}» прочитан")
    return Extracted(pages=[Page(None, body)], mime_type=JSON_MIME, encoding=encoding)


def _json_lines_file(text: str) -> list[Any] | None:
    """JSON Lines (one value per line), or None when the text is not that either."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    try:
        return [json.loads(line) for line in lines]
    except (json.JSONDecodeError, RecursionError):
        return None


_JSON_ERRORS = {
    "Expecting value": "ожидалось значение",
    "Expecting property name enclosed in double quotes": "ожидалось имя поля в двойных кавычках",
    "Expecting ',' delimiter": "ожидалась запятая",
    "Expecting ':' delimiter": "ожидалось двоеточие",
    "Extra data": "лишние данные после конца JSON",
    "Unterminated string starting at": "незакрытая строка",
    "Invalid control character at": "недопустимый управляющий символ в строке",
    "Illegal trailing comma before end of object": "лишняя запятая перед концом объекта",
    "Illegal trailing comma before end of array": "лишняя запятая перед концом списка",
}


def _json_error(exc: json.JSONDecodeError) -> str:
    return _JSON_ERRORS.get(exc.msg, f"ошибка разбора: {exc.msg}")


# -- RTF ------------------------------------------------------------------------------------------

_ANSICPG = re.compile(rb"\\ansicpg(\d+)")
_SINGLE_BYTE_CODEPAGES = frozenset({874, *range(1250, 1259), 437, 850, 866})
_LATIN_MOJIBAKE = re.compile(r"[À-ÿ]")
_BINARY_GROUP = re.compile(
    r"\{(?:\\\*)?\\(?:pict|objdata|datastore|themedata|colorschememapping|blipuid)(?![a-z])"
)
_BRACE = re.compile(r"\\[{}\\]|[{}]")  # escaped braces and backslashes are text


def _fix_mojibake(text: str) -> str:
    """Cyrillic bytes decoded as cp1252 (a font declared \\fcharset0 in a Russian document)."""
    if _CYRILLIC.search(text) or len(_LATIN_MOJIBAKE.findall(text)) < 3:
        return text
    try:
        fixed = text.encode("cp1252").decode("cp1251")
    except UnicodeError:
        return text
    letters = [c for c in fixed if c.isalpha() and not c.isascii()]
    cyrillic = sum(1 for c in letters if _CYRILLIC.match(c))
    return fixed if letters and cyrillic / len(letters) > 0.9 else text


def _drop_binary_groups(rtf: str) -> str:
    """Remove pictures, OLE objects and themes: megabytes of hex that striprtf walks char by char."""
    if "\\bin" in rtf:  # raw binary may hold unbalanced braces; leave those files to striprtf
        return rtf
    out: list[str] = []
    pos = 0
    for start in _BINARY_GROUP.finditer(rtf):
        if start.start() < pos:
            continue  # inside a group already dropped
        depth, end = 0, len(rtf)
        for brace in _BRACE.finditer(rtf, start.start()):
            if brace.group() == "{":
                depth += 1
            elif brace.group() == "}":
                depth -= 1
                if depth == 0:
                    end = brace.end()
                    break
        out.append(rtf[pos : start.start()])
        pos = end
    out.append(rtf[pos:])
    return "".join(out)


def extract_rtf(data: bytes, filename: str, options: Options) -> Extracted:
    """Rich Text Format: text with the document's code page (\\ansicpg, \\fcharset, \\uN)."""
    options.report(0.0, f"Чтение «{filename}»")
    raw = data.removeprefix(codecs.BOM_UTF8).lstrip()
    if not raw.startswith(b"{\\rtf"):
        raise IngestError(
            f"«{filename}»: файл не является документом RTF. Пересохраните его в Word или LibreOffice "
            "как .rtf или .docx и загрузите снова."
        )
    m = _ANSICPG.search(raw[:4096])
    codepage = f"cp{int(m.group(1))}" if m and int(m.group(1)) in _SINGLE_BYTE_CODEPAGES else "cp1252"
    # RTF is 7-bit with \'xx escapes; bytes above 127 written raw by sloppy tools are in its code page.
    source = _drop_binary_groups(raw.decode(codepage, errors="replace"))
    try:
        text: str = rtf_to_text(source, encoding=codepage, errors="replace")  # type: ignore[no-untyped-call]
    except (LookupError, ValueError, IndexError) as exc:
        log.warning("damaged RTF %s: %s", filename, exc)
        raise IngestError(
            f"«{filename}»: документ RTF повреждён или использует неизвестную кодировку. "
            "Пересохраните его как .docx и загрузите снова."
        ) from exc
    text = _fix_mojibake(text.replace("\r", ""))
    # striprtf ends each table cell with '|' and each row with a line break.
    lines = (_row(line[:-1].split("|")) if line.endswith("|") else line for line in text.split("\n"))
    body = _join_blocks(" ".join(line.split()) for line in lines)
    if not body:
        raise _no_text(filename)
    options.report(1.0, f"«{filename}» прочитан")
    return Extracted(pages=[Page(None, body)], mime_type=RTF_MIME, encoding=codepage)


# -- ODT ------------------------------------------------------------------------------------------

_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_DRAW = "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_STYLE = "urn:oasis:names:tc:opendocument:xmlns:style:1.0"
_ODT_RESAVE = "Откройте его в LibreOffice или Word, сохраните как .odt и загрузите снова."
# Generated indexes repeat the text; tracked changes hold deleted text; notes and comments
# would break a sentence in two where they are anchored.
_ODT_SKIP = frozenset(
    {
        (_TEXT, "table-of-content"),
        (_TEXT, "alphabetical-index"),
        (_TEXT, "illustration-index"),
        (_TEXT, "table-index"),
        (_TEXT, "object-index"),
        (_TEXT, "user-index"),
        (_TEXT, "bibliography"),
        (_TEXT, "tracked-changes"),
        (_TEXT, "sequence-decls"),
        (_TEXT, "variable-decls"),
        (_TEXT, "user-field-decls"),
        (_TEXT, "note"),
        (_OFFICE, "annotation"),
        (_OFFICE, "forms"),
    }
)
_ODT_ROW_GROUPS = frozenset({"table-header-rows", "table-rows", "table-row-group"})


def _odt_inline(node: Any, out: list[str]) -> None:
    for child in node.childNodes:
        if child.nodeType == Node.TEXT_NODE:
            out.append(str(child.data))
            continue
        if child.nodeType != Node.ELEMENT_NODE:
            continue
        qname = child.qname
        if qname in _ODT_SKIP:
            continue
        if qname == (_TEXT, "s"):
            out.append(" " * (_int(child.getAttrNS(_TEXT, "c")) or 1))
        elif qname == (_TEXT, "tab"):
            out.append("\t")
        elif qname == (_TEXT, "line-break"):
            out.append("\n")
        elif qname[0] == _DRAW and qname[1] not in ("frame", "text-box", "a", "g"):
            continue  # images, shapes' titles and descriptions
        elif qname in ((_TEXT, "p"), (_TEXT, "h")):  # a paragraph of a text box
            out.append("\n")
            _odt_inline(child, out)
            out.append("\n")
        else:
            _odt_inline(child, out)


def _odt_text(node: Any) -> str:
    out: list[str] = []
    _odt_inline(node, out)
    return "".join(out)


def _odt_blocks(node: Any, title_styles: set[str]) -> Iterator[str]:
    """Headings, paragraphs and table rows under ``node`` in document order."""
    for child in node.childNodes:
        if child.nodeType != Node.ELEMENT_NODE or child.qname in _ODT_SKIP:
            continue
        ns, name = child.qname
        if ns == _TEXT and name in ("h", "p"):
            text = _odt_text(child)
            if not text.strip():
                continue
            level = 0
            if name == "h":
                level = _int(child.getAttrNS(_TEXT, "outline-level")) or 1
            elif child.getAttrNS(_TEXT, "style-name") in title_styles:
                level = 1
            if level:
                yield _heading(level, text)
            else:
                yield "\n".join(_escape_heading(" ".join(line.split())) for line in text.splitlines())
        elif ns == _TABLE and name == "table":
            yield from _odt_rows(child, title_styles)
        else:  # sections, lists, list items, frames at page level
            yield from _odt_blocks(child, title_styles)


def _odt_rows(table: Any, title_styles: set[str]) -> Iterator[str]:
    for child in table.childNodes:
        if child.nodeType != Node.ELEMENT_NODE or child.qname[0] != _TABLE:
            continue
        if child.qname[1] in _ODT_ROW_GROUPS:
            yield from _odt_rows(child, title_styles)
        elif child.qname[1] == "table-row":
            # Covered cells (merged away) are empty; repeated empty cells pad to the sheet width.
            cells = [
                " ".join(_odt_blocks(cell, title_styles))
                for cell in child.childNodes
                if cell.nodeType == Node.ELEMENT_NODE and cell.qname == (_TABLE, "table-cell")
            ]
            while cells and not cells[-1].strip():
                cells.pop()
            if cells:
                yield _row(cells)


def _odt_title_styles(document: Any) -> set[str]:
    """Names of paragraph styles derived from the Title style (automatic styles included)."""
    parents: dict[str, str] = {}
    for container in (document.styles, document.automaticstyles):
        for st in container.childNodes:
            if st.nodeType == Node.ELEMENT_NODE and st.qname == (_STYLE, "style"):
                parents[str(st.getAttrNS(_STYLE, "name"))] = str(st.getAttrNS(_STYLE, "parent-style-name"))
    titles = set()
    for name in parents:
        current: str | None = name
        for _ in range(10):
            if current is None:
                break
            if current == "Title":
                titles.add(name)
                break
            current = parents.get(current)
    return titles


def extract_odt(data: bytes, filename: str, options: Options) -> Extracted:
    """OpenDocument text: headings as '#' lines, paragraphs, lists and tables in reading order."""
    _refuse_foreign(data, filename, ".doc (Word 97–2003)", ".odt или .docx")
    options.report(0.0, f"Чтение «{filename}»")
    with _open_archive(data, filename, options, "OpenDocument (.odt)", _ODT_RESAVE) as archive:
        names = set(archive.namelist())
        try:
            mimetype = (
                archive.read("mimetype").strip().decode("ascii", "replace") if "mimetype" in names else ""
            )
            manifest = archive.read("META-INF/manifest.xml") if "META-INF/manifest.xml" in names else b""
            if mimetype == ODT_MIME and b"encryption-data" in manifest:
                raise IngestError(
                    f"«{filename}»: документ защищён паролем. Снимите пароль и загрузите его снова."
                )
            if mimetype == ODT_MIME and "content.xml" in names:
                # odfpy prints an unparsable part to stdout and carries on: check the XML first.
                parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
                for part in ("content.xml", "styles.xml", "meta.xml", "settings.xml"):
                    if part in names:
                        lxml.etree.fromstring(archive.read(part), parser)
        except (zipfile.BadZipFile, zlib.error, EOFError, lxml.etree.XMLSyntaxError) as exc:
            log.warning("damaged ODT %s: %s", filename, exc)
            raise IngestError(f"«{filename}»: документ ODT повреждён. {_ODT_RESAVE}") from exc
    if mimetype != ODT_MIME and "word/document.xml" in names:
        raise IngestError(
            f"«{filename}»: это документ Word (.docx), сохранённый с расширением .odt. "
            "Переименуйте его в .docx и загрузите снова."
        )
    if mimetype != ODT_MIME:
        what = f"это файл {mimetype}" if mimetype.startswith("application/") else "нет отметки типа ODF"
        raise IngestError(
            f"«{filename}»: это не текстовый документ OpenDocument (.odt): {what}. {_ODT_RESAVE}"
        )
    if "content.xml" not in names:
        raise IngestError(f"«{filename}»: в документе ODT нет содержимого (content.xml). {_ODT_RESAVE}")
    try:
        document = opendocument.load(io.BytesIO(data))
        body = document.text
        title_styles = _odt_title_styles(document)
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, IndexError, ValueError) as exc:
        log.warning("damaged ODT %s: %s", filename, exc)
        raise IngestError(f"«{filename}»: документ ODT повреждён. {_ODT_RESAVE}") from exc
    text = _join_blocks(_odt_blocks(body, title_styles))
    if not text:
        raise _no_text(filename, " Если он состоит из картинок или сканов, загрузите его как PDF.")
    options.report(1.0, f"«{filename}» прочитан")
    return Extracted(pages=[Page(None, text)], mime_type=ODT_MIME)


FORMAT_EXTRACTORS: dict[str, Extractor] = {
    ".docx": extract_docx,
    ".html": extract_html,
    ".htm": extract_html,
    ".csv": extract_csv,
    ".json": extract_json,
    ".rtf": extract_rtf,
    ".odt": extract_odt,
}

from rag.extract import Extracted, Page, decode_text  # noqa: E402  (see the note at the top)
