"""Split pages into chunks of whole sentences (razdel), keeping headings and page numbers.

Each chunk also records where it stands: its clause anchor and section heading
(``rag.ingest.clauses``, over the whole document, so a clause that goes on to the next page is
still the enclosing one there) and, for pages whose words have boxes, the boxes of its words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from razdel import sentenize

from rag.ingest import Page
from rag.ingest.clauses import Clause, anchor, outline, section_title
from rag.ingest.types import Box

_MD_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk before it is stored: text, page and its span in the page text."""

    text: str
    page: int | None
    start: int
    end: int
    ocr: bool = False
    anchor: str | None = None  # «п. 2.1», «пп. 2.1–2.3», «Раздел 3»
    heading: str | None = None  # the section's heading path or title line
    boxes: tuple[Box, ...] | None = None  # its words on the page (PDF and OCR pages)


@dataclass(frozen=True)
class _Sentence:
    text: str
    start: int
    end: int
    words: int


def _sections(text: str, markdown: bool) -> Iterable[tuple[str, int, int]]:
    """(heading path, start, end) spans; a Markdown heading opens a section.

    The path joins the enclosing headings («Договор › Оплата»), so a subsection's chunks keep
    the subject their own short heading leaves out.
    """
    if not markdown:
        yield "", 0, len(text)
        return
    path: list[tuple[int, str]] = []
    heading, start, pos = "", 0, 0
    for line in text.splitlines(keepends=True):
        m = _MD_HEADING.match(line)
        if m:
            if text[start:pos].strip():
                yield heading, start, pos
            level = len(m.group(1))
            path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, m.group(2).strip())]
            heading, start = " › ".join(h for _, h in path), pos + len(line)
        pos += len(line)
    if text[start:].strip():
        yield heading, start, len(text)


def _sentences(text: str, start: int, end: int, max_words: int) -> list[_Sentence]:
    out: list[_Sentence] = []
    body = text[start:end]
    para_start = 0
    # Paragraph breaks are hard boundaries that razdel does not always see (lists, titles).
    for para in [*_PARAGRAPH_BREAK.finditer(body), None]:
        para_end = para.start() if para else len(body)
        for s in sentenize(body[para_start:para_end]):
            s_start = start + para_start + s.start
            words = s.text.split()
            if len(words) <= max_words:
                out.append(_Sentence(s.text, s_start, s_start + len(s.text), len(words)))
                continue
            # A sentence longer than a chunk (tables, run-on lists) is cut into word windows.
            for m in _windows(s.text, max_words):
                out.append(_Sentence(m[0], s_start + m[1], s_start + m[2], len(m[0].split())))
        if para:
            para_start = para.end()
    return out


def _windows(text: str, max_words: int) -> list[tuple[str, int, int]]:
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    out = []
    for i in range(0, len(spans), max_words):
        part = spans[i : i + max_words]
        a, b = part[0][0], part[-1][1]
        out.append((text[a:b], a, b))
    return out


def _group(sentences: Sequence[_Sentence], max_words: int, overlap: int) -> list[tuple[int, int]]:
    """Index ranges [i, j) of sentences forming each chunk."""
    groups: list[tuple[int, int]] = []
    i = 0
    n = len(sentences)
    while i < n:
        j, words = i, 0
        while j < n and (j == i or words + sentences[j].words <= max_words):
            words += sentences[j].words
            j += 1
        groups.append((i, j))
        if j >= n:
            break
        # Step back by up to `overlap` sentences, but always move forward and keep the
        # repeated part small, so a fact on a boundary appears whole in one chunk.
        back = 0
        while (
            back < overlap
            and j - back - 1 > i
            and sum(s.words for s in sentences[j - back - 1 : j]) <= max_words // 3
        ):
            back += 1
        i = j - back
    return groups


def chunk_pages(
    pages: Sequence[Page], max_words: int = 100, overlap: int = 1, markdown: bool = False
) -> list[ChunkDraft]:
    """Chunks of at most ``max_words`` words (plus a heading line), never crossing a page."""
    drafts: list[ChunkDraft] = []
    # Clauses over the whole document: pages joined as paragraphs, each page at its offset.
    bases, pos = [], 0
    for page in pages:
        bases.append(pos)
        pos += len(page.text) + 2
    clauses = outline("\n\n".join(p.text for p in pages))
    for page, base in zip(pages, bases, strict=True):
        for heading, start, end in _sections(page.text, markdown):
            budget = max(10, max_words - len(heading.split()))
            sents = _sentences(page.text, start, end, budget)
            for i, j in _group(sents, budget, overlap):
                a, b = sents[i].start, sents[j - 1].end
                body = " ".join(s.text for s in sents[i:j])
                body = re.sub(r"[ \t]*\n[ \t]*", " ", body).strip()
                if not body:
                    continue
                text = f"{heading}\n{body}" if heading else body
                drafts.append(
                    ChunkDraft(
                        text=text,
                        page=page.number,
                        start=a,
                        end=b,
                        ocr=page.ocr,
                        anchor=anchor(clauses, base + a, base + b),
                        heading=heading or _title(clauses, base + a, base + b),
                        boxes=tuple(page.words.covering(a, b)) if page.words else None,
                    )
                )
    return drafts


def _title(clauses: Sequence[Clause], start: int, end: int) -> str | None:
    """The title of the section a chunk is in (or begins with, when it starts at the title)."""
    first = next((c for c in clauses if start <= c.start < end and c.heading), None)
    inside = section_title(clauses, start)
    return inside or (first.title if first else None)
