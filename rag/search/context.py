"""What a reader of the page knows, added to each fragment's indexed text (not its shown text).

A fragment cut from the middle of a document loses what the reader of that page has in mind:
which document this is, and who «Исполнитель» is. Both are added to the text that is embedded
and keyword-indexed, so a question naming the document or a party by name finds a fragment that
names neither. The shown and quoted text stays the fragment's own.

Everything here is a pure function of a document's fragment texts, in order, so a later
re-embedding (after a crash, or for a new engine) computes the same indexed texts from the
stored fragments alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from language import stems

# A title is a heading, not a paragraph: longer first sentences are the text itself.
TITLE_MAX_WORDS = 16
# Definitions name a party in one clause; a longer span is a misparse.
NAME_MAX_WORDS = 14
SHORT_NAME_WORDS = 3
TERM_MAX_WORDS = 4
# The parties and terms of a contract are a handful; a page of «далее —» is a glossary.
MAX_DEFINITIONS = 12

_QUOTE = "«»\"'“”„"
# «…, именуемое в дальнейшем «Арендатор»», «…, именуемый далее — Покупатель»
_NAMED = re.compile(
    r"имену\w*\s+(?:в\s+дальнейшем|далее)(?:\s+по\s+тексту)?\s*[—–-]?\s*"
    rf"[{_QUOTE}]?(?P<term>[^{_QUOTE},;()\n]{{2,60}}?)[{_QUOTE}]?(?=[\s,;.)]|$)",
    re.IGNORECASE,
)
# «… (далее — «Товар»)», «… (далее по тексту — Положение)»
_AFTER = re.compile(
    r"\(\s*далее(?:\s+по\s+тексту)?\s*[—–-]?\s*"
    rf"[{_QUOTE}]?(?P<term>[^{_QUOTE}()\n]{{2,60}}?)[{_QUOTE}]?\s*\)",
    re.IGNORECASE,
)
# Where the defined name starts: a clause boundary before it. A full stop ends a clause after a
# word or a clause number («1.1.»), not after initials («Смирнова А. А., именуемая …»).
_NAME_START = re.compile(
    r"(?:^|(?:(?<=\w\w\w)|(?<=\d))[.!?](?=\s)|[;:\n]|,\s+и\s+|\sи\s+|\bмежду\s+)", re.IGNORECASE
)
_SPACES = re.compile(r"\s+")
# A party's legal form is in every contract; the quoted name is what a question uses.
_LEGAL_FORM = re.compile(
    r"(?:(?:публичное|непубличное|закрытое|открытое)\s+)?(?:акционерное\s+общество|"
    r"общество\s+с\s+ограниченной\s+ответственностью|индивидуальный\s+предприниматель|"
    r"государственное\s+(?:бюджетное|унитарное)\s+\w+|федеральное\s+государственное\s+\w+\s+\w+)\s+",
    re.IGNORECASE,
)
# A title typed in capitals: «ДОГОВОР ХРАНЕНИЯ № 24/085», «ANNUAL REPORT 2023».
_CAPS_WORD = re.compile(r"^[^a-zа-яё]+$")


@dataclass(frozen=True)
class Definition:
    """A term defined in a document («Исполнитель») and the name it stands for."""

    term: str
    name: str


def document_title(texts: Sequence[str], filename: str = "") -> str:
    """The document's title: its first heading, else its opening words in capitals, else its file name.

    Not its first sentence: in a fragment the title line has lost its line break, and a short
    opening statement («Фотосинтез идёт в листьях.») is text, not a title.
    """
    if texts:
        first = texts[0]
        head, sep, _body = first.partition("\n")
        if sep and head.strip():  # a heading line (Markdown, DOCX, ODT, HTML): its outermost part
            return head.split(" › ")[0].strip()
        caps = _caps_run(first)
        if caps:
            return caps
    return _name_of_file(filename)


def _caps_run(text: str) -> str:
    """The opening words typed in capitals, when there are at least two of them."""
    run: list[str] = []
    for word in text.split()[:TITLE_MAX_WORDS]:
        # A one-letter capital starts the next sentence: «ВНИМАНИЕ, ВОДИТЕЛИ! С 1 июня …»
        if not _CAPS_WORD.match(word) or len(re.findall(r"[A-ZА-ЯЁ]", word)) == 1:
            break
        run.append(word)
    letters = sum(1 for w in run if re.search(r"[A-ZА-ЯЁ]{2}", w))
    return " ".join(run) if letters >= 2 else ""


def _name_of_file(filename: str) -> str:
    stem = filename.rsplit(".", 1)[0]
    words = re.findall(r"[^\W_]+", stem)
    # A name without a word of letters («0001», «scan_3») says nothing a question would.
    return " ".join(words) if any(len(w) > 2 and not w.isdigit() for w in words) else ""


def definitions(texts: Sequence[str]) -> list[Definition]:
    """Terms the document defines («именуемое в дальнейшем «Арендатор»», «(далее — Товар)»)."""
    found: dict[str, Definition] = {}
    for text in texts:
        for pattern, max_words in ((_NAMED, NAME_MAX_WORDS), (_AFTER, SHORT_NAME_WORDS)):
            for m in pattern.finditer(text):
                term = _clean(m.group("term"))
                name = _name_before(text[: m.start()], max_words)
                if pattern is _AFTER:
                    name = _noun_phrase(name)
                if not term or not name or len(term.split()) > TERM_MAX_WORDS:
                    continue
                if set(stems(name)) <= set(stems(term)):  # «Общество (далее — Общество)»
                    continue
                found.setdefault(term.lower(), Definition(term, name))
                if len(found) >= MAX_DEFINITIONS:
                    return list(found.values())
    return list(found.values())


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text.strip(f" {_QUOTE}—–-,.")).strip()


def _name_before(prefix: str, max_words: int) -> str:
    """The name a definition follows: the clause before it, without its connectives."""
    prefix = prefix.rstrip(" ,")
    starts = [m.end() for m in _NAME_START.finditer(prefix)]
    name = prefix[starts[-1] :] if starts else prefix
    # The name keeps its quotes («Ромашка»); only the clause's own punctuation goes.
    name = _SPACES.sub(" ", name).strip(" ,;:—–-")
    # Whatever precedes the legal form is the contract's heading (city, date), not the name.
    forms = list(_LEGAL_FORM.finditer(name))
    words = (name[forms[-1].end() :] if forms else name).split()
    if not words:
        return ""
    return " ".join(words[-max_words:])


def _noun_phrase(words_before: str) -> str:
    """The lowercase phrase a «(далее — …)» closes: «передаёт Покупателю муку пшеничную» → «муку пшеничную».

    A capitalised word ends it (another party's term, a sentence start) unless it is the last
    word, as in «продукции Заказчика (далее — Груз)».
    """
    kept: list[str] = []
    for i, word in enumerate(reversed(words_before.split())):
        if i > 0 and word[:1].isupper():
            break
        kept.append(word)
    return " ".join(reversed(kept))


def fragment_context(text: str, title: str, defs: Sequence[Definition]) -> str:
    """The context lines for one fragment: the title (unless it opens the fragment) and definitions."""
    lines = []
    if title and not _squash(text).startswith(_squash(title)):
        lines.append(title)
    if defs:
        present = set(stems(text))
        for d in defs:
            term_stems = stems(d.term)
            if term_stems and set(term_stems) <= present and d.name not in text:
                lines.append(f"{d.term} — {d.name}")
    return "\n".join(lines)


def _squash(text: str) -> str:
    return _SPACES.sub(" ", text).strip().lower()


def indexed_texts(texts: Sequence[str], filename: str = "") -> list[str]:
    """Each fragment's text as embedded and keyword-indexed: its context lines, then the text."""
    title = document_title(texts, filename)
    defs = definitions(texts)
    out = []
    for text in texts:
        context = fragment_context(text, title, defs)
        out.append(f"{context}\n{text}" if context else text)
    return out
