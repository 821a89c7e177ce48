"""Hybrid retrieval: Snowball-stemmed FTS5 keyword search fused with dense vectors (RRF)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from language import fts_query, has_cyrillic
from rag.embedding import Embedder
from rag.index import VectorIndex
from storage import DocumentRepo, Source

Method = Literal["keyword", "dense", "hybrid"]
METHODS: tuple[Method, ...] = ("keyword", "dense", "hybrid")

# Reciprocal-rank-fusion constant from Cormack et al. (2009); robust without tuning.
RRF_K = 60


def rrf(rankings: list[list[str]]) -> dict[str, float]:
    """Reciprocal-rank fusion of ranked id lists, scaled so rank 1 everywhere scores 1.0."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, cid in enumerate(ranking, start=1):
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank)
    top = len(rankings) / (RRF_K + 1) if rankings else 1.0
    return {cid: s / top for cid, s in fused.items()}


class Retriever:
    """Searches the ready documents of a library."""

    def __init__(self, repo: DocumentRepo, vectors: VectorIndex, embedder: Callable[[], Embedder]) -> None:
        self.repo = repo
        self.vectors = vectors
        self._embedder = embedder

    def keyword(self, query: str, limit: int) -> list[tuple[str, float]]:
        """Chunk ids by stemmed BM25."""
        return self.repo.keyword_search(fts_query(query), limit)

    def dense(self, query: str, limit: int) -> list[tuple[str, float]]:
        """Chunk ids by cosine similarity with the current embedding model."""
        emb = self._embedder()
        return self.vectors.query(emb.name, emb.embed_query(query), limit)

    def search(self, query: str, k: int = 5, method: Method = "hybrid") -> list[Source]:
        """Top-k chunks of ready documents for a query, numbered 1..k for citation."""
        if not query.strip():
            return []
        pool = max(k * 4, 20)
        if method == "keyword":
            scored = self._normalise(self.keyword(query, pool))
        elif method == "dense":
            scored = dict(self.dense(query, pool))
        elif has_cyrillic(query) and not self._embedder().reads_cyrillic:
            # An English-only embedder would only drag good keyword ranks down on Russian.
            scored = self._normalise(self.keyword(query, pool))
        else:
            kw = [cid for cid, _ in self.keyword(query, pool)]
            dn = [cid for cid, _ in self.dense(query, pool)]
            scored = rrf([kw, dn])
        ranked = sorted(scored.items(), key=lambda kv: kv[1], reverse=True)
        rows = self.repo.chunks_by_ids([cid for cid, _ in ranked])
        hits: list[Source] = []
        for cid, score in ranked:
            if cid not in rows:  # vector of a deleted or not-ready document
                continue
            chunk, doc = rows[cid]
            hits.append(
                Source(
                    n=len(hits) + 1,
                    chunk_id=cid,
                    document_id=doc.id,
                    filename=doc.filename,
                    page=chunk.page,
                    ordinal=chunk.ordinal,
                    text=chunk.text,
                    score=score,
                    ocr=chunk.ocr,
                )
            )
            if len(hits) == k:
                break
        return hits

    @staticmethod
    def _normalise(scored: list[tuple[str, float]]) -> dict[str, float]:
        if not scored:
            return {}
        top = max(s for _, s in scored) or 1.0
        return {cid: s / top for cid, s in scored}
