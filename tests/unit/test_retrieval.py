"""Keyword, dense and hybrid retrieval over a small Russian library, and score fusion."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.identity.access import Scope
from rag.library import Library, open_library
from rag.search.embedding import E5SmallEmbedder
from rag.search.index import VectorIndex, collection_name, open_chroma
from rag.search.retrieve import METHODS, Method, zfuse
from settings import Settings
from storage import DocumentStatus

CORPUS = {
    "dogovor.txt": (
        "Договор аренды нежилого помещения. Срок аренды составляет 11 месяцев с момента подписания. "
        "Арендная плата составляет 45 000 рублей в месяц и вносится до пятого числа."
    ),
    "borsch.txt": (
        "Рецепт украинского борща. Бульон из говядины варят два часа на медленном огне. "
        "Свёклу тушат отдельно с уксусом, чтобы суп сохранил яркий цвет."
    ),
    "mks.txt": (
        "Международная космическая станция летает по орбите на высоте около 400 километров. "
        "Один оборот вокруг Земли занимает примерно полтора часа."
    ),
    "otpusk.txt": (
        "Положение об отпусках. Сотрудникам предоставляется ежегодный оплачиваемый отпуск "
        "продолжительностью 28 календарных дней. Отпуск можно разделить на части."
    ),
    "fotosintez.txt": (
        "Фотосинтез — процесс, при котором зелёные растения превращают энергию солнечного света, "
        "воду и углекислый газ в глюкозу и кислород. Он идёт в хлоропластах листьев."
    ),
    "piter.txt": (
        "Санкт-Петербург был основан Петром Первым в 1703 году в устье Невы. "
        "Более двухсот лет город оставался столицей Российской империи."
    ),
}

# Every question uses other word forms than its document (аренд-ной плат-ы vs аренд-ная плат-а).
QUESTIONS = [
    ("Каков размер арендной платы?", "dogovor.txt"),
    ("Сколько времени варится говяжий бульон?", "borsch.txt"),
    ("Какова высота орбиты космической станции?", "mks.txt"),
    ("Сколько календарных дней длится ежегодный отпуск?", "otpusk.txt"),
    ("Что образуется в результате фотосинтеза у растений?", "fotosintez.txt"),
    ("В каком году основали Санкт-Петербург?", "piter.txt"),
]


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory,
    embedder: E5SmallEmbedder,
    settings_factory: Callable[..., Settings],
) -> Iterator[Library]:
    lib = open_library(settings_factory(tmp_path_factory.mktemp("corpus")), embedder=embedder)
    for name, body in CORPUS.items():
        assert lib.ingest(name, body.encode()).status == "indexed"
    yield lib
    lib.engine.dispose()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("question", "expected"), QUESTIONS)
def test_each_method_ranks_the_right_document_first(
    corpus: Library, method: Method, question: str, expected: str
) -> None:
    hits = corpus.retriever.search(question, k=3, method=method)
    assert hits, (method, question)
    assert hits[0].filename == expected, [h.filename for h in hits]


def test_keyword_search_matches_inflected_forms_only_through_stems(corpus: Library) -> None:
    question = "Каков размер арендной платы?"
    # Not one surface word of the question occurs in the document ...
    text_words = set(CORPUS["dogovor.txt"].lower().replace(".", " ").split())
    assert not {"арендной", "платы", "размер"} & text_words
    # ... yet the keyword index finds it, and scores are normalised with the best at 1.0.
    hits = corpus.retriever.search(question, k=5, method="keyword")
    assert hits[0].filename == "dogovor.txt"
    assert hits[0].score == pytest.approx(1.0)
    assert all(0 < h.score <= 1.0 for h in hits)


@pytest.mark.parametrize(
    ("question", "expected"),
    [("Как быстро МКС облетает планету?", "mks.txt"), ("Сколько стоит снять офис?", "dogovor.txt")],
)
def test_dense_and_hybrid_find_a_paraphrase_without_shared_words(
    corpus: Library, question: str, expected: str
) -> None:
    # No stem in common: keyword search cannot find it, the embedder must.
    keyword = corpus.retriever.search(question, k=5, method="keyword")
    assert expected not in [h.filename for h in keyword]
    for method in ("dense", "hybrid"):
        hits = corpus.retriever.search(question, k=3, method=method)  # type: ignore[arg-type]
        assert hits[0].filename == expected, method


def test_hits_carry_their_source(corpus: Library) -> None:
    hits = corpus.retriever.search("Сколько длится отпуск?", k=2)
    assert len(hits) == 2
    assert hits[0].score >= hits[1].score
    assert [h.n for h in hits] == [1, 2]  # numbered for citation
    source = hits[0]
    assert source.filename == "otpusk.txt"
    assert source.ocr is False  # read from a text file, not recognised
    assert "28 календарных дней" in source.text
    doc = corpus.docs.get(source.document_id)
    assert doc.filename == "otpusk.txt"
    assert corpus.docs.chunks_by_ids([source.chunk_id])[source.chunk_id][0].ordinal == source.ordinal


@pytest.mark.parametrize("method", METHODS)
def test_k_is_respected_and_blank_queries_return_nothing(corpus: Library, method: Method) -> None:
    assert len(corpus.retriever.search("город станция отпуск аренда борщ", k=2, method=method)) <= 2
    assert corpus.retriever.search("   ", k=5, method=method) == []


def test_failed_indexing_and_deleted_documents_are_never_returned(library: Library) -> None:
    for name in ("dogovor.txt", "otpusk.txt"):
        assert library.ingest(name, CORPUS[name].encode()).status == "indexed"
    # Three more lease documents that must stay invisible, each with chunks and vectors
    # still present: as a crash or a concurrent delete could leave them.
    hidden = {}
    for name, status in (
        ("sklad-failed.txt", DocumentStatus.FAILED),
        ("sklad-indexing.txt", DocumentStatus.INDEXING),
        ("sklad-deleted.txt", None),
    ):
        body = f"Срок аренды склада составляет 5 лет. Арендная плата за склад {name} — 90 000 рублей."
        doc = library.ingest(name, body.encode()).document
        assert doc is not None
        hidden[name] = doc.id
        if status is not None:
            library.docs.update(doc.id, status=status)
        else:
            library.docs.delete(doc.id)  # rows gone, vectors left behind in Chroma
    assert set(hidden.values()) <= {
        d for m in library.vectors.models() for d in library.vectors.document_ids(m)
    }
    for method in METHODS:
        hits = library.retriever.search("Каков срок аренды склада и арендная плата?", k=10, method=method)
        assert hits, method
        assert {h.filename for h in hits} <= {"dogovor.txt", "otpusk.txt"}, method
        assert not {h.document_id for h in hits} & set(hidden.values()), method


def test_zfuse_scales_the_best_to_one_and_rewards_agreement() -> None:
    fused = zfuse([[("a", 9.0), ("b", 5.0), ("c", 1.0)], [("a", 0.9), ("c", 0.5), ("b", 0.1)]])
    assert fused["a"] == pytest.approx(1.0)
    assert max(fused.values()) == fused["a"]
    # Below-average scores add nothing: a list's tail is not evidence.
    assert zfuse([[("x", 3.0), ("y", 1.0)]]) == {"x": 1.0, "y": 0.0}
    assert zfuse([]) == {} and zfuse([[]]) == {}


def test_zfuse_lets_a_clear_winner_beat_a_flat_noisy_list() -> None:
    # Keywords that match nothing specific (flat scores) must not outvote a dense list whose
    # best match stands far above its others; rank fusion would call this a tie.
    noise = [("n1", 1.00), ("n2", 0.99), ("n3", 0.98), ("n4", 0.97), ("hit", 0.96)]
    clear = [("hit", 0.95), ("m1", 0.40), ("m2", 0.39), ("m3", 0.38), ("n1", 0.37)]
    fused = zfuse([noise, clear])
    assert max(fused, key=lambda c: fused[c]) == "hit"


BILINGUAL = {
    "otpusk.txt": CORPUS["otpusk.txt"],
    "dogovor.txt": CORPUS["dogovor.txt"],
    "report_en.txt": (
        "Annual report 2023. The company employed 1,120 people at the end of the year and opened "
        "a new warehouse terminal. Revenue grew by twelve percent; the board thanks all employees."
    ),
    "memo_en.txt": (
        "Memo to partners. The pilot service starts in June and runs for twelve weeks. Please confirm "
        "the terms by the end of May; our staff will contact you about the schedule."
    ),
}


def test_a_question_in_one_language_finds_the_document_in_the_other(
    tmp_path: Path, embedder: E5SmallEmbedder, settings_factory: Callable[..., Settings]
) -> None:
    # e5 ranks by the question's language first: English questions pull the English documents,
    # whatever they ask. The cross-lingual channel in the fusion brings the answer back.
    lib = open_library(settings_factory(tmp_path), embedder=embedder)
    try:
        for name, body in BILINGUAL.items():
            assert lib.ingest(name, body.encode()).status == "indexed"
        for question, expected in (
            ("How many calendar days of paid annual leave do employees get?", "otpusk.txt"),
            ("What is the monthly rent for the premises?", "dogovor.txt"),
            ("Когда начинается пилотный сервис для партнёров?", "memo_en.txt"),
        ):
            hits = lib.retriever.search(question, k=2)
            assert hits and hits[0].filename == expected, (question, [h.filename for h in hits])
    finally:
        lib.engine.dispose()


def test_corpus_is_one_ready_chunk_per_document(corpus: Library) -> None:
    # The ranking tests above compare documents, so each must be a single chunk.
    docs = corpus.docs.list_all()
    assert len(docs) == len(CORPUS)
    assert all(d.status == DocumentStatus.READY and d.chunk_count == 1 for d in docs)


@pytest.mark.parametrize("method", ["dense", "hybrid"])
def test_a_scoped_search_fills_k_from_below_the_best_hits_it_may_not_show(
    corpus: Library, method: Method
) -> None:
    # The best hits belong to other documents: the rows of the first few ids fetched are all
    # dropped, and search must go on down the ranking (it fetches rows in two steps).
    names = {d.id: d.filename for d in corpus.docs.list_all()}
    allowed = {i: n for i, n in names.items() if n in ("piter.txt", "mks.txt")}
    everything = corpus.retriever.search("Каков размер арендной платы?", k=len(names), method=method)
    scoped = corpus.retriever.search("Каков размер арендной платы?", k=2, method=method, scope=Scope(allowed))
    assert {h.filename for h in everything[:2]}.isdisjoint({"piter.txt", "mks.txt"})
    assert [h.chunk_id for h in scoped] == [h.chunk_id for h in everything if h.document_id in allowed]
    assert [h.n for h in scoped] == [1, 2]


def test_the_vector_index_keeps_its_collection_handle_and_survives_a_recreated_collection(
    tmp_path: Path,
) -> None:
    index = VectorIndex(open_chroma(tmp_path / "chroma"))
    lookups = 0
    real = index.client.get_or_create_collection

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal lookups
        lookups += 1
        return real(*args, **kwargs)

    index.client.get_or_create_collection = counting
    unit = np.eye(3, dtype=np.float32)
    index.add("m", ["a", "b"], unit[:2], "doc1")
    for _ in range(3):
        assert [c for c, _ in index.query("m", unit[0], 5)] == ["a", "b"]
    assert index.count("m") == 2
    assert lookups == 1  # one lookup, then the held handle
    # Another client (another process) deletes the collection: the held handle is stale.
    other = VectorIndex(open_chroma(tmp_path / "chroma"))
    other.client.delete_collection(collection_name("m"))
    assert index.query("m", unit[0], 5) == []  # made again, empty, as a first query would
    assert index.count("m") == 0
    # ... and deletes it again and makes it anew with other vectors.
    other.client.delete_collection(collection_name("m"))
    other.add("m", ["c"], unit[2:], "doc2")
    assert [c for c, _ in index.query("m", unit[2], 5)] == ["c"]
    index.add("m", ["d"], unit[:1], "doc3")
    assert index.ids("m") == {"c", "d"} and index.document_ids("m") == {"doc2", "doc3"}
    index.delete_ids("m", ["c"])
    assert other.ids("m") == {"d"}
    index.delete_document("doc3")
    assert index.count("m") == 0
