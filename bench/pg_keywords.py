"""PostgreSQL keyword search at 100k and 1M fragments: RUM against GIN + ts_rank (issue 23).

    . /tmp/rag-servers/env
    .venv/bin/python bench/pg_keywords.py [--database URL] [--sizes 100000,1000000]
        [--queries 200] [--reuse] [--quality]

``--database`` is a server URL whose user may create databases (default RAG_TEST_DATABASE_URL);
each size gets a database of its own, ``bench_pg_kw_<size>``, migrated to head by the app
(so the keyword table and its RUM index are exactly the app's), then filled in bulk with COPY:
documents of 50 fragments, each fragment a run of random whole XQuAD-ru sentences (at most
100 words, as bench/retrieval_latency.py), its keyword row the stems of its text (the app's
``stem_string``), and every document in one of 100 collections (1 % of the library each).
The keyword indexes are dropped for the load and built after it (the build is timed);
``--reuse`` measures an earlier fill again.

Queries are real XQuAD-ru questions through the app's ``DocumentRepo.keyword_search`` with
the hybrid's candidate pool (40): ``rum`` is the app's path (RUM, ``tsv <=> q``); ``gin`` the
fallback's statement (GIN + ``ts_rank`` normalisation 1; ``--gin-queries`` of the questions,
with RUM on the same ones), measured in a transaction that drops the RUM index and rolls back,
next to a GIN index built on the same rows; ``scoped`` the same for a member who reads one
collection (1 % of the documents). ``--quality`` also indexes
XQuAD-ru through the app (a fake embedder: keyword search only) and prints chunk-level R@k of
both rankings.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine, make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, log, machine_info, make_settings, sample_questions, sentence_pool, summary_ms
from language import query_terms, stem_string
from rag.search.retrieve import FUSION_POOL
from storage import DocumentRepo, make_engine
from storage.keywords import FTS_TABLE, GIN_INDEX, RUM_INDEX, InCollections, PostgresKeywords, safe_terms

CHUNKS_PER_DOC = 50
COLLECTIONS = 100
READY = ["READY"]
# The GIN index the fallback is measured with, next to the app's RUM index (the app's own GIN
# index is dropped by the app's start where RUM is there).
BENCH_GIN = f"{FTS_TABLE}_gin_bench"


def database_url(server: str, name: str) -> str:
    """The URL of a database on the server."""
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def admin(server: str) -> Engine:
    """An autocommit engine for CREATE / DROP DATABASE."""
    return create_engine(server, isolation_level="AUTOCOMMIT")


def fragments(n: int, seed: int = 1, max_words: int = 100) -> tuple[list[str], list[str]]:
    """n fragment texts of random whole sentences and their stems (stemmed once per sentence)."""
    pool = sentence_pool()
    pool_stems = [stem_string(s) for s in pool]
    words = [len(s.split()) for s in pool]
    rng = random.Random(seed)
    texts, stems = [], []
    for _ in range(n):
        target = rng.randint(max_words // 2, max_words)
        picked: list[int] = []
        count = 0
        while True:
            i = rng.randrange(len(pool))
            if picked and count + words[i] > target:
                break
            picked.append(i)
            count += words[i]
        texts.append(" ".join(pool[i] for i in picked))
        stems.append(" ".join(pool_stems[i] for i in picked))
    return texts, stems


def filled(url: str, size: int) -> bool:
    """Whether an earlier fill of this size is there."""
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {FTS_TABLE}")).scalar_one()) == size
    except Exception:  # no database yet
        return False


def fill(server: str, name: str, size: int) -> dict[str, float]:
    """A fresh database of ``size`` fragments: the app's schema, COPY, then the indexes."""
    with admin(server).connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = database_url(server, name)
    engine = make_engine(url)  # migrated to head: the app's tables and keyword index
    t0 = time.perf_counter()
    texts, stems = fragments(size)
    t_gen = time.perf_counter() - t0
    docs = [uuid.uuid4().hex for _ in range((size + CHUNKS_PER_DOC - 1) // CHUNKS_PER_DOC)]
    colls = [uuid.uuid4().hex for _ in range(COLLECTIONS)]
    with engine.begin() as conn:
        conn.execute(text(f"DROP INDEX IF EXISTS {RUM_INDEX}"))
        conn.execute(text(f"DROP INDEX IF EXISTS {GIN_INDEX}"))
    t1 = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(
            "COPY document (id, filename, mime_type, sha256, size, chunk_count, status, created_at, "
            "indexed_at, embedded_chunks, embedding_model) FROM STDIN"
        ) as cp:
            for i, d in enumerate(docs):
                n = min(CHUNKS_PER_DOC, size - i * CHUNKS_PER_DOC)
                row = (d, f"doc-{i:06d}.txt", "text/plain", d, 1000, n, "READY", "now", "now", n, "bench")
                cp.write_row(row)
        with cur.copy("COPY collection (id, name, everyone, created_at) FROM STDIN") as cp:
            for i, c in enumerate(colls):
                cp.write_row((c, f"collection {i}", "NONE", "now"))
        with cur.copy(
            "COPY collectiondocument (collection_id, document_id, filename, added_at) FROM STDIN"
        ) as cp:
            for i, d in enumerate(docs):
                cp.write_row((colls[i % COLLECTIONS], d, f"doc-{i:06d}.txt", "now"))
        with cur.copy(
            "COPY chunk (id, document_id, ordinal, text, char_start, char_end, ocr) FROM STDIN"
        ) as cp:
            for j, t in enumerate(texts):
                doc = docs[j // CHUNKS_PER_DOC]
                cp.write_row((f"c{j:08d}", doc, j % CHUNKS_PER_DOC, t, 0, len(t), False))
        with cur.copy(f"COPY {FTS_TABLE} (chunk_id, document_id, stems) FROM STDIN") as cp:
            for j, s in enumerate(stems):
                cp.write_row((f"c{j:08d}", docs[j // CHUNKS_PER_DOC], s))
        raw.commit()
    finally:
        raw.close()
    t_copy = time.perf_counter() - t1
    with engine.begin() as conn:
        conn.execute(text("SET maintenance_work_mem = '512MB'"))
        t2 = time.perf_counter()
        PostgresKeywords().create(conn)  # the app's RUM index
        t_rum = time.perf_counter() - t2
        t3 = time.perf_counter()
        conn.execute(text(f"CREATE INDEX {BENCH_GIN} ON {FTS_TABLE} USING gin (tsv)"))
        t_gin = time.perf_counter() - t3
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return {
        "generate_s": round(t_gen, 1),
        "copy_s": round(t_copy, 1),
        "rum_index_s": round(t_rum, 1),
        "gin_index_s": round(t_gin, 1),
        "total_s": round(time.perf_counter() - t0, 1),
    }


def sizes_of(conn: Connection) -> dict[str, float]:
    """Table and index sizes in MB."""
    out = {}
    for rel in (FTS_TABLE, RUM_INDEX, BENCH_GIN, "chunk"):
        got = conn.execute(text("SELECT pg_total_relation_size(to_regclass(:r))"), {"r": rel}).scalar()
        if rel in (RUM_INDEX, BENCH_GIN):
            got = conn.execute(text("SELECT pg_relation_size(to_regclass(:r))"), {"r": rel}).scalar()
        out[rel] = round((got or 0) / 2**20, 1)
    return out


def timed(fn: Any, queries: list[list[str]]) -> tuple[dict[str, float], list[list[str]]]:
    """Latency summary of fn over the queries, and what each returned."""
    times, results = [], []
    for terms in queries:
        t = time.perf_counter()
        got = fn(terms)
        times.append(time.perf_counter() - t)
        results.append([cid for cid, _ in got])
    return summary_ms(times), results


def measure(url: str, queries: list[list[str]], gin_queries: int) -> dict[str, Any]:
    """Keyword latency of RUM (the app) and GIN + ts_rank, all documents and one collection."""
    engine = make_engine(url)
    repo = DocumentRepo(engine)
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        out["sizes_mb"] = sizes_of(conn)
        scope_id = conn.execute(text("SELECT id FROM collection ORDER BY name LIMIT 1")).scalar_one()
        out["scope_documents"] = conn.execute(
            text("SELECT count(*) FROM collectiondocument WHERE collection_id = :c"), {"c": scope_id}
        ).scalar_one()
    scope = InCollections((scope_id,))
    # Warm the caches the way a running server is warm: one pass of each, not timed.
    for terms in queries[:20]:
        repo.keyword_search(terms, FUSION_POOL)
    out["rum"], rum_all = timed(lambda t: repo.keyword_search(t, FUSION_POOL), queries)
    out["rum_scoped"], rum_scoped = timed(lambda t: repo.keyword_search(t, FUSION_POOL, scope), queries)
    out["rum_plan"] = plan(engine, PostgresKeywords.select_rum, queries[0], None)
    out["rum_scoped_plan"] = plan(engine, PostgresKeywords.select_scope, queries[0], scope)
    # GIN + ts_rank scores every match on the heap (seconds per question at 1M): the first
    # ``gin_queries`` questions, and RUM on the same ones for the side-by-side figures.
    few = queries[:gin_queries]
    out["rum_same_questions_as_gin"], _ = timed(lambda t: repo.keyword_search(t, FUSION_POOL), few)
    gin = PostgresKeywords()
    gin.rum = False
    with engine.connect() as conn:
        conn.execute(text(f"DROP INDEX {RUM_INDEX}"))  # rolled back below
        for terms in few[:5]:
            gin.search(conn, terms, FUSION_POOL, READY, None)
        out["gin"], gin_all = timed(lambda t: gin.search(conn, t, FUSION_POOL, READY, None), few)
        out["gin_scoped"], gin_scoped = timed(lambda t: gin.search(conn, t, FUSION_POOL, READY, scope), few)
        conn.rollback()
    # How far the two rankings agree: the share of RUM's top 10 in GIN + ts_rank's top 10.
    pairs = zip(rum_all[: len(gin_all)], gin_all, strict=True)
    overlap = [len(set(a[:10]) & set(b[:10])) / max(1, min(10, len(b))) for a, b in pairs]
    out["top10_overlap_rum_vs_ts_rank"] = round(float(np.mean(overlap)), 3)
    scoped = zip(rum_scoped[: len(gin_scoped)], gin_scoped, strict=True)
    out["scoped_results_equal_count"] = sum(len(a) == len(b) for a, b in scoped)
    engine.dispose()
    return out


def plan(engine: Engine, select: str, terms: list[str], scope: InCollections | None) -> list[str]:
    """EXPLAIN ANALYZE of a statement (the plan's lines)."""
    from storage.keywords import only_clause

    only, extra, binds = only_clause(scope)
    from sqlalchemy import bindparam

    sql = text("EXPLAIN (ANALYZE, COSTS OFF) " + select.format(only=only)).bindparams(
        bindparam("ready", expanding=True), *binds
    )
    params = {"q": PostgresKeywords().match(terms), "n": FUSION_POOL, "ready": READY, **extra}
    with engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(sql, params)]


class _FakeEmbedder:
    """Vectors the keyword evaluation never reads (ingest writes some)."""

    name = "bench-fake"
    reads_cyrillic = True

    def embed_documents(self, texts: list[str]) -> Any:
        v = np.random.default_rng(len(texts)).normal(size=(len(texts), 8)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def embed_query(self, text_: str) -> Any:
        return self.embed_documents([text_])[0]


def quality(server: str) -> dict[str, Any]:
    """Chunk-level R@1/R@5/MRR@10 of XQuAD-ru keyword search: RUM's ranking and ts_rank's."""
    from rag.eval import _index_paragraphs, _norm, load_squad
    from rag.library import open_library

    name = "bench_pg_kw_xquad"
    with admin(server).connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = database_url(server, name)
    paragraphs, questions = load_squad(Path(__file__).resolve().parents[2] / "shared/eval/xquad-ru.json")
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), DATABASE_URL=url)
        lib = open_library(settings, embedder=_FakeEmbedder(), recover=False)
        doc_to_para = _index_paragraphs(lib, paragraphs, None)
        chunks = {c.id: c.text for d in doc_to_para for c in lib.docs.chunks(d)}
        chunk_doc = {c.id: d for d in doc_to_para for c in lib.docs.chunks(d)}
        out: dict[str, Any] = {"questions": len(questions), "chunks": len(chunks)}
        with lib.engine.connect() as conn:
            for label, rum in (("rum", True), ("ts_rank", False)):
                kw = PostgresKeywords()
                kw.rum = rum
                r1 = r5 = rr = 0.0
                for q in questions:
                    terms = safe_terms(query_terms(q.text))
                    hits = [cid for cid, _ in kw.search(conn, terms, 10, READY, None)] if terms else []
                    rank = next(
                        (
                            pos
                            for pos, cid in enumerate(hits, 1)
                            if doc_to_para[chunk_doc[cid]] == q.paragraph
                            and any(_norm(a) in _norm(chunks[cid]) for a in q.answers)
                        ),
                        None,
                    )
                    if rank is not None:
                        r1 += rank == 1
                        r5 += rank <= 5
                        rr += 1 / rank
                n = len(questions)
                out[label] = {
                    "recall@1": round(r1 / n, 4),
                    "recall@5": round(r5 / n, 4),
                    "mrr@10": round(rr / n, 4),
                }
        lib.engine.dispose()
    with admin(server).connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    return out


def main() -> int:
    """Fill (or reuse) each size, measure, print JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", default=os.environ.get("RAG_TEST_DATABASE_URL"))
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--gin-queries", type=int, default=50, help="questions for GIN + ts_rank")
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--quality", action="store_true")
    args = ap.parse_args()
    if not args.database:
        ap.error("--database (or RAG_TEST_DATABASE_URL) is required")
    emit({"machine": machine_info()})
    if args.quality:
        log("XQuAD-ru keyword quality (indexing 240 paragraphs)")
        emit({"quality_xquad_ru_chunk": quality(args.database)})
    queries = [t for q in sample_questions(args.queries, seed=23) if (t := safe_terms(query_terms(q)))]
    for size in [int(s) for s in args.sizes.split(",") if s]:
        name = f"bench_pg_kw_{size}"
        url = database_url(args.database, name)
        result: dict[str, Any] = {"size": size}
        if args.reuse and filled(url, size):
            log(f"{size}: reusing {name}")
        else:
            log(f"{size}: filling {name}")
            result["fill"] = fill(args.database, name, size)
            log(f"{size}: filled {result['fill']}")
        result |= measure(url, queries, args.gin_queries)
        emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
