"""Vector index over Chroma, embedded or a server: one collection per embedding model, ids only.

Chunk text lives in SQLite (the source of truth); Chroma keeps the vector and the owning
document id, which makes deleting a document's vectors one filtered call.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

from sqlite_compat import ensure_modern_sqlite

ensure_modern_sqlite()  # Chroma refuses SQLite < 3.35 at import

import chromadb  # noqa: E402
import numpy as np  # noqa: E402
from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT  # noqa: E402
from chromadb.config import Settings as ChromaSettings  # noqa: E402
from chromadb.errors import NotFoundError  # noqa: E402

from rag.search.embedding import Vectors  # noqa: E402
from settings import Settings as AppSettings  # noqa: E402

T = TypeVar("T")
# Allowed documents named in a Chroma filter at most; more are filtered after the search.
FILTER_MAX = 2000


def open_chroma(path: Path) -> Any:
    """A persistent Chroma client with telemetry off."""
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(
        path=str(path), settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    )


def open_chroma_server(host: str, port: int, database: str = DEFAULT_DATABASE, ssl: bool = False) -> Any:
    """A client of a Chroma server (`chroma run`), creating its database if missing."""
    settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if database != DEFAULT_DATABASE:
        admin = chromadb.AdminClient(
            ChromaSettings(
                chroma_api_impl="chromadb.api.fastapi.FastAPI",
                chroma_server_host=host,
                chroma_server_http_port=port,
                chroma_server_ssl_enabled=ssl,
                anonymized_telemetry=False,
            )
        )
        try:
            admin.get_database(database, tenant=DEFAULT_TENANT)
        except NotFoundError:
            admin.create_database(database, tenant=DEFAULT_TENANT)
    return chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=settings, database=database)


def open_vectors(settings: AppSettings) -> VectorIndex:
    """The vector index the settings name: the Chroma server at CHROMA_HOST, else the data directory's."""
    if settings.chroma_host:
        client = open_chroma_server(
            settings.chroma_host, settings.chroma_port, settings.chroma_database, settings.chroma_ssl
        )
    else:
        client = open_chroma(settings.chroma_dir)
    return VectorIndex(client)


def collection_name(model: str) -> str:
    """A valid Chroma collection name that is stable for a model name."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", model).strip("-").lower()[:40] or "model"
    digest = hashlib.sha1(model.encode()).hexdigest()[:8]
    return f"chunks-{slug}-{digest}"


class VectorIndex:
    """Add, query and delete chunk vectors, per embedding model."""

    def __init__(self, client: Any) -> None:
        self.client = client
        # Collection handles by model, looked up once: get_or_create_collection is a round trip
        # (a request to a server) on every call otherwise. A handle goes stale when its
        # collection is deleted, say by another process; a call on it then raises NotFoundError
        # and is made once more on a fresh handle (``_on``).
        self._handles: dict[str, Any] = {}

    def _collection(self, model: str, fresh: bool = False) -> Any:
        col = None if fresh else self._handles.get(model)
        if col is None:
            # embedding_function=None every time: otherwise Chroma substitutes its default
            # embedder, which downloads a model on first use and fails offline.
            col = self.client.get_or_create_collection(
                name=collection_name(model),
                embedding_function=None,
                metadata={"hnsw:space": "cosine", "model": model},
            )
            self._handles[model] = col
        return col

    def _on(self, model: str, call: Callable[[Any], T]) -> T:
        """``call`` on the model's collection, again on a fresh handle if the held one is gone."""
        try:
            return call(self._collection(model))
        except NotFoundError:
            return call(self._collection(model, fresh=True))

    def add(self, model: str, ids: list[str], vectors: Vectors, document_id: str) -> None:
        """Store vectors for chunk ids of one document."""
        if not ids:
            return

        def upsert(col: Any) -> None:  # all of it again on a fresh handle: upserts repeat safely
            batch = 2000
            for i in range(0, len(ids), batch):
                col.upsert(
                    ids=ids[i : i + batch],
                    embeddings=np.asarray(vectors[i : i + batch], dtype=np.float32),
                    metadatas=[{"document_id": document_id}] * len(ids[i : i + batch]),
                )

        self._on(model, upsert)

    def add_rows(self, model: str, ids: list[str], vectors: Vectors, document_ids: list[str]) -> None:
        """Store vectors for chunk ids of several documents (``document_ids[i]`` owns ``ids[i]``)
        in as few calls as ``add``: each call costs tens of milliseconds whatever its size."""
        if not ids:
            return

        def upsert(col: Any) -> None:
            batch = 2000
            for i in range(0, len(ids), batch):
                col.upsert(
                    ids=ids[i : i + batch],
                    embeddings=np.asarray(vectors[i : i + batch], dtype=np.float32),
                    metadatas=[{"document_id": d} for d in document_ids[i : i + batch]],
                )

        self._on(model, upsert)

    def query(
        self, model: str, vector: Vectors, k: int, documents: Collection[str] | None = None
    ) -> list[tuple[str, float]]:
        """Nearest chunk ids with cosine similarity, best first (only of ``documents`` if given)."""
        if documents is not None and not documents:
            return []
        query = np.asarray(vector, dtype=np.float32)
        if documents is not None and len(documents) > FILTER_MAX:
            return self._query_wide(model, query, k, set(documents))
        # Filtered inside the index: filtering the global top k afterwards would leave a member
        # with a small collection in a large library with nothing.
        where = None if documents is None else {"document_id": {"$in": sorted(documents)}}
        # No count() first: Chroma 1.5 clamps n_results and answers an empty collection with no
        # ids, and count() costs 4x the search itself at 100k vectors (bench/README.md).
        res = self._on(
            model,
            lambda col: col.query(query_embeddings=[query], n_results=k, where=where, include=["distances"]),
        )
        ids = res["ids"][0]
        dists = res["distances"][0] if res.get("distances") else [0.0] * len(ids)
        return [(i, 1.0 - float(d)) for i, d in zip(ids, dists, strict=True)]

    def _query_wide(self, model: str, query: Vectors, k: int, documents: set[str]) -> list[tuple[str, float]]:
        """The nearest of many allowed documents: Chroma binds one SQL variable per ``$in`` value
        and fails past SQLite's limit, so the unfiltered ranking is read deeper and deeper and
        kept where its document is allowed (a scope this large is most of the library)."""
        n = max(4 * k, 100)
        while True:

            def nearest(col: Any, n: int = n) -> Any:
                return col.query(query_embeddings=[query], n_results=n, include=["distances", "metadatas"])

            res = self._on(model, nearest)
            ids, dists, metas = res["ids"][0], res["distances"][0], res["metadatas"][0]
            kept = [
                (i, 1.0 - float(d))
                for i, d, m in zip(ids, dists, metas, strict=True)
                if m and str(m.get("document_id")) in documents
            ]
            if len(kept) >= k or len(ids) < n:
                return kept[:k]
            n *= 4

    def retag(self, model: str, ids: list[str], document_id: str) -> None:
        """Say that these chunk vectors now belong to another document (a re-index's swap)."""

        def update(col: Any) -> None:  # all of it again on a fresh handle: updates repeat safely
            for i in range(0, len(ids), 2000):
                batch = ids[i : i + 2000]
                col.update(ids=batch, metadatas=[{"document_id": document_id}] * len(batch))

        if ids:
            self._on(model, update)

    def documents_of(self, model: str, ids: list[str]) -> dict[str, str]:
        """The document each of these chunk vectors is stored for (ids not stored are left out)."""

        def read(col: Any) -> dict[str, str]:
            out: dict[str, str] = {}
            for i in range(0, len(ids), 2000):
                got = col.get(ids=ids[i : i + 2000], include=["metadatas"])
                for cid, meta in zip(got["ids"], got["metadatas"] or [], strict=False):
                    out[str(cid)] = str((meta or {}).get("document_id", ""))
            return out

        return self._on(model, read) if ids else {}

    def delete_document(self, document_id: str) -> None:
        """Remove a document's vectors from every model's collection."""
        for col in self._all():
            col.delete(where={"document_id": document_id})

    def delete_documents(self, document_ids: list[str]) -> None:
        """Remove several documents' vectors from every collection, one call per collection."""
        if not document_ids:
            return
        for col in self._all():
            col.delete(where={"document_id": {"$in": sorted(set(document_ids))}})

    def document_ids(self, model: str) -> set[str]:
        """Document ids that have vectors for a model."""
        got = self._on(model, lambda col: col.get(include=["metadatas"]))
        return {str(m["document_id"]) for m in got["metadatas"] or [] if m}

    def ids_of_document(self, document_id: str, model: str | None = None) -> set[str]:
        """Chunk ids stored for a document, under one model or any."""
        if model is not None:
            got = self._on(model, lambda col: col.get(where={"document_id": document_id}, include=[]))
            return set(got["ids"])
        out: set[str] = set()
        for col in self._all():
            out.update(col.get(where={"document_id": document_id}, include=[])["ids"])
        return out

    def ids(self, model: str) -> set[str]:
        """All chunk ids stored for a model."""
        return set(self._on(model, lambda col: col.get(include=[]))["ids"])

    def delete_ids(self, model: str, ids: list[str]) -> None:
        """Remove specific chunk vectors."""
        if ids:
            self._on(model, lambda col: col.delete(ids=ids))

    def models(self) -> list[str]:
        """Models that have a collection."""
        out = []
        for col in self._all():
            meta = col.metadata or {}
            if "model" in meta:
                out.append(str(meta["model"]))
        return out

    def count(self, model: str) -> int:
        """Number of vectors for a model."""
        return int(self._on(model, lambda col: col.count()))

    def _all(self) -> list[Any]:
        cols = []
        for c in self.client.list_collections():
            name = c if isinstance(c, str) else c.name
            cols.append(self.client.get_collection(name=name, embedding_function=None))
        return cols
