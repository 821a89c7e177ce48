"""Tokens and stems for the keyword index, and keyword queries that user text cannot break."""

from __future__ import annotations

import pytest

from language import query_terms, stem_string, stems, words
from rag.library import Library

LEASE = (
    "Срок аренды составляет 11 месяцев. Арендная плата составляет 45 000 рублей в месяц "
    "и вносится до пятого числа."
)
RECIPE = "Для борща нужны свёкла, капуста и картофель. Варите бульон два часа на медленном огне."


def test_words_fold_case_and_yo() -> None:
    assert words("Ёлка, ЁЖ и Елена!") == ["елка", "еж", "и", "елена"]
    assert stems("СВЁКЛА") == stems("свекла")


@pytest.mark.parametrize(
    "forms",
    [
        ["аренда", "аренды", "аренде", "аренду", "арендой"],
        ["договор", "договора", "договору", "договором", "ДОГОВОРЕ"],
        ["арендная", "арендной", "арендную", "арендные"],
        ["плата", "платы", "плату", "платой"],
    ],
)
def test_russian_word_forms_share_a_stem(forms: list[str]) -> None:
    assert len({stem for form in forms for stem in stems(form)}) == 1


def test_different_words_keep_different_stems() -> None:
    assert stems("аренда") != stems("оплата")


def test_english_words_use_the_english_stemmer() -> None:
    assert stems("leases leasing leased") == ["leas", "leas", "leas"]
    assert stems("payments payment") == ["payment", "payment"]
    # The Russian stemmer would leave English untouched; Cyrillic goes to it, Latin does not.
    assert stems("Rent аренды") == ["rent", "аренд"]


def test_stem_string_is_space_separated_stems() -> None:
    assert stem_string("Арендная плата, ЁЖ!") == "арендн плат еж"


def test_query_terms_drop_stopwords() -> None:
    assert query_terms("Какой срок аренды у этого договора?") == ["срок", "аренд", "договор"]
    # Only stopwords: fall back to them rather than to an empty query.
    assert query_terms("и в на") == ["и", "в", "на"]
    assert query_terms("?!*") == []


HOSTILE = [
    'аренда"',
    '"аренда',
    "аренда AND",
    "NOT аренда",
    "NEAR(аренда плата)",
    "аренда*",
    "-аренда",
    "(аренда OR",
    "stems: аренда",
    "chunk_id:аренда",
    "^аренда",
    "аренда + плата {1}",
    "арендной платы'); DROP TABLE chunk; --",
]


@pytest.fixture
def small_library(library: Library) -> Library:
    for name, text in (("dogovor.txt", LEASE), ("borsch.txt", RECIPE)):
        assert library.ingest(name, text.encode()).status == "indexed"
    return library


def test_terms_that_are_not_words_never_reach_the_engine(small_library: Library) -> None:
    # FTS5 and tsquery syntax: each would be an error, or an operator, if passed through.
    for raw in ("аренд AND", '"аренд', "(аренд |", "NEAR(аренд", "аренд:*", "аренд' | 'плат"):
        assert small_library.docs.keyword_search([raw], 5) == [], raw
    # The control: the same stem alone finds the lease.
    assert small_library.docs.keyword_search(["аренд"], 5)


def test_operator_characters_in_questions_are_inert(small_library: Library) -> None:
    for query in HOSTILE:
        for method in ("keyword", "hybrid"):
            hits = small_library.retriever.search(query, k=5, method=method)
            assert hits and hits[0].filename == "dogovor.txt", (query, method)
        assert {h.filename for h in small_library.retriever.search(query, k=5, method="keyword")} == {
            "dogovor.txt"
        }, query
    assert small_library.docs.totals() == {"documents": 2, "chunks": 2, "failed": 0, "indexing": 0}


def test_questions_without_content_words_do_not_raise(small_library: Library) -> None:
    for query in ["", "   ", "?!", '"""', "***", "AND OR NOT"]:
        assert small_library.retriever.search(query, k=5, method="keyword") == [], query


def test_keyword_search_matches_another_word_form(small_library: Library) -> None:
    hits = small_library.retriever.search("размер арендной платы", k=5, method="keyword")
    assert [h.filename for h in hits] == ["dogovor.txt"]
    hits = small_library.retriever.search("сколько варить свеклу", k=5, method="keyword")
    assert [h.filename for h in hits] == ["borsch.txt"]
