"""Persistence: SQLModel tables, the engine factory and repositories.

Errors::

    StorageError
    └── NotFoundError      a chat, message or document id that does not exist
"""

from storage.db import make_engine
from storage.models import Chat, Chunk, Document, DocumentStatus, Message, Source, utcnow
from storage.repos import ChatRepo, DocumentRepo, NotFoundError, StorageError

__all__ = [
    "Chat",
    "ChatRepo",
    "Chunk",
    "Document",
    "DocumentRepo",
    "DocumentStatus",
    "Message",
    "NotFoundError",
    "Source",
    "StorageError",
    "make_engine",
    "utcnow",
]
