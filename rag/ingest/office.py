"""Office documents: Word (DOCX), OpenDocument text (ODT) and RTF.

DOCX and ODT are ZIP archives, checked against decompression bombs before anything is unpacked;
their headings become Markdown '#' lines and their tables one line per row (``rag.ingest.blocks``).
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

import docx
import lxml.etree
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from odf import opendocument
from odf.element import Node
from striprtf.striprtf import rtf_to_text

from language import CYRILLIC, has_cyrillic
from rag import IngestError
from rag.ingest.blocks import escape_heading, heading_line, join_blocks, table_row
from rag.ingest.types import Extracted, Options, Page, no_text

log = logging.getLogger(__name__)

DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT_MIME = "application/vnd.oasis.opendocument.text"
RTF_MIME = "application/rtf"

# Archive limits besides Options.max_unpacked_bytes: a member that inflates more than
# _MAX_RATIO times and to more than _RATIO_FLOOR bytes is a decompression bomb, not a document.
_MAX_RATIO = 200
_RATIO_FLOOR = 10 * 1024 * 1024
_MAX_MEMBERS = 20_000

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_MB = 1024 * 1024


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
            lines.append(table_row(cells))
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
            blocks.append(heading_line(level, text))
        else:
            blocks.append("\n".join(escape_heading(" ".join(line.split())) for line in text.splitlines()))
    text = join_blocks(blocks)
    if not text:
        raise no_text(filename, " Если он состоит из картинок или сканов, загрузите его как PDF.")
    options.report(1.0, f"«{filename}» прочитан")
    return Extracted(pages=[Page(None, text)], mime_type=DOCX_MIME, has_headings=True)


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
    if has_cyrillic(text) or len(_LATIN_MOJIBAKE.findall(text)) < 3:
        return text
    try:
        fixed = text.encode("cp1252").decode("cp1251")
    except UnicodeError:
        return text
    letters = [c for c in fixed if c.isalpha() and not c.isascii()]
    cyrillic = sum(1 for c in letters if CYRILLIC.match(c))
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
    lines = (table_row(line[:-1].split("|")) if line.endswith("|") else line for line in text.split("\n"))
    body = join_blocks(" ".join(line.split()) for line in lines)
    if not body:
        raise no_text(filename)
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
                yield heading_line(level, text)
            else:
                yield "\n".join(escape_heading(" ".join(line.split())) for line in text.splitlines())
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
                yield table_row(cells)


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
    text = join_blocks(_odt_blocks(body, title_styles))
    if not text:
        raise no_text(filename, " Если он состоит из картинок или сканов, загрузите его как PDF.")
    options.report(1.0, f"«{filename}» прочитан")
    return Extracted(pages=[Page(None, text)], mime_type=ODT_MIME, has_headings=True)
