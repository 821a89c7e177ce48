"""The document library: ingestion, deletion, re-embedding, crash recovery and consistency.

One ``Library`` serves the app, the CLI and the tests; its I/O objects (SQL engine, Chroma
client, embedder) are built by ``open_library`` or passed in. It is put together from one
service per module, each building on the one before (imports run only downwards):

- ``core``: the stores, embedders, per-document write locks and the acting user;
- ``indexing``: the indexing run, a re-index beside the live version, finishing vectors;
- ``maintenance``: delete, recover, re-embed, check and repair;
- ``catalogue``: the documents a user may read, moving and removing them;
- ``admission``: uploads, deduplication, originals;
- ``sources``: the source view's fragment, page and original, as each user may see them;
- ``results``: what they report (outcomes, the consistency report, Russian messages);
- ``render``: pictures of cited pages with the fragment marked (no service, no state).
"""

from __future__ import annotations

import logging

from rag.library.results import (
    EMBED_BATCH,
    INTERNAL_STORE,
    INTERRUPTED,
    MODEL_SEPARATOR,
    ConsistencyReport,
    DocumentEntry,
    IngestResult,
    Progress,
    too_large_message,
    too_many_fragments_message,
)
from rag.library.sources import SourceMissing, Sources, SourceView, TextAround
from rag.search.embedding import Embedder
from rag.search.index import open_vectors
from settings import Settings
from storage import make_engine
from storage.jobs import JobRepo

__all__ = [
    "EMBED_BATCH",
    "INTERNAL_STORE",
    "INTERRUPTED",
    "MODEL_SEPARATOR",
    "ConsistencyReport",
    "DocumentEntry",
    "IngestResult",
    "Library",
    "Progress",
    "SourceMissing",
    "SourceView",
    "TextAround",
    "open_library",
    "too_large_message",
    "too_many_fragments_message",
]

log = logging.getLogger(__name__)


class Library(Sources):
    """Documents with their chunks, keyword rows and vectors, kept in step."""


def open_library(settings: Settings, embedder: Embedder | None = None, recover: bool = True) -> Library:
    """Open (creating if needed) the data directory's database, vectors and file store."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    lib = Library(settings, engine, open_vectors(settings), embedder)
    if settings.queue == "postgres":
        # Workers elsewhere write the documents of live jobs: recovery and checks leave them be.
        jobs = JobRepo(engine)
        lib.elsewhere, lib.queued_elsewhere = jobs.running_documents, jobs.queued_documents
    if recover:
        names = lib.recover()
        if names:
            log.warning("marked interrupted documents as failed: %s", ", ".join(names))
    return lib
