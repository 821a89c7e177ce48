"""The document library end to end: ingestion, failures, deletion, recovery, checks, re-embedding."""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from language import stems
from rag import DocumentBusy
from rag.library import EMBED_BATCH, INTERRUPTED, IngestResult, Library
from rag.search.embedding import USE_M3, Embedder, Vectors
from storage import Document, DocumentStatus, NotFoundError
from tests.backends import BACKEND
from ui.tables import status_label

LEASE = (
    "Договор аренды нежилого помещения.\n"
    "Срок аренды составляет 11 месяцев с момента подписания настоящего договора.\n"
    "Арендная плата составляет 45 000 рублей в месяц и вносится не позднее пятого числа.\n"
    "Помещение находится по адресу: город Москва, улица Ленина, дом 5."
)
RECIPE = (
    "Рецепт борща. Для борща нужны свёкла, капуста, морковь и картофель. "
    "Бульон варят два часа на медленном огне, свёклу тушат отдельно с уксусом."
)
ORBIT = (
    "Международная космическая станция летает на высоте около 400 километров. "
    "Один оборот вокруг Земли занимает примерно полтора часа."
)


class HashEmbedder:
    """A real, deterministic embedder: hashed bag of stems (not a mock of ours; any model would do)."""

    reads_cyrillic = True

    def __init__(self, name: str = "hash-bag-of-stems", dim: int = 64) -> None:
        self.name = name
        self.dim = dim

    def _vector(self, text_: str) -> Vectors:
        v = np.zeros(self.dim, dtype=np.float32)
        v[-1] = 0.01  # never the zero vector
        for s in stems(text_):
            v[int(hashlib.md5(s.encode()).hexdigest(), 16) % (self.dim - 1)] += 1.0
        return v / np.linalg.norm(v)

    def embed_documents(self, texts: list[str]) -> Vectors:
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text_: str) -> Vectors:
        return self._vector(text_)


def keyword_rows(lib: Library, document_id: str) -> int:
    with lib.engine.connect() as conn:
        q = text("SELECT count(*) FROM chunk_fts WHERE document_id = :d")
        return int(conn.execute(q, {"d": document_id}).scalar_one())


def vector_docs(lib: Library) -> set[str]:
    return {d for model in lib.vectors.models() for d in lib.vectors.document_ids(model)}


def assert_no_index_left(lib: Library, document_id: str) -> None:
    assert lib.docs.chunks(document_id) == []
    assert keyword_rows(lib, document_id) == 0
    assert document_id not in vector_docs(lib)


def test_cp1251_file_is_indexed(library: Library) -> None:
    data = LEASE.encode("cp1251")
    progress: list[tuple[float, str]] = []
    res = library.ingest("dogovor.txt", data, progress=lambda f, t: progress.append((f, t)))
    assert res.status == "indexed", res.message
    doc = library.docs.get(res.document.id)  # type: ignore[union-attr]
    assert doc.status == DocumentStatus.READY
    assert doc.encoding == "cp1251"
    assert doc.mime_type == "text/plain"
    # Recorded with both models that made its vectors: e5, then the cross-lingual channel.
    assert doc.embedding_model == f"{library.embedding_model}+{USE_M3}"
    assert doc.size == len(data)
    assert doc.sha256 == hashlib.sha256(data).hexdigest()
    chunks = library.docs.chunks(doc.id)
    assert doc.chunk_count == len(chunks) > 0
    assert "Срок аренды составляет 11 месяцев" in " ".join(c.text for c in chunks)
    assert keyword_rows(library, doc.id) == len(chunks)
    assert library.vectors.count(library.embedding_model) == library.vectors.count(USE_M3) == len(chunks)
    assert library.originals.get(doc.stored_path or "") == data
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_same_bytes_again_are_a_duplicate(library: Library) -> None:
    data = LEASE.encode("cp1251")
    first = library.ingest("dogovor.txt", data)
    before = (library.docs.totals(), library.vectors.count(library.embedding_model))
    again = library.ingest("копия договора.txt", data)
    assert again.status == "duplicate"
    assert again.document is not None and again.document.id == first.document.id  # type: ignore[union-attr]
    assert "dogovor.txt" in again.message
    assert (library.docs.totals(), library.vectors.count(library.embedding_model)) == before
    # Other bytes of the same text (another encoding) are another document.
    assert library.ingest("dogovor-utf8.txt", LEASE.encode()).status == "indexed"


def test_a_bad_file_fails_alone(library: Library) -> None:
    batch = [
        ("dogovor.txt", LEASE.encode("cp1251")),
        ("broken.txt", bytes(range(256)) * 8),
        ("report.docx", b"PK\x03\x04 not supported"),
        ("empty.md", b"  \n"),
        ("borsch.md", f"# Борщ\n\n{RECIPE}".encode()),
    ]
    results = {name: library.ingest(name, data) for name, data in batch}
    assert {n: r.status for n, r in results.items()} == {
        "dogovor.txt": "indexed",
        "broken.txt": "failed",
        "report.docx": "failed",
        "empty.md": "failed",
        "borsch.md": "indexed",
    }
    for name in ("broken.txt", "report.docx", "empty.md"):
        res = results[name]
        assert name in res.message
        assert res.document is not None
        doc = library.docs.get(res.document.id)
        assert doc.status == DocumentStatus.FAILED
        assert doc.error == res.message
        assert doc.chunk_count == 0 and doc.stored_path is None
        assert_no_index_left(library, doc.id)
    assert library.originals.count() == 2
    if library.settings.files_dir.exists():  # originals in files: no half-written one is left
        assert all(".part" not in p.name for p in library.settings.files_dir.iterdir())
    hits = library.retriever.search("как варить борщ", k=3)
    assert hits[0].filename == "borsch.md"
    assert library.check().ok


def test_a_vector_failure_after_the_keyword_stage_keeps_the_keywords(
    make_library: Callable[..., Library],
) -> None:
    # The vector store refuses vectors of another size: this happens after the chunk and
    # keyword rows are written. The document stays found by keyword; repair finishes it.
    emb = HashEmbedder(dim=16)
    lib = make_library(embedder_=emb)
    ok = lib.ingest("dogovor.txt", LEASE.encode())
    assert ok.status == "indexed"
    emb.dim = 8
    res = lib.ingest("borsch.txt", RECIPE.encode())
    assert res.status == "indexed" and res.document is not None
    assert "borsch.txt" in res.message and "Исправить" in res.message and res.warnings == [res.message]
    doc = lib.docs.get(res.document.id)
    assert doc.status == DocumentStatus.KEYWORDS and doc.error == res.message
    assert keyword_rows(lib, doc.id) == doc.chunk_count > 0
    assert lib.retriever.search("как варить борщ", k=1, method="keyword")[0].document_id == doc.id
    assert lib.check().unfinished_vectors == ["borsch.txt"]
    emb.dim = 16  # the store is back
    lib.check(repair=True)
    after = lib.docs.get(doc.id)
    assert after.status == DocumentStatus.READY and after.error is None
    assert lib.retriever.search("как варить борщ", k=1, method="dense")[0].document_id == doc.id
    assert lib.check().ok


class GatedEmbedder(HashEmbedder):
    """Embeds only once the test opens the gate, to hold an ingestion mid-way."""

    def __init__(self) -> None:
        super().__init__(name="hash-gated")
        self.entered = threading.Event()
        self.gate = threading.Event()

    def embed_documents(self, texts: list[str]) -> Vectors:
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return super().embed_documents(texts)


@contextmanager
def indexing_held(lib: Library, emb: GatedEmbedder, results: list[IngestResult]) -> Iterator[Document]:
    """Upload LEASE in a thread and hold it mid-way (rows written, embedding gated); the document."""
    worker = threading.Thread(target=lambda: results.append(lib.ingest("dogovor.txt", LEASE.encode())))
    worker.start()
    try:
        assert emb.entered.wait(30)
        (doc,) = lib.docs.list_all()
        yield doc
    finally:
        emb.gate.set()
        worker.join(30)


def test_uploading_a_file_that_is_being_indexed_is_a_duplicate(
    make_library: Callable[..., Library],
) -> None:
    emb = GatedEmbedder()
    lib = make_library(embedder_=emb)
    results: list[IngestResult] = []
    with indexing_held(lib, emb, results):
        second = lib.ingest("dogovor (1).txt", LEASE.encode())
        assert second.status == "duplicate"
        assert "индексируется" in second.message
    assert [r.status for r in results] == ["indexed"]
    assert lib.docs.totals()["documents"] == 1
    assert lib.check().ok


def test_file_over_the_size_limit_is_refused(make_library: Callable[..., Library]) -> None:
    lib = make_library(max_file_mb=0.001)  # 1 KiB
    res = lib.ingest("большой.txt", ("Срок аренды 11 месяцев. " * 100).encode())
    assert res.status == "failed"
    assert "большой.txt" in res.message and "слишком большой" in res.message
    assert "RAG_MAX_FILE_MB" in res.message
    assert lib.docs.totals() == {"documents": 0, "chunks": 0, "failed": 0, "indexing": 0}
    assert not lib.settings.files_dir.exists() or not any(lib.settings.files_dir.iterdir())
    assert lib.ingest("small.txt", "Срок аренды 11 месяцев.".encode()).status == "indexed"


def test_file_names_never_become_paths(make_library: Callable[..., Library], tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b"
    lib = make_library(data_dir=data_dir, RAG_ORIGINALS="files")
    names = {
        "../../etc/passwd.txt": "passwd.txt",
        "..\\..\\windows\\win.ini.txt": "win.ini.txt",
        "/tmp/absolute.md": "absolute.md",
    }
    texts = [LEASE, RECIPE, ORBIT]
    for (raw, clean), body in zip(names.items(), texts, strict=True):
        data = body.encode()
        res = lib.ingest(raw, data)
        assert res.status == "indexed", res.message
        doc = lib.docs.get(res.document.id)  # type: ignore[union-attr]
        assert doc.filename == clean
        # The key is the file's name in the folder: it holds whatever the working directory.
        assert doc.stored_path == hashlib.sha256(data).hexdigest() + Path(clean).suffix
        assert (lib.settings.files_dir / doc.stored_path).read_bytes() == data
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(data_dir in p.parents for p in written)
    assert not (tmp_path / "a" / "etc").exists() and not (tmp_path / "etc").exists()


def test_switching_where_originals_are_kept_finds_the_earlier_ones(
    make_library: Callable[..., Library], tmp_path: Path
) -> None:
    in_files = make_library(embedder_=HashEmbedder(), RAG_ORIGINALS="files")
    first = in_files.ingest("dogovor.txt", LEASE.encode()).document
    assert first is not None
    in_files.engine.dispose()
    in_database = make_library(embedder_=HashEmbedder(), RAG_ORIGINALS="database")
    assert in_database.reindex(first.id).status == "indexed"
    second = in_database.ingest("borsch.txt", RECIPE.encode()).document
    assert second is not None and (second.stored_path or "").startswith("db:")
    in_database.engine.dispose()
    back = make_library(embedder_=HashEmbedder(), RAG_ORIGINALS="files")
    assert back.reindex(second.id).status == "indexed"
    assert back.originals.get(first.stored_path or "") == LEASE.encode()
    back.delete(second.id)
    assert back.originals.get(second.stored_path or "") is None


def test_delete_removes_everything(library: Library) -> None:
    keep = library.ingest("borsch.txt", RECIPE.encode()).document
    drop = library.ingest("dogovor.txt", LEASE.encode()).document
    assert keep is not None and drop is not None
    stored = drop.stored_path or ""
    assert library.originals.get(stored) == LEASE.encode() and keyword_rows(library, drop.id) > 0
    library.delete(drop.id)
    with pytest.raises(NotFoundError):
        library.docs.get(drop.id)
    assert_no_index_left(library, drop.id)
    assert library.originals.get(stored) is None
    assert library.vectors.count(library.embedding_model) == keep.chunk_count
    for method in ("keyword", "dense", "hybrid"):
        hits = library.retriever.search("срок аренды помещения", k=5, method=method)  # type: ignore[arg-type]
        assert all(h.document_id == keep.id for h in hits), method
    assert library.check().ok
    # The same bytes can be uploaded again after deletion.
    assert library.ingest("dogovor.txt", LEASE.encode()).status == "indexed"


def test_recover_after_a_simulated_crash(make_library: Callable[..., Library]) -> None:
    lib = make_library()
    doc = lib.ingest("dogovor.txt", LEASE.encode()).document
    assert doc is not None
    # As if the process died after writing rows and vectors but before marking READY.
    lib.docs.update(doc.id, status=DocumentStatus.INDEXING)
    assert lib.docs.chunks(doc.id) and doc.id in vector_docs(lib)
    lib.engine.dispose()

    reopened = make_library()
    got = reopened.docs.get(doc.id)
    assert got.status == DocumentStatus.FAILED
    assert got.error == INTERRUPTED
    assert got.chunk_count == 0
    assert_no_index_left(reopened, doc.id)
    assert reopened.retriever.search("срок аренды", k=3) == []
    assert reopened.check().ok

    res = reopened.reindex(doc.id)
    assert res.status == "indexed", res.message
    again = reopened.docs.get(doc.id)
    assert again.status == DocumentStatus.READY and again.error is None
    assert again.chunk_count == len(reopened.docs.chunks(doc.id)) > 0
    assert reopened.retriever.search("срок аренды", k=3)[0].document_id == doc.id
    assert reopened.check().ok


def test_reindex_of_a_failed_document_without_the_original_asks_for_the_file(library: Library) -> None:
    doc = library.ingest("dogovor.txt", LEASE.encode()).document
    assert doc is not None
    library.originals.delete(doc.stored_path or "")
    library.docs.delete_chunks(doc.id)
    library.docs.update(doc.id, status=DocumentStatus.FAILED, error=INTERRUPTED, chunk_count=0)
    res = library.reindex(doc.id)
    assert res.status == "failed"
    assert "загрузите его заново" in res.message
    assert library.docs.get(doc.id).status == DocumentStatus.FAILED


CRASH_SCRIPT = """
import sys
from pathlib import Path
from settings import Settings
from rag.library import open_library
settings = Settings(_env_file=None, RAG_DATA_DIR=sys.argv[1], RAG_CHUNK_WORDS=20)
lib = open_library(settings)
print("opened", flush=True)
res = lib.ingest("big.txt", Path(sys.argv[2]).read_bytes())
print(res.status, flush=True)
"""


def _status(db: Path) -> str | None:
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            row = conn.execute("SELECT status FROM document WHERE filename = 'big.txt'").fetchone()
    except sqlite3.OperationalError:  # tables not created yet
        return None
    return row[0] if row else None


@pytest.mark.skipif(
    BACKEND == "server", reason="one process on its data directory (shared workers: test_worker)"
)
def test_recover_after_a_real_kill(
    make_library: Callable[..., Library], tmp_path: Path, child_env: dict[str, str]
) -> None:
    data_dir = tmp_path / "data"
    source = tmp_path / "big.txt"
    words = ["аренда", "склад", "оплата", "помещение", "договор", "ремонт", "этаж", "площадь"]
    sentences = [
        f"Пункт {i}: {words[i % 8]} и {words[(i * 3) % 8]} согласованы сторонами в редакции номер {i}."
        for i in range(600)
    ]
    source.write_text(" ".join(sentences), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(data_dir), str(source)],
        cwd=tmp_path,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    db = data_dir / "rag.sqlite3"
    try:
        deadline = time.monotonic() + 60
        # Killed between the stages: the rows and keyword stems are committed, vectors half done.
        while _status(db) != "KEYWORDS":
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the child never reached the vector stage"
            time.sleep(0.01)
        assert proc.poll() is None, "indexing finished before the kill: make the text longer"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert b"indexed" not in out
    assert _status(db) == "KEYWORDS"  # the kill really interrupted the vector stage

    lib = make_library(data_dir=data_dir)  # start-up recovery runs, as after a restart
    [doc] = lib.docs.list_all()
    chunk_ids = {c.id for c in lib.docs.chunks(doc.id)}
    # Still found by keyword: the crash cost the vectors, not the search.
    assert doc.status == DocumentStatus.KEYWORDS and len(chunk_ids) == doc.chunk_count > 0
    assert doc.embedded_chunks < doc.chunk_count
    assert lib.retriever.search("ремонт этаж", k=3, method="keyword")[0].document_id == doc.id
    report = lib.check()
    assert not report.ok
    assert report.unfinished_vectors == ["big.txt"] and report.stale_documents == []
    assert any("поиск по словам уже работает" in line for line in report.findings())
    lib.check(repair=True)
    after = lib.docs.get(doc.id)
    assert after.status == DocumentStatus.READY and after.embedded_chunks == after.chunk_count
    for model in lib.embedding_models:
        assert lib.vectors.ids_of_document(doc.id, model) == chunk_ids
    assert lib.check().ok
    assert lib.retriever.search("ремонт этаж", k=3, method="dense")[0].document_id == doc.id


def test_check_finds_and_repairs_inconsistencies(library: Library) -> None:
    good = library.ingest("dogovor.txt", LEASE.encode()).document
    gone = library.ingest("borsch.txt", RECIPE.encode()).document
    assert good is not None and gone is not None
    assert library.check().ok
    # Orphan vectors and keyword rows, as a crash between two stores could leave.
    vec = library.embedder().embed_documents(["ничей фрагмент", "ещё один"])
    library.vectors.add(library.embedding_model, ["orphan-1", "orphan-2"], vec, "no-such-document")
    with library.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO chunk_fts(stems, chunk_id, document_id) VALUES ('аренд', 'orphan-3', 'x')")
        )
    # A READY document whose vectors are gone, and one with no chunks at all.
    library.vectors.delete_document(gone.id)
    empty = library.docs.add(
        Document(filename="пустой.txt", sha256="0" * 64, status=DocumentStatus.READY, chunk_count=3)
    )
    report = library.check()
    assert not report.ok
    assert report.orphan_vectors == 2
    assert report.orphan_keyword_rows == 1
    assert report.missing_vectors == ["borsch.txt"]
    assert report.ready_without_chunks == ["пустой.txt"]

    library.check(repair=True)
    after = library.check()
    assert after.ok, after
    assert not {"orphan-1", "orphan-2"} & library.vectors.ids(library.embedding_model)
    assert library.docs.get(empty.id).status == DocumentStatus.FAILED
    assert library.docs.get(gone.id).status == DocumentStatus.READY
    assert library.retriever.search("как варить борщ", k=1, method="dense")[0].document_id == gone.id
    assert library.retriever.search("срок аренды", k=1)[0].document_id == good.id


def test_reembed_after_changing_the_model(make_library: Callable[..., Library], embedder: Embedder) -> None:
    old = make_library(embedder_=HashEmbedder(name="hash-old"))
    ids = {}
    for name, body in (("dogovor.txt", LEASE), ("borsch.txt", RECIPE), ("orbit.txt", ORBIT)):
        res = old.ingest(name, body.encode())
        assert res.status == "indexed" and res.document is not None
        assert res.document.embedding_model == f"hash-old+{USE_M3}"
        ids[name] = res.document.id
    total_chunks = old.docs.totals()["chunks"]
    assert old.vectors.count("hash-old") == total_chunks
    old.engine.dispose()

    lib = make_library()  # the configured e5 model
    assert lib.embedding_model == embedder.name  # the configured e5, on its default engine
    assert {d.id for d in lib.stale_documents()} == set(ids.values())
    # Vectors of two models never mix: dense search has nothing of e5 yet.
    assert lib.retriever.search("высота орбиты станции", k=3, method="dense") == []

    progress: list[tuple[float, str]] = []
    assert lib.reembed(lambda f, t: progress.append((f, t))) == 3
    # Each document's batches, then the document done: ever forward, ending at 1.
    assert [t for f, t in progress if t.endswith("»)")] == [
        f"Пересчёт векторов: {n}/3 («{name}»)" for n, name in enumerate(ids, start=1)
    ]
    assert [f for f, _ in progress] == sorted(f for f, _ in progress) and progress[-1][0] == 1.0
    assert all(lib.docs.get(i).embedding_model == f"{lib.embedding_model}+{USE_M3}" for i in ids.values())
    assert lib.stale_documents() == []
    assert lib.vectors.count(lib.embedding_model) == total_chunks
    assert lib.vectors.count("hash-old") == 0
    hits = lib.retriever.search("На какой высоте летает МКС?", k=3, method="dense")
    assert hits[0].document_id == ids["orbit.txt"]
    assert lib.check().ok
    assert lib.reembed() == 0


class Interrupted(BaseException):
    """What a stopped script run raises in the thread doing the work (not an Exception)."""


def test_interrupted_reindex_does_not_leave_the_file_indexing(make_library: Callable[..., Library]) -> None:
    # «Переиндексировать» ran on the page's thread; any click raised Streamlit's stop signal in
    # its progress callback and left the file «индексируется», purged and out of search. Now the
    # new version is built beside the current one, which stays as it was.
    lib = make_library(embedder_=HashEmbedder())
    doc = lib.ingest("dogovor.txt", LEASE.encode()).document
    assert doc is not None

    def click(fraction: float, _text: str) -> None:
        if fraction > 0.5:
            raise Interrupted

    with pytest.raises(Interrupted):
        lib.reindex(doc.id, click)
    after = lib.docs.get(doc.id)
    assert after.status == DocumentStatus.READY and after.error is None
    assert lib.check().ok
    assert not lib.is_busy(doc.id)
    assert lib.retriever.search("срок аренды", k=1)[0].document_id == doc.id
    assert lib.reindex(doc.id).status == "indexed"
    assert lib.retriever.search("срок аренды", k=1)[0].document_id == doc.id


def test_check_during_an_upload_leaves_the_upload_alone(make_library: Callable[..., Library]) -> None:
    emb = GatedEmbedder()
    lib = make_library(embedder_=emb)
    results: list[IngestResult] = []
    with indexing_held(lib, emb, results) as doc:
        assert doc.status == DocumentStatus.KEYWORDS and lib.is_busy(doc.id)
        report = lib.check()
        assert report.ok, report.findings()  # neither «прервана» nor «векторы не полностью»
        lib.check(repair=True)
        assert lib.docs.get(doc.id).status == DocumentStatus.KEYWORDS  # «Исправить» left it be
        assert lib.recover() == []
    assert [r.status for r in results] == ["indexed"]
    assert lib.docs.get(doc.id).status == DocumentStatus.READY
    assert lib.check().ok


def test_a_document_is_found_by_keyword_while_its_vectors_are_computed(
    make_library: Callable[..., Library],
) -> None:
    emb = GatedEmbedder()
    lib = make_library(embedder_=emb)
    results: list[IngestResult] = []
    with indexing_held(lib, emb, results) as doc:
        assert doc.status == DocumentStatus.KEYWORDS and doc.embedded_chunks == 0
        assert status_label(doc) == "поиск по словам готов, векторы: 0%"
        assert lib.retriever.search("какой срок аренды", k=3, method="keyword")[0].document_id == doc.id
        assert lib.retriever.search("какой срок аренды", k=3)[0].document_id == doc.id  # hybrid
        assert lib.retriever.search("какой срок аренды", k=3, method="dense") == []  # no vectors yet
    assert [r.status for r in results] == ["indexed"]
    done = lib.docs.get(doc.id)
    assert done.status == DocumentStatus.READY and done.embedded_chunks == done.chunk_count
    assert lib.retriever.search("какой срок аренды", k=3, method="dense")[0].document_id == doc.id


class StoppingEmbedder(HashEmbedder):
    """Records each batch; raises ``Interrupted`` (the process going away) on the batch ``stop_at``."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__(name="hash-stopping")
        self.stop_at = stop_at
        self.batches: list[int] = []
        self.seen: list[int] = []  # the document's embedded_chunks at each batch
        self.lib: Library | None = None

    def embed_documents(self, texts: list[str]) -> Vectors:
        if self.lib is not None:
            (doc,) = self.lib.docs.list_all()
            self.seen.append(doc.embedded_chunks)
        if len(self.batches) == self.stop_at:
            raise Interrupted
        self.batches.append(len(texts))
        return super().embed_documents(texts)


def test_vectors_are_stored_batch_by_batch_and_a_crash_keeps_the_keywords(
    make_library: Callable[..., Library],
) -> None:
    emb = StoppingEmbedder(stop_at=2)
    lib = make_library(embedder_=emb, RAG_CHUNK_WORDS=20, RAG_CROSSLINGUAL_MODEL="")
    emb.lib = lib
    words = ["аренда", "склад", "оплата", "помещение", "договор", "ремонт", "этаж", "площадь"]
    body = " ".join(
        f"Пункт {i}: {words[i % 8]} и {words[(i * 3) % 8]} согласованы сторонами." for i in range(300)
    )
    with pytest.raises(Interrupted):
        lib.ingest("reglament.txt", body.encode())
    (doc,) = lib.docs.list_all()
    total = doc.chunk_count
    assert total > 2 * EMBED_BATCH
    # Each batch was stored and counted before the next began; the crash came in the third.
    assert emb.seen == [0, EMBED_BATCH, 2 * EMBED_BATCH]
    assert doc.status == DocumentStatus.KEYWORDS and doc.embedded_chunks == 2 * EMBED_BATCH
    assert status_label(doc) == f"поиск по словам готов, векторы: {2 * EMBED_BATCH / total:.0%}"
    assert len(lib.vectors.ids_of_document(doc.id, emb.name)) == 2 * EMBED_BATCH
    assert not lib.is_busy(doc.id)
    assert lib.retriever.search("ремонт помещения", k=3, method="keyword")[0].document_id == doc.id

    report = lib.check()
    assert report.unfinished_vectors == ["reglament.txt"] and not report.ok
    assert [d.id for d in lib.stale_documents()] == [doc.id]  # «Пересчитать векторы» offers it too
    emb.stop_at, emb.batches = None, []
    lib.check(repair=True)
    assert sum(emb.batches) == total - 2 * EMBED_BATCH  # only the missing vectors were computed
    after = lib.docs.get(doc.id)
    assert after.status == DocumentStatus.READY and after.embedded_chunks == total
    assert lib.vectors.ids_of_document(doc.id, emb.name) == {c.id for c in lib.docs.chunks(doc.id)}
    assert lib.check().ok and lib.stale_documents() == []


def test_deleting_a_file_that_is_being_indexed_is_refused(make_library: Callable[..., Library]) -> None:
    emb = GatedEmbedder()
    lib = make_library(embedder_=emb)
    results: list[IngestResult] = []
    with indexing_held(lib, emb, results) as doc, pytest.raises(DocumentBusy, match="индексируется"):
        lib.delete(doc.id)
    # The upload finished normally instead of ending in «внутренняя ошибка».
    assert [r.status for r in results] == ["indexed"]
    lib.delete(doc.id)
    assert lib.docs.list_all() == [] and lib.check().ok


def test_a_private_document_is_invisible_to_another_member_while_its_vectors_are_computed(
    make_library: Callable[..., Library],
) -> None:
    # The keyword stage makes the document searchable: only for those who may read it.
    emb = GatedEmbedder()
    lib = make_library(embedder_=emb)
    alice, bob = lib.users.create("alice"), lib.users.create("bob")
    results: list[IngestResult] = []
    worker = threading.Thread(
        target=lambda: results.append(lib.ingest("dogovor.txt", LEASE.encode(), user=alice))
    )
    worker.start()
    try:
        assert emb.entered.wait(30)
        (doc,) = lib.docs.list_all()
        assert doc.status == DocumentStatus.KEYWORDS
        for method in ("keyword", "hybrid"):
            mine = lib.retriever.search("какой срок аренды", k=3, method=method, scope=lib.scope(alice))
            assert mine and mine[0].document_id == doc.id
            assert lib.retriever.search("какой срок аренды", k=3, method=method, scope=lib.scope(bob)) == []
        assert [e.document.id for e in lib.documents(bob)] == []
    finally:
        emb.gate.set()
        worker.join(30)
    assert [r.status for r in results] == ["indexed"]
