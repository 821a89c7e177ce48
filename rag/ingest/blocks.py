"""Markdown-style blocks the chunker understands: '#' headings, one-line table rows, paragraphs.

Formats with a document structure (DOCX, ODT, HTML) write headings as Markdown ``#`` lines, so
the chunker can keep a heading with its section. Table rows become one line each
(``| cell | cell |``) and every row, CSV record and JSON value is its own paragraph, so the
chunker never cuts one in half.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_HEADING_MAX_WORDS = 25


def escape_heading(line: str) -> str:
    """A body line that would read as a Markdown heading gets a backslash (as Markdown escapes it)."""
    return "\\" + line.lstrip() if MD_HEADING.match(line) else line


def heading_line(level: int, text: str) -> str:
    """A '#' line; a "heading" longer than a title is a paragraph styled by mistake, kept as text."""
    words = text.split()
    if len(words) > _HEADING_MAX_WORDS:  # it would be repeated in front of every chunk of its section
        return escape_heading(" ".join(words))
    return "#" * max(1, min(level, 6)) + " " + " ".join(words)


def table_row(cells: Iterable[str]) -> str:
    """One table row on one line; empty cells are kept so columns stay aligned."""
    return "| " + " | ".join(" ".join(c.split()) for c in cells) + " |"


def join_blocks(blocks: Iterable[str]) -> str:
    """Blocks separated by blank lines: each is a hard boundary for the chunker."""
    return "\n\n".join(b.strip() for b in blocks if b.strip())
