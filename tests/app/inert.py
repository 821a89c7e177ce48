"""What in a Markdown body Streamlit 1.67's renderer would make live: a model for the tests.

CommonMark (markdown-it-py, with GFM tables and strikethrough) finds links, images and HTML.
Streamlit's frontend adds, as seen in chromium against its own bundle:

- GFM literal autolinks, found in the *parsed* text (escapes and entities already decoded):
  ``http://`` / ``https://`` / ``www.`` and ``name@host``;
- ``:name`` text directives (colours, ``:small``, …) read from the source: an unescaped colon
  followed by a letter (any script: ``ключ:значение{x=1}`` loses its braces), outside code;
- ``:material/icon:``, replaced in the raw source before parsing, escaped or not (in code it
  only changes the text, which is not checked here);
- ``:streamlit:`` (the logo) and typography (``->``, ``--``, ``>=`` …) in the parsed text.

The checks are conservative: they flag a little more than the browser would render.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from markdown_it import MarkdownIt
from markdown_it.token import Token

from ui.markup import WORD_JOINER

PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
LIVE = {"link_open", "image", "html_inline", "html_block"}
_AUTOLINK = re.compile(r"(?:https?://|www\.)[-\w]|[-.\w+]@[-\w]", re.IGNORECASE | re.ASCII)
_LOGO = ":streamlit:"
_TYPOGRAPHY = re.compile(r"(?:^|\s)(?:<->|->|<-|--|>=|<=|~=)(?:\s|$)")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")


def tokens(body: str) -> Iterator[Token]:
    """Every token of a body, inline children included."""

    def walk(items: list[Token]) -> Iterator[Token]:
        for token in items:
            yield token
            yield from walk(token.children or [])

    yield from walk(PARSER.parse(body))


def live(body: str, typography: bool = True) -> list[str]:
    """What in this body would be live in the browser (empty: nothing)."""
    found = [t.type for t in tokens(body) if t.type in LIVE]
    for token in tokens(body):
        if token.type != "text":
            continue
        if _AUTOLINK.search(token.content):
            found.append(f"autolink: {token.content!r}")
        if _LOGO in token.content:
            found.append(f"logo: {token.content!r}")
        if typography and _TYPOGRAPHY.search(token.content):
            found.append(f"typography: {token.content!r}")
    found += [f"directive or icon at {i}: {body!r}" for i in _directives(body)]
    return found


def _directives(body: str) -> list[int]:
    """Offsets of directives (an unescaped colon and a letter) and icons, outside code."""
    found: list[int] = []
    fence: str | None = None
    for line in body.split("\n"):
        opening = _FENCE.match(line)
        if fence is not None:
            closing = _FENCE_CLOSE.fullmatch(line)
            if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
                fence = None
            continue
        # An info string after backticks cannot hold a backtick: that line is a code span.
        if opening and not (opening.group(1)[0] == "`" and "`" in line[opening.end() :]):
            fence = opening.group(1)
            continue
        i, n = 0, len(line)
        while i < n:
            ch = line[i]
            if ch == "\\":
                if line.startswith(":material/", i + 1):  # Streamlit swaps it in before parsing
                    found.append(i)
                i += 2
            elif ch == "`":
                end = i
                while end < n and line[end] == "`":
                    end += 1
                # A code span closes on the next run of exactly the same length.
                runs = (m for m in re.finditer("`+", line[end:]) if len(m.group()) == end - i)
                closing = next(runs, None)
                i = end + closing.end() if closing is not None else end
            elif ch == ":" and i + 1 < n and line[i + 1].isalpha():
                found.append(i)
                i += 1
            else:
                i += 1
    return found


def shown(body: str) -> str:
    """The text a reader sees (line breaks as newlines), word joiners left out."""
    parts = []
    for token in tokens(body):
        if token.type in ("text", "code_inline"):
            parts.append(token.content)
        elif token.type in ("softbreak", "hardbreak", "paragraph_close"):
            parts.append("\n")
    return "".join(parts).replace(WORD_JOINER, "").strip("\n")


# The one HTML an answer may hold: its citations, each a same-tab link to its source's view.
_CITATION_OPEN = re.compile(
    r'<a class="rag-cite" href="source\?chunk=[0-9a-f]+(?:&amp;chat=[0-9a-f]+)?" target="_self">'
)


def without_citation_links(body: str, allow_html: bool) -> str:
    """The body with its citation links taken out, after checking they are its only HTML.

    An element may have HTML on only for an answer's citation links; the body must then parse to
    no HTML but those anchors (opening and closing), so what is left is checked like any other.
    """
    html = [t for t in tokens(body) if t.type in {"html_inline", "html_block"}]
    if not allow_html:
        return body
    assert html, f"HTML is on for a body without citation links: {body!r}"
    for token in html:
        assert token.type == "html_inline", body
        assert token.content == "</a>" or _CITATION_OPEN.fullmatch(token.content), token.content
    return _CITATION_OPEN.sub("", body).replace("</a>", "")
