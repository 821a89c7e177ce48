"""PostgreSQL keyword search from a RUM index, and its fallback to GIN + ts_rank (issue 23).

Each test takes a database of its own on the test server (scripts/servers.sh, which installs
nothing: the extension comes from Debian's postgresql-15-rum, packages-dev.txt); without the
servers they skip, in CI they fail.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

import storage.keywords as keywords
from language import query_terms, stem_string
from storage import Chunk, Document, DocumentRepo, DocumentStatus, make_engine
from storage.keywords import (
    FTS_TABLE,
    RUM_MISSING,
    InCollections,
    PostgresKeywords,
    keyword_ranking_note,
    safe_terms,
)
from storage.migrate import _config
from tests.backends import Servers, servers, unavailable

XQUAD_RU = Path(__file__).resolve().parents[2] / ".." / "shared" / "eval" / "xquad-ru.json"
# A role that may not create the (untrusted) RUM extension: a managed server's app user.
PLAIN_ROLE = "rag_no_superuser"


@pytest.fixture
def pg() -> Servers:
    found = servers()
    if found is None:
        unavailable("the test servers (scripts/servers.sh start DIR sets RAG_TEST_DATABASE_URL)")
    assert found is not None
    return found


@pytest.fixture
def engine(pg: Servers) -> Iterator[Engine]:
    eng = make_engine(pg.new_database())
    yield eng
    eng.dispose()


def _indexes(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"), {"t": FTS_TABLE}
        )
        return {str(name): str(definition) for name, definition in rows}


def _methods(engine: Engine) -> set[str]:
    """The access methods of the keyword table's indexes (btree, gin, rum)."""
    return {m.group(1) for d in _indexes(engine).values() if (m := re.search(r"USING (\w+)", d))}


def _xquad() -> tuple[list[list[str]], list[str]]:
    """XQuAD-ru: each paragraph's sentences, and the questions."""
    if not XQUAD_RU.resolve().exists():
        pytest.skip(f"{XQUAD_RU.resolve()} is missing (the XQuAD files live in ../shared/eval)")
    data = json.loads(XQUAD_RU.read_text(encoding="utf-8-sig"))
    paragraphs: list[list[str]] = []
    questions: list[str] = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", para["context"].replace("\ufeff", ""))]
            paragraphs.append([s for s in sentences if s])
            questions.extend(qa["question"] for qa in para["qas"])
    return paragraphs, questions


def _library(docs: DocumentRepo, paragraphs: list[list[str]]) -> None:
    """One document per paragraph, a fragment per sentence; paragraphs repeated in a second
    document (equal scores: ties between documents), and a document that is not ready."""
    for n, sentences in enumerate([*paragraphs, *paragraphs[:40]]):
        doc = docs.add(
            Document(filename=f"p{n}.txt", sha256=f"{n:064d}", size=1, status=DocumentStatus.INDEXING)
        )
        chunks = [Chunk(document_id=doc.id, ordinal=i, text=s) for i, s in enumerate(sentences)]
        docs.store_chunks(doc.id, chunks, [stem_string(s) for s in sentences])
        if n != 7:
            docs.touch_indexed(doc.id)


def _exhaustive(
    engine: Engine, terms: list[str], rum: bool, documents: Collection[str] | None = None
) -> list[tuple[str, float]]:
    """Every match of a ready document (of ``documents``) scored row by row by the ranking's
    own function, with the indexes switched off, sorted by score, its tie-break, chunk id."""
    # Lower first; RUM's equal ranks by the rank normalised by length, then by chunk id.
    score = "f.tsv <=> q, f.tsv <=> (q, 1)::rum_distance_query" if rum else "-ts_rank(f.tsv, q, 1), 0"
    only = (
        ""
        if documents is None
        else "AND f.document_id IN ({})".format(", ".join(f"'{d}'" for d in sorted(documents)))
    )
    sql = (
        f"SELECT f.chunk_id, {score} FROM {FTS_TABLE} f JOIN document d ON d.id = f.document_id, "
        f"to_tsquery('simple'::regconfig, :q) q WHERE f.tsv @@ q AND d.status = 'READY' {only}"
    )
    with engine.begin() as conn:
        for setting in ("enable_indexscan", "enable_bitmapscan"):
            conn.execute(text(f"SET LOCAL {setting} = off"))
        found = conn.execute(text(sql), {"q": PostgresKeywords().match(terms)})
        rows = sorted((float(s), float(tie), str(c)) for c, s, tie in found)
    return [(c, 1.0 / s if rum else -s) for s, _, c in rows]


def test_keyword_rows_are_indexed_by_rum_and_ranked_from_it_like_the_exhaustive_ranking(
    engine: Engine,
) -> None:
    # The extension is there (packages-dev.txt), so the app's schema has a RUM index and no GIN.
    assert "rum" in _methods(engine)
    assert "gin" not in _methods(engine)
    assert keyword_ranking_note(engine) is None
    docs = DocumentRepo(engine)
    paragraphs, questions = _xquad()
    _library(docs, paragraphs)
    checked = ties = 0
    for question in questions:
        terms = safe_terms(query_terms(question))
        if not terms:
            continue
        full = _exhaustive(engine, terms, rum=True)
        got = docs.keyword_search(terms, 10)
        assert [c for c, _ in got] == [c for c, _ in full[:10]], question
        assert [s for _, s in got] == pytest.approx([s for _, s in full[:10]], rel=1e-5)
        checked += 1
        ties += len({s for _, s in full[:11]}) < len(full[:11])
    assert checked > 1000
    assert ties > 0  # ties straddled the limit, and went by chunk id
    # Scoped: a few documents are searched from their own rows, half the library through the
    # index's order (the planner's count of documents decides: ANALYZE gives it).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    ids = sorted(d.id for d in docs.list_all())
    for scope, small in ((set(ids[:5]), True), (set(ids[::2]), False)):
        with engine.connect() as conn:
            assert docs.keywords._small(conn, scope) is small  # type: ignore[attr-defined]
        for question in questions[::7]:
            terms = safe_terms(query_terms(question))
            if terms:
                full = _exhaustive(engine, terms, rum=True, documents=scope)
                got = docs.keyword_search(terms, 10, documents=scope)
                assert [c for c, _ in got] == [c for c, _ in full[:10]], question
    # A member's scope: the documents of a collection, counted through collectiondocument.
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO collection VALUES ('c1', 'Отдел', NULL, 'NONE', now())"))
        for d in ids[:4]:
            conn.execute(
                text("INSERT INTO collectiondocument VALUES ('c1', :d, 'f.txt', NULL, now())"), {"d": d}
            )
    with engine.connect() as conn:
        assert docs.keywords._small(conn, InCollections(("c1",))) is True  # type: ignore[attr-defined]
    for question in questions[::7]:
        terms = safe_terms(query_terms(question))
        if terms:
            full = _exhaustive(engine, terms, rum=True, documents=set(ids[:4]))
            got = docs.keyword_search(terms, 10, documents=InCollections(("c1",)))
            assert [c for c, _ in got] == [c for c, _ in full[:10]], question


def test_the_ranked_statement_can_be_answered_in_the_index_order(engine: Engine) -> None:
    # A second ORDER BY key (or a score expression PostgreSQL cannot match to the operator)
    # would make it score and sort every match: with sorting priced out (as on a library too
    # large to sort, bench/README.md), the plan must read RUM's order and sort nothing.
    docs = DocumentRepo(engine)
    _library(docs, _xquad()[0][:30])
    sql = "EXPLAIN " + PostgresKeywords.select_rum.format(only="").replace(":ready", "('READY')")
    with engine.begin() as conn:
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            conn.execute(text(f"SET LOCAL {setting} = off"))
        plan = "\n".join(str(r[0]) for r in conn.execute(text(sql), {"q": "'год' | 'город'", "n": 11}))
    assert "Index Scan using chunk_fts_rum" in plan
    assert "Order By: (tsv <=>" in plan
    assert "Sort" not in plan, plan


@contextlib.contextmanager
def _plain_database(pg: Servers) -> Iterator[str]:
    """The URL of an empty database owned by a role that is not a superuser, connecting as it."""
    admin = create_engine(pg.admin_url, isolation_level="AUTOCOMMIT")
    name = "t_norum_" + uuid.uuid4().hex[:12]
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": PLAIN_ROLE}).first():
            conn.execute(text(f"CREATE ROLE {PLAIN_ROLE} LOGIN NOSUPERUSER"))
        conn.execute(text(f"CREATE DATABASE {name} OWNER {PLAIN_ROLE}"))
    try:
        yield (
            make_url(pg.admin_url)
            .set(database=name, username=PLAIN_ROLE)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def test_without_the_extension_keyword_search_falls_back_to_gin_and_warns(
    pg: Servers, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The warning is once per process: as if this were the first process to meet the database.
    monkeypatch.setattr(keywords, "_warned", False)
    with _plain_database(pg) as url:
        with caplog.at_level(logging.WARNING, logger="storage.keywords"):
            engine = make_engine(url)  # migrated by the role that may not create the extension
        try:
            assert _methods(engine) == {"btree", "gin"}
            assert caplog.messages.count(RUM_MISSING) == 1
            assert any("could not create the RUM extension" in m for m in caplog.messages)
            docs = DocumentRepo(engine)
            paragraphs, questions = _xquad()
            _library(docs, paragraphs[:60])
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="storage.keywords"):
                for question in questions[:300]:
                    terms = safe_terms(query_terms(question))
                    if terms:
                        full = _exhaustive(engine, terms, rum=False)
                        got = docs.keyword_search(terms, 10)
                        assert [c for c, _ in got] == [c for c, _ in full[:10]], question
                        assert [s for _, s in got] == pytest.approx([s for _, s in full[:10]], rel=1e-5)
            assert docs.keywords.rum is False  # type: ignore[attr-defined]
            # The admin page says it (a Russian line under «Индекс»).
            assert "RUM" in (keyword_ranking_note(engine) or "")
            assert RUM_MISSING not in caplog.messages  # once per process: already said
        finally:
            engine.dispose()


def test_migration_0013_moves_an_existing_database_from_gin_to_rum_and_back(engine: Engine) -> None:
    docs = DocumentRepo(engine)
    _library(docs, _xquad()[0][:20])
    before = docs.keyword_search(["год", "город"], 10)
    assert before
    with engine.begin() as conn:
        command.downgrade(_config(conn), "0012")
    assert _methods(engine) == {"btree", "gin"}
    assert DocumentRepo(engine).keyword_search(["год", "город"], 10) != []
    with engine.begin() as conn:
        command.upgrade(_config(conn), "head")
    assert _methods(engine) == {"btree", "rum"}
    # Same rows, same ranking: the keyword rows were not touched, only their index.
    assert DocumentRepo(engine).keyword_search(["год", "город"], 10) == before
