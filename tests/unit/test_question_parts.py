"""Questions that ask two things: how they are split, and the offline answer stating each part."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

import providers.offline as offline
from language import stems
from providers.base import ChatMessage, Fragment
from providers.question_parts import question_parts

TWO_PARTS = [
    (
        "Сколько новых терминалов решили закупить и на сколько часов работы хватает их аккумулятора?",
        ["Сколько новых терминалов решили закупить", "на сколько часов работы хватает их аккумулятора?"],
    ),
    (
        "За сколько дней рассматривают претензию и на какой адрес её отправлять?",
        ["За сколько дней рассматривают претензию", "на какой адрес её отправлять?"],
    ),
    (
        "Какую выручку планируют на 2024 год и сколько уже получено за первый квартал?",
        ["Какую выручку планируют на 2024 год", "сколько уже получено за первый квартал?"],
    ),
    (
        "Какой срок аренды склада? Сколько стоит аренда?",
        ["Какой срок аренды склада?", "Сколько стоит аренда?"],
    ),
    (
        "Кто подписал договор, а также когда он вступает в силу?",
        ["Кто подписал договор", "когда он вступает в силу?"],
    ),
    (
        "Где находится терминал, и как туда добраться без машины?",
        ["Где находится терминал", "как туда добраться без машины?"],
    ),
    (
        "How many trucks does VTLC own and what is their average age?",
        ["How many trucks does VTLC own", "what is their average age?"],
    ),
    (
        "What is the monthly rent? And when is it due?",
        ["What is the monthly rent?", "And when is it due?"],
    ),
    (
        "Which warehouse stores frozen goods and in which city is it?",
        ["Which warehouse stores frozen goods", "in which city is it?"],
    ),
]

ONE_PART = [
    "По какому телефону обращаться, если на терминале появилась ошибка E-19?",
    "Насколько ставка хранения по договору ниже цены из прейскуранта?",
    # Two question words about one thing: one sentence answers both.
    "Кто и когда подписал договор?",
    "Когда и где пройдёт собрание акционеров?",
    # «и» between nouns or clauses without a second question.
    "Что будет, если поставщик и покупатель не договорятся о цене?",
    "Чем отличаются склад на Западном шоссе и склад в центре?",
    "Какие права и обязанности есть у арендатора?",
    "Сколько стоит хранение и доставка одного паллета?",
    "What happens if the buyer and the seller disagree?",
    "How long do the warranty and the support last?",
]


@pytest.mark.parametrize(("question", "parts"), TWO_PARTS)
def test_a_question_asking_two_things_is_split_in_order(question: str, parts: list[str]) -> None:
    assert question_parts(question) == parts


@pytest.mark.parametrize("question", ONE_PART)
def test_a_question_asking_one_thing_stays_whole(question: str) -> None:
    assert question_parts(question) == [question]


def _overlap_meaning(question: str, sentences: Sequence[str]) -> list[float]:
    """A stand-in embedder: the cosine grows with the share of the question's words a sentence
    holds, so the whole question sits nearer its longer first part, as e5's vector does."""
    asked = set(stems(question, drop_stopwords=True))
    return [0.7 + 0.2 * len(asked & set(stems(s))) / max(1, len(asked)) for s in sentences]


QUESTION = "Сколько новых терминалов сбора данных решили закупить и на сколько часов хватает их аккумулятора?"
# Four sentences hold every word of the first part; the one answering the second shares two words.
FIRST = [
    "Новые терминалы сбора данных решили закупить в количестве 60 штук.",
    "Новые терминалы сбора данных решили закупить у поставщика «ИнфоСкан».",
    "Новые терминалы сбора данных решили закупить до конца квартала.",
    "Новые терминалы сбора данных решили закупить за счёт резервного фонда.",
]
SECOND = "Заряда аккумулятора хватает на 12 часов работы."


def _answer() -> str:
    provider = offline.OfflineProvider(_overlap_meaning)
    fragments = [
        Fragment(1, "protokol.docx", None, " ".join(FIRST), 1.0),
        Fragment(2, "rukovodstvo.pdf", 2, SECOND, 0.8),
    ]
    return provider.answer([ChatMessage(role="user", content=QUESTION)], fragments)


def test_the_offline_answer_states_each_part(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _answer()
    lines = [line for line in text.split("\n") if line.strip()][1:]
    # The first part's answer (the count), then the second's (the hours), in the question's order.
    assert lines[0].startswith(FIRST[0].rstrip(".")), text
    assert lines[1].startswith(SECOND.rstrip(".")) and lines[1].endswith("[2]"), text
    # Scored as one question, the first part's four sentences crowd the second part out.
    monkeypatch.setattr(offline, "question_parts", lambda q: [q])
    assert SECOND.rstrip(".") not in _answer()


def test_a_part_that_nothing_answers_adds_no_sentence() -> None:
    provider = offline.OfflineProvider(None)
    question = "Сколько новых терминалов решили закупить и какой пароль от Wi-Fi в переговорной?"
    fragments = [Fragment(1, "protokol.docx", None, " ".join(FIRST), 1.0)]
    text = provider.answer([ChatMessage(role="user", content=question)], fragments)
    assert "60 штук" in text
    # Nothing on the second part: the answer holds the first part's sentences only.
    assert all(line.startswith(("Новые", "По документам")) for line in text.split("\n") if line.strip())
    # Scored as one question, the part nothing answers made the whole answer abstain.
    assert provider.pick(question, None, fragments)
    assert offline.OfflineProvider(None)._ranked(question, None, fragments)


def test_a_two_part_question_that_nothing_answers_still_abstains() -> None:
    provider = offline.OfflineProvider(None)
    question = "Какой пароль от Wi-Fi в переговорной и кто его меняет?"
    fragments = [Fragment(1, "protokol.docx", None, " ".join(FIRST), 1.0)]
    assert provider.answer([ChatMessage(role="user", content=question)], fragments) == offline.NOTHING_FOUND
