"""The offline provider through the real pipeline: extractive answers with valid citations."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from providers.base import ChatMessage, GenerationParams
from providers.offline import MODEL_ID, NO_FRAGMENTS, NOTHING_FOUND, OfflineProvider
from rag.embedding import E5SmallEmbedder
from rag.library import Library, open_library
from rag.pipeline import PreparedAnswer, answer
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

LINE = re.compile(r"^(?P<sentence>.+) \[(?P<n>\d+)\]$")


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory,
    embedder: E5SmallEmbedder,
    settings_factory: Callable[..., Settings],
) -> Iterator[Library]:
    lib = open_library(settings_factory(tmp_path_factory.mktemp("offline")), embedder=embedder)
    for name, body in (("dogovor.txt", LEASE), ("otpusk.txt", VACATION), ("borsch.txt", RECIPE)):
        assert lib.ingest(name, body.encode()).status == "indexed"
    yield lib
    lib.engine.dispose()


def ask(lib: Library, question: str, max_tokens: int = 1024, **kwargs: object) -> tuple[PreparedAnswer, str]:
    prepared = answer(
        lib.retriever,
        OfflineProvider(),
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
    picked = quoted(text)
    assert picked
    assert [s.n for s in prepared.sources] == list(range(1, len(prepared.sources) + 1))
    for sentence, n in picked:
        assert 1 <= n <= len(prepared.sources)
        assert norm(sentence) in norm(prepared.sources[n - 1].text)
    return picked


def test_answer_quotes_the_fact_with_a_valid_citation(corpus: Library) -> None:
    prepared, text = ask(corpus, "Какой срок аренды помещения?")
    picked = assert_citations_hold(prepared, text)
    sentence, n = picked[0]
    assert sentence == "Срок аренды составляет 11 месяцев с момента подписания акта."
    assert prepared.sources[n - 1].filename == "dogovor.txt"


def test_facts_from_two_documents_cite_each_its_own(corpus: Library) -> None:
    prepared, text = ask(corpus, "Сколько дней длится отпуск и сколько варят бульон?")
    picked = assert_citations_hold(prepared, text)
    files = {prepared.sources[n - 1].filename for _, n in picked}
    assert files == {"otpusk.txt", "borsch.txt"}
    joined = " ".join(s for s, _ in picked)
    assert "28 календарных дней" in joined and "два часа" in joined


def test_unrelated_question_says_nothing_was_found(corpus: Library) -> None:
    _, text = ask(corpus, "Кто выиграл чемпионат мира по футболу?")
    assert text == NOTHING_FOUND
    assert "не нашлось" in text


def test_without_fragments_the_answer_asks_for_documents(corpus: Library) -> None:
    prepared, text = ask(corpus, "Какой срок аренды?", use_documents=False)
    assert text == NO_FRAGMENTS
    assert prepared.sources == []


def test_empty_library_asks_for_documents(library: Library) -> None:
    prepared, text = ask(library, "Какой срок аренды?")
    assert text == NO_FRAGMENTS
    assert prepared.sources == []


def test_short_follow_up_uses_the_previous_question(corpus: Library) -> None:
    _, first_text = ask(corpus, "Где находится помещение?")
    assert "улица Ленина" in first_text
    history = [
        ChatMessage(role="user", content="Где находится помещение?"),
        ChatMessage(role="assistant", content=first_text),
    ]
    prepared, text = ask(corpus, "А какой там адрес?", history=history)
    picked = assert_citations_hold(prepared, text)
    assert "улица Ленина, дом 5" in picked[0][0]
    assert "Невский" not in text  # the landlord's legal address is another address
    # Without the history the same words are ambiguous: both addresses come back.
    _, alone = ask(corpus, "А какой там адрес?")
    assert "Невский" in alone and "Ленина" in alone


def test_stream_yields_deltas_that_make_the_answer(corpus: Library) -> None:
    prepared = answer(
        corpus.retriever, OfflineProvider(), "Какова арендная плата?", MODEL_ID, GenerationParams()
    )
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


def test_small_max_tokens_truncates(corpus: Library) -> None:
    _, full = ask(corpus, "Сколько дней длится отпуск и сколько варят бульон?")
    _, short = ask(corpus, "Сколько дней длится отпуск и сколько варят бульон?", max_tokens=10)
    assert len(full) > 60
    assert len(short) <= 10 * 4 + 1
    assert short.endswith("…")
    assert full.startswith(short[:-1])


def test_provider_is_always_available_and_offers_its_model() -> None:
    provider = OfflineProvider()
    assert provider.status().available
    assert [m.id for m in provider.models()] == [MODEL_ID]
