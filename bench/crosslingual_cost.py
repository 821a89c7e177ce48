"""What the cross-lingual channel costs: indexing with and without USE, and query time per method.

    .venv/bin/python bench/crosslingual_cost.py [--corpus ../shared/eval/ru-docs-dev/docs] [--rounds 2]

Indexes the corpus's text-layer files (scans and photos are left out: OCR would dominate) into
fresh libraries with ``RAG_CROSSLINGUAL_MODEL`` off and on, alternating, with one e5 instance
loaded beforehand; then asks every question of ``questions.json`` next to the corpus with each
method, interleaved, on the library with the channel. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, isolate_env, load_avg, log, machine_info, make_settings, summary_ms
from rag.library import Library, open_library
from rag.search.embedding import USE_M3, E5SmallEmbedder
from rag.search.retrieve import METHODS

SKIPPED = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def index(files: list[Path], cross: str, e5: E5SmallEmbedder, root: Path) -> tuple[Library, dict[str, float]]:
    """A fresh library with the corpus indexed; chunks, seconds and chunks per second."""
    lib = open_library(
        make_settings(Path(tempfile.mkdtemp(dir=root)), RAG_CROSSLINGUAL_MODEL=cross), embedder=e5
    )
    lib.embedders()  # models load outside the timing
    started, chunks = time.perf_counter(), 0
    for path in files:
        res = lib.ingest(path.name, path.read_bytes())
        chunks += res.document.chunk_count if res.document is not None else 0
    seconds = time.perf_counter() - started
    return lib, {"chunks": chunks, "seconds": round(seconds, 1), "chunks_per_s": round(chunks / seconds, 2)}


def main() -> None:
    """Run the comparison and print it."""
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--corpus", default=str(Path(__file__).resolve().parents[2] / "shared/eval/ru-docs-dev/docs")
    )
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    isolate_env()
    corpus = Path(args.corpus)
    files = [p for p in sorted(corpus.iterdir()) if p.suffix.lower() not in SKIPPED and "skan" not in p.name]
    questions = [q["question"] for q in json.loads((corpus.parent / "questions.json").read_text("utf-8"))]
    e5 = E5SmallEmbedder()
    result: dict[str, object] = {"machine": machine_info(), "files": len(files), "indexing": []}
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        root = Path(tmp)
        runs: list[dict[str, object]] = []
        lib: Library | None = None
        for rnd in range(args.rounds):
            for cross in ("", USE_M3):
                log(f"round {rnd + 1}: indexing, cross-lingual {'on' if cross else 'off'}")
                lib, figures = index(files, cross, e5, root)
                runs.append({"round": rnd + 1, "crosslingual": cross or "off", **figures})
                if not cross:
                    lib.engine.dispose()
        result["indexing"] = runs
        assert lib is not None
        log(f"{len(questions)} questions x {len(METHODS)} methods, twice, interleaved")
        for m in METHODS:
            lib.retriever.search(questions[0], k=5, method=m)  # warm
        times: dict[str, list[float]] = {m: [] for m in METHODS}
        for _ in range(2):
            for q in questions:
                for m in METHODS:
                    started = time.perf_counter()
                    lib.retriever.search(q, k=5, method=m)
                    times[m].append(time.perf_counter() - started)
        result["query"] = {m: summary_ms(v) for m, v in times.items()}
        result["load_avg"] = load_avg()
        lib.engine.dispose()
    emit(result)


if __name__ == "__main__":
    main()
