"""What kind of value a question asks for, and whether a sentence holds one.

The offline provider quotes sentences; among those about the question's topic, the one that answers
holds a value of the kind asked for: «Сколько времени строили склад?» wants a duration («19
месяцев»), not the distance that a nearby sentence also gives in figures («в шести километрах»).
The kinds are the ones a reader's questions to company documents ask most (a price, a duration, a
date or day, a share, a phone number, a place, a person, a yes or no) and a bare number for the
other figures. Russian and English, as the questions come in both.
"""

from __future__ import annotations

import re
from enum import StrEnum

from language import words


class Kind(StrEnum):
    """A kind of value a question can ask for."""

    MONEY = "money"
    DURATION = "duration"
    DATE = "date"
    PERCENT = "percent"
    PHONE = "phone"
    PLACE = "place"
    PERSON = "person"
    FREQUENCY = "frequency"
    YES_NO = "yes_no"
    NUMBER = "number"


_I = re.IGNORECASE
_QUESTIONS: list[tuple[Kind, re.Pattern[str]]] = [
    (
        Kind.PHONE,
        re.compile(
            r"\b(?:телефон\w*|звонит\w*|позвонит\w*|номер\w*\s+(?:для\s+)?связ\w*|phone|call|dial)\b", _I
        ),
    ),
    (
        Kind.MONEY,
        re.compile(
            r"\b(?:сколько\s+(?:стои\w*|будет\s+стоить|обойд\w*|плат\w*|заплат\w*|денег|рублей)"
            r"|(?:как\w*|каков\w*)\s+(?:\w+\s+)?(?:цен|стоимост|тариф|ставк|выручк|доход|прибыл|штраф|неустойк|пен[ия]"
            r"|компенсац|сумм|оплат)\w*"
            r"|во\s+сколько\s+обойд\w*"
            r"|how\s+much\s+(?:does|do|did|will|would|is|are)\b.*\bcost|(?:price|cost|fee|fine|revenue|profit|income"
            r"|tariff|amount)s?)\b",
            _I,
        ),
    ),
    (
        Kind.PERCENT,
        re.compile(
            r"\b(?:процент\w*|дол[юяи]|как\w*\s+част[ьи]|what\s+(?:percentage|share|proportion)|percent\w*|by\s+how\s+much)\b",
            _I,
        ),
    ),
    (
        Kind.FREQUENCY,
        re.compile(
            r"\b(?:как\s+часто|с\s+какой\s+периодичност\w*|сколько\s+раз|how\s+often|how\s+many\s+times)\b",
            _I,
        ),
    ),
    (
        Kind.DURATION,
        re.compile(
            r"\b(?:(?:на\s+|за\s+)?сколько\s+(?:\w+\s+)?(?:времени|дней|дня|суток|часов|час|минут|недел\w*|месяц\w*|лет|год\w*|смен)"
            r"|как\s+(?:долго|быстро|скоро)|(?:за|в)\s+как\w*\s+(?:срок|время|период)|в\s+течение\s+как\w*"
            r"|как\w*\s+(?:\w+\s+)?(?:срок|период|продолжительност)\w*"
            r"|how\s+(?:long|soon|quickly|fast)|how\s+many\s+(?:days|hours|minutes|weeks|months|years|shifts)"
            r"|within\s+what|what\s+(?:is\s+the\s+)?(?:period|deadline|term))\b",
            _I,
        ),
    ),
    (
        Kind.DATE,
        re.compile(
            r"^\W*(?:\w+\s+)?(?:когда|when)\b"
            r"|\b(?:какого\s+числа|в\s+как\w*\s+(?:день|дни|год|месяц|дату|даты|время)|по\s+как\w*\s+дням"
            r"|(?:с|до|к)\s+какого\s+(?:числа|времени|дня|срока|момента)|во\s+сколько(?!\s+(?:обойд|раз))"
            r"|как\w*\s+(?:\w+\s+)?(?:дат|числ|срок)\w*"
            r"|what\s+(?:date|day|days|year|time)|(?:on|in|by)\s+which\s+(?:days?|date|year|month)|what\s+time)\b",
            _I,
        ),
    ),
    (
        Kind.PLACE,
        re.compile(
            r"\b(?:где|куда|откуда|как\w*\s+адрес\w*|(?:в|на|через)\s+как\w*\s+(?:кабинет|помещени|здани|город|въезд|вход"
            r"|ворот|кпп|проходн|окн|этаж|склад|терминал)\w*"
            r"|where|(?:what|which)\s+address)\b",
            _I,
        ),
    ),
    (
        Kind.PERSON,
        re.compile(
            r"\b(?:к\s+кому|кого|кто\s+(?:является|назначен\w*|отвечает|подписал\w*|утвердил\w*|возглавля\w*)"
            r"|контактн\w+\s+лиц\w*|ответственн\w+\s+(?:лиц\w*|представител\w*)|фамили\w*|фио"
            r"|who|whom|contact\s+person)\b",
            _I,
        ),
    ),
    (
        Kind.YES_NO,
        re.compile(r"^\W*(?:\w+\s+)?\w+\s+ли\b|^\W*(?:can|may|must|should|is|are|does|do|will)\s+\w+", _I),
    ),
    (
        Kind.NUMBER,
        re.compile(
            r"\b(?:сколько|насколько|как\w*\s+(?:\w+\s+)?(?:количеств|числ|размер|объ[её]м|вес|высот|площад"
            r"|вместимост|мощност|скорост|температур|лимит|норм|максимальн|минимальн|коэффициент)\w*"
            r"|how\s+(?:many|much|far|high|big|large|heavy)|what\s+(?:height|weight|size|capacity|number))",
            _I,
        ),
    ),
]
# Question words: two of them ask two things, and one part may want a bare number.
_QUESTION_WORDS = re.compile(
    r"\b(?:сколько|когда|где|куда|кто|как\w*|каков\w*|how|what|when|where|which|who)\b", _I
)

_TIME_UNIT = (
    r"(?:секунд\w*|сек\.?|минут\w*|мин\.?|час\w*|ч\.|сут\w*|дн\w*|день|дня|недел\w*|месяц\w*|мес\.?"
    r"|год\w*|лет|квартал\w*|смен\w*|seconds?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|shifts?)"
)
_DURATION = re.compile(
    rf"\d[\d\s  ]*(?:[.,]\d+)?\s*(?:\([а-яё\s]+\)\s*)?(?:[–-]\s*\d+\s*)?(?:\w+\s+)?{_TIME_UNIT}\b"
    r"|\b(?:одн\w+|дв\w+|тр\w+|четыр\w+|пят\w+|шест\w+|сем\w+|восем\w+|девят\w+|десят\w+|сорок\w*|полтор\w+|"
    rf"сутк\w+|one|two|three|four|five|six|seven|eight|nine|ten|twelve)\s+(?:\w+\s+)?{_TIME_UNIT}\b"
    r"|\b(?:следующ\w+\s+(?:рабоч\w+\s+)?д\w+|накануне|немедленно|незамедлительно|сразу|круглосуточно"
    r"|в\s+течение\s+\w+|next\s+(?:working\s+|business\s+)?day|immediately|within\s+\w+)\b",
    re.IGNORECASE,
)
_MONTHS = (
    r"(?:январ|феврал|март|апрел|ма[йяе]|июн|июл|август|сентябр|октябр|ноябр|декабр"
    r"|january|february|march|april|may|june|july|august|september|october|november|december)"
)
_WEEKDAYS = (
    r"(?:понедельник|вторник|сред[аыу]|четверг|пятниц|суббот|воскресень|будн|выходн"
    r"|monday|tuesday|wednesday|thursday|friday|saturday|sunday|weekday|weekend)"
)
_DATE = re.compile(
    rf"\b\d{{1,2}}\s+{_MONTHS}\w*|\b{_MONTHS}\w*\s+\d{{1,2}}\b|\b{_MONTHS}\w*\s+\d{{4}}|\b\d{{1,2}}[./]\d{{1,2}}[./]\d{{2,4}}\b"
    rf"|\b\d{{1,2}}-?го\b|\b(?:19|20)\d\d\b|\b{_WEEKDAYS}\w*|\b\d{{1,2}}[:.]\d\d\b|\bежедневно|\bеже(?:недельно|месячно|годно)|\bevery\s+\w+day",
    re.IGNORECASE,
)
_MONEY = re.compile(
    r"\d[\d\s  ]*(?:[.,]\d+)?\s*(?:\([а-яё\s]+\)\s*)?"
    r"(?:руб|коп|₽|тыс\.?\s*руб|млн\.?\s*руб|млрд\.?\s*руб|usd|eur|\$|€|billion|million|thousand)"
    r"|(?:rub|usd|eur|\$|€)\s*\d|\d+,\d{2}\b",
    re.IGNORECASE,
)
_PERCENT = re.compile(
    r"\d\s*%|\bпроцент\w*|\bpercent|\bполовин\w*|\bтрет[ьи]\w*|\bчетверт\w*|\bhalf\b", re.IGNORECASE
)
_FREQUENCY = re.compile(
    r"\bраз\w*\s+в\b|\bкажд\w+|\bеже(?:дневно|недельно|месячно|квартально|годно)\w*|\bне\s+(?:реже|чаще)|\bчерез\s+кажд\w+"
    r"|\bсутки\s+через|\bevery\b|\bonce\b|\btwice\b|\btimes\s+(?:a|per)\b|\b(?:daily|weekly|monthly|annually|yearly)\b",
    re.IGNORECASE,
)
_PHONE = re.compile(r"(?<![\d.,])(?:\+?\d[\s(-]*)?(?:\d{3,4}[\s)-]*)?\d{1,3}-\d{2}(?:-\d{2})?(?![\d.,]\d)")
_PLACE = re.compile(
    r"\b(?:ул|д|каб|пр-т|наб|г|пом)\.\s*\S|№\s*\d"
    r"|\b(?:улиц|шоссе|проспект|переул|площад|набережн|этаж|кабинет|корпус|офис|окн[оеау]|проходн|кпп|бюро)\w*"
    r"|\b(?:street|road|avenue|floor|room|office|building|gate|desk)s?\b",
    re.IGNORECASE,
)
_PERSON = re.compile(
    r"\b[А-ЯЁ][а-яё]+\s+[А-ЯЁ]\.\s?[А-ЯЁ]\.|\b[А-ЯЁ]\.\s?[А-ЯЁ]\.\s?[А-ЯЁ][а-яё]+"
    r"|\b[А-ЯЁ][а-яё]+\s+[А-ЯЁ][а-яё]+\s+[А-ЯЁ][а-яё]+(?:ович|евич|ич|овна|евна|ична|инична)\b"
    r"|\b(?:Mr|Ms|Mrs|Dr)\.?\s+[A-Z]"
)
_MODAL = frozenset(
    """
    вправе может могут можно нельзя запрещено запрещается разрешено разрешается допускается обязан обязана
    обязаны должен должна должны необходимо требуется не допускается
    may must can cannot allowed permitted prohibited forbidden required entitled
    """.split()
)
_DIGIT_OR_NUMBER_WORD = re.compile(
    r"\d|\b(?:один|одн[аоиу]|одного|одной|дв[ауе]|двух|двум|тр[иеё]|тр[её]х|четыр\w*|пят\w*|шест\w*|сем[ьи]\w*|восем\w*"
    r"|девят\w*|десят\w*|двадцат\w*|тридцат\w*|сорок\w*|сто|ста|двест\w*|трист\w*|тысяч\w*|миллион\w*|полтор\w*"
    r"|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|hundreds?|thousands?|millions?|billions?)\b",
    re.IGNORECASE,
)


def asked_kinds(question: str) -> tuple[Kind, ...]:
    """The kinds of value the question asks for, the most specific first; () for none."""
    found = [kind for kind, pattern in _QUESTIONS if pattern.search(question)]
    if Kind.PHONE in found:
        # «Куда звонить?»: the answer is a number, not a place.
        found = [k for k in found if k is not Kind.PLACE]
    if found and found[-1] is Kind.NUMBER and len(found) > 1 and len(_QUESTION_WORDS.findall(question)) < 2:
        found.pop()  # a more specific figure was found: a bare number proves little
    return tuple(found)


def holds(kind: Kind, sentence: str) -> bool:
    """Whether the sentence holds a value of this kind."""
    if kind is Kind.MONEY:
        # A price is also stated as a share of something («0,2 % от объявленной стоимости»).
        return bool(_MONEY.search(sentence) or _PERCENT.search(sentence))
    if kind is Kind.FREQUENCY:
        return bool(_FREQUENCY.search(sentence))
    if kind is Kind.DURATION:
        return bool(_DURATION.search(sentence))
    if kind is Kind.DATE:
        return bool(_DATE.search(sentence))
    if kind is Kind.PERCENT:
        return bool(_PERCENT.search(sentence))
    if kind is Kind.PHONE:
        return bool(_PHONE.search(sentence))
    if kind is Kind.PLACE:
        return bool(_PLACE.search(sentence))
    if kind is Kind.PERSON:
        return bool(_PERSON.search(sentence))
    if kind is Kind.YES_NO:
        return bool(_MODAL & set(words(sentence))) or " не " in f" {sentence.lower()} "
    return bool(_DIGIT_OR_NUMBER_WORD.search(sentence))


def answers_kind(kinds: tuple[Kind, ...], sentence: str) -> bool:
    """Whether the sentence holds a value of any kind asked for."""
    return any(holds(kind, sentence) for kind in kinds)
