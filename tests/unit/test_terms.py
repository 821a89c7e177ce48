"""The cross-lingual keyword channel: the library's vocabulary, translation, and its place in search."""

from __future__ import annotations

from collections.abc import Callable

from language import stems
from providers.base import GenerationParams
from providers.offline import MODEL_ID, OfflineProvider, embedder_similarity
from rag.answer.pipeline import answer
from rag.library import Library
from rag.search.embedding import USEEmbedder
from rag.search.index import open_chroma
from rag.search.terms import TermIndex, content_words, vocabulary

RU_CONTRACT = (
    "Договор хранения молочной продукции. Стоимость хранения одного паллетоместа составляет "
    "38 рублей в сутки. Контактное лицо Исполнителя — Шубина Алла Сергеевна."
)
EN_REPORT = (
    "Annual report. Our trucks covered fourteen million kilometres, and the fleet grew by twenty "
    "new refrigerated vehicles during the year."
)


def _stem(word: str) -> str:
    return stems(word)[0]


def test_content_words_skip_stopwords_digits_and_short_words() -> None:
    assert content_words("What is the price of 38 pallets in ТС-52 и на складе?") == [
        "price",
        "pallets",
        "складе",
    ]


def test_vocabulary_keeps_one_word_form_per_stem() -> None:
    vocab = vocabulary(["Склад и складе", "склада; Warehouses warehouse"])
    assert vocab == {_stem("склад"): "склад", _stem("warehouse"): "warehouses"}


def test_translation_finds_the_russian_stems_of_english_words(tmp_path) -> None:  # type: ignore[no-untyped-def]
    use = USEEmbedder()
    terms = TermIndex(open_chroma(tmp_path), "use-multilingual-v3")
    added = terms.add([RU_CONTRACT, EN_REPORT], use)
    assert added == len(vocabulary([RU_CONTRACT, EN_REPORT]))
    # Known stems are not embedded twice.
    assert terms.add([RU_CONTRACT], use) == 0
    assert terms.count() == added

    got = terms.translate("Who is the contact person for the storage contract?", use)
    assert _stem("договор") in got
    assert _stem("хранения") in got
    # Only the other script: the question's own English words are keyword search's job.
    assert all(not w.isascii() for w in got)
    # And the reverse direction: a Russian question reaches the English report's words.
    back = terms.translate("Сколько километров проехали грузовики?", use)
    assert _stem("trucks") in back
    assert all(w.isascii() for w in back)
    # A word with no close translation brings nothing in.
    assert terms.translate("Who won the football match yesterday?", use, min_similarity=0.75) == []

    terms.clear()
    assert terms.count() == 0


def test_an_english_question_finds_a_russian_fragment_by_keywords(library: Library) -> None:
    library.ingest("dogovor.txt", RU_CONTRACT.encode())
    library.ingest("report.txt", EN_REPORT.encode())
    question = "Who is the contact person for the storage contract?"
    # Plain keywords share no word with the Russian contract...
    assert library.retriever.keyword(question, 10) == []
    # ...its translation into the library's Russian stems does.
    translated = library.retriever.translated_keyword(question, 10)
    doc = next(d for d in library.docs.list_all() if d.filename == "dogovor.txt")
    contract = library.docs.chunks(doc.id)
    assert translated and translated[0][0] in {c.id for c in contract}
    top = library.retriever.search(question, k=1)[0]
    assert top.filename == "dogovor.txt"


def test_a_library_indexed_before_the_vocabulary_is_backfilled(
    make_library: Callable[..., Library],
) -> None:
    lib = make_library()
    doc = lib.ingest("dogovor.txt", RU_CONTRACT.encode()).document
    assert doc is not None and lib.terms is not None
    lib.terms.clear()  # as a data directory from before this release has no vocabulary
    assert [d.id for d in lib.stale_documents()] == [doc.id]
    before = lib.vectors.ids_of_document(doc.id)
    assert lib.reembed() == 1
    assert lib.terms.count() == len(vocabulary([c.text for c in lib.docs.chunks(doc.id)]))
    assert lib.stale_documents() == []
    # Its vectors were current: only the words were added, the vectors are the same ones.
    assert lib.vectors.ids_of_document(doc.id) == before


def test_without_a_crosslingual_model_there_is_no_vocabulary(
    make_library: Callable[..., Library],
) -> None:
    lib = make_library(RAG_CROSSLINGUAL_MODEL="")
    lib.ingest("dogovor.txt", RU_CONTRACT.encode())
    assert lib.terms is None
    assert lib.retriever.translated_keyword("storage contract", 10) == []


def _offline_answer(library: Library, question: str) -> str:
    provider = OfflineProvider(embedder_similarity(library.embedder), library.glossary)
    prepared = answer(library.retriever, provider, question, MODEL_ID, GenerationParams(), top_k=3)
    return "".join(prepared.completion)


def test_a_quote_in_the_other_language_names_the_translation_of_the_asked_word(library: Library) -> None:
    library.ingest("dogovor.txt", RU_CONTRACT.encode())
    library.ingest("report.txt", EN_REPORT.encode())
    glossary = library.glossary("Who is the contact person for the storage contract?")
    # The question's English words, each with the library's Russian stems closest to it.
    assert _stem("договор") in glossary["contract"]
    assert all(not s.isascii() for found in glossary.values() for s in found)
    text = _offline_answer(library, "Who is the contact person for the storage contract?")
    assert "Шубина Алла Сергеевна" in text
    # The Russian quote names its words that stand for the asked ones, as they are written there.
    assert "(contact → Контактное; person → лицо)" in text, text
    # A quote in the question's own language gets no such note.
    same = _offline_answer(library, "Кто контактное лицо по договору хранения?")
    assert "Шубина" in same and "→" not in same, same


def test_without_a_crosslingual_model_no_translation_is_named(make_library: Callable[..., Library]) -> None:
    lib = make_library(RAG_CROSSLINGUAL_MODEL="")
    lib.ingest("dogovor.txt", RU_CONTRACT.encode())
    assert lib.glossary("Who is the contact person for the storage contract?") == {}
    assert "→" not in _offline_answer(lib, "Who is the contact person for the storage contract?")
