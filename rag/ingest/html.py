"""Saved web pages: the article text (trafilatura, with a fallback walk of the page), headings as
'#' lines, table rows on one line each; the declared charset is checked against detection.
"""

from __future__ import annotations

import codecs
import copy
import re
from typing import Any

import lxml.etree
import lxml.html
import trafilatura

from language import has_cyrillic
from rag import IngestError
from rag.ingest.blocks import MD_HEADING, escape_heading, heading_line, join_blocks, table_row
from rag.ingest.text import decode_text
from rag.ingest.types import Extracted, Options, Page, no_text

HTML_MIME = "text/html"

_META_CHARSET = re.compile(rb"<meta\b[^>]*?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9_.:-]+)", re.IGNORECASE)
_XML_DECL_TEXT = re.compile(r"^\s*<\?xml[^>]*\?>")
# Western single-byte charsets are what servers and editors declare by default, often wrongly.
_WESTERN = frozenset(codecs.lookup(n).name for n in ("latin-1", "cp1252", "ascii", "iso-8859-15"))
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
            return (detected, encoding) if has_cyrillic(detected) else (text, declared)
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
        if MD_HEADING.match(line):
            line = heading_line(len(line) - len(line.lstrip("#")), line.lstrip("#"))
        lines.append(line)
    # One line, one paragraph: table rows and list items are never merged into one "sentence".
    return join_blocks(lines)


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
                    parts.append(f"\n\n{mark}{heading_line(int(tag[1]), text)}\n\n")
            elif tag == "tr":
                cells = [c.text_content() for c in child if isinstance(c.tag, str)]
                if any(c.strip() for c in cells):
                    parts.append(f"\n\n{table_row(cells)}\n\n")
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
    return join_blocks(line[1:] if line.startswith(mark) else escape_heading(line) for line in lines)


def extract_html(data: bytes, filename: str, options: Options) -> Extracted:
    """A saved web page: the article text (trafilatura), headings as '#' lines, tables as rows."""
    options.report(0.0, f"Чтение «{filename}»")
    html, encoding = _decode_html(data, filename)
    html = _XML_DECL_TEXT.sub("", html)  # lxml refuses str input with an encoding declaration
    try:
        tree = lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError) as exc:
        raise no_text(filename, " Страница пуста или не читается как HTML.") from exc
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
        raise no_text(filename, " На странице не найдено основного текста.")
    # trafilatura takes the page's <h1> for its title and leaves it out of the text when a
    # <title> exists; the article's own heading must stay (it is often what users ask about).
    h1_el = tree.find(".//h1")
    h1 = " ".join(h1_el.text_content().split()) if h1_el is not None else ""
    flat = " ".join(text.split()).casefold()
    for heading in (h1, title):
        if heading and heading.casefold() not in flat:
            text = f"{heading_line(1, heading)}\n\n{text}"
            flat = f"{heading.casefold()} {flat}"
    options.report(1.0, f"«{filename}» прочитан")
    return Extracted(pages=[Page(None, text)], mime_type=HTML_MIME, encoding=encoding, has_headings=True)
