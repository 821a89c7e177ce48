"""Several files indexed together (``Library.ingest_many``, what ``rag ingest`` runs): the same
outcomes as one by one, their vectors stored in shared batches, and keywords first kept."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rag import ingest
from rag.ingest import Extracted, Options
from rag.library import INTERRUPTED, Library
from rag.library.indexing import GROUP_FRAGMENTS, LOCKED_AT_ONCE_POSTGRES
from rag.search.embedding import USE_M3, Vectors
from storage import DocumentStatus
from tests.unit.test_library import LEASE, ORBIT, RECIPE, HashEmbedder, Interrupted

TOPICS = ["аренда склада", "ремонт кровли", "поставка цемента", "перевозка зерна", "охрана периметра"]


def small_files(n: int) -> list[tuple[str, bytes]]:
    """n short distinct documents, one fragment each."""
    return [
        (
            f"записка-{i}.txt",
            f"Служебная записка номер {i}: {TOPICS[i % 5]} согласована, срок {i} дней.".encode(),
        )
        for i in range(n)
    ]


class CountingEmbedder(HashEmbedder):
    """Records the size of every batch it embeds; raises ``failure`` on the batch ``fail_at``."""

    def __init__(self) -> None:
        super().__init__(name="hash-counting")
        self.batches: list[int] = []
        self.fail_at: int | None = None
        self.failure: BaseException = Interrupted()

    def embed_documents(self, texts: list[str]) -> Vectors:
        if len(self.batches) == self.fail_at:
            raise self.failure
        self.batches.append(len(texts))
        return super().embed_documents(texts)


def test_files_indexed_together_report_and_search_as_one_by_one(
    make_library: Callable[..., Library],
) -> None:
    emb = CountingEmbedder()
    lib = make_library(embedder_=emb, RAG_CROSSLINGUAL_MODEL="")
    files = [
        ("dogovor.txt", LEASE.encode()),
        ("pusto.txt", b""),  # refused at the door
        ("borsch.md", RECIPE.encode()),
        ("kopiya.txt", LEASE.encode()),  # the same bytes again, in the same group
        ("bad.pdf", b"%PDF-1.4 not really a pdf"),  # fails in extraction, alone
        ("orbita.txt", ORBIT.encode()),
    ]
    results = lib.ingest_many(files)
    assert [r.filename for r in results] == [name for name, _ in files]
    assert [r.status for r in results] == ["indexed", "failed", "indexed", "duplicate", "failed", "indexed"]
    assert "пуст" in results[1].message and "bad.pdf" in results[4].message
    ready = [r.document for r in results if r.status == "indexed"]
    assert all(d is not None and d.status == DocumentStatus.READY for d in ready)
    for doc in ready:
        assert doc is not None and doc.embedded_chunks == doc.chunk_count > 0
        # Each vector is stored under its own document, though they were stored together.
        assert lib.vectors.ids_of_document(doc.id, emb.name) == {c.id for c in lib.docs.chunks(doc.id)}
    # One batch for the three documents' fragments, not one per document.
    assert emb.batches == [sum(d.chunk_count for d in ready if d is not None)]
    assert lib.retriever.search("как варить борщ", k=1, method="dense")[0].filename == "borsch.md"
    assert lib.retriever.search("срок аренды", k=1, method="keyword")[0].filename == "dogovor.txt"
    assert lib.check().ok
    # And the outcomes match ingesting the same file alone.
    assert lib.ingest("kopiya2.txt", LEASE.encode()).status == "duplicate"


def test_both_models_get_every_vector_of_a_group(make_library: Callable[..., Library]) -> None:
    lib = make_library(embedder_=HashEmbedder())  # the default cross-lingual channel: USE
    results = lib.ingest_many(small_files(5))
    assert [r.status for r in results] == ["indexed"] * 5
    for r in results:
        assert r.document is not None
        chunks = {c.id for c in lib.docs.chunks(r.document.id)}
        assert lib.vectors.ids_of_document(r.document.id, USE_M3) == chunks
    hits = lib.retriever.search("roof repair", k=1, method="hybrid")
    assert hits and hits[0].filename == "записка-1.txt"
    assert lib.check().ok


def long_files(n: int) -> list[tuple[str, bytes]]:
    """n documents of about 25 fragments each (with RAG_CHUNK_WORDS=20)."""
    return [
        (
            f"регламент-{d}.txt",
            " ".join(
                f"Пункт {i} регламента {d}: {TOPICS[(i + d) % 5]} проверяется ежедневно сменным мастером."
                for i in range(45)
            ).encode(),
        )
        for d in range(n)
    ]


def test_a_group_larger_than_a_batch_is_stored_batch_by_batch(make_library: Callable[..., Library]) -> None:
    emb = CountingEmbedder()
    lib = make_library(embedder_=emb, RAG_CROSSLINGUAL_MODEL="", RAG_CHUNK_WORDS=20)
    results = lib.ingest_many(long_files(3))
    assert [r.status for r in results] == ["indexed"] * 3
    total = sum(r.document.chunk_count for r in results if r.document is not None)
    assert GROUP_FRAGMENTS < total <= 2 * GROUP_FRAGMENTS
    assert emb.batches == [GROUP_FRAGMENTS, total - GROUP_FRAGMENTS]
    assert lib.check().ok


def test_a_crash_while_a_group_is_embedded_keeps_every_document_found_by_keyword(
    make_library: Callable[..., Library],
) -> None:
    emb = CountingEmbedder()
    lib = make_library(embedder_=emb, RAG_CROSSLINGUAL_MODEL="", RAG_CHUNK_WORDS=20)
    emb.fail_at = 1  # the process goes away in the second batch
    files = long_files(3)
    with pytest.raises(Interrupted):
        lib.ingest_many(files)
    docs = lib.docs.list_all()
    assert len(docs) == len(files)
    # Keywords first: every document is searchable by keyword; the first batch's vectors are
    # stored and counted, the rest are missing, and none is left «индексируется».
    assert all(d.status == DocumentStatus.KEYWORDS for d in docs)
    assert sum(d.embedded_chunks for d in docs) == GROUP_FRAGMENTS
    total = sum(d.chunk_count for d in docs)
    assert not any(lib.is_busy(d.id) for d in docs)
    assert lib.retriever.search("перевозка зерна", k=1, method="keyword")
    report = lib.check()
    assert len(report.unfinished_vectors) == len(files) and not report.ok
    emb.fail_at = None
    emb.batches = []
    lib.check(repair=True)
    assert sum(emb.batches) == total - GROUP_FRAGMENTS  # only the missing vectors were computed
    assert all(d.status == DocumentStatus.READY for d in lib.docs.list_all())
    assert lib.check().ok


def test_many_files_on_postgresql_are_indexed_a_few_locks_at_a_time(
    make_library: Callable[..., Library],
) -> None:
    # Each lock held is a pooled connection there: more files than the pool must still index,
    # and a crash in one group leaves the groups not begun failed, not «индексируется».
    emb = CountingEmbedder()
    lib = make_library(embedder_=emb, RAG_CROSSLINGUAL_MODEL="")
    files = small_files(3 * LOCKED_AT_ONCE_POSTGRES + 2)
    results = lib.ingest_many(files)
    assert [r.status for r in results] == ["indexed"] * len(files)
    if lib.engine.dialect.name == "postgresql":
        assert emb.batches == [LOCKED_AT_ONCE_POSTGRES] * 3 + [2]
    else:
        assert emb.batches == [len(files)]
    assert lib.check().ok
    emb.fail_at = len(emb.batches)  # the next group's first batch: the process goes away
    more = [(f"ещё-{name}", data + b" ") for name, data in small_files(3 * LOCKED_AT_ONCE_POSTGRES)]
    with pytest.raises(Interrupted):
        lib.ingest_many(more)
    statuses = {d.filename: d.status for d in lib.docs.list_all() if d.filename.startswith("ещё-")}
    assert len(statuses) == len(more) and DocumentStatus.INDEXING not in statuses.values()
    assert DocumentStatus.QUEUED not in statuses.values()


def test_a_vector_store_failure_in_a_group_keeps_the_keywords(make_library: Callable[..., Library]) -> None:
    emb = CountingEmbedder()
    lib = make_library(embedder_=emb, RAG_CROSSLINGUAL_MODEL="")
    emb.fail_at, emb.failure = 0, RuntimeError("the vector store is down")
    results = lib.ingest_many(small_files(3))
    assert [r.status for r in results] == ["indexed"] * 3
    for r in results:
        assert r.document is not None and "Исправить" in r.message
        assert lib.docs.get(r.document.id).status == DocumentStatus.KEYWORDS
    emb.fail_at = None
    lib.check(repair=True)
    assert lib.check().ok


def test_a_crash_before_the_keywords_leaves_no_document_indexing(
    make_library: Callable[..., Library], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Interrupted while the second file is read (the process stopped): the first has its
    # keywords (the check finishes it), the others are marked interrupted with their originals
    # kept, never left «индексируется».
    lib = make_library(embedder_=CountingEmbedder(), RAG_CROSSLINGUAL_MODEL="")
    real = ingest.extract
    calls: list[str] = []

    def extract(data: bytes, name: str, options: Options) -> Extracted:
        calls.append(name)
        if len(calls) == 2:
            raise Interrupted
        return real(data, name, options)

    monkeypatch.setattr("rag.library.indexing.extract", extract)
    with pytest.raises(Interrupted):
        lib.ingest_many(small_files(4))
    by_name = {d.filename: d for d in lib.docs.list_all()}
    assert by_name["записка-0.txt"].status == DocumentStatus.KEYWORDS
    for name in ("записка-1.txt", "записка-2.txt", "записка-3.txt"):
        assert by_name[name].status == DocumentStatus.FAILED and by_name[name].error == INTERRUPTED
        assert by_name[name].stored_path  # it can be indexed again
