"""Persistence: SQLModel tables, the engine factory and repositories.

Errors::

    StorageError
    └── NotFoundError      a chat, message or document id that does not exist
"""

from sqlite_compat import ensure_modern_sqlite

ensure_modern_sqlite()  # before SQLAlchemy or Chroma load sqlite3 (Community Cloud's is too old)

from storage.db import make_engine  # noqa: E402
from storage.models import Chat, Chunk, Document, DocumentStatus, Message, Source, utcnow  # noqa: E402
from storage.repos import ChatRepo, DocumentRepo, NotFoundError, StorageError  # noqa: E402

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
