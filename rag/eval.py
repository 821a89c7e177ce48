"""Retrieval evaluation on SQuAD-format data (XQuAD): recall@1, recall@5, MRR@10, query time.

Each paragraph is indexed as its own document through the app's real pipeline (chunker,
FTS5 keyword index, Chroma vectors). At paragraph level a hit is any chunk of the right
paragraph; at chunk level it must also contain the answer text.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rag.embedding import Embedder
from rag.library import Library, open_library
from rag.retrieve import METHODS, Method
from settings import Settings

Level = Literal["paragraph", "chunk"]


@dataclass(frozen=True)
class Question:
    """A question with its paragraph index and accepted answers."""

    text: str
    paragraph: int
    answers: tuple[str, ...]


def load_squad(path: Path) -> tuple[list[str], list[Question]]:
    """Paragraph texts and questions from a SQuAD v1.1 JSON file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    paragraphs: list[str] = []
    questions: list[Question] = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            idx = len(paragraphs)
            paragraphs.append(para["context"])
            for qa in para["qas"]:
                answers = tuple(a["text"] for a in qa.get("answers", []) if a.get("text"))
                questions.append(Question(qa["question"], idx, answers))
    return paragraphs, questions


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def evaluate(
    dataset: Path,
    level: Level = "chunk",
    methods: tuple[Method, ...] = METHODS,
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Index the dataset in a temporary library and score each retrieval method."""
    paragraphs, questions = load_squad(dataset)
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        base = settings or Settings()
        cfg = base.model_copy(update={"data_dir": Path(tmp), "database_url": None})
        lib = open_library(cfg, embedder=embedder, recover=False)
        doc_to_para = _index_paragraphs(lib, paragraphs, progress)
        chunk_words = [len(c.text.split()) for d in doc_to_para for c in lib.docs.chunks(d)]
        result: dict[str, object] = {
            "dataset": dataset.name,
            "level": level,
            "paragraphs": len(paragraphs),
            "questions": len(questions),
            "chunks": len(chunk_words),
            "mean_chunk_words": round(statistics.fmean(chunk_words), 1),
            "max_chunk_words": max(chunk_words),
            "embedding_model": lib.embedding_model,
            "methods": {},
        }
        methods_out: dict[str, dict[str, float]] = {}
        for method in methods:
            if progress:
                progress(f"оценка: {method}")
            methods_out[method] = _score(lib, questions, doc_to_para, level, method)
        result["methods"] = methods_out
        lib.engine.dispose()
        return result


def _index_paragraphs(
    lib: Library, paragraphs: list[str], progress: Callable[[str], None] | None
) -> dict[str, int]:
    doc_to_para: dict[str, int] = {}
    for i, text in enumerate(paragraphs):
        res = lib.ingest(f"paragraph-{i:04d}.txt", text.encode("utf-8"))
        if res.document is None or res.status == "failed":
            raise RuntimeError(f"paragraph {i} failed to index: {res.message}")
        doc_to_para[res.document.id] = i
        if progress and (i + 1) % 40 == 0:
            progress(f"проиндексировано абзацев: {i + 1}/{len(paragraphs)}")
    return doc_to_para


def _score(
    lib: Library,
    questions: list[Question],
    doc_to_para: dict[str, int],
    level: Level,
    method: Method,
) -> dict[str, float]:
    r1 = r5 = rr = 0.0
    times: list[float] = []
    for q in questions:
        t0 = time.perf_counter()
        hits = lib.retriever.search(q.text, k=10, method=method)
        times.append(time.perf_counter() - t0)
        rank = None
        for pos, hit in enumerate(hits, start=1):
            if doc_to_para.get(hit.document_id) != q.paragraph:
                continue
            if level == "chunk" and not any(_norm(a) in _norm(hit.text) for a in q.answers):
                continue
            rank = pos
            break
        if rank is not None:
            r1 += rank == 1
            r5 += rank <= 5
            rr += 1.0 / rank
    n = len(questions) or 1
    return {
        "recall@1": round(r1 / n, 4),
        "recall@5": round(r5 / n, 4),
        "mrr@10": round(rr / n, 4),
        "query_ms": round(1000 * statistics.fmean(times), 2) if times else 0.0,
    }
