"""PDF text layers read as a person reads them: PDFium's text page, cleaned, with a map back.

pypdf rebuilds words from the content stream and drops the spaces that LaTeX and many other
typesetters express only by glyph position («Командаupgradeоставит…»). PDFium's text page
(pypdfium2, already used for rendering) inserts those spaces, marks a line-end hyphen as U+FFFE
and gives every character's box. ``bench/pdf_text.py`` measures both on real PDFs.

**Page text.** ``PageText.text`` is what a PDF page is indexed as: chunk offsets
(``Chunk.char_start``/``char_end``) point into it, and the page view highlights from it. It is
PDFium's text of the page with, in this order:

- two-column stretches put in reading order (the left column, then the right);
- page furniture removed: running headers and footers (lines at the same place on the page's
  top or bottom edge, set apart by a gap, whose wording repeats on other pages), page-number
  lines and table-of-contents entries (dot leaders or a page number aligned with theirs);
- words hyphenated across lines joined (U+FFFE, soft hyphens, a line-end «-» before a lowercase
  letter), except particles such as «что-то», «кое-как»;
- runs of spaces collapsed, lines joined by ``\\n``, a blank line where the vertical gap shows
  a new paragraph.

``PageText.source[i]`` is the PDFium character index (into ``PdfPage.get_textpage()``) of
``text[i]``, or -1 for a character written here (a line break, a space); so
``char_indices(start, end)`` leads from a fragment to ``PdfTextPage.get_charbox`` boxes. The
same bytes always give the same page texts: ``read_pdf_texts`` recomputes them for the view.
Two kinds of PDF page are indexed from another text, and have no PDFium map: a page read by OCR
(``Page.ocr``; Tesseract's words carry their own boxes), and the rare page whose PDFium layer
the gauge calls damaged while pypdf's is not (``rag.ingest.pdf``); the view tells them by the
fragment's text not being at its offsets in ``PageText.text``.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from rag.ingest.types import WordBoxes

# A text page's own marker of a hyphen PDFium saw at a line end (the word goes on below).
_PDFIUM_HYPHEN = "\ufffe"
_SOFT_HYPHEN = "\u00ad"
# Second halves that make a real compound with the first: «что-то», «кто-либо», «где-нибудь».
_PARTICLES = frozenset({"то", "либо", "нибудь", "таки"})
# First halves of the same kind: «кое-как», «кой-где».
_PREFIXES = frozenset({"кое", "кой"})
# A table-of-contents line: a leader of 4+ dots, then the page number (arabic or roman).
_LEADER = re.compile(r"(?:\.\s?){4,}\s*(?:\d{1,4}|[ivxlcdm]{1,6})\s*$", re.IGNORECASE)
# A page-number line: «13», «ii», «- 3 -», «3 / 63», «стр. 3 из 10» is judged by shape only.
_PAGE_NUMBER = re.compile(
    r"^[\s\-–—|]*(?:\d{1,4}|[ivxlcdm]{1,6})(?:\s*(?:/|из|of)\s*\d{1,4})?[\s\-–—|]*$", re.I
)
_TOKEN = re.compile(r"\S+")
_SPACES = re.compile(r"\s")
# Rows from the edge a running head or foot may take: one. A second row (a title over a page
# number) is rare; a body row that repeats at the same place (a «[Constant]» label) is not.
_EDGE_ROWS = 1


@dataclass(frozen=True)
class PageText:
    """One page's text as indexed, and the PDFium character index of each of its characters."""

    text: str
    source: tuple[int, ...]
    # Non-space characters in PDFium's text of the page before cleaning: a page whose text is
    # empty while this is not held only furniture (a table of contents), and is no scan.
    layer_chars: int = 0
    # Where each word of ``text`` is drawn, as fractions of the page (the source view's marks).
    words: WordBoxes | None = None

    def char_indices(self, start: int, end: int) -> list[int]:
        """PDFium character indices behind ``text[start:end]`` (written characters left out)."""
        return [i for i in self.source[start:end] if i >= 0]


@dataclass
class _Line:
    """A run of characters on one line of the page, with its box in PDF points (y grows up)."""

    chars: list[str]
    index: list[int]
    left: float
    bottom: float
    right: float
    top: float
    # The boxes measured (characters at word edges), aligned with ``chars``; None elsewhere.
    boxes: list[tuple[float, float, float, float] | None] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.chars)

    @property
    def height(self) -> float:
        return max(self.top - self.bottom, 1.0)


def _raw_text(textpage: Any) -> list[str]:
    """One string per PDFium character index (get_text_range is UTF-16: astral chars take two)."""
    n = textpage.count_chars()
    if n <= 0:
        return []
    text: str = textpage.get_text_range()
    if len(text) == n:
        return list(text)
    import pypdfium2.raw as pdfium_c

    return [chr(pdfium_c.FPDFText_GetUnicode(textpage, i) or 0xFFFD) for i in range(n)]


class _CharBoxes:
    """``FPDFText_GetCharBox`` without pypdfium2's per-call allocations (the hot loop here)."""

    def __init__(self, textpage: Any) -> None:
        import ctypes

        import pypdfium2.raw as pdfium_c

        self._get = pdfium_c.FPDFText_GetCharBox
        self._raw = textpage.raw
        self._vals = [ctypes.c_double() for _ in range(4)]
        self._refs = [ctypes.byref(v) for v in self._vals]

    def __call__(self, index: int) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of one character."""
        left, right, bottom, top = self._vals
        self._get(self._raw, index, *self._refs)
        return left.value, bottom.value, right.value, top.value


def _lines(textpage: Any) -> list[_Line]:
    """PDFium's lines, each split where a wide gap shows two columns side by side."""
    raw = _raw_text(textpage)
    charbox = _CharBoxes(textpage)
    lines: list[_Line] = []
    chars: list[str] = []
    index: list[int] = []

    def flush() -> None:
        if any(not c.isspace() for c in chars):
            lines.extend(_split_gaps(charbox, chars, index))
        chars.clear()
        index.clear()

    for i, c in enumerate(raw):
        if c in "\r\n":
            flush()
            continue
        chars.append(c)
        index.append(i)
    flush()
    return lines


def _split_gaps(charbox: _CharBoxes, chars: list[str], index: list[int]) -> list[_Line]:
    """The line as segments: a cut at every space whose gap is wider than 2.5 letter heights.

    Only the characters at word edges are measured (a third of them): enough for the gaps, and
    for the line's box.
    """
    n = len(chars)
    boxes: list[tuple[float, float, float, float] | None] = [None] * n
    for k, c in enumerate(chars):
        if c.isspace():
            continue
        # The letter before a line-end hyphen too: the highlight of a word broken across two
        # lines ends where its first half does.
        if k == 0 or k >= n - 2 or chars[k - 1].isspace() or chars[k + 1].isspace():
            boxes[k] = charbox(index[k])
    # Letter height, not a dot's or a comma's: leaders («. . . .») have gaps wider than a dot.
    letters = [bx[3] - bx[1] for c, bx in zip(chars, boxes, strict=True) if bx is not None and c.isalnum()]
    height = max(max(letters, default=0.0), 1.0)
    cuts = [0]
    prev: tuple[float, float, float, float] | None = None
    for k, box in enumerate(boxes):
        if box is None:
            continue
        if prev is not None and k > cuts[-1] and chars[k - 1].isspace() and box[0] - prev[2] > 2.5 * height:
            cuts.append(k)
        prev = box
    cuts.append(len(chars))
    out: list[_Line] = []
    for a, b in pairwise(cuts):
        seg = [bx for bx in boxes[a:b] if bx is not None]
        if not seg:
            continue
        out.append(
            _Line(
                chars=chars[a:b],
                index=index[a:b],
                left=min(bx[0] for bx in seg),
                bottom=min(bx[1] for bx in seg),
                right=max(bx[2] for bx in seg),
                top=max(bx[3] for bx in seg),
                boxes=boxes[a:b],
            )
        )
    return out


# -- reading order -------------------------------------------------------------------------------


def _rows(segments: list[_Line]) -> list[list[_Line]]:
    """Segments grouped into visual rows (PDFium's order kept), split pieces of one line together."""
    rows: list[list[_Line]] = []
    for seg in segments:
        if rows and _same_row(rows[-1][-1], seg):
            rows[-1].append(seg)
            continue
        rows.append([seg])
    return rows


def _reading_order(segments: list[_Line], page_left: float, page_right: float) -> list[_Line]:
    """Lines in reading order: a stretch of rows cut by one gutter is read left column first.

    A gutter is an x that a wide gap covers on most rows of a stretch of 3+ rows and that no
    row's text crosses, in the middle half of the text area, with prose (3+ words a segment on
    average) on both sides: a table's columns are narrower and stay row by row.
    """
    rows = _rows(segments)
    width = page_right - page_left
    if width <= 0 or not any(len(r) > 1 for r in rows):
        return segments
    candidates = sorted({round((a.right + b.left) / 2) for r in rows for a, b in pairwise(r)})
    lo, hi = page_left + 0.25 * width, page_left + 0.75 * width
    best: tuple[int, int, int, float] | None = None  # (split rows, start, end, x)
    for x in (float(c) for c in candidates if lo <= c <= hi):
        start = 0
        for k in range(len(rows) + 1):
            crossing = k == len(rows) or any(s.left < x < s.right for s in rows[k])
            if not crossing:
                continue
            stretch = rows[start:k]
            split = sum(1 for r in stretch if any(s.right <= x for s in r) and any(s.left >= x for s in r))
            if split >= 3 and split * 2 >= len(stretch) and (best is None or split > best[0]):
                best = (split, start, k, x)
            start = k + 1
    if best is None:
        return segments
    _, start, end, x = best
    left = [s for r in rows[start:end] for s in r if s.right <= x]
    right = [s for r in rows[start:end] for s in r if s.left >= x]
    if _mean_words(left) < 3 or _mean_words(right) < 3:
        return segments
    before = [s for r in rows[:start] for s in r]
    after = _reading_order([s for r in rows[end:] for s in r], page_left, page_right)
    return before + left + right + after


def _mean_words(segments: list[_Line]) -> float:
    return sum(len(s.text.split()) for s in segments) / max(len(segments), 1)


# -- page furniture ------------------------------------------------------------------------------


@dataclass
class _Page:
    lines: list[_Line]  # in reading order
    header: list[int]  # indices into lines of the top-edge candidates
    footer: list[int]  # bottom-edge candidates


def _edge_rows(lines: list[_Line], top: bool) -> tuple[list[list[int]], list[float]]:
    """Rows of line indices from the top (bottom) edge inward, and the gaps between them."""
    order = sorted(range(len(lines)), key=lambda k: -lines[k].top if top else lines[k].bottom)
    rows: list[list[int]] = []
    for k in order:
        line = lines[k]
        if rows:
            first = lines[rows[-1][0]]
            overlap = min(first.top, line.top) - max(first.bottom, line.bottom)
            if overlap > 0.5 * min(first.height, line.height):
                rows[-1].append(k)
                continue
        rows.append([k])
    gaps: list[float] = []
    for a, b in pairwise(rows):
        if top:
            gaps.append(min(lines[k].bottom for k in a) - max(lines[k].top for k in b))
        else:
            gaps.append(min(lines[k].bottom for k in b) - max(lines[k].top for k in a))
    return rows, gaps


def _edge(lines: list[_Line], top: bool, usual: float) -> list[int]:
    """Lines on the top (bottom) edge, set apart from the text by a gap wider than its own.

    Rows are taken from the edge inward, one or two of them, and the band ends at the first gap
    wider than a line and than 1.8 times the document's usual gap between rows: a running head
    is set apart so; a table's header row, as far from its first row as the rows are from each
    other, is not.
    """
    rows, gaps = _edge_rows(lines, top)
    for i in range(min(_EDGE_ROWS, len(rows) - 2)):
        height = max(lines[k].height for r in rows[: i + 1] for k in r)
        if gaps[i] > height and gaps[i] > 1.8 * usual:
            return [k for r in rows[: i + 1] for k in r]
    return []


def _usual_gap(layouts: list[list[_Line]]) -> float:
    """The document's usual gap between rows: the median over all its pages."""
    gaps = [g for lines in layouts for g in _edge_rows(lines, top=True)[1] if g > 0]
    return statistics.median(gaps) if gaps else 0.0


def _shape(text: str) -> list[str]:
    """Lowercased tokens with digits as '#': «Глава 3.» and «Глава 4.» look alike."""
    return [re.sub(r"\d+", "#", t) for t in text.lower().split()]


def _alike(a: list[str], b: list[str]) -> bool:
    if not a or not b:
        return False
    if a == b:
        return True
    sa, sb = set(a), set(b)
    return len(sa & sb) / min(len(sa), len(sb)) >= 0.5 and len(sa & sb) >= 2


def _furniture(pages: list[_Page]) -> list[set[int]]:
    """Per page, the indices of lines that are running headers, footers or page numbers."""
    out: list[set[int]] = [set() for _ in pages]
    need = 2 if len(pages) < 6 else 3  # pages a running line must appear on
    for attr in ("header", "footer"):
        members: list[tuple[int, int, float, list[str]]] = []
        for p, page in enumerate(pages):
            for k in getattr(page, attr):
                line = page.lines[k]
                y = line.top if attr == "header" else line.bottom
                members.append((p, k, y, _shape(line.text)))
        for p, k, y, shape in members:
            line = pages[p].lines[k]
            if _PAGE_NUMBER.match(line.text):
                out[p].add(k)  # a number alone on the edge, apart from the text
                continue
            alike = {q for q, _, y2, s2 in members if q != p and abs(y2 - y) <= 3 and _alike(shape, s2)}
            if len(alike) + 1 >= need:
                # The whole edge band goes: «ГЛАВА 3. ВЫБОР…» repeats, its right half («3.2. BUT
                # WHAT ABOUT…») names the section and changes every few pages.
                out[p].update(getattr(pages[p], attr))
    return out


def _toc_lines(lines: list[_Line]) -> set[int]:
    """Table-of-contents entries: dot leaders, page numbers aligned with theirs, wrapped lines.

    Judged by rows (a title, its leader and its number may be pieces cut at wide gaps).
    """
    rows: list[list[int]] = []
    for k, line in enumerate(lines):
        if rows and _same_row(lines[rows[-1][-1]], line):
            rows[-1].append(k)
        else:
            rows.append([k])
    texts = [" ".join(lines[k].text.strip() for k in row) for row in rows]
    rights = [max(lines[k].right for k in row) for row in rows]
    toc = {r for r, text in enumerate(texts) if _LEADER.search(text.rstrip())}
    if len(toc) >= 3:
        right = statistics.median(rights[r] for r in toc)
        for r, text in enumerate(texts):
            tokens = text.split()
            if (
                r not in toc
                and len(tokens) > 1
                and _PAGE_NUMBER.match(tokens[-1])
                and abs(rights[r] - right) <= 3
            ):
                toc.add(r)  # a chapter line: its number stands where the leaders' numbers stand
    # A long entry wraps: the rows just above its numbered row, up to the previous entry.
    for r in sorted(toc):
        j = r - 1
        while j >= 0 and j not in toc and r - j <= 3:
            upper, lower = lines[rows[j][0]], lines[rows[j + 1][0]]
            if upper.bottom - lower.top >= upper.height:
                break
            toc.add(j)
            j -= 1
    return {k for r in toc for k in rows[r]}


def _page_bounds(pages: list[list[_Line]]) -> tuple[float, float]:
    lefts = [line.left for lines in pages for line in lines]
    rights = [line.right for lines in pages for line in lines]
    if not lefts:
        return 0.0, 0.0
    return min(lefts), max(rights)


# -- the page text -------------------------------------------------------------------------------


def _word_before(chars: list[str], end: int) -> str:
    k = end
    while k > 0 and chars[k - 1].isalpha():
        k -= 1
    return "".join(chars[k:end])


def _word_after(chars: Sequence[str], start: int) -> str:
    k = start
    while k < len(chars) and chars[k].isalpha():
        k += 1
    return "".join(chars[start:k])


# Compounds are told apart by their first half and the first letters of the second.
_COMPOUND = re.compile(r"([^\W\d_]+)-([^\W\d_]+)")


def _cyrillic(c: str) -> bool:
    return "\u0400" <= c <= "\u04ff"


def _compounds(layouts: list[list[_Line]]) -> set[tuple[str, str]]:
    """Hyphenated words the document writes inside a line: («компакт», «дис») for «компакт-диска»."""
    out: set[tuple[str, str]] = set()
    for lines in layouts:
        for line in lines:
            for m in _COMPOUND.finditer(line.text.lower()):
                out.add((m.group(1), m.group(2)[:4]))
    return out


def _keep_hyphen(left: str, right: str, compounds: set[tuple[str, str]]) -> bool:
    """Whether «left-right» split at a line end is a real compound, not a word broken in two.

    Typesetters break lines at a compound's own hyphen too («компакт-/диска»), and PDFium marks
    both kinds alike: the document's own spelling elsewhere decides, then the particles.
    """
    if not right or not right[0].islower():
        return True  # «Санкт-Петербург», «PDF-файл»: an uppercase or a digit after the hyphen
    if (left.lower(), right.lower()[:4]) in compounds:
        return True
    if left and _cyrillic(left[-1]) != _cyrillic(right[0]):
        return True  # «HTTP-зеркало»: no word changes script in the middle
    return right.lower() in _PARTICLES or left.lower() in _PREFIXES


def _compose(lines: list[_Line], compounds: set[tuple[str, str]]) -> PageText:
    """Lines joined into the page text: hyphenated words joined, spaces collapsed."""
    out: list[str] = []
    src: list[int] = []
    typical = statistics.median(line.height for line in lines) if lines else 10.0

    def put(c: str, i: int) -> None:
        if c == " " and (not out or out[-1] in " \n"):
            return
        out.append(c)
        src.append(i)

    def trim() -> None:
        while out and out[-1] == " ":
            out.pop()
            src.pop()

    glue = False  # the previous line ended inside a word: this one goes on without a break
    for n, line in enumerate(lines):
        chars, index = line.chars, line.index
        if n and not glue:
            prev = lines[n - 1]
            trim()
            if _same_row(prev, line):
                put(" ", -1)  # the next cell of a table row, split off at its wide gap
            else:
                put("\n", -1)
                size = max(typical, min(prev.height, line.height))
                if prev.bottom - line.top > 0.8 * size or line.top > prev.top + 3 * size:
                    put("\n", -1)  # a paragraph gap, or the next column starts
        glue = False
        last = len(chars) - 1
        while last >= 0 and chars[last].isspace():
            last -= 1
        following = _first_word(lines[n + 1]) if n + 1 < len(lines) else ""
        for k, c in enumerate(chars[: last + 1]):
            i = index[k]
            at_end = k == last
            if c == _SOFT_HYPHEN:
                glue = glue or (at_end and following[:1].isalpha())
                continue
            hyphen = c == _PDFIUM_HYPHEN or (at_end and c == "-" and k > 0 and chars[k - 1].isalpha())
            if not hyphen:
                put(" " if c.isspace() else c, i if c == " " or not c.isspace() else -1)
                continue
            # PDFium puts the next line's half right after its mark; a «-» waits for the next line.
            right = following if at_end else _word_after(chars, k + 1)
            left = _word_before(chars, k)
            if right[:1].isalpha() and not _keep_hyphen(left, right, compounds):
                glue = at_end
                continue  # «но-/вых» -> «новых»
            put("-", i)
            glue = at_end and right[:1].isalpha()  # «что-/то» -> «что-то»
    trim()
    while out and out[-1] == "\n":
        out.pop()
        src.pop()
    return PageText("".join(out), tuple(src))


def _same_row(a: _Line, b: _Line) -> bool:
    """Whether ``b`` goes on ``a``'s row to its right (the next cell, a page number)."""
    overlap = min(a.top, b.top) - max(a.bottom, b.bottom)
    return b.left > a.right and overlap > 0.5 * min(a.height, b.height)


def _first_word(line: _Line) -> str:
    start = 0
    while start < len(line.chars) and line.chars[start].isspace():
        start += 1
    return _word_after(line.chars, start)


def read_pdf_texts(document: Any, lock: AbstractContextManager[Any] | None = None) -> list[PageText]:
    """Page texts of every page of a pypdfium2 ``PdfDocument``.

    PDFium is not thread-safe: ``lock`` (the app's PDFium lock) is held page by page, so that
    a long document does not keep other sessions' renders waiting.
    """
    layouts: list[list[_Line]] = []
    frames: list[tuple[float, float, float, float]] = []
    with lock or nullcontext():
        count = len(document)
    for i in range(count):
        with lock or nullcontext():
            page = document[i]
            try:
                frames.append(_frame(page))
                textpage = page.get_textpage()
                try:
                    layouts.append(_lines(textpage))
                finally:
                    textpage.close()
            finally:
                page.close()
    left, right = _page_bounds(layouts)
    compounds = _compounds(layouts)
    usual = _usual_gap(layouts)
    pages = [_Page(lines, _edge(lines, True, usual), _edge(lines, False, usual)) for lines in layouts]
    furniture = _furniture(pages)
    texts: list[PageText] = []
    for page, drop, frame in zip(pages, furniture, frames, strict=True):
        kept = [line for k, line in enumerate(page.lines) if k not in drop]
        toc = _toc_lines(kept)
        kept = [line for k, line in enumerate(kept) if k not in toc]
        composed = _compose(_reading_order(kept, left, right), compounds)
        chars = sum(1 for line in page.lines for c in line.chars if not c.isspace())
        words = _word_boxes(composed, kept, frame)
        texts.append(PageText(composed.text, composed.source, chars, words))
    return texts


def _frame(page: Any) -> tuple[float, float, float, float]:
    """The page's visible area in PDF points, (left, bottom, right, top): what PDFium renders.

    ``FPDF_GetPageBoundingBox`` (``get_bbox``): the crop box as inherited from the page tree.
    ``get_cropbox`` reads only the page's own entry and falls back to US Letter when the box is
    inherited (fpdf2 puts it on the page tree), which put every mark of an A4 page a line too high.
    """
    left, bottom, right, top = page.get_bbox()
    if right <= left or top <= bottom:  # a broken box: the size PDFium renders at
        width, height = page.get_size()
        return 0.0, 0.0, float(width), float(height)
    return float(left), float(bottom), float(right), float(top)


def _word_boxes(
    composed: PageText, lines: list[_Line], frame: tuple[float, float, float, float]
) -> WordBoxes:
    """Each word of the page text with its box, from the boxes measured at word edges.

    A word's characters are grouped by the line they were printed on (a word hyphenated across
    two lines is two boxes); each group's box spans the measured characters in it.
    """
    where: dict[int, tuple[int, tuple[float, float, float, float]]] = {}
    for n, line in enumerate(lines):
        for i, box in zip(line.index, line.boxes, strict=False):
            if box is not None:
                where[i] = (n, box)
    x0, y0, x1, y1 = frame
    width, height = max(x1 - x0, 1e-6), max(y1 - y0, 1e-6)
    words = WordBoxes()
    for m in _TOKEN.finditer(composed.text):
        groups: dict[int, list[tuple[float, float, float, float]]] = {}
        for i in composed.source[m.start() : m.end()]:
            if i in where:
                n, box = where[i]
                groups.setdefault(n, []).append(box)
        for boxes in groups.values():
            left, bottom = min(b[0] for b in boxes), min(b[1] for b in boxes)
            right, top = max(b[2] for b in boxes), max(b[3] for b in boxes)
            words.add(
                m.start(),
                m.end(),
                ((left - x0) / width, (y1 - top) / height, (right - x0) / width, (y1 - bottom) / height),
            )
    return words


# -- the damage gauge ----------------------------------------------------------------------------

# A run of this many letters without a space is words glued together: Russian and English words
# this long are rare, and the glued lines of a PDF whose spaces were lost are much longer.
GLUED_LETTERS = 30
_GLUED = re.compile(rf"[^\W\d_]{{{GLUED_LETTERS},}}")
_VOWEL_SET = frozenset("aeiouyаеёиоуыэюя")
_WORD_PART = re.compile(r"[^\W\d_]+")
# Thresholds of a damaged page: a few glued words, or bad characters, or many non-words.
_GLUED_SHARE = 0.02
_BAD_SHARE = 0.01
_NONWORD_SHARE = 0.25


@dataclass(frozen=True)
class Damage:
    """Signs of a bad text layer on one page (or a sum over pages)."""

    tokens: int = 0  # tokens with at least one letter
    glued: int = 0  # tokens holding 30+ letters without a space
    bad_chars: int = 0  # replacement, private-use, control characters
    chars: int = 0  # non-space characters
    nonwords: int = 0  # tokens no language spells so (see ``_is_nonword``)

    @property
    def damaged(self) -> bool:
        """Whether the layer is damaged beyond use: the page is better recognised (OCR)."""
        if self.chars and self.bad_chars / self.chars > _BAD_SHARE:
            return True
        if self.glued >= 2 and self.glued / max(self.tokens, 1) > _GLUED_SHARE:
            return True
        return self.tokens >= 30 and self.nonwords / self.tokens > _NONWORD_SHARE

    def __add__(self, other: Damage) -> Damage:
        return Damage(
            self.tokens + other.tokens,
            self.glued + other.glued,
            self.bad_chars + other.bad_chars,
            self.chars + other.chars,
            self.nonwords + other.nonwords,
        )


# Replacement, non-characters, C0/C1 controls (but tab and line ends), private use, surrogates:
# what fonts without a Unicode map leave in a text layer.
_BAD_CHARS = re.compile("[\ufffd\ufffe\uffff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ue000-\uf8ff\ud800-\udfff]")


def _is_nonword(token: str) -> bool:
    """A token whose letter runs no language spells so: mixed scripts in one run, a run with no
    vowel at all (4+ letters), 6 consonants in a row. A cheap stand-in for a dictionary: it needs
    no word list, and the damage it misses (glued words) is counted on its own."""
    for part in _WORD_PART.findall(token.lower()):
        if len(part) < 4:
            continue
        cyr = sum(1 for c in part if _cyrillic(c))
        if 0 < cyr < len(part) and any("a" <= c <= "z" for c in part):
            return True
        if not _VOWEL_SET.intersection(part):
            return True
        if re.search(r"[^aeiouyаеёиоуыэюяьъй]{6}", part):
            return True
    return False


def damage(text: str) -> Damage:
    """The gauge of one page's text layer."""
    tokens = [t for t in _TOKEN.findall(text) if any(c.isalpha() for c in t)]
    return Damage(
        tokens=len(tokens),
        glued=sum(1 for t in tokens if _GLUED.search(t)),
        bad_chars=len(_BAD_CHARS.findall(text)),
        chars=len(text) - len(_SPACES.findall(text)),
        nonwords=sum(1 for t in tokens if _is_nonword(t)),
    )


def gauge_label(damaged_pages: int | None, ocr_pages: int | None) -> str:
    """The gauge as the documents page shows it: «хороший» or «повреждён (2 стр.)», OCR pages."""
    parts: list[str] = []
    if damaged_pages is not None:
        parts.append(f"повреждён ({damaged_pages} стр.)" if damaged_pages else "хороший")
    if ocr_pages:
        parts.append(f"распознано OCR: {ocr_pages} стр.")
    return ", ".join(parts) or "—"
