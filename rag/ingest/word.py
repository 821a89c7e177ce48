"""Word documents (DOCX): paragraphs, headings and tables in reading order."""

from __future__ import annotations

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

from rag import IngestError
from rag.ingest.archive import (
    DOCX_MIME,
    _int,
    _open_archive,
    _refuse_foreign,
)
from rag.ingest.blocks import escape_heading, heading_line, join_blocks, table_row
from rag.ingest.types import Extracted, Options, Page, no_text

log = logging.getLogger(__name__)

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
