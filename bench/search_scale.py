"""Search at a million fragments: keyword, dense and hybrid p50/p95, a member's scoped query, the
fill time and RSS, on the embedded default (SQLite + tantivy, embedded Chroma) and on
PostgreSQL + a Chroma server.

    .venv/bin/python bench/search_scale.py [--size 1000000] [--queries 200] --work-dir DIR [--reuse]
        [--database postgresql+psycopg://…] [--chroma-server]

The fragments are synthetic, as in ``retrieval_latency.py``: runs of XQuAD-ru sentences of 50 to
100 words, 50 to a document. Their stems are the sentences' stems joined (stemming is per word,
so they equal ``stem_string`` of the text), and rows are written in bulk, with the change log
the tantivy mirror follows; the mirror then applies the log once (``mirror_sync_s``). Vectors are
real e5 vectors of a pool of distinct fragments plus seeded noise, added to Chroma in batches:
their rankings mean nothing, the work per query does. ``--reuse`` keeps a fill of the right
size in ``--work-dir`` and skips filling. ``--database`` fills that (empty) PostgreSQL
database too and measures it; ``--chroma-server`` serves the same Chroma folder with
``chroma run`` for that pass, so the vectors are filled once. Methods take turns question by
question. ``keyword_fts5`` is the same keyword search with the mirror off (FTS5's bm25 over
every match), measured on the same questions in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    emit,
    isolate_env,
    load_avg,
    log,
    machine_info,
    make_settings,
    sample_questions,
    sentence_pool,
    summary_ms,
)
from language import stem_string
from rag.identity.access import Scope
from rag.search.embedding import E5_SMALL, Embedder, Vectors, load_e5
from rag.search.index import VectorIndex, open_chroma, open_chroma_server
from rag.search.retrieve import Retriever
from storage import Chunk, Document, DocumentRepo, DocumentStatus, make_engine
from storage.keyword_mirror import KeywordMirror
from storage.migrate import upgrade
from storage.models import utcnow
from tests.e2e.harness import free_port

PER_DOC = 50
BATCH_DOCS = 200
POOL = 2000
WARMUP = 5


def fragments(n: int, seed: int) -> Any:
    """(text, stems) of n synthetic fragments."""
    pool = sentence_pool()
    stems = [stem_string(s) for s in pool]
    lens = [len(s.split()) for s in pool]
    rng = random.Random(seed)
    for _ in range(n):
        words, parts, keys = 0, list[str](), list[str]()
        target = rng.randint(50, 100)
        while True:
            k = rng.randrange(len(pool))
            if parts and words + lens[k] > target:
                break
            parts.append(pool[k])
            keys.append(stems[k])
            words += lens[k]
        yield " ".join(parts), " ".join(keys)


def fill_rows(engine: Any, n: int, seed: int) -> float:
    """Documents, chunks and keyword rows in bulk, the keyword rows through the app's index (and log)."""
    repo = DocumentRepo(engine)
    started = time.perf_counter()
    gen = fragments(n, seed)
    done = 0
    while done < n:
        with Session(engine) as s:
            conn = s.connection()
            docs, chunks, rows = [], [], []
            for _ in range(BATCH_DOCS):
                if done >= n:
                    break
                take = min(PER_DOC, n - done)
                doc_id = hashlib.sha256(f"doc{done}".encode()).hexdigest()[:32]
                docs.append(
                    {
                        "id": doc_id,
                        "filename": f"синтетика-{done // PER_DOC + 1:06d}.txt",
                        "sha256": hashlib.sha256(f"{seed}:{done}".encode()).hexdigest(),
                        "size": 1,
                        "mime_type": "text/plain",
                        "status": DocumentStatus.READY.name,
                        "chunk_count": take,
                        "embedding_model": E5_SMALL,
                        "indexed_at": utcnow(),
                        "created_at": utcnow(),
                    }
                )
                for j in range(take):
                    body, stems = next(gen)
                    cid = hashlib.sha256(f"c{done + j}".encode()).hexdigest()[:32]
                    chunks.append({"id": cid, "document_id": doc_id, "ordinal": j, "text": body})
                    rows.append({"stems": stems, "chunk_id": cid, "document_id": doc_id})
                done += take
            conn.execute(insert(Document.__table__), docs)  # type: ignore[attr-defined]
            conn.execute(insert(Chunk.__table__), chunks)  # type: ignore[attr-defined]
            repo.keywords.insert(conn, rows)
            s.commit()
        if done % 100_000 == 0 or done == n:
            log(f"rows: {done}/{n}, {time.perf_counter() - started:.0f} s")
    return time.perf_counter() - started


def chunk_ids(engine: Any) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [
            (str(r[0]), str(r[1]))
            for r in conn.execute(text("SELECT id, document_id FROM chunk ORDER BY id"))
        ]


def fill_vectors(vectors: VectorIndex, ids: list[tuple[str, str]], pool: Vectors, seed: int) -> float:
    """One noisy pool vector per chunk, 5000 a call."""
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    by_doc: dict[str, list[str]] = {}
    for cid, did in ids:
        by_doc.setdefault(did, []).append(cid)
    done = 0
    batch: list[tuple[str, str]] = []
    for did, cids in by_doc.items():
        batch += [(c, did) for c in cids]
        if len(batch) >= 5000:
            _add(vectors, batch, pool, rng)
            done += len(batch)
            batch = []
            if done % 100_000 < 5000:
                log(f"vectors: {done}/{len(ids)}, {time.perf_counter() - started:.0f} s")
    if batch:
        _add(vectors, batch, pool, rng)
    return time.perf_counter() - started


def _add(vectors: VectorIndex, batch: list[tuple[str, str]], pool: Vectors, rng: Any) -> None:
    m = pool[rng.integers(0, len(pool), len(batch))] + rng.normal(0, 0.01, (len(batch), pool.shape[1]))
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    col = vectors._collection(E5_SMALL)
    col.add(
        ids=[c for c, _ in batch],
        embeddings=m.astype(np.float32),
        metadatas=[{"document_id": d} for _, d in batch],
    )


def measure(
    repo: DocumentRepo,
    plain: DocumentRepo | None,
    vectors: VectorIndex,
    e5: Embedder,
    questions: list[str],
    member: Scope,
) -> dict[str, Any]:
    """p50/p95 per method; the methods take turns question by question."""
    retriever = Retriever(repo, vectors, lambda: [e5])
    runs: dict[str, Any] = {
        "keyword": lambda q: retriever.search(q, 5, "keyword"),
        "dense": lambda q: retriever.search(q, 5, "dense"),
        "hybrid": lambda q: retriever.search(q, 5, "hybrid"),
        "hybrid_member_1pct": lambda q: retriever.search(q, 5, "hybrid", member),
        "keyword_member_1pct": lambda q: retriever.search(q, 5, "keyword", member),
    }
    if plain is not None:
        fts = Retriever(plain, vectors, lambda: [e5])
        runs["keyword_fts5"] = lambda q: fts.search(q, 5, "keyword")
    for q in questions[:WARMUP]:
        for fn in runs.values():
            fn(q)
    times: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for i, q in enumerate(questions[WARMUP:]):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            t0 = time.perf_counter()
            runs[name](q)
            times[name].append(time.perf_counter() - t0)
    return {k: summary_ms(v) for k, v in times.items()}


def member_scope(engine: Any) -> Scope:
    """Every hundredth document: what a member of a small team's collection reads."""
    with engine.connect() as conn:
        ids = [str(r[0]) for r in conn.execute(text("SELECT id FROM document ORDER BY id"))]
    return Scope(names={d: d for d in ids[::100]})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--database", help="an empty PostgreSQL database to fill and measure as well")
    parser.add_argument(
        "--chroma-server", action="store_true", help="serve the Chroma folder for the PG pass"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    isolate_env()
    out: dict[str, Any] = {"machine": machine_info(), "size": args.size, "load_before": load_avg()}
    data = args.work_dir / f"fill-{args.size}"
    settings = make_settings(data)
    marker = data / "filled.json"
    e5 = load_e5()
    if not (args.reuse and marker.exists()):
        import shutil

        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        engine = make_engine(settings.resolved_database_url)
        upgrade(engine)
        rows_s = fill_rows(engine, args.size, args.seed)
        pool = e5.embed_documents([t for t, _ in fragments(POOL, args.seed + 7)])
        vectors = VectorIndex(open_chroma(settings.chroma_dir))
        vec_s = fill_vectors(vectors, chunk_ids(engine), pool, args.seed)
        t0 = time.perf_counter()
        with engine.connect() as conn:
            KeywordMirror(settings.keyword_dir).sync(conn)
        sync_s = time.perf_counter() - t0
        marker.write_text(
            json.dumps(
                {"rows_s": round(rows_s, 1), "vectors_s": round(vec_s, 1), "mirror_sync_s": round(sync_s, 1)}
            )
        )
        engine.dispose()
    out["fill"] = json.loads(marker.read_text())
    out["disk_mb"] = round(sum(p.stat().st_size for p in data.rglob("*") if p.is_file()) / 2**20)
    questions = sample_questions(args.queries + WARMUP, seed=11)
    engine = make_engine(settings.resolved_database_url)
    repo = DocumentRepo(engine, KeywordMirror(settings.keyword_dir))
    plain = DocumentRepo(engine)
    vectors = VectorIndex(open_chroma(settings.chroma_dir))
    out["embedded"] = measure(repo, plain, vectors, e5, questions, member_scope(engine))
    out["embedded"]["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    log(json.dumps(out["embedded"]))
    if args.database:
        pg = make_engine(args.database)
        upgrade(pg)
        with pg.connect() as conn:
            have = int(conn.execute(text("SELECT count(*) FROM chunk")).scalar_one())
        if have != args.size:
            out["pg_fill_s"] = round(fill_rows(pg, args.size, args.seed), 1)
        server = None
        pg_vectors = vectors
        if args.chroma_server:
            del vectors
            port = free_port()
            server = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "chroma"),
                    "run",
                    "--path",
                    str(settings.chroma_dir),
                    "--port",
                    str(port),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(600):
                try:
                    pg_vectors = VectorIndex(open_chroma_server("127.0.0.1", port))
                    pg_vectors.count(E5_SMALL)
                    break
                except Exception:
                    time.sleep(0.5)
        try:
            out["postgresql"] = measure(DocumentRepo(pg), None, pg_vectors, e5, questions, member_scope(pg))
        finally:
            if server is not None:
                server.terminate()
        log(json.dumps(out["postgresql"]))
    out["load_after"] = load_avg()
    emit(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
