"""Time to the first streamed character of an answer, through ``rag.answer.pipeline.answer``.

    .venv/bin/python bench/answer_latency.py [--data-dir DIR | --chunks 300] [--questions 50]
        [--delay 0.5]

Two providers on the same library and questions (real XQuAD-ru questions, hybrid retrieval):
(a) the offline extractive provider; (b) GigaChat through the real ``gigachat`` SDK
(``providers/gigachat.py``) talking to the fake server of the contract tests
(``tests/contract/fake_gigachat.py``, the real wire protocol: OAuth, SSE), which holds every
chat request for ``--delay`` seconds before it answers (its ``stall_next`` knob). The
overhead is what the first character costs beyond that delay, and beyond retrieval too.
The first GigaChat request also fetches the OAuth token; it is reported on its own.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    emit,
    generate_documents,
    isolate_env,
    load_avg,
    log,
    machine_info,
    make_settings,
    sample_questions,
    summary_ms,
)
from providers import GenerationParams, Provider
from providers.offline import MODEL_ID, OfflineProvider
from rag.answer.pipeline import answer
from rag.library import Library, open_library
from rag.search.embedding import E5SmallEmbedder


def first_char(lib: Library, provider: Provider, model: str, question: str) -> dict[str, float]:
    """Seconds to the prepared answer (retrieval, prompt), to the first character, to the end."""
    started = time.perf_counter()
    prepared = answer(lib.retriever, provider, question, model, GenerationParams())
    prepared_s = time.perf_counter() - started
    first = None
    for delta in prepared.completion:
        if first is None and delta:
            first = time.perf_counter() - started
    done = time.perf_counter() - started
    if first is None:
        raise RuntimeError(f"no text for {question!r}")
    return {"prepare": prepared_s, "first": first, "done": done}


def run(
    lib: Library,
    provider: Provider,
    model: str,
    questions: list[str],
    before: Callable[[], None] | None = None,
) -> list[dict[str, float]]:
    """Timings per question; ``before`` runs ahead of each (arms the fake's delay)."""
    rows = []
    for q in questions:
        if before is not None:
            before()
        rows.append(first_char(lib, provider, model, q))
    return rows


def summarise(rows: list[dict[str, float]], delay: float = 0.0) -> dict[str, Any]:
    """Percentiles of the prepare time, first character, overheads and whole answer."""
    return {
        "retrieval_and_prompt": summary_ms([r["prepare"] for r in rows]),
        "first_char": summary_ms([r["first"] for r in rows]),
        "first_char_minus_delay": summary_ms([r["first"] - delay for r in rows]),
        "first_char_minus_delay_and_retrieval": summary_ms([r["first"] - delay - r["prepare"] for r in rows]),
        "whole_answer": summary_ms([r["done"] for r in rows]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="an indexed data directory (else one is built)")
    parser.add_argument("--chunks", type=int, default=300, help="size of the index built without --data-dir")
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--delay", type=float, default=0.5, help="fake GigaChat's wait before answering, s")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    isolate_env()
    from tests.contract.fake_gigachat import make_case

    info = machine_info()
    scratch = Path(tempfile.mkdtemp(prefix="rag-bench-answer-"))
    try:
        embedder = E5SmallEmbedder()
        embedder.embed_query("прогрев")
        if args.data_dir is not None:
            lib = open_library(make_settings(args.data_dir), embedder=embedder, recover=False)
        else:
            lib = open_library(make_settings(scratch / "data"), embedder=embedder)
            docs = generate_documents(args.chunks, seed=args.seed)
            log(f"indexing {args.chunks} chunks")
            for name, data, _ in docs:
                lib.ingest(name, data)
        chunks = lib.docs.totals()["chunks"]
        questions = sample_questions(args.questions + 1, seed=args.seed)
        warm, timed_questions = questions[0], questions[1:]

        offline = OfflineProvider()
        first_char(lib, offline, MODEL_ID, warm)
        log("offline provider")
        offline_rows = run(lib, offline, MODEL_ID, timed_questions)

        log(f"gigachat through the fake server, delay {args.delay} s")
        with make_case(scratch, RAG_LLM_TIMEOUT_S=str(max(30.0, args.delay * 4))) as case:
            fake = case.fake

            def arm() -> None:
                fake.stall_next(args.delay)

            # The first request also buys the OAuth token (one round trip to the fake).
            arm()
            first_request = first_char(lib, case.provider, case.model, warm)
            giga_rows = run(lib, case.provider, case.model, timed_questions, before=arm)
            token_requests = case.fake.token_requests
            deltas = len(case.fake.deltas)
        lib.engine.dispose()
        emit(
            {
                "benchmark": "answer",
                "machine": info,
                "load_avg_end": load_avg(),
                "chunks_indexed": chunks,
                "questions": len(timed_questions),
                "offline": summarise(offline_rows),
                "gigachat_fake": {
                    "server_delay_s": args.delay,
                    "deltas_per_answer": deltas,
                    "oauth_token_requests": token_requests,
                    "first_request_with_oauth_ms": {k: round(v * 1000, 1) for k, v in first_request.items()},
                    **summarise(giga_rows, args.delay),
                },
            }
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
