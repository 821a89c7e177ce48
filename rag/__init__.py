"""Retrieval-augmented generation core: ingestion, indexing, retrieval, prompts, CLI.

Errors::

    RagError
    ├── IngestError        a file that cannot be indexed; ``str()`` is the Russian reason
    │   └── IngestCancelled  the user stopped indexing (raised from a progress callback)
    └── DocumentBusy       the document is being indexed now; ``str()`` says to wait
"""


class RagError(Exception):
    """Base of the rag package's errors."""


class IngestError(RagError):
    """A file cannot be indexed; the message is a Russian reason for the user."""


class IngestCancelled(IngestError):
    """Indexing was stopped by the user; nothing of the document is kept."""


class DocumentBusy(RagError):
    """The document is being written by running work; the message is a Russian reason."""
