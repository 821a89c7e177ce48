"""OpenDocument text (ODT): paragraphs, headings and tables in reading order."""

from __future__ import annotations

import io
import logging
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

import lxml.etree
from odf import opendocument
from odf.element import Node

from rag import IngestError
from rag.ingest.archive import (
    ODT_MIME,
    _int,
    _open_archive,
    _refuse_foreign,
)
from rag.ingest.blocks import escape_heading, heading_line, join_blocks, table_row
from rag.ingest.types import Extracted, Options, Page, no_text

log = logging.getLogger(__name__)

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
