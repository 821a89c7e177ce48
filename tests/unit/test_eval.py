"""Retrieval quality on XQuAD through the app's real pipeline (slow: about three minutes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rag.eval import evaluate
from rag.search.embedding import Embedder
from settings import Settings

EVAL_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "eval"

pytestmark = pytest.mark.slow


def dataset(name: str) -> Path:
    path = (EVAL_DIR / name).resolve()
    if not path.exists():
        pytest.skip(f"{path} is missing (the XQuAD files live in ../shared/eval next to the repo)")
    return path


def run(name: str, methods: tuple[str, ...], embedder: Embedder, settings: Settings) -> Any:
    return evaluate(dataset(name), level="chunk", methods=methods, settings=settings, embedder=embedder)  # type: ignore[arg-type]


def test_xquad_ru_chunk_level(embedder: Embedder, settings_factory: Any, tmp_path: Path) -> None:
    # Dense alone is left out to save ~30 s: hybrid already depends on it.
    result = run("xquad-ru.json", ("hybrid", "keyword"), embedder, settings_factory(tmp_path))
    assert result["paragraphs"] == 240 and result["questions"] == 1190
    assert result["embedding_model"] == embedder.name
    # Chunks of the default size: about 100 words, never much more.
    assert result["mean_chunk_words"] <= 100
    assert result["max_chunk_words"] <= 110
    m = result["methods"]
    assert m["hybrid"]["recall@5"] >= 0.97
    assert m["hybrid"]["mrr@10"] >= 0.88
    # Stemmed keyword search alone is strong; fusing the embedder in makes it better still.
    assert m["keyword"]["recall@5"] >= 0.93
    assert m["hybrid"]["mrr@10"] > m["keyword"]["mrr@10"]


def test_xquad_en_chunk_level(embedder: Embedder, settings_factory: Any, tmp_path: Path) -> None:
    result = run("xquad-en.json", ("hybrid",), embedder, settings_factory(tmp_path))
    assert result["questions"] == 1190
    assert result["methods"]["hybrid"]["recall@5"] >= 0.90
