"""The scale-out backends side by side: keyword search on PostgreSQL and SQLite, vector search on
a Chroma server and embedded Chroma, and indexing through the shared queue with one and two workers.

    eval "$(scripts/servers.sh start /tmp/bench-srv)"
    .venv/bin/python bench/scale_out.py [--fragments 100000] [--files 12] [--rounds 1] [--quick]
    scripts/servers.sh stop /tmp/bench-srv

Needs the two test servers (``RAG_TEST_DATABASE_URL``, ``RAG_TEST_CHROMA``); every part gets fresh
databases on them (``tests.backends.Servers.fresh``).

1. Keyword search: the same synthetic fragments (runs of real XQuAD-ru sentences, at most 100
   words, ``bench.common.generate_chunk_texts``) are written through the app's own
   ``DocumentRepo.store_chunks`` into a fresh PostgreSQL database (generated ``simple`` tsvector,
   GIN, ``ts_rank`` normalisation 1) and a SQLite file (FTS5 bm25), one document of
   ``--per-document`` fragments at a time, the two backends taking turns. Then real XQuAD-ru
   questions, ``DocumentRepo.keyword_search(query_terms(q), --limit)`` (OR of the question's
   stems), the two backends taking turns question by question in a rotating order.
2. Vector search: one random unit vector (dim 384) per fragment, the same vectors into a Chroma
   server database and an embedded Chroma folder (``VectorIndex.add``); random unit query
   vectors, top ``--k`` through ``VectorIndex.query`` (the app's call: it looks the collection
   up each time) with and without a ``documents=`` filter of ``--filter-docs`` random documents,
   and the bare ``collection.query`` on a held collection; all variants take turns per query.
3. Indexing throughput: ``--files`` Russian text files of about ``--sentences`` sentences each
   (distinct bytes) submitted through ``SharedQueue.submit`` to a fresh database and Chroma
   database, run by 1 or 2 ``python -m rag worker`` processes (each with its own data
   directory); seconds from the first submit until every job is done, after each worker has
   indexed one warm-up file (so loading the models is not counted; the warm-up is reported).
   The runs alternate 1, 2, then 2, 1, ... (``--rounds`` pairs; two are worth it on a busy
   machine). The CPU each worker, this process and everything else used meanwhile is read from
   /proc, so a result says how much of the machine the workers actually had.

The default run takes about 14 minutes on 2 busy cores (filling Chroma twice is 8 of them);
``--quick`` (20k fragments, 6 files) about 4.

Prints one JSON object on stdout, a summary table on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

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
    sentence_pool,
    summary_ms,
    write_ready_document,
)
from language import query_terms, stem_string
from rag.search.index import VectorIndex, collection_name, open_chroma, open_chroma_server
from storage import DocumentRepo, make_engine
from storage.models import new_id
from tests.backends import Servers
from tests.e2e.harness import WorkerProcess

MODEL = "bench-random-384"  # names the collection; the vectors are random
DIM = 384
WARMUP = 5
# CPU seconds a worker uses to load its models and index a warm-up file (idle: heartbeats only).
WARM_CPU_S = 1.0


def files_mb(paths: Iterable[Path]) -> float:
    """Total size of these files in MiB."""
    return round(sum(p.stat().st_size for p in paths if p.is_file()) / 2**20, 1)


def clock(into: list[float], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``, append its running time in seconds to ``into``, return its result."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    into.append(time.perf_counter() - started)
    return result


def rotated(items: list[Any], i: int) -> list[Any]:
    """``items`` starting at position i (mod len): who goes first changes every round."""
    i %= len(items)
    return items[i:] + items[:i]


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random unit vectors of dimension DIM (float32)."""
    m = rng.standard_normal((n, DIM)).astype(np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m


# -- 1 and 2: the fill -----------------------------------------------------------------------


def fill(
    n: int,
    per_doc: int,
    seed: int,
    repos: dict[str, DocumentRepo],
    indexes: dict[str, VectorIndex],
) -> tuple[list[str], dict[str, Any]]:
    """n fragments in ready documents on every repo and every vector index; the document ids.

    Each document's rows go to the backends in turn (rotating who goes first), so a burst of
    load hits every backend's build alike. Returns seconds per backend.
    """
    started = time.perf_counter()
    texts = generate_chunk_texts(n, seed=seed)
    generated_s = time.perf_counter() - started
    started = time.perf_counter()
    stems = [stem_string(t) for t in texts]
    stemmed_s = time.perf_counter() - started
    log(f"fill: {n} texts generated in {generated_s:.0f} s, stemmed in {stemmed_s:.0f} s")
    rng = np.random.default_rng(seed)
    seconds = {name: 0.0 for name in [*repos, *indexes]}
    doc_ids: list[str] = []
    round_started = time.perf_counter()
    for d, start in enumerate(range(0, n, per_doc)):
        batch = texts[start : start + per_doc]
        batch_stems = stems[start : start + per_doc]
        body = "\n\n".join(batch)
        doc_id = new_id()
        doc_ids.append(doc_id)
        chunk_ids = [new_id() for _ in batch]
        vectors = unit_vectors(rng, len(batch))
        doc = {
            "id": doc_id,
            "filename": f"синтетика-{d + 1:05d}.txt",
            "sha256": hashlib.sha256(f"{start}\n{body}".encode()).hexdigest(),
            "size": len(body.encode()),
        }
        steps: list[tuple[str, Callable[[], None]]] = []
        for name, repo in repos.items():
            write = partial(write_ready_document, repo, batch, MODEL, batch_stems, chunk_ids, **doc)
            steps.append((name, write))
        for name, index in indexes.items():
            steps.append((name, partial(index.add, MODEL, chunk_ids, vectors, doc_id)))
        for name, step in rotated(steps, d):
            t0 = time.perf_counter()
            step()
            seconds[name] += time.perf_counter() - t0
        done = start + len(batch)
        if done % 10_000 == 0 or done == n:
            log(f"fill: {done}/{n} fragments, {time.perf_counter() - round_started:.0f} s")
    return doc_ids, {
        "texts_generated_s": round(generated_s, 1),
        "stemmed_s": round(stemmed_s, 1),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "fragments_per_s": {k: round(n / v, 1) for k, v in seconds.items() if v > 0},
        "wall_s": round(time.perf_counter() - round_started, 1),
    }


def measure_keywords(repos: dict[str, DocumentRepo], questions: list[str], limit: int) -> dict[str, Any]:
    """Keyword search latency per backend, backends taking turns question by question."""
    names = list(repos)
    for q in questions[:WARMUP]:
        for name in names:
            repos[name].keyword_search(query_terms(q), limit)
    times: dict[str, list[float]] = {n: [] for n in names}
    hits: dict[str, list[int]] = {n: [] for n in names}
    overlap: list[float] = []
    timed = questions[WARMUP:]
    terms_per_q = []
    for i, q in enumerate(timed):
        terms = query_terms(q)
        terms_per_q.append(len(terms))
        got: dict[str, list[tuple[str, float]]] = {}
        for name in rotated(names, i):
            got[name] = clock(times[name], repos[name].keyword_search, terms, limit)
            hits[name].append(len(got[name]))
        if len(names) == 2:
            a, b = ({c for c, _ in got[n][:10]} for n in names)
            overlap.append(len(a & b) / max(1, min(len(a), len(b))))
    out: dict[str, Any] = {
        "questions": len(timed),
        "terms_per_question_mean": round(sum(terms_per_q) / len(terms_per_q), 1),
        "top10_overlap_mean": round(sum(overlap) / len(overlap), 3) if overlap else None,
    }
    for name in names:
        out[name] = {**summary_ms(times[name]), "hits_min": min(hits[name])}
    return out


def matching_share(engine: Any, questions: list[str], total: int) -> dict[str, float]:
    """How broad the OR queries are: the share of all fragments each matches (PostgreSQL, untimed)."""
    shares = []
    with engine.connect() as conn:
        for q in questions:
            query = " | ".join(f"'{t}'" for t in query_terms(q))
            matched = conn.execute(
                text("SELECT count(*) FROM chunk_fts WHERE tsv @@ to_tsquery('simple'::regconfig, :q)"),
                {"q": query},
            ).scalar_one()
            shares.append(matched / total)
    shares.sort()
    return {
        "median": round(shares[len(shares) // 2], 3),
        "min": round(shares[0], 3),
        "max": round(shares[-1], 3),
    }


def measure_vectors(
    indexes: dict[str, VectorIndex], doc_ids: list[str], queries: int, k: int, filter_docs: int, seed: int
) -> dict[str, Any]:
    """Top-k latency per client: the app's call with and without a filter, and the bare query."""
    rng = np.random.default_rng(seed + 7)
    pick = random.Random(seed + 7)
    cols = {
        name: index.client.get_collection(name=collection_name(MODEL), embedding_function=None)
        for name, index in indexes.items()
    }
    variants: list[tuple[str, Callable[[np.ndarray, list[str]], list[Any]]]] = []
    for name, index in indexes.items():

        def app(v: np.ndarray, _docs: list[str], index: VectorIndex = index) -> list[Any]:
            return index.query(MODEL, v, k)

        def filtered(v: np.ndarray, docs: list[str], index: VectorIndex = index) -> list[Any]:
            return index.query(MODEL, v, k, documents=docs)

        def bare(v: np.ndarray, _docs: list[str], col: Any = cols[name]) -> list[Any]:
            return list(col.query(query_embeddings=[v], n_results=k, include=["distances"])["ids"][0])

        variants += [(f"{name}", app), (f"{name} filtered", filtered), (f"{name} bare", bare)]
    vectors = unit_vectors(rng, queries + WARMUP)
    times: dict[str, list[float]] = {n: [] for n, _ in variants}
    returned: dict[str, list[int]] = {n: [] for n, _ in variants}
    for i, v in enumerate(vectors):
        docs = pick.sample(doc_ids, min(filter_docs, len(doc_ids)))
        for name, fn in rotated(variants, i):
            if i < WARMUP:
                fn(v, docs)
                continue
            returned[name].append(len(clock(times[name], fn, v, docs)))
    return {
        "queries": queries,
        "k": k,
        "filter_documents": filter_docs,
        **{n: {**summary_ms(times[n]), "returned_min": min(returned[n])} for n, _ in variants},
    }


# -- 3: indexing through the shared queue ---------------------------------------------------


def make_files(n: int, sentences: int, seed: int, prefix: str) -> list[tuple[str, bytes]]:
    """n plain-text Russian files of about ``sentences`` sentences, in paragraphs; distinct bytes."""
    rng = random.Random(seed)
    pool = sentence_pool()
    files = []
    for i in range(n):
        paras, left = [], sentences
        while left > 0:
            take = min(left, rng.randint(3, 7))
            paras.append(" ".join(rng.choice(pool) for _ in range(take)))
            left -= take
        text = f"{prefix} № {i + 1}\n\n" + "\n\n".join(paras) + "\n"
        files.append((f"{prefix}-{i + 1:02d}.txt", text.encode("utf-8")))
    return files


CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user and system, every thread) a process has used so far."""
    # The command name may hold spaces: the fields after its closing parenthesis start at field 3.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu_s() -> float:
    """CPU seconds every process on the machine has used since boot (all cores, not idle)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def submit_all(queue: Any, files: list[tuple[str, bytes]], timeout: float) -> tuple[float, list[Any]]:
    """Submit every file, wait for every job; seconds from the first submit to the last done."""
    started = time.perf_counter()
    jobs = [queue.submit(name, data) for name, data in files]
    for job in jobs:
        if not job.wait(timeout):
            raise TimeoutError(f"job {job.id} ({job.filename}) not done after {timeout} s")
    seconds = time.perf_counter() - started
    failed = [j.filename for j in jobs if j.failed or (j.result and j.result.status != "indexed")]
    if failed:
        raise RuntimeError(f"indexing failed: {failed}")
    return seconds, jobs


def ingest_run(
    servers: Servers,
    workers: int,
    files: list[tuple[str, bytes]],
    warmup: list[tuple[str, bytes]],
    work: Path,
    tag: str,
) -> dict[str, Any]:
    """One run: fresh databases, ``workers`` worker processes, warm-up, then the timed files."""
    from rag.jobs.shared import SharedQueue
    from rag.library import open_library

    env = servers.fresh()
    run_dir = work / tag
    settings = make_settings(run_dir / "submitter", **env, RAG_QUEUE="postgres")
    lib = open_library(settings, recover=False)
    queue = SharedQueue(lib)
    procs: list[WorkerProcess] = []
    load_start = load_avg()
    try:
        started = time.perf_counter()
        run_dir.mkdir(parents=True, exist_ok=True)
        procs = [
            WorkerProcess(
                name=f"{tag}-{w}",
                data_dir=run_dir / f"worker-{w}",
                log_path=run_dir / f"worker-{w}.log",
                env={**env, "RAG_QUEUE": "postgres"},
                stalled_after_s=10.0,
            ).start()
            for w in range(workers)
        ]
        for p in procs:
            p.wait_ready()
        ready_s = time.perf_counter() - started
        # Each worker indexes one warm-up file first (loading e5 and the cross-lingual model):
        # submitted together, each worker takes one, as the jobs take seconds. A worker that
        # used under WARM_CPU_S meanwhile did not: another round.
        cpu0 = [process_cpu_s(p.pid) for p in procs]
        warm_s, _ = submit_all(queue, warmup[:workers], 600)
        warm_cpu = [process_cpu_s(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
        for extra in range(3):
            if min(warm_cpu) >= WARM_CPU_S:
                break
            log(f"{tag}: a worker used {min(warm_cpu):.1f} s of CPU in the warm-up; another round")
            s, _ = submit_all(queue, make_files(workers, 10, 900 + extra, f"разогрев-{extra}"), 600)
            warm_s += s
            warm_cpu = [process_cpu_s(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
        log(f"{tag}: {workers} worker(s) ready in {ready_s:.1f} s, warm in {warm_s:.1f} s")
        cpu0 = [process_cpu_s(p.pid) for p in procs]
        all0, self0 = machine_cpu_s(), time.process_time()
        seconds, jobs = submit_all(queue, files, 1800)
        worker_cpu = [process_cpu_s(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
        all_cpu, self_cpu = machine_cpu_s() - all0, time.process_time() - self0
        fragments = sum(lib.docs.get(j.document_id).chunk_count for j in jobs)
    finally:
        for p in procs:
            p.stop()
        queue.close()
        lib.engine.dispose()
    cores = os.cpu_count() or 1
    result = {
        "run": tag,
        "workers": workers,
        "files": len(files),
        "fragments": fragments,
        "seconds": round(seconds, 1),
        "fragments_per_s": round(fragments / seconds, 2),
        # Cores' worth of CPU over the timed batch: each worker, this process (submitting and
        # polling), and everything else on the machine (the servers, other people's work).
        "worker_cores": [round(c / seconds, 2) for c in worker_cpu],
        "submitter_cores": round(self_cpu / seconds, 2),
        "other_cores": round((all_cpu - sum(worker_cpu) - self_cpu) / seconds, 2),
        "cores": cores,
        "worker_cpu_s_per_fragment": round(sum(worker_cpu) / fragments, 3),
        "workers_ready_s": round(ready_s, 1),
        "warmup_s": round(warm_s, 1),
        "warmup_worker_cpu_s": [round(c, 1) for c in warm_cpu],
        "load_avg_start": load_start,
        "load_avg_end": load_avg(),
    }
    log(
        f"{tag}: {fragments} fragments in {seconds:.1f} s = {fragments / seconds:.2f} /s; "
        f"cores: workers {result['worker_cores']}, others {result['other_cores']}"
    )
    return result


# -- main ------------------------------------------------------------------------------------


def summary_table(out: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    rows = ["| measure | p50 / p95 or rate |", "|---|---:|"]
    kw = out.get("keyword_search")
    if kw:
        for name in ("postgresql", "sqlite"):
            rows.append(f"| keyword, {name} | {kw[name]['p50_ms']} / {kw[name]['p95_ms']} ms |")
    vec = out.get("vector_search")
    if vec:
        for name in ("chroma server", "chroma embedded"):
            for suffix in ("", " filtered", " bare"):
                v = vec[name + suffix]
                rows.append(f"| top-{vec['k']}, {name}{suffix} | {v['p50_ms']} / {v['p95_ms']} ms |")
    ing = out.get("ingestion")
    if ing:
        for w, s in ing["by_workers"].items():
            rows.append(
                f"| indexing, {w} worker(s) | {s['fragments_per_s']} fragments/s "
                f"(workers {s['worker_cores']} cores, others {s['other_cores']}) |"
            )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fragments", type=int, default=100_000)
    parser.add_argument("--per-document", type=int, default=200, help="fragments per synthetic document")
    parser.add_argument("--queries", type=int, default=200, help="timed keyword questions and vector queries")
    parser.add_argument("--limit", type=int, default=50, help="keyword search limit")
    parser.add_argument("--k", type=int, default=5, help="vector top k")
    parser.add_argument("--filter-docs", type=int, default=10, help="documents in the vector filter")
    parser.add_argument("--files", type=int, default=12, help="files per indexing run")
    parser.add_argument("--sentences", type=int, default=40, help="sentences per file")
    parser.add_argument("--rounds", type=int, default=1, help="pairs of indexing runs (1, 2, 2, 1, ...)")
    parser.add_argument("--quick", action="store_true", help="20k fragments, 6 files, one round")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: search, ingest")
    parser.add_argument("--work-dir", type=Path, help="keep the SQLite file and embedded Chroma here")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.fragments, args.files, args.rounds = 20_000, 6, 1
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    url, chroma = os.environ.get("RAG_TEST_DATABASE_URL"), os.environ.get("RAG_TEST_CHROMA")
    if not url or not chroma:
        print('needs the test servers: eval "$(scripts/servers.sh start /tmp/bench-srv)"', file=sys.stderr)
        return 2
    isolate_env()
    servers = Servers(url, chroma)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="rag-bench-scale-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out: dict[str, Any] = {
        "benchmark": "scale_out",
        "machine": machine_info(),
        "fragments": args.fragments,
        "per_document": args.per_document,
    }
    engines: list[Any] = []
    try:
        if "search" not in skip:
            env = servers.fresh()
            pg = make_engine(env["DATABASE_URL"])
            lite = make_engine(make_settings(work / "embedded").resolved_database_url)
            engines += [pg, lite]
            repos = {"postgresql": DocumentRepo(pg), "sqlite": DocumentRepo(lite)}
            indexes = {
                "chroma server": VectorIndex(
                    open_chroma_server(env["CHROMA_HOST"], int(env["CHROMA_PORT"]), env["CHROMA_DATABASE"])
                ),
                "chroma embedded": VectorIndex(open_chroma(work / "embedded" / "chroma")),
            }
            load_start = load_avg()
            doc_ids, built = fill(args.fragments, args.per_document, args.seed, repos, indexes)
            # What autovacuum would do after a bulk load (statistics, the GIN pending list):
            # done now so that it does not happen in the middle of the measurement.
            started = time.perf_counter()
            with pg.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE chunk_fts"))
                conn.execute(text("VACUUM ANALYZE chunk"))
                conn.execute(text("VACUUM ANALYZE document"))
            built["postgresql_vacuum_analyze_s"] = round(time.perf_counter() - started, 1)
            sizes = {}
            with pg.connect() as conn:
                sizes["postgresql_mb"] = round(
                    conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one() / 2**20, 1
                )
            sqlite = make_settings(work / "embedded").sqlite_path
            sizes["sqlite_mb"] = files_mb(sqlite.parent.glob(sqlite.name + "*"))
            sizes["chroma_embedded_mb"] = files_mb((work / "embedded" / "chroma").rglob("*"))
            out["build"] = {**built, "documents": len(doc_ids), **sizes, "load_avg_start": load_start}
            out["build"]["load_avg_end"] = load_avg()
            log(f"built: {built}")

            questions = sample_questions(args.queries + WARMUP, seed=args.seed)
            load_start = load_avg()
            log("keyword search")
            out["keyword_search"] = {
                **measure_keywords(repos, questions, args.limit),
                "limit": args.limit,
                "load_avg_start": load_start,
                "load_avg_end": load_avg(),
            }
            out["keyword_search"]["fragments_matched_share"] = matching_share(
                pg, questions[WARMUP:], args.fragments
            )
            load_start = load_avg()
            log("vector search")
            out["vector_search"] = {
                **measure_vectors(indexes, doc_ids, args.queries, args.k, args.filter_docs, args.seed),
                "load_avg_start": load_start,
                "load_avg_end": load_avg(),
            }
            for e in engines:
                e.dispose()
            engines.clear()
        if "ingest" not in skip:
            files = make_files(args.files, args.sentences, args.seed, "отчёт")
            warmup = make_files(2, args.sentences, args.seed + 100, "разогрев")
            order = [w for r in range(args.rounds) for w in ((1, 2) if r % 2 == 0 else (2, 1))]
            runs = []
            for i, workers in enumerate(order):
                runs.append(ingest_run(servers, workers, files, warmup, work, f"run{i + 1}-{workers}w"))
            by_workers: dict[str, Any] = {}
            for w in sorted(set(order)):
                mine = [r for r in runs if r["workers"] == w]
                seconds = sum(r["seconds"] for r in mine)
                fragments = sum(r["fragments"] for r in mine)
                by_workers[str(w)] = {
                    "runs": len(mine),
                    "seconds_each": [r["seconds"] for r in mine],
                    "fragments_per_s": round(fragments / seconds, 2),
                    "worker_cores": round(sum(sum(r["worker_cores"]) for r in mine) / len(mine), 2),
                    "other_cores": round(sum(r["other_cores"] for r in mine) / len(mine), 2),
                }
            out["ingestion"] = {
                "files": args.files,
                "bytes": sum(len(d) for _, d in files),
                "order": order,
                "runs": runs,
                "by_workers": by_workers,
            }
        out["load_avg_end"] = load_avg()
        emit(out)
        log("summary\n" + summary_table(out))
    finally:
        for e in engines:
            with contextlib.suppress(Exception):
                e.dispose()
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
