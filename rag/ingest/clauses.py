"""Clause anchors: where in a contract, a regulation or an order a fragment stands.

Russian legal and administrative texts number their parts: «1. ПРЕДМЕТ ДОГОВОРА», «2.1.»,
«3.2.1.», «Раздел 3», «Глава 2», «Статья 5», «Приложение 1». A lawyer cites them («п. 2.1
договора»), so every fragment records the nearest enclosing numbered item (its *anchor*) and the
heading of its section, for the sources list, the source view and the prompt.

``outline(text)`` finds the numbered items of a whole document (its pages joined), each with the
span it governs (up to the next item of the same or a higher level); ``anchor(outline, start,
end)`` names a fragment's place. The rules, by the line an item starts:

- «Приложение N», «Раздел N», «Глава N», «Статья N» (any case, optional «№», a Markdown heading
  or not) open a part of that kind, in this order of rank;
- a number «N.» or «N.M[.K…][.]» at the start of a line, followed by text, is a numbered item
  below those; a first-level item that is a heading (a Markdown heading, or a line mostly in
  capitals: «2. УСЛОВИЯ ХРАНЕНИЯ») is a section, «Раздел 2», the others are «п. 2», «п. 2.1»;
- a single number needs its dot («10 января 2024 г.», «1 500 000 рублей» and page numbers are
  no items), numbers have at most two digits a level, none starts with 0 (no dates).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Named parts, highest rank first; the rank orders them above numbered items.
_KINDS = {"приложение": "Приложение", "раздел": "Раздел", "глава": "Глава", "статья": "Статья"}
_RANK = {"Приложение": 0, "Раздел": 1, "Глава": 2, "Статья": 3}
_NUMBERED_RANK = 4  # a first-level number; each further level one deeper

_MD = r"(?:\#{1,6}\s+)?"
_NAMED = re.compile(
    rf"^[ \t]*{_MD}(?P<kind>приложение|раздел|глава|статья)\s+(?:№\s*)?"
    r"(?P<num>[0-9]{1,3}(?:\.[0-9]{1,3})*|[IVXLC]{1,6}|[А-ЯЁ])\b\.?(?P<rest>[^\n]*)",
    re.IGNORECASE | re.MULTILINE,
)
_NUMBER = re.compile(
    rf"^[ \t]*(?P<md>{_MD})(?P<num>[1-9][0-9]?(?:\.[1-9][0-9]?)*)(?P<dot>\.?)[ \t]+(?P<rest>\S[^\n]*)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Clause:
    """A numbered part of a document: its label, the span it governs and its title line."""

    label: str  # «п. 2.1», «Раздел 3», «Статья 5», «Приложение 1»
    start: int  # where its line starts
    end: int  # where the next item of the same or a higher rank starts (or the text ends)
    rank: int
    heading: bool  # a section title line, not a clause with text of its own
    title: str  # the whole first line, as written («2. УСЛОВИЯ ХРАНЕНИЯ»)


def _mostly_capitals(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 3 and sum(1 for c in letters if c.isupper()) >= 0.8 * len(letters)


def _items(text: str) -> list[tuple[int, str, int, bool, str]]:
    """(start, label, rank, heading, title line) of every numbered item, in order."""
    found: dict[int, tuple[int, str, int, bool, str]] = {}
    for m in _NAMED.finditer(text):
        kind = _KINDS[m.group("kind").lower()]
        title = m.group(0).strip().lstrip("#").strip()
        found[m.start()] = (m.start(), f"{kind} {m.group('num')}", _RANK[kind], True, title)
    for m in _NUMBER.finditer(text):
        if m.start() in found:
            continue
        num = m.group("num")
        levels = num.count(".") + 1
        if levels == 1 and not m.group("dot"):
            continue  # «10 января», «1 500 000»: a number, not an item
        rest = m.group("rest")
        title = m.group(0).strip().lstrip("#").strip()
        heading = bool(m.group("md")) or _mostly_capitals(rest)
        label = f"Раздел {num}" if levels == 1 and heading else f"п. {num}"
        found[m.start()] = (m.start(), label, _NUMBERED_RANK + levels - 1, heading, title)
    return [found[k] for k in sorted(found)]


def outline(text: str) -> list[Clause]:
    """The numbered items of a document's text, each with the span it governs."""
    items = _items(text)
    out: list[Clause] = []
    for i, (start, label, rank, heading, title) in enumerate(items):
        end = len(text)
        for later in items[i + 1 :]:
            if later[2] <= rank:
                end = later[0]
                break
        out.append(Clause(label, start, end, rank, heading, title))
    return out


def enclosing(clauses: Sequence[Clause], offset: int) -> list[Clause]:
    """The items whose span holds ``offset``, outermost first."""
    return [c for c in clauses if c.start <= offset < c.end]


def _number(label: str) -> str:
    return label.split(" ", 1)[1]


def anchor(clauses: Sequence[Clause], start: int, end: int) -> str | None:
    """The fragment ``[start, end)``'s place: «п. 2.1», «пп. 2.1–2.3», «Раздел 3»; None outside any.

    The items that carry text are what a reader cites: the one the fragment begins inside, then
    those beginning within it. A section's title line is named only when the fragment holds no
    item of its own (a preamble under «Раздел 2», or the title alone).
    """
    inside = enclosing(clauses, start)
    leaves: list[Clause] = []
    if inside and not inside[-1].heading:
        leaves.append(inside[-1])
    leaves += [c for c in clauses if start < c.start < end and not c.heading]
    if not leaves:
        return inside[-1].label if inside else None  # a title alone, or a section's preamble
    first, last = leaves[0], leaves[-1]
    if first is last or first.label == last.label:
        return first.label
    if first.label.startswith("п. ") and last.label.startswith("п. "):
        return f"пп. {_number(first.label)}–{_number(last.label)}"
    return first.label


def section_title(clauses: Sequence[Clause], offset: int) -> str | None:
    """The title line of the innermost section heading that holds ``offset`` («2. УСЛОВИЯ ХРАНЕНИЯ»)."""
    titles = [c.title for c in enclosing(clauses, offset) if c.heading]
    return titles[-1] if titles else None
