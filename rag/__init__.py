"""Retrieval-augmented generation core: ingestion, indexing, retrieval, prompts, CLI.

Errors::

    RagError
    └── IngestError        a file that cannot be indexed; ``str()`` is the Russian reason
"""


class RagError(Exception):
    """Base of the rag package's errors."""


class IngestError(RagError):
    """A file cannot be indexed; the message is a Russian reason for the user."""
