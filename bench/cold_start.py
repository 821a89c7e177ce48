"""Cold start: seconds from launching ``streamlit run`` to the first answered question, the
answer's text visible in the browser, on an already indexed data directory and on an empty one.

    .venv/bin/python bench/cold_start.py [--data-dir DIR | --chunks 300] [--runs 3]

Each run is a fresh server process (the OS page cache stays warm, as after a redeploy). The
browser (Debian's chromium through Playwright) is started before the clock; the page is opened
as soon as ``/_stcore/health`` answers, then one question is typed and sent (and, for
comparison, sent again from a second session of the now warm server). Without
``--data-dir`` a small index is built first through the real ingestion pipeline.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    App,
    ask_in_browser,
    browser,
    count_rows,
    emit,
    generate_documents,
    isolate_env,
    load_avg,
    log,
    machine_info,
    make_settings,
    questions,
)

# A real XQuAD-ru question; whichever offline answer comes back, its text is what is timed.
QUESTION = questions()[0]


def build_index(data_dir: Path, chunks: int, seed: int) -> None:
    """Index a generated corpus through the real pipeline."""
    from rag.library import open_library

    lib = open_library(make_settings(data_dir))
    for name, data, _ in generate_documents(chunks, seed=seed):
        result = lib.ingest(name, data)
        if result.status != "indexed":
            raise RuntimeError(f"{name}: {result.message}")
    lib.engine.dispose()


def one_run(b: Any, data_dir: Path) -> dict[str, float]:
    """Launch, wait for health, ask; milestones in seconds since the launch.

    A second browser session then asks again: its page-open and answer times show what part
    of the first ones was the server's cold work rather than the browser's.
    """
    app = App(data_dir)
    app.start()
    try:
        health = app.wait_healthy()
        first = ask_in_browser(b, app, QUESTION)
        warm = ask_in_browser(b, app, QUESTION)
        return {
            "health_s": round(health, 3),
            **first,
            "warm_page_open_to_input_s": warm["page_open_to_input_s"],
            "warm_answer_after_question_s": warm["answer_after_question_s"],
        }
    finally:
        app.stop()


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median of each milestone over the runs."""
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="an indexed data directory (else one is built)")
    parser.add_argument("--chunks", type=int, default=300, help="size of the index built without --data-dir")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    isolate_env()
    info = machine_info()
    scratch = Path(tempfile.mkdtemp(prefix="rag-bench-cold-"))
    try:
        indexed = args.data_dir
        if indexed is None:
            indexed = scratch / "indexed"
            log(f"indexing {args.chunks} chunks")
            build_index(indexed, args.chunks, args.seed)
        rows = count_rows(indexed)
        results: dict[str, Any] = {}
        with browser() as b:
            for mode in ("indexed", "empty"):
                runs = []
                for i in range(args.runs):
                    # An empty data directory does not exist yet: the app creates it.
                    data_dir = indexed if mode == "indexed" else scratch / f"empty-{i}"
                    log(f"{mode}: run {i + 1}/{args.runs}")
                    runs.append(one_run(b, data_dir))
                results[mode] = {"median": medians(runs), "runs": runs}
        emit(
            {
                "benchmark": "cold_start",
                "machine": info,
                "load_avg_end": load_avg(),
                "question": QUESTION,
                "indexed_dir": {"path": str(args.data_dir) if args.data_dir else None, **rows},
                **results,
            }
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
