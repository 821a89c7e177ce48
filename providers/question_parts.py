"""The parts of a question that asks several things: «Сколько терминалов решили закупить и на
сколько часов хватает их аккумулятора?» asks for a count and for a duration.

The offline answer quotes the best sentence for each part, so that one strong part does not push
the other out of a three-sentence answer. Retrieval does not split (bench/README.md, issue 20:
searching each part moved no part into the top 5 on the development set and tripled the time).

A split needs a second question: after a «?» that is not the last, or a conjunction («и», «а
также», «and») followed by a question word, with an optional preposition («и на какой адрес»,
«and in which city»). Each part must name something of its own (a content word), so «Кто и
когда подписал договор?» and «Когда и где пройдёт собрание?» stay whole: one sentence answers them.
"""

from __future__ import annotations

import re

from language import stems

_QUESTION_WORD = (
    r"(?:сколько|когда|где|куда|откуда|кто|кому|кого|кем|что|чего|чем|почему|зачем|насколько"
    r"|как(?:ой|ая|ое|ие|ую|ом|ого|их|им|ими|ому|ова|ов|овы)?|каков[аоы]?|чей|чья|чьё|чьи|ли"
    r"|how|what|when|where|which|who|whom|whose|why)"
)
_PREPOSITION = r"(?:на|в|во|за|по|с|со|до|от|из|к|ко|о|об|при|для|через|под|над|in|on|at|for|by|to|from|with)"
# «…, и на какой адрес …», «… а также сколько …», «… and how long …». «ли» only after a verb is a
# question particle, never after a conjunction: it is in the list for the «?» split's second part.
_SECOND_QUESTION = re.compile(
    rf"[,;]?\s+(?:и|а\s+также|а\s+ещё|а\s+еще|а|также|and\s+also|and|as\s+well\s+as)\s+"
    rf"(?=(?:{_PREPOSITION}\s+)?{_QUESTION_WORD}\b)(?!ли\b)",
    re.IGNORECASE,
)
_ASKS = re.compile(rf"\b{_QUESTION_WORD}\b", re.IGNORECASE)
# A part with fewer content words than this leans wholly on the other («Кто и когда …»).
MIN_CONTENT_WORDS = 1


def question_parts(question: str) -> list[str]:
    """The question's parts in order, each a question of its own; ``[question]`` when it asks one thing."""
    text = question.strip()
    pieces = [p.strip() for p in re.split(r"(?<=\?)\s+(?=\S)", text) if p.strip()]
    parts: list[str] = []
    for piece in pieces:
        parts.extend(_split_on_conjunction(piece))
    if len(parts) < 2 or any(not _stands_alone(p) for p in parts):
        return [question]
    return parts


def _split_on_conjunction(piece: str) -> list[str]:
    # A match ends after the conjunction: the second part keeps its preposition («на какой адрес»).
    cuts = [m for m in _SECOND_QUESTION.finditer(piece) if m.start() > 0]
    out, start = [], 0
    for m in cuts:
        out.append(piece[start : m.start()].strip(" ,;"))
        start = m.end()
    out.append(piece[start:].strip())
    return [p for p in out if p]


def _stands_alone(part: str) -> bool:
    return bool(_ASKS.search(part) or part.endswith("?")) and (
        len(stems(part, drop_stopwords=True)) >= MIN_CONTENT_WORDS
    )
