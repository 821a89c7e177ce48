"""Query latency of ``Retriever.search`` (keyword, dense, hybrid) at 10k and 100k chunks.

    .venv/bin/python bench/retrieval_latency.py [--sizes 10000,100000] [--queries 200]
        [--pool-from DATA_DIR] [--real-dir DATA_DIR]

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
question; the embedding alone is reported as well, and the parts of a hybrid query.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    emit,
    generate_chunk_texts,
    isolate_env,
    load_avg,
    log,
    machine_info,
    make_settings,
    sample_questions,
    summary_ms,
)
from rag.embedding import E5_SMALL, E5SmallEmbedder, Vectors
from rag.index import VectorIndex, collection_name, open_chroma
from rag.retrieve import METHODS, Retriever
from rag.text import fts_query, stem_string
from storage import Chunk, Document, DocumentRepo, DocumentStatus, make_engine
from storage.models import utcnow

CHUNKS_PER_DOC = 50
WARMUP = 5


def pool_from_index(data_dir: Path, size: int) -> Vectors:
    """Up to ``size`` real e5 vectors from an existing data directory's Chroma."""
    client = open_chroma(make_settings(data_dir).chroma_dir)
    col = client.get_collection(name=collection_name(E5_SMALL), embedding_function=None)
    got = col.get(include=["embeddings"], limit=size)
    return np.asarray(got["embeddings"], dtype=np.float32)


def pool_embedded(embedder: E5SmallEmbedder, size: int, seed: int) -> Vectors:
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
        doc = repo.add(
            Document(
                filename=f"синтетика-{start // CHUNKS_PER_DOC + 1:05d}.txt",
                sha256=hashlib.sha256(f"{start}\n{body}".encode()).hexdigest(),
                size=len(body.encode()),
                mime_type="text/plain",
                encoding="utf-8",
                status=DocumentStatus.READY,
                chunk_count=len(batch),
                embedding_model=E5_SMALL,
                indexed_at=utcnow(),
            )
        )
        chunks, offset = [], 0
        for j, t in enumerate(batch):
            chunks.append(
                Chunk(
                    document_id=doc.id,
                    ordinal=j,
                    text=t,
                    char_start=offset,
                    char_end=offset + len(t),
                )
            )
            offset += len(t) + 2
        repo.store_chunks(doc.id, chunks, [stem_string(t) for t in batch])
        matrix = pool[rng.integers(0, len(pool), len(batch))] + rng.normal(
            0, noise, (len(batch), pool.shape[1])
        )
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        vectors.add(E5_SMALL, [c.id for c in chunks], matrix.astype(np.float32), doc.id)
        done = start + len(batch)
        if done % 10_000 == 0 or done == n:
            log(f"fill {n}: {done} chunks, {time.perf_counter() - started:.0f} s")
    seconds = time.perf_counter() - started
    engine.dispose()
    disk = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())
    return {"fill_s": round(seconds, 1), "disk_mb": round(disk / 1024 / 1024, 1)}


def timed(fn: Callable[[str], Any], queries: list[str]) -> list[float]:
    """Seconds of one call per query."""
    out = []
    for q in queries:
        started = time.perf_counter()
        fn(q)
        out.append(time.perf_counter() - started)
    return out


def measure(
    repo: DocumentRepo, vectors: VectorIndex, embedder: E5SmallEmbedder, queries: list[str], k: int
) -> dict[str, Any]:
    """Latency of each search method, and of the parts a hybrid query is made of."""
    retriever = Retriever(repo, vectors, lambda: embedder)
    out: dict[str, Any] = {"chunks": repo.totals()["chunks"], "vectors": vectors.count(E5_SMALL)}
    warm, timed_queries = queries[:WARMUP], queries[WARMUP:]
    returned: dict[str, int] = {}
    for method in METHODS:
        for q in warm:
            retriever.search(q, k, method)
        hits: list[int] = []

        def search(q: str, method: Any = method, hits: list[int] = hits) -> None:
            hits.append(len(retriever.search(q, k, method)))

        out[method] = summary_ms(timed(search, timed_queries))
        returned[method] = min(hits)
    out["min_hits_returned"] = returned
    # The parts: what search() does for a hybrid query, one step at a time.
    pool = max(k * 4, 20)
    qvecs = {q: embedder.embed_query(q) for q in timed_queries}
    ids = {q: [c for c, _ in retriever.keyword(q, pool)] for q in timed_queries}
    out["parts"] = {
        "fts5_bm25": summary_ms(timed(lambda q: repo.keyword_search(fts_query(q), pool), timed_queries)),
        "chroma_query": summary_ms(timed(lambda q: vectors.query(E5_SMALL, qvecs[q], pool), timed_queries)),
        "sql_fetch_hits": summary_ms(timed(lambda q: repo.chunks_by_ids(ids[q]), timed_queries)),
    }
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
    parser.add_argument("--noise", type=float, default=0.01, help="per-component sigma of the noise")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    isolate_env()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="rag-bench-retrieval-"))
    info = machine_info()
    embedder = E5SmallEmbedder()
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
        # Query embedding alone, on the same questions.
        embedding = summary_ms(timed(embedder.embed_query, queries[WARMUP:]))
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
            if data_dir.exists():
                shutil.rmtree(data_dir)
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
                "query_embedding": embedding,
                "results": results,
            }
        )
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
