"""An optional cross-encoder that reorders the fused candidates before the top k are cut.

Off by default: the embedded default must run on a fresh machine with no model download, and no
cross-encoder ships on PyPI. A team whose machines reach a model hub (or hold a copy) names one in
``RAG_RERANKER``: a sentence-transformers ``CrossEncoder``, a hub name such as
``BAAI/bge-reranker-v2-m3`` or a local folder. It reads the question with each of the fused top
``RERANK_POOL`` fragments and scores the pair, which a bi-encoder's vectors cannot do.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from rag import RagError

# How many of the fused candidates the cross-encoder reads: deep enough to lift a fragment that
# fusion ranked 20th, small enough for a CPU (one pass over 40 pairs).
RERANK_POOL = 40
# Pairs longer than this (in the model's tokens) are cut: a fragment is ~100 words.
MAX_LENGTH = 512


class Reranker(Protocol):
    """Scores how well each passage answers a query; higher is better."""

    name: str

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        """One score per passage, in the passages' order."""
        ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder, from a hub name or a local folder."""

    def __init__(self, name: str) -> None:
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as exc:
            raise RagError(
                f"Реранкер «{name}» работает через sentence-transformers и torch, а они не установлены: "
                'выполните pip install -e ".[minilm]" (scripts/setup.sh ставит их сам) '
                "или уберите RAG_RERANKER."
            ) from exc
        if Path(name).exists():
            # A local model must never reach for the hub.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            self._model: Any = CrossEncoder(name, device="cpu", max_length=MAX_LENGTH)
        except Exception as exc:
            raise RagError(
                f"Не удалось загрузить реранкер «{name}»: {exc}. Без доступа к хабу моделей укажите в "
                "RAG_RERANKER путь к скачанной модели или уберите эту настройку."
            ) from exc
        self.name = name
        self._lock = threading.Lock()

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        """The model's score for each (query, passage) pair."""
        if not passages:
            return []
        with self._lock:
            out = self._model.predict([(query, p) for p in passages], batch_size=16, show_progress_bar=False)
        return [float(s) for s in out]


def reorder(ids: Sequence[str], scores: Sequence[float]) -> list[str]:
    """The ids by descending score; ties keep the fused order (a stable sort)."""
    if len(ids) != len(scores):
        raise ValueError("one score per id is needed")
    return [cid for _, cid in sorted(zip(scores, ids, strict=True), key=lambda pair: -pair[0])]


def load_reranker(name: str) -> Reranker | None:
    """The configured cross-encoder, or None when ``RAG_RERANKER`` is empty."""
    name = name.strip()
    return CrossEncoderReranker(name) if name else None
