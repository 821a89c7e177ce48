"""Persistence: SQLModel tables, the engine factory and repositories.

Errors::

    StorageError
    └── NotFoundError      a chat, message or document id that does not exist
"""

from storage.db import make_engine
from storage.models import Chat, Chunk, Document, DocumentStatus, Message
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
    "StorageError",
    "make_engine",
]
