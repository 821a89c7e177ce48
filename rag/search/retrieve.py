"""Hybrid retrieval: Snowball-stemmed FTS5 keyword search fused with dense vectors.

Up to four lists are fused by their scores (``zfuse``): keywords, multilingual-e5 (the main
embedder) and, when a cross-lingual model is configured, its vectors (USE multilingual) and the
question's words translated into the library's vocabulary of the other script (``rag.search.terms``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from language import has_cyrillic, query_terms
from rag.identity.access import EVERYTHING, Scope
from rag.search.embedding import Embedder
from rag.search.index import VectorIndex
from rag.search.rerank import RERANK_POOL, Reranker, reorder
from rag.search.terms import TermIndex
from storage import Chunk, Document, DocumentRepo, Source
from storage.keywords import InCollections, Only

Method = Literal["keyword", "dense", "hybrid"]
METHODS: tuple[Method, ...] = ("keyword", "dense", "hybrid")

# Candidates each retriever gives the hybrid fusion.
FUSION_POOL = 40


def zfuse(lists: Sequence[Sequence[tuple[str, float]]]) -> dict[str, float]:
    """Score fusion: each list's scores as standard scores (their positive part), summed, 0..1.

    A retriever whose best matches do not stand out from the rest of its list (keywords that
    match nothing specific, or the wrong-language passages a dense model ranks first) adds
    little, while a clear winner of any list counts fully: rank fusion gave both equal weight,
    so one retriever's noise cancelled another's signal (bench/README.md, development set).
    """
    fused: dict[str, float] = {}
    for scored in lists:
        if not scored:
            continue
        values = [score for _, score in scored]
        mean = sum(values) / len(values)
        spread = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        for cid, score in scored:
            z = (score - mean) / spread if spread > 0 else 1.0
            fused[cid] = fused.get(cid, 0.0) + max(0.0, z)
    top = max(fused.values(), default=0.0)
    return {cid: s / top for cid, s in fused.items()} if top > 0 else fused


class Retriever:
    """Searches the ready documents of a library."""

    def __init__(
        self,
        repo: DocumentRepo,
        vectors: VectorIndex,
        embedders: Callable[[], Sequence[Embedder]],
        terms: TermIndex | None = None,
        reranker: Callable[[], Reranker | None] | None = None,
        rerank_pool: int = RERANK_POOL,
    ) -> None:
        self.repo = repo
        self.vectors = vectors
        self._embedders = embedders
        # RAG_RERANKER's cross-encoder, loaded on first use (None: off, the default).
        self._reranker = reranker
        self.rerank_pool = rerank_pool
        # The vocabulary of the cross-lingual embedder (the second one), when there is one.
        self.terms = terms

    @staticmethod
    def _filter(scope: Scope) -> Only:
        """The keyword search's filter: the collections' documents by a subquery, or named ids."""
        if scope.collections is not None:
            return InCollections(tuple(sorted(scope.collections)))
        return scope.names

    def _documents(self, scope: Scope) -> set[str] | None:
        """The ids of the documents a scope allows (None: every document)."""
        if scope.collections is not None:
            return self.repo.documents_in(scope.collections)
        return None if scope.names is None else set(scope.names)

    def keyword(self, query: str, limit: int, scope: Scope = EVERYTHING) -> list[tuple[str, float]]:
        """Chunk ids by stemmed BM25."""
        return self.repo.keyword_search(query_terms(query), limit, documents=self._filter(scope))

    def translated_keyword(
        self, query: str, limit: int, scope: Scope = EVERYTHING
    ) -> list[tuple[str, float]]:
        """Chunk ids by BM25 over the question's words translated into the other script's stems."""
        embedders = self._embedders()
        if self.terms is None or len(embedders) < 2:
            return []
        stems = self.terms.translate(query, embedders[1])
        return self.repo.keyword_search(stems, limit, documents=self._filter(scope)) if stems else []

    def dense(self, query: str, limit: int, scope: Scope = EVERYTHING) -> list[tuple[str, float]]:
        """Chunk ids by cosine similarity with the main embedding model."""
        return self._dense(self._embedders()[0], query, limit, self._documents(scope))

    def _dense(
        self, emb: Embedder, query: str, limit: int, documents: set[str] | None
    ) -> list[tuple[str, float]]:
        return self.vectors.query(emb.name, emb.embed_query(query), limit, documents=documents)

    def search(
        self, query: str, k: int = 5, method: Method = "hybrid", scope: Scope = EVERYTHING
    ) -> list[Source]:
        """Top-k chunks of the ready documents a scope allows, numbered 1..k for citation."""
        if not query.strip() or scope.empty:
            return []
        # Deep enough for the score statistics of the fusion to mean something.
        pool = max(k * 4, FUSION_POOL)
        if method == "keyword":
            scored = self._normalise(self.keyword(query, pool, scope))
        elif method == "dense":
            scored = dict(self.dense(query, pool, scope))
        else:
            # An English-only embedder would only drag good keyword ranks down on Russian.
            usable = [e for e in self._embedders() if e.reads_cyrillic or not has_cyrillic(query)]
            documents = self._documents(scope) if usable else None
            lists = [
                self.keyword(query, pool, scope),
                self.translated_keyword(query, pool, scope),
                *(self._dense(e, query, pool, documents) for e in usable),
            ]
            scored = zfuse(lists)
        ranked = sorted(scored.items(), key=lambda kv: kv[1], reverse=True)
        reranker = self._reranker() if self._reranker is not None else None
        if reranker is None:
            return self._hits(ranked, k, scope)
        # The cross-encoder reads the fused best rerank_pool the user may see, then the top k are cut.
        pool_hits = self._hits(ranked, max(k, self.rerank_pool), scope)
        by_id = {h.chunk_id: h for h in pool_hits}
        order = reorder(list(by_id), reranker.scores(query, [h.text for h in pool_hits]))
        return [by_id[cid].model_copy(update={"n": n}) for n, cid in enumerate(order[:k], start=1)]

    def _hits(self, ranked: list[tuple[str, float]], k: int, scope: Scope) -> list[Source]:
        """The first k of the ranked ids that are ready and in scope, as numbered sources."""
        ids = [cid for cid, _ in ranked]
        rows: dict[str, tuple[Chunk, Document]] = {}
        names: dict[str, str] = {}
        fetched = 0
        hits: list[Source] = []
        for i, (cid, score) in enumerate(ranked):
            if i == fetched:
                # The rows (texts) of the best 2k first, the rest only if some of those drop out:
                # a hybrid query ranks up to 4 x 40 ids.
                step = 2 * k if fetched == 0 and k > 0 else len(ranked)
                batch = self.repo.chunks_by_ids(ids[fetched : fetched + step])
                rows.update(batch)
                fetched += step
                if scope.collections is not None:  # the names these documents have there
                    names.update(self.repo.names_in(scope.collections, {d.id for _, d in batch.values()}))
            if cid not in rows:  # vector of a deleted or not-ready document
                continue
            chunk, doc = rows[cid]
            if not (doc.id in names if scope.collections is not None else scope.allows(doc.id)):
                continue  # never shown, whichever list let it through
            hits.append(
                Source(
                    n=len(hits) + 1,
                    chunk_id=cid,
                    document_id=doc.id,
                    filename=names[doc.id]
                    if scope.collections is not None
                    else scope.name(doc.id, doc.filename),
                    page=chunk.page,
                    ordinal=chunk.ordinal,
                    text=chunk.text,
                    score=score,
                    ocr=chunk.ocr,
                    anchor=chunk.anchor,
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
