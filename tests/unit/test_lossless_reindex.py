"""Nothing lost (issue 18): a re-index builds the new version beside the current one and swaps
only on success; a failure or cancel keeps what was there; one writer per document."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rag import DocumentBusy, IngestCancelled
from rag.library import Library
from rag.search.embedding import Vectors
from storage import DocumentStatus
from tests.unit.test_library import LEASE, RECIPE, HashEmbedder, keyword_rows


class Interrupted(BaseException):
    """What a stopped script run raises in the thread doing the work (not an Exception)."""


def _snapshot(lib: Library, doc_id: str) -> tuple[set[str], dict[str, set[str]]]:
    chunks = {c.id for c in lib.docs.chunks(doc_id)}
    vectors = {m: lib.vectors.ids_of_document(doc_id, m) for m in lib.embedding_models}
    return chunks, vectors


def assert_current_version_intact(
    lib: Library, doc_id: str, before: tuple[set[str], dict[str, set[str]]]
) -> None:
    """The document as it was: ready, same fragments and vectors, searchable, cited, downloadable."""
    doc = lib.docs.get(doc_id)
    assert doc.status == DocumentStatus.READY, (doc.status, doc.error)
    assert _snapshot(lib, doc_id) == before
    assert doc.chunk_count == len(before[0]) == keyword_rows(lib, doc_id)
    for method in ("keyword", "dense", "hybrid"):
        hits = lib.retriever.search("какой срок аренды помещения", k=3, method=method)  # type: ignore[arg-type]
        assert hits and hits[0].document_id == doc_id and hits[0].filename == "dogovor.txt", method
    assert lib.originals.get(doc.stored_path or "") == LEASE.encode()
    assert [d.id for d in lib.docs.list_all()] == [doc_id]  # no second version left behind
    assert lib.check().ok, lib.check().findings()
    assert not lib.is_busy(doc_id)


def test_a_cancelled_reindex_keeps_the_current_version(make_library: Callable[..., Library]) -> None:
    lib = make_library(embedder_=HashEmbedder())
    doc = lib.ingest("dogovor.txt", LEASE.encode()).document
    assert doc is not None
    before = _snapshot(lib, doc.id)

    def cancel(fraction: float, _text: str) -> None:
        if fraction > 0.6:  # in the vector stage: the new fragments are written by now
            raise IngestCancelled("«dogovor.txt»: индексация отменена.")

    try:
        res = lib.reindex(doc.id, cancel)
    except IngestCancelled:
        pass
    else:
        assert res.status == "failed" and "отменена" in res.message
    assert_current_version_intact(lib, doc.id, before)


def test_a_stopped_reindex_keeps_the_current_version(make_library: Callable[..., Library]) -> None:
    lib = make_library(embedder_=HashEmbedder())
    doc = lib.ingest("dogovor.txt", LEASE.encode()).document
    assert doc is not None
    before = _snapshot(lib, doc.id)

    def click(fraction: float, _text: str) -> None:
        if fraction > 0.6:
            raise Interrupted

    with pytest.raises(Interrupted):
        lib.reindex(doc.id, click)
    assert_current_version_intact(lib, doc.id, before)
    res = lib.reindex(doc.id)  # and a later one goes through, replacing every fragment
    assert res.status == "indexed", res.message
    after = _snapshot(lib, doc.id)
    assert after[0] and not after[0] & before[0]
    assert all(after[1][m] == after[0] for m in lib.embedding_models)
    assert not before[0] & lib.vectors.ids(lib.embedding_model)  # the old vectors are gone
    assert lib.check().ok


def test_a_reindex_failed_by_the_vector_store_keeps_the_current_version(
    make_library: Callable[..., Library],
) -> None:
    emb = HashEmbedder(dim=16)
    lib = make_library(embedder_=emb)
    doc = lib.ingest("dogovor.txt", LEASE.encode()).document
    assert doc is not None
    before = _snapshot(lib, doc.id)
    emb.dim = 8  # the vector store refuses vectors of another size: after the keyword stage
    res = lib.reindex(doc.id)
    assert res.status == "failed"
    assert "прежняя версия" in res.message.lower()
    emb.dim = 16
    assert_current_version_intact(lib, doc.id, before)


def test_a_reindex_without_the_original_says_so_and_leaves_the_index(library: Library) -> None:
    doc = library.ingest("dogovor.txt", LEASE.encode()).document
    assert doc is not None
    before = _snapshot(library, doc.id)
    library.originals.delete(doc.stored_path or "")
    res = library.reindex(doc.id)
    assert res.status == "failed"
    assert "исходный файл" in res.message and "прежнем виде" in res.message
    after = library.docs.get(doc.id)
    assert after.status == DocumentStatus.READY and after.error is None
    assert _snapshot(library, doc.id) == before
    assert library.retriever.search("какой срок аренды", k=1)[0].document_id == doc.id


class FlakyEmbedder(HashEmbedder):
    """Fails its first ``failures`` batches (a vector store or model that hiccups), then works."""

    def __init__(self, failures: int) -> None:
        super().__init__(name="hash-flaky")
        self.failures = failures

    def embed_documents(self, texts: list[str]) -> Vectors:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("the vector store went away for a moment")
        return super().embed_documents(texts)


def test_a_transient_vector_error_in_a_first_index_keeps_the_keywords(
    make_library: Callable[..., Library],
) -> None:
    emb = FlakyEmbedder(failures=1)
    lib = make_library(embedder_=emb, RAG_CROSSLINGUAL_MODEL="")
    res = lib.ingest("dogovor.txt", LEASE.encode())
    assert res.document is not None
    doc = lib.docs.get(res.document.id)
    assert doc.status == DocumentStatus.KEYWORDS, (doc.status, res.message)
    assert doc.chunk_count > 0 and keyword_rows(lib, doc.id) == doc.chunk_count
    assert lib.originals.get(doc.stored_path or "") == LEASE.encode()
    assert lib.retriever.search("какой срок аренды", k=1, method="keyword")[0].document_id == doc.id
    assert "Исправить" in res.message  # says what to do
    report = lib.check()
    assert report.unfinished_vectors == ["dogovor.txt"]
    lib.check(repair=True)
    after = lib.docs.get(doc.id)
    assert after.status == DocumentStatus.READY and after.embedded_chunks == after.chunk_count
    assert lib.retriever.search("какой срок аренды", k=1, method="dense")[0].document_id == doc.id
    assert lib.check().ok


class GatedEmbedder(HashEmbedder):
    """Holds every embedding until the test opens the gate (once armed)."""

    def __init__(self) -> None:
        super().__init__(name="hash-gated")
        self.armed = False
        self.entered = threading.Event()
        self.gate = threading.Event()

    def embed_documents(self, texts: list[str]) -> Vectors:
        if self.armed:
            self.entered.set()
            assert self.gate.wait(30), "the test never opened the gate"
        return super().embed_documents(texts)


@contextmanager
def reindex_held(lib: Library, emb: GatedEmbedder, doc_id: str) -> Iterator[list[object]]:
    out: list[object] = []
    emb.armed = True
    worker = threading.Thread(target=lambda: out.append(lib.reindex(doc_id)))
    worker.start()
    try:
        assert emb.entered.wait(30)
        yield out
    finally:
        emb.gate.set()
        worker.join(30)
        emb.armed = False


def test_the_current_version_is_searched_while_a_reindex_runs(make_library: Callable[..., Library]) -> None:
    emb = GatedEmbedder()
    lib = make_library(embedder_=emb)
    doc = lib.ingest("dogovor.txt", LEASE.encode()).document
    assert doc is not None
    before = _snapshot(lib, doc.id)
    with reindex_held(lib, emb, doc.id):
        assert lib.docs.get(doc.id).status == DocumentStatus.READY
        assert _snapshot(lib, doc.id) == before
        assert [d.id for d in lib.docs.list_all()] == [doc.id]
        hits = lib.retriever.search("какой срок аренды", k=10, method="keyword")
        assert {h.chunk_id for h in hits} <= before[0]
        assert lib.docs.totals()["documents"] == 1
        assert lib.check().ok


def test_one_writer_per_document_across_libraries(
    make_library: Callable[..., Library], tmp_path: Path
) -> None:
    # Two processes (here two libraries on one data directory): while one re-indexes a document,
    # the other may neither delete it nor rewrite its vectors, nor recover or repair it.
    emb = GatedEmbedder()
    lib = make_library(embedder_=emb)
    doc = lib.ingest("dogovor.txt", LEASE.encode()).document
    assert doc is not None
    other = make_library(embedder_=HashEmbedder(name="hash-gated"), recover=False)
    with reindex_held(lib, emb, doc.id) as results:
        with pytest.raises(DocumentBusy):
            other.delete(doc.id)
        with pytest.raises(DocumentBusy):
            other.finish_vectors(doc.id)
        with pytest.raises(DocumentBusy):
            other.reindex(doc.id)
        assert other.recover() == []
        other.check(repair=True)
    assert [getattr(r, "status", r) for r in results] == ["indexed"]
    assert lib.docs.get(doc.id).status == DocumentStatus.READY
    assert lib.check().ok


def test_recomputing_vectors_marks_the_document_keywords_until_done(
    make_library: Callable[..., Library],
) -> None:
    old = make_library(embedder_=HashEmbedder(name="hash-old"), RAG_CROSSLINGUAL_MODEL="")
    doc = old.ingest("dogovor.txt", LEASE.encode()).document
    assert doc is not None
    emb = GatedEmbedder()
    lib = make_library(embedder_=emb, RAG_CROSSLINGUAL_MODEL="")
    emb.armed = True
    worker = threading.Thread(target=lib.reembed)
    worker.start()
    try:
        assert emb.entered.wait(30)
        during = lib.docs.get(doc.id)
        assert during.status == DocumentStatus.KEYWORDS and during.embedded_chunks == 0
    finally:
        emb.gate.set()
        worker.join(30)
    assert lib.docs.get(doc.id).status == DocumentStatus.READY
    assert lib.check().ok


def test_repair_rechecks_what_it_deletes_against_the_fragment_table(library: Library) -> None:
    doc = library.ingest("dogovor.txt", LEASE.encode()).document
    late = library.ingest("borsch.txt", RECIPE.encode()).document
    assert doc is not None and late is not None
    # Another worker writes «borsch.txt» just after repair read the fragment table: here its
    # first read of that table misses it (fault injection on the read, the stores are real).
    real_read = library.docs.chunk_ids_by_document
    reads = []

    def read_before_the_late_writer() -> dict[str, list[str]]:
        out = real_read()
        if not reads:
            out.pop(late.id, None)
        reads.append(1)
        return out

    library.docs.chunk_ids_by_document = read_before_the_late_writer  # type: ignore[method-assign]
    library.check(repair=True)
    library.docs.chunk_ids_by_document = real_read  # type: ignore[method-assign]
    assert library.docs.get(late.id).status == DocumentStatus.READY
    for model in library.embedding_models:
        assert library.vectors.ids_of_document(late.id, model) == {c.id for c in library.docs.chunks(late.id)}
    assert library.check().ok
