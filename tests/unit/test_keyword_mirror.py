"""The tantivy mirror of the keyword rows: exact top k against exhaustive BM25, crash between the
two commits found and repaired by the check, a busy mirror falling back to FTS5."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from language import query_terms, stem_string
from rag.library import Library
from storage import Chunk, Document, DocumentRepo, DocumentStatus, make_engine
from storage.keyword_mirror import KeywordMirror
from storage.keywords import safe_terms
from storage.migrate import upgrade

EVAL = Path(__file__).resolve().parents[3] / "shared" / "eval"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'db' / 'rag.sqlite3'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def _ready(docs: DocumentRepo, name: str, fragments: list[str]) -> Document:
    sha = hashlib.sha256(name.encode()).hexdigest()
    doc = docs.add(Document(filename=name, sha256=sha, size=1, status=DocumentStatus.INDEXING))
    chunks = [Chunk(document_id=doc.id, ordinal=i, text=t) for i, t in enumerate(fragments)]
    docs.store_chunks(doc.id, chunks, [stem_string(t) for t in fragments])
    docs.touch_indexed(doc.id)
    return doc


def _corpus() -> tuple[list[list[str]], list[str]]:
    """XQuAD-ru and the development set: paragraphs as fragments, grouped by document, and the
    questions of both."""
    xquad = EVAL / "xquad-ru.json"
    dev = EVAL / "ru-docs-dev"
    if not xquad.exists() or not dev.exists():
        pytest.skip(f"{EVAL} is missing (the evaluation sets live in ../shared/eval next to the repo)")
    data = json.loads(xquad.read_text(encoding="utf-8"))
    groups: list[list[str]] = []
    questions: list[str] = []
    for article in data["data"]:
        groups.append([p["context"] for p in article["paragraphs"]])
        questions += [qa["question"] for p in article["paragraphs"] for qa in p["qas"]]
    for path in sorted((dev / "docs").iterdir()):
        if path.suffix in {".txt", ".md"}:
            body = path.read_text(encoding="utf-8", errors="replace")
            groups.append([p for p in re.split(r"\n\s*\n", body) if p.strip()])
    questions += [q["question"] for q in json.loads((dev / "questions.json").read_text(encoding="utf-8"))]
    return groups, questions


def test_the_pruned_top_ten_is_the_exhaustive_bm25_top_ten(engine: Engine, tmp_path: Path) -> None:
    # Block-max WAND skips what cannot reach the top k; it must never change the top k. The
    # corpus is stored three times over (each copy another document), so blocks hold many
    # fragments and the ties between copies straddle the limit.
    mirror = KeywordMirror(tmp_path / "keywords")
    docs = DocumentRepo(engine, mirror)
    groups, questions = _corpus()
    for copy in range(3):
        for n, fragments in enumerate(groups):
            _ready(docs, f"{copy}-{n}.txt", fragments)
    checked = 0
    with engine.connect() as conn:
        for question in questions:
            terms = safe_terms(query_terms(question))
            if not terms:
                continue
            full = mirror.exhaustive(conn, terms)
            got = mirror.search(conn, terms, 10, [], None)
            assert got == full[:10], question
            checked += 1
    assert checked > 1000
    # And through the repository: chunk ids in that order.
    with engine.connect() as conn:
        rows = {int(r[0]): str(r[1]) for r in conn.execute(text("SELECT rowid, chunk_id FROM chunk_fts"))}
        terms = safe_terms(query_terms(questions[0]))
        expected = [rows[r] for r, _ in mirror.exhaustive(conn, terms)[:10]]
    assert [c for c, _ in docs.keyword_search(terms, 10)] == expected


CRASH_AFTER_ROWS = """
import os, sys
from pathlib import Path
from storage import Chunk, Document, DocumentRepo, DocumentStatus, make_engine
from storage.keyword_mirror import KeywordMirror

engine = make_engine(sys.argv[1])
mirror = KeywordMirror(Path(sys.argv[2]))
# Killed after the rows' commit, before the mirror applies it.
mirror.sync = lambda *a, **k: os._exit(9)
docs = DocumentRepo(engine, mirror)
doc = docs.add(Document(filename="новый.txt", sha256="9" * 64, size=1, status=DocumentStatus.READY))
docs.store_chunks(doc.id, [Chunk(document_id=doc.id, ordinal=0, text="т")], ["квитанц оплат"])
"""


def test_a_crash_between_the_rows_and_the_mirror_is_found_and_repaired(
    make_library: Callable[..., Library], tmp_path: Path
) -> None:
    lib = make_library()
    assert lib.docs.keywords.mirror is not None  # type: ignore[attr-defined]
    lib.ingest("dogovor.txt", "Арендатор вносит арендную плату ежемесячно.".encode())
    assert lib.check().ok
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_ROWS, str(lib.engine.url), str(lib.settings.keyword_dir)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 9, proc.stderr.decode()
    report = lib.check()
    assert report.keyword_index_behind >= 1
    assert any("отстаёт" in f for f in report.findings())
    lib.check(repair=True)
    assert lib.check().ok
    with lib.engine.connect() as conn:
        mirror = lib.docs.keywords.mirror  # type: ignore[attr-defined]
        assert [r for r, _ in mirror.search(conn, ["квитанц"], 5, [], None)]
    assert [c for c, _ in lib.docs.keyword_search(["квитанц"], 5)]


def test_a_mirror_that_lost_rows_is_rebuilt_by_the_repair(
    make_library: Callable[..., Library],
) -> None:
    lib = make_library()
    doc = lib.ingest("dogovor.txt", "Арендатор вносит арендную плату ежемесячно.".encode()).document
    assert doc is not None
    mirror = lib.docs.keywords.mirror  # type: ignore[attr-defined]
    # Rows gone from the mirror behind the log's back (a damaged folder, a bug).
    writer = mirror._open().writer(15_000_000, 1)
    writer.delete_documents_by_term("document_id", doc.id)
    writer.commit()
    del writer
    report = lib.check()
    assert report.keyword_index_mismatch > 0 and not report.ok
    lib.check(repair=True)
    assert lib.check().ok
    assert lib.docs.keyword_search([stem_string("арендатор")], 5)


def test_a_busy_mirror_behind_the_rows_leaves_the_search_to_fts5(engine: Engine, tmp_path: Path) -> None:
    mirror = KeywordMirror(tmp_path / "keywords")
    docs = DocumentRepo(engine, mirror)
    first = _ready(docs, "a.txt", ["арендная плата вносится ежемесячно"])
    # Another process holds the writer while new rows arrive: this one cannot apply them.
    other = KeywordMirror(tmp_path / "keywords")._open().writer(15_000_000, 1)
    try:
        second = _ready(docs, "b.txt", ["плата за хранение на складе"])
        found = docs.keyword_search([stem_string("плата")], 5)
        ids = {c.document_id for c in docs.chunks(first.id) + docs.chunks(second.id) if c.id in dict(found)}
        assert ids == {first.id, second.id}  # FTS5 answered, with the new document
    finally:
        del other
    with engine.connect() as conn:
        assert mirror.search(conn, [stem_string("склад")], 5, [], None)  # it catches up afterwards


def test_a_keyword_batch_syncs_once_at_its_end_and_searches_meanwhile_see_every_row(
    engine: Engine, tmp_path: Path
) -> None:
    mirror = KeywordMirror(tmp_path / "keywords")
    docs = DocumentRepo(engine, mirror)
    applied = tmp_path / "keywords" / "applied.json"
    _ready(docs, "a.txt", ["арендная плата вносится ежемесячно"])
    before = applied.read_text()
    with docs.keyword_batch():
        second = _ready(docs, "b.txt", ["плата за хранение на складе"])
        assert applied.read_text() == before  # nothing applied while the batch runs
        found = {c for c, _ in docs.keyword_search([stem_string("склад")], 5)}
        assert found == {c.id for c in docs.chunks(second.id)}  # the search caught up itself
        third = _ready(docs, "c.txt", ["склад принимает товар по будням"])
        mid = applied.read_text()
    assert applied.read_text() != mid  # the batch's end applied the rest
    with engine.connect() as conn:
        assert mirror.state(conn).consistent
    assert {c for c, _ in docs.keyword_search([stem_string("будням")], 5)} == {
        c.id for c in docs.chunks(third.id)
    }
