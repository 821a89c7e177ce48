"""Language rules shared by rag and providers: words, stems, stopwords, script, tokens, follow-ups.

A leaf module: it imports nothing of this project, so the retriever, the offline answerer and
the prompt builder all agree on what a word, a Russian word, a token and a follow-up are.
"""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

_WORD = re.compile(r"[0-9a-zа-яё]+", re.IGNORECASE)
# The whole Cyrillic block: Russian, plus the letters of Ukrainian, Belarusian and others.
CYRILLIC = re.compile(r"[\u0400-\u04ff]")
# A follow-up such as «А сколько он стоит?» has at most this many content words of its own.
FOLLOW_UP_WORDS = 3

# Function words carry no signal for ranking and blow up OR queries on large libraries.
RU_STOPWORDS = frozenset(
    """
    и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только ее мне
    было вот от меня еще нет о из ему теперь когда даже ну вдруг ли если уже или ни быть был него
    до вас нибудь опять уж вам ведь там потом себя ничего ей может они тут где есть надо ней для мы
    тебя их чем была сам чтоб без будто чего раз тоже себе под будет ж тогда кто этот того потому
    этого какой совсем ним здесь этом один почти мой тем чтобы нее сейчас были куда зачем всех
    никогда можно при наконец два об другой хоть после над больше тот через эти нас про всего них
    какая много разве три эту моя впрочем хорошо свою этой перед иногда лучше чуть том нельзя такой
    им более всегда конечно всю между это как каком какие каких какое который которая которые
    которых которого котором сколько
    """.split()
)
EN_STOPWORDS = frozenset(
    """
    a an the of in on at to for from by with and or is are was were be been being do does did what
    which who whom whose when where why how that this these those it its as into than then there
    """.split()
)


@lru_cache(maxsize=1)
def _stemmers() -> tuple[Stemmer.Stemmer, Stemmer.Stemmer]:
    return Stemmer.Stemmer("russian"), Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    """Lowercased word tokens with ``ё`` folded to ``е``."""
    return [w.replace("ё", "е") for w in _WORD.findall(text.lower())]


def stems(text: str, drop_stopwords: bool = False) -> list[str]:
    """Snowball stems of the words: Russian for Cyrillic words, English otherwise."""
    ru, en = _stemmers()
    out: list[str] = []
    for w in words(text):
        if drop_stopwords and (w in RU_STOPWORDS or w in EN_STOPWORDS):
            continue
        out.append(ru.stemWord(w) if CYRILLIC.search(w) else en.stemWord(w))
    return out


def stem_string(text: str) -> str:
    """The text as space-separated stems, as stored in the keyword index."""
    return " ".join(stems(text))


def query_terms(text: str) -> list[str]:
    """The stems a keyword search looks for: the question's content stems (all stems if none)."""
    terms = list(dict.fromkeys(stems(text, drop_stopwords=True)))
    return terms or list(dict.fromkeys(stems(text)))


def word_count(text: str) -> int:
    """Number of whitespace-separated words."""
    return len(text.split())


def has_cyrillic(text: str) -> bool:
    """True if the text contains any Cyrillic letter."""
    return CYRILLIC.search(text) is not None


def cyrillic_share(text: str) -> float:
    """Share of Cyrillic among the letters of the text (0 when it has none)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for c in letters if CYRILLIC.match(c)) / len(letters)


def estimate_tokens(text: str) -> int:
    """Tokens a model will count, without its tokenizer: about three characters each (Russian)."""
    return len(text) // 3 + 1 if text else 0


def is_follow_up(question: str) -> bool:
    """A question with too few content words to stand alone (it leans on the previous one)."""
    return len(stems(question, drop_stopwords=True)) <= FOLLOW_UP_WORDS
