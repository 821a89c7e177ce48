"""The offline provider: extractive answers with valid citations, by words and by meaning.

Most tests go through the real pipeline (chunker, keyword index, e5 vectors) with the provider
built as the app builds it: sentence similarity from the real e5 embedder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest

from providers.base import ChatMessage, Fragment, GenerationParams
from providers.offline import (
    MAX_EMBEDDED,
    MODEL_ID,
    NO_FRAGMENTS,
    NOTHING_FOUND,
    OfflineProvider,
    candidate_sentences,
    embedder_similarity,
)
from rag.answer.pipeline import PreparedAnswer, answer
from rag.library import Library, open_library
from rag.search.embedding import Embedder
from settings import Settings

LEASE = (
    "Договор аренды нежилого помещения. Арендодатель: ООО «Север», юридический адрес: "
    "город Санкт-Петербург, Невский проспект, дом 10. Помещение находится по адресу: город Москва, "
    "улица Ленина, дом 5, второй этаж. Срок аренды составляет 11 месяцев с момента подписания акта. "
    "Арендная плата составляет 45 000 рублей в месяц."
)
VACATION = (
    "Положение об отпусках. Сотрудникам предоставляется ежегодный оплачиваемый отпуск "
    "продолжительностью 28 календарных дней. Заявление на отпуск подают за две недели."
)
RECIPE = "Рецепт борща. Бульон из говядины варят два часа на медленном огне. Свёклу тушат отдельно."
TRIPS = (
    "Положение о командировках. Суточные при поездках по России составляют 700 рублей. "
    "Авансовый отчёт сдаётся в бухгалтерию не позднее трёх рабочих дней после возвращения. "
    "Билеты бронирует отдел закупок через корпоративный портал. "
    "Проживание в гостинице оплачивается по фактическим расходам, но не дороже 5000 рублей за ночь."
)
# Markdown: each chunk starts with its heading path («Регламент склада › 2. ПРИЁМКА ГРУЗА»).
RULES = """# Регламент склада

## 2. ПРИЁМКА ГРУЗА

2.1. Машина ставится под разгрузку по электронной очереди. Опоздавшая машина принимается после остальных.

## 3. Хранение

3.1. Температура в камерах проверяется каждые 4 часа.
"""

# A quoted line: «[п. 2.1: ]sentence [n]» (the clause when the fragment's are known, issue 19).
PLACE = r"(?:п\. [\d.]+|(?:Раздел|Глава|Статья|Приложение) \S+): "
LINE = re.compile(rf"^(?:{PLACE})?(?P<sentence>.+) \[(?P<n>\d+)\]$")


@pytest.fixture(scope="module")
def offline(embedder: Embedder) -> OfflineProvider:
    """The provider as the app builds it: sentences by meaning through the real e5 embedder."""
    return OfflineProvider(embedder_similarity(lambda: embedder))


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory,
    embedder: Embedder,
    settings_factory: Callable[..., Settings],
) -> Iterator[Library]:
    lib = open_library(settings_factory(tmp_path_factory.mktemp("offline")), embedder=embedder)
    docs = (
        ("dogovor.txt", LEASE),
        ("otpusk.txt", VACATION),
        ("borsch.txt", RECIPE),
        ("komandirovki.txt", TRIPS),
        ("reglament.md", RULES),
    )
    for name, body in docs:
        assert lib.ingest(name, body.encode()).status == "indexed"
    yield lib
    lib.engine.dispose()


def ask(
    lib: Library, provider: OfflineProvider, question: str, max_tokens: int = 1024, **kwargs: object
) -> tuple[PreparedAnswer, str]:
    prepared = answer(
        lib.retriever,
        provider,
        question,
        MODEL_ID,
        GenerationParams(max_tokens=max_tokens),
        **kwargs,
    )
    return prepared, "".join(prepared.completion)


def quoted(text: str) -> list[tuple[str, int]]:
    """(sentence, n) for each quoted line of an extractive answer."""
    lines = [line for line in text.split("\n") if line.strip()]
    assert lines[0] == "По документам:", text
    out = []
    for line in lines[1:]:
        m = LINE.match(line)
        assert m, f"line without a citation: {line!r}"
        out.append((m["sentence"], int(m["n"])))
    return out


def norm(text: str) -> str:
    return " ".join(text.split())


def assert_citations_hold(prepared: PreparedAnswer, text: str) -> list[tuple[str, int]]:
    """Every quoted sentence is verbatim in the fragment its [n] names."""
    picked = quoted(text)
    assert picked
    assert [s.n for s in prepared.sources] == list(range(1, len(prepared.sources) + 1))
    for sentence, n in picked:
        assert 1 <= n <= len(prepared.sources)
        assert norm(sentence) in norm(prepared.sources[n - 1].text)
    return picked


def test_answer_quotes_the_fact_with_a_valid_citation(corpus: Library, offline: OfflineProvider) -> None:
    prepared, text = ask(corpus, offline, "Какой срок аренды помещения?")
    picked = assert_citations_hold(prepared, text)
    sentence, n = picked[0]
    assert sentence == "Срок аренды составляет 11 месяцев с момента подписания акта."
    assert prepared.sources[n - 1].filename == "dogovor.txt"


def test_paraphrased_question_is_answered_by_meaning(corpus: Library, offline: OfflineProvider) -> None:
    # «ночлег в отеле» for «проживание в гостинице»: no content word in common with the fact.
    question = "Сколько можно потратить на ночлег в отеле?"
    prepared, text = ask(corpus, offline, question)
    picked = assert_citations_hold(prepared, text)
    assert "не дороже 5000 рублей за ночь" in picked[0][0]
    assert prepared.sources[picked[0][1] - 1].filename == "komandirovki.txt"
    # On words alone the same fragments give nothing: the meaning is what found it.
    _, by_words = ask(corpus, OfflineProvider(), question)
    assert "5000 рублей" not in by_words


def test_english_question_is_answered_from_a_russian_document(
    corpus: Library, offline: OfflineProvider
) -> None:
    prepared, text = ask(corpus, offline, "How much is the daily allowance on business trips in Russia?")
    picked = assert_citations_hold(prepared, text)
    assert "Суточные при поездках по России составляют 700 рублей." in picked[0][0]


def test_facts_from_two_documents_cite_each_its_own(corpus: Library, offline: OfflineProvider) -> None:
    prepared, text = ask(corpus, offline, "Сколько дней длится отпуск и сколько варят бульон?")
    picked = assert_citations_hold(prepared, text)
    files = {prepared.sources[n - 1].filename for _, n in picked}
    assert {"otpusk.txt", "borsch.txt"} <= files
    joined = " ".join(s for s, _ in picked)
    assert "28 календарных дней" in joined and "два часа" in joined


def test_headings_are_never_quoted(corpus: Library, offline: OfflineProvider) -> None:
    prepared, text = ask(corpus, offline, "Что происходит с машиной, которая опоздала на приёмку груза?")
    picked = assert_citations_hold(prepared, text)
    assert "Опоздавшая машина принимается после остальных." in picked[0][0]
    for sentence, _ in picked:
        assert "›" not in sentence
        assert "ПРИЁМКА ГРУЗА" not in sentence
        assert "Регламент склада" not in sentence


@pytest.mark.parametrize(
    "question",
    [
        "Кто выиграл чемпионат мира по футболу?",
        "Who painted the Mona Lisa?",
        # Near misses: the documents speak of the portal and of trips, not of this.
        "Какой пароль от корпоративного портала?",
        "Какой штраф платит арендатор за порчу мебели?",
    ],
)
def test_unrelated_question_says_nothing_was_found(
    corpus: Library, offline: OfflineProvider, question: str
) -> None:
    _, text = ask(corpus, offline, question)
    assert text == NOTHING_FOUND


def test_a_question_for_a_figure_the_documents_do_not_give(offline: OfflineProvider) -> None:
    frags = [
        Fragment(1, "spravochnik.docx", None, "Наставник получает премию за каждого подопечного.", 1.0),
        Fragment(2, "spravochnik.docx", None, "Испытательный срок составляет 3 месяца.", 0.9),
    ]
    asked = offline.answer([ChatMessage(role="user", content="Какой размер премии наставника?")], frags)
    assert asked == NOTHING_FOUND
    told = offline.answer([ChatMessage(role="user", content="Кто получает премию за подопечного?")], frags)
    assert "Наставник получает премию за каждого подопечного. [1]" in told


def test_an_english_fragment_that_came_along_does_not_excuse_a_missing_thing(
    offline: OfflineProvider,
) -> None:
    # Cross-lingual retrieval can bring an English fragment to a Russian question; the Russian
    # fragments still never name the brand asked about, so nothing is found.
    frags = [
        Fragment(1, "protokol.docx", None, "На складе «Восточный» работают 12 погрузчиков.", 1.0),
        Fragment(2, "report.txt", None, "The Vostochny warehouse runs twelve forklifts.", 0.4),
    ]
    question = "Какой марки погрузчики работают на складе «Восточный»?"
    assert offline.answer([ChatMessage(role="user", content=question)], frags) == NOTHING_FOUND
    how_many = "Сколько погрузчиков на складе «Восточный»?"
    told = offline.answer([ChatMessage(role="user", content=how_many)], frags)
    assert "12 погрузчиков" in told


def test_without_fragments_the_answer_asks_for_documents(corpus: Library, offline: OfflineProvider) -> None:
    prepared, text = ask(corpus, offline, "Какой срок аренды?", use_documents=False)
    assert text == NO_FRAGMENTS
    assert prepared.sources == []


def test_empty_library_asks_for_documents(library: Library, offline: OfflineProvider) -> None:
    prepared, text = ask(library, offline, "Какой срок аренды?")
    assert text == NO_FRAGMENTS
    assert prepared.sources == []


def test_short_follow_up_uses_the_previous_question(corpus: Library, offline: OfflineProvider) -> None:
    _, first_text = ask(corpus, offline, "Где находится помещение?")
    assert "улица Ленина" in first_text
    history = [
        ChatMessage(role="user", content="Где находится помещение?"),
        ChatMessage(role="assistant", content=first_text),
    ]
    prepared, text = ask(corpus, offline, "А какой там адрес?", history=history)
    picked = assert_citations_hold(prepared, text)
    assert "улица Ленина, дом 5" in picked[0][0]


def test_stream_yields_deltas_that_make_the_answer(corpus: Library, offline: OfflineProvider) -> None:
    prepared = answer(corpus.retriever, offline, "Какова арендная плата?", MODEL_ID, GenerationParams())
    deltas = list(prepared.completion)
    assert len(deltas) > 3
    assert all(deltas)
    full = "".join(deltas)
    assert prepared.completion.text == full
    assert "45 000 рублей" in full
    usage = prepared.completion.usage
    assert usage is not None
    assert usage.completion_tokens == len(full.split())
    assert usage.prompt_tokens > len("Какова арендная плата?".split())


def test_small_max_tokens_truncates(corpus: Library, offline: OfflineProvider) -> None:
    _, full = ask(corpus, offline, "Сколько дней длится отпуск и сколько варят бульон?")
    _, short = ask(corpus, offline, "Сколько дней длится отпуск и сколько варят бульон?", max_tokens=10)
    assert len(full) > 60
    assert len(short) <= 10 * 4 + 1
    assert short.endswith("…")
    assert full.startswith(short[:-1])


def test_provider_is_always_available_and_offers_its_model() -> None:
    provider = OfflineProvider()
    assert provider.status().available
    assert [m.id for m in provider.models()] == [MODEL_ID]


# -- furniture: what is never a candidate ---------------------------------------------------

MANUAL_PAGE_3 = (
    "ООО «Ромашка» · Терминал ТС-9 · Руководство оператора Страница 3 из 6 3. Включение терминала "
    "Чтобы включить терминал, удерживайте кнопку питания три секунды. Загрузка занимает около "
    "40 секунд. Руководство оператора ТС-9."
)
MANUAL_PAGE_4 = (
    "ООО «Ромашка» · Терминал ТС-9 · Руководство оператора Страница 4 из 6 4. Зарядка "
    "Аккумулятор заряжается полностью за 4 часа. Руководство оператора ТС-9."
)
CONTRACT = (
    "2. СРОК АРЕНДЫ 2.1. Срок аренды составляет 11 месяцев с момента подписания акта. "
    "3. АРЕНДНАЯ ПЛАТА 3.1. Арендная плата вносится до 5-го числа каждого месяца."
)
MINUTES = "Повестка дня\nИтоги работы за квартал. Индексация тарифов. Адаптация новых кладовщиков."
PRICES = (
    "Прейскурант Страница 1 из 2 1. Хранение Код Услуга Единица Цена, руб. "
    "Х-01 Хранение на сухом складе паллетоместо в сутки 21,00 "
    "Х-02 Хранение в зоне охлаждения паллетоместо в сутки 44,00 "
    "Х-03 Хранение в зоне заморозки паллетоместо в сутки 61,00 "
    "Х-04 Хранение мелкоштучного товара ячейка в сутки 9,50 "
    "Х-05 Хранение негабаритного груза квадратный метр в сутки 35,00 "
    "Х-06 Хранение опасного груза паллетоместо в сутки 90,00"
)


def furniture_fragments() -> list[Fragment]:
    return [
        Fragment(1, "manual.pdf", 3, MANUAL_PAGE_3, 1.0),
        Fragment(2, "manual.pdf", 4, MANUAL_PAGE_4, 0.9),
        Fragment(3, "dogovor.txt", None, CONTRACT, 0.8),
        Fragment(4, "protokol.docx", None, MINUTES, 0.7),
        Fragment(5, "prices.pdf", 1, PRICES, 0.6),
    ]


def test_headings_and_page_furniture_are_not_candidates() -> None:
    texts = [c.text for c in candidate_sentences(furniture_fragments())]
    assert "Чтобы включить терминал, удерживайте кнопку питания три секунды." in texts
    assert "Аккумулятор заряжается полностью за 4 часа." in texts
    assert "2.1. Срок аренды составляет 11 месяцев с момента подписания акта." in texts
    assert "Х-03 Хранение в зоне заморозки паллетоместо в сутки 61,00" in texts  # a table row
    for text in texts:
        assert "Страница" not in text
        assert "Руководство оператора" not in text  # the running header and the repeated footer
        assert "Включение терминала" not in text  # the page's section title
        assert "СРОК АРЕНДЫ" not in text and "АРЕНДНАЯ ПЛАТА" not in text
        assert "Код Услуга Единица" not in text
        assert "Повестка дня" not in text
    assert "Индексация тарифов." not in texts and "Адаптация новых кладовщиков." not in texts


def test_a_page_header_is_never_quoted(offline: OfflineProvider) -> None:
    frags = furniture_fragments()
    for question in ("Как включить терминал?", "Что написано на странице 3 руководства оператора?"):
        text = offline.answer([ChatMessage(role="user", content=question)], frags)
        assert "Страница 3 из 6" not in text
        assert "Руководство оператора" not in text
    text = offline.answer([ChatMessage(role="user", content="Как включить терминал?")], frags)
    assert quoted(text)[0] == ("Чтобы включить терминал, удерживайте кнопку питания три секунды.", 1)


# -- the similarity function ----------------------------------------------------------------


class CountingEmbedder:
    """A stand-in embedder: a vector per word count, recording every batch it embeds."""

    reads_cyrillic = True

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def embed_query(self, text: str) -> np.ndarray:
        return np.array([1.0, 0.0], dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        rows = [[1.0 / len(t.split()), 0.0] for t in texts]
        return np.array(rows, dtype=np.float32)


def test_similarity_embeds_new_sentences_in_one_batch_and_keeps_them() -> None:
    fake = CountingEmbedder()
    similarity = embedder_similarity(lambda: fake)
    assert list(similarity("вопрос", ["один", "два слова", "три слова тут"])) == pytest.approx(
        [1.0, 0.5, 1 / 3]
    )
    assert fake.batches == [["один", "два слова", "три слова тут"]]
    assert list(similarity("вопрос", ["два слова", "четыре слова вот тут"])) == pytest.approx([0.5, 0.25])
    assert fake.batches[1:] == [["четыре слова вот тут"]]


def test_an_english_only_embedder_leaves_the_choice_to_words() -> None:
    fake = CountingEmbedder()
    fake.reads_cyrillic = False
    assert list(embedder_similarity(lambda: fake)("вопрос", ["предложение"])) == []
    assert fake.batches == []


def test_at_most_max_embedded_sentences_are_compared() -> None:
    seen: list[int] = []

    def similarity(question: str, sentences: Sequence[str]) -> Sequence[float]:
        seen.append(len(sentences))
        return [0.8] * len(sentences)

    body = " ".join(f"Пункт {i}: склад номер {i} принимает грузы по будням." for i in range(30))
    frags = [Fragment(n, f"doc{n}.txt", None, body.replace("склад", f"склад {n}"), 1.0) for n in range(1, 4)]
    text = OfflineProvider(similarity).answer(
        [ChatMessage(role="user", content="Когда склад принимает?")], frags
    )
    assert seen == [MAX_EMBEDDED]
    assert text.startswith("По документам:")
