"""Memory of the running app: peak and current RSS of ``streamlit run`` after it has answered
questions on an indexed data directory (so the embedder, SQLite and Chroma are all loaded).

    .venv/bin/python bench/app_memory.py --data-dir /tmp/rag-bench/data-10k [--questions 3]

The data directory is the one ``ingest_speed.py --data-dir`` kept (10k chunks). The app runs
with the offline provider (the default) and is driven by Debian's chromium through Playwright;
VmHWM and VmRSS come from /proc/<pid>/status of the server process (children, if any, are
listed too). Asking adds a chat to the data directory's database.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    App,
    ask_in_browser,
    browser,
    children,
    count_rows,
    emit,
    isolate_env,
    load_avg,
    log,
    machine_info,
    proc_memory_mb,
    sample_questions,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="an indexed data directory")
    parser.add_argument("--questions", type=int, default=3, help="questions asked, one browser session each")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    isolate_env()
    if not args.data_dir.exists():
        parser.error(f"{args.data_dir} does not exist: run ingest_speed.py --data-dir first")
    info = machine_info()
    rows = count_rows(args.data_dir)
    questions = sample_questions(args.questions, seed=args.seed)
    with browser() as b:
        app = App(args.data_dir)
        app.start()
        try:
            health_s = app.wait_healthy()
            at_health = proc_memory_mb(app.pid)
            answers = []
            after: list[dict[str, float]] = []
            for q in questions:
                log(f"asking {q!r}")
                answers.append(ask_in_browser(b, app, q))
                time.sleep(1.0)  # let the run finish saving and rendering the sources
                after.append(proc_memory_mb(app.pid))
            kids = {str(pid): proc_memory_mb(pid) for pid in children(app.pid)}
        finally:
            app.stop()
    emit(
        {
            "benchmark": "app_memory",
            "machine": info,
            "load_avg_end": load_avg(),
            "data_dir": str(args.data_dir),
            "indexed": rows,
            "health_s": round(health_s, 3),
            "rss_at_health_mb": at_health,
            "rss_after_each_answer_mb": after,
            "peak_rss_mb": after[-1]["VmHWM"],
            "child_processes_mb": kids,
            "first_answer": answers[0],
            "answers_s": [a["answer_after_question_s"] for a in answers],
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
