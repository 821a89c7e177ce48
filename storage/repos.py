"""Repositories: every read and write of the app goes through one of these.

Each method opens its own session, so a repository is safe to share between
Streamlit's per-session threads.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import String, cast, delete, func, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from storage.chat_index import message_index
from storage.keyword_mirror import KeywordMirror, MirrorState
from storage.keywords import FTS_TABLE, InCollections, Only, keyword_index, safe_terms
from storage.models import (
    SEARCHABLE,
    Chat,
    Chunk,
    CollectionDocument,
    Document,
    DocumentStatus,
    Message,
    Source,
    TurnVector,
    utcnow,
)


class StorageError(Exception):
    """Base of the storage errors."""


class NotFoundError(StorageError):
    """The requested row does not exist."""


Row = TypeVar("Row", bound=SQLModel)


def get_row(engine: Engine, model: type[Row], key: Any) -> Row:
    """A row by primary key, or NotFoundError."""
    with Session(engine, expire_on_commit=False) as s:
        row = s.get(model, key)
    if row is None:
        raise NotFoundError(str(key))
    return row


def add_row(engine: Engine, row: Row) -> Row:
    """Insert a row and return it (readable after its session closed)."""
    with Session(engine, expire_on_commit=False) as s:
        s.add(row)
        s.commit()
    return row


def update_row(engine: Engine, model: type[Row], key: Any, fields: dict[str, Any]) -> Row:
    """Set fields of a row by primary key and return it, or NotFoundError."""
    with Session(engine, expire_on_commit=False) as s:
        row = s.get(model, key)
        if row is None:
            raise NotFoundError(str(key))
        for name, value in fields.items():
            setattr(row, name, value)
        s.add(row)
        s.commit()
        return row


class ChatRepo:
    """Chats and their messages."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Chat search's keyword rows, written in each message's own transaction (storage.chat_index).
        self.index = message_index(engine.dialect.name)

    def create(self, **fields: Any) -> Chat:
        """Create a chat with the given fields."""
        return add_row(self.engine, Chat(**fields))

    def get(self, chat_id: str) -> Chat:
        """Return a chat or raise NotFoundError."""
        return get_row(self.engine, Chat, chat_id)

    def list_all(self, owner_id: str | None = None) -> list[Chat]:
        """All chats (one owner's when given), most recently active first."""
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(Chat).order_by(col(Chat.updated_at).desc())
            if owner_id is not None:
                stmt = stmt.where(col(Chat.owner_id) == owner_id)
            return list(s.exec(stmt))

    def update(self, chat_id: str, **fields: Any) -> Chat:
        """Change a chat's fields (title, provider, settings)."""
        return update_row(self.engine, Chat, chat_id, {**fields, "updated_at": utcnow()})

    def delete(self, chat_id: str) -> None:
        """Delete a chat and its messages."""
        with Session(self.engine) as s:
            self.index.delete_chats(s.connection(), [chat_id])
            s.exec(delete(TurnVector).where(col(TurnVector.chat_id) == chat_id))
            s.exec(delete(Message).where(col(Message.chat_id) == chat_id))
            s.exec(delete(Chat).where(col(Chat.id) == chat_id))
            s.commit()

    def clear_messages(self, chat_id: str) -> None:
        """Remove every message of a chat, keeping the chat."""
        with Session(self.engine) as s:
            self.index.delete_chats(s.connection(), [chat_id])
            s.exec(delete(TurnVector).where(col(TurnVector.chat_id) == chat_id))
            s.exec(delete(Message).where(col(Message.chat_id) == chat_id))
            s.commit()

    def delete_all(self, owner_id: str | None = None) -> int:
        """Delete every chat (one owner's when given) with its messages; return how many chats."""
        with Session(self.engine) as s:
            if owner_id is None:
                n = s.exec(select(func.count()).select_from(Chat)).one()
                self.index.delete_chats(s.connection(), None)
                s.exec(delete(TurnVector))
                s.exec(delete(Message))
                s.exec(delete(Chat))
            else:
                ids = list(s.exec(select(Chat.id).where(col(Chat.owner_id) == owner_id)))
                n = len(ids)
                self.index.delete_chats(s.connection(), ids)
                s.exec(delete(TurnVector).where(col(TurnVector.chat_id).in_(ids)))
                s.exec(delete(Message).where(col(Message.chat_id).in_(ids)))
                s.exec(delete(Chat).where(col(Chat.id).in_(ids)))
            s.commit()
        return int(n)

    def add_message(self, chat_id: str, role: str, content: str, **fields: Any) -> Message:
        """Append a message and touch the chat's update time."""
        msg = Message(chat_id=chat_id, role=role, content=content, **fields)
        with Session(self.engine, expire_on_commit=False) as s:
            chat = s.get(Chat, chat_id)
            if chat is None:
                raise NotFoundError(chat_id)
            chat.updated_at = utcnow()
            s.add(chat)
            s.add(msg)
            if content:
                self.index.add(s.connection(), [(msg.id, chat_id, content)])
            s.commit()
        return msg

    def update_message(self, message_id: str, *, reindex: bool = True, **fields: Any) -> Message:
        """Change a stored message (e.g. fill in a streamed answer); ``reindex=False`` leaves chat
        search's row as it was (a streaming checkpoint: re-indexing took 42 ms at 50k messages on
        SQLite, whose index finds a message's row by scanning; the final save indexes it)."""
        with Session(self.engine, expire_on_commit=False) as s:
            msg = s.get(Message, message_id)
            if msg is None:
                raise NotFoundError(message_id)
            for key, value in fields.items():
                setattr(msg, key, value)
            s.add(msg)
            if "content" in fields and reindex:
                self.index.put(s.connection(), msg.id, msg.chat_id, msg.content)
            s.commit()
            return msg

    def delete_message(self, message_id: str) -> None:
        """Remove one message (a failed answer that is being retried)."""
        with Session(self.engine) as s:
            self.index.delete_messages(s.connection(), [message_id])
            s.exec(delete(TurnVector).where(col(TurnVector.message_id) == message_id))
            s.exec(delete(Message).where(col(Message.id) == message_id))
            s.commit()

    def message(self, message_id: str) -> Message:
        """One message by id, or NotFoundError."""
        return get_row(self.engine, Message, message_id)

    def messages(self, chat_id: str) -> list[Message]:
        """A chat's messages in order."""
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = (
                select(Message)
                .where(col(Message.chat_id) == chat_id)
                .order_by(col(Message.created_at), col(Message.id))
            )
            return list(s.exec(stmt))

    def search_messages(
        self, terms: Sequence[str], owner_id: str | None, limit: int = 20
    ) -> list[tuple[Message, Chat, float]]:
        """The owner's messages (everyone's when None) matching any stem, best first, with their chats."""
        with Session(self.engine, expire_on_commit=False) as s:
            found = self.index.search(s.connection(), terms, owner_id, limit)
            if not found:
                return []
            ids = [m for m, _, _ in found]
            messages = {m.id: m for m in s.exec(select(Message).where(col(Message.id).in_(ids)))}
            chat_ids = sorted({c for _, c, _ in found})
            chats = {c.id: c for c in s.exec(select(Chat).where(col(Chat.id).in_(chat_ids)))}
        return [(messages[m], chats[c], score) for m, c, score in found if m in messages and c in chats]

    def cited_source(self, chunk_id: str, owner_id: str) -> Source | None:
        """The latest source record citing this chunk in the owner's own chats, if any.

        ``chunk_id`` must be a plain id (the caller checks): it is matched inside the JSON text.
        """
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = (
                select(Message)
                .join(Chat, col(Chat.id) == col(Message.chat_id))
                .where(col(Chat.owner_id) == owner_id)
                .where(cast(col(Message.sources), String).like(f"%{chunk_id}%"))
                .order_by(col(Message.created_at).desc())
            )
            for message in s.exec(stmt):
                for src in message.sources or []:
                    if src.chunk_id == chunk_id:
                        return src
        return None

    def counts(self) -> tuple[int, int]:
        """Number of chats and of messages."""
        with Session(self.engine) as s:
            chats = s.exec(select(func.count()).select_from(Chat)).one()
            msgs = s.exec(select(func.count()).select_from(Message)).one()
        return int(chats), int(msgs)


class DocumentRepo:
    """Documents, their chunks and the keyword (FTS5) rows that mirror the chunks."""

    def __init__(self, engine: Engine, mirror: KeywordMirror | None = None) -> None:
        self.engine = engine
        # The table itself is made with the schema (storage.migrate), under its lock. On SQLite
        # with a mirror, the search ranks by tantivy (storage.keyword_mirror).
        self.keywords = keyword_index(engine.dialect.name, mirror)
        # Open keyword batches of this repository (any thread): the mirror syncs when the last ends.
        self._batches = 0
        self._batch_lock = threading.Lock()

    def get(self, document_id: str) -> Document:
        """Return a document or raise NotFoundError."""
        return get_row(self.engine, Document, document_id)

    def by_sha256(self, sha256: str) -> Document | None:
        """The document with these bytes, if any."""
        with Session(self.engine, expire_on_commit=False) as s:
            return s.exec(select(Document).where(col(Document.sha256) == sha256)).first()

    def list_all(self) -> list[Document]:
        """All documents, newest first (a re-index's version under construction is no document)."""
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(Document).where(col(Document.replaces).is_(None))
            return list(s.exec(stmt.order_by(col(Document.created_at).desc())))

    def versions_in_progress(self) -> list[Document]:
        """The hidden rows re-indexing builds new versions on (``replaces`` names the live one)."""
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(select(Document).where(col(Document.replaces).is_not(None))))

    def by_ids(self, ids: Sequence[str]) -> list[Document]:
        """The documents with these ids, newest first."""
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(Document).where(col(Document.id).in_(list(ids)))
            return list(s.exec(stmt.order_by(col(Document.created_at).desc())))

    def add(self, doc: Document) -> Document:
        """Insert a new document row."""
        return add_row(self.engine, doc)

    def update(self, document_id: str, **fields: Any) -> Document:
        """Change a document's fields."""
        return update_row(self.engine, Document, document_id, fields)

    def with_status(self, *statuses: DocumentStatus) -> list[Document]:
        """Documents in any of the given states."""
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(Document).where(
                col(Document.status).in_(statuses), col(Document.replaces).is_(None)
            )
            return list(s.exec(stmt))

    def store_chunks(
        self, document_id: str, chunks: Sequence[Chunk], stems: Sequence[str], **fields: Any
    ) -> None:
        """Replace a document's chunks and keyword rows, and set ``fields`` on it, in one transaction."""
        with Session(self.engine, expire_on_commit=False) as s:
            self._delete_chunks(s, document_id)
            s.add_all(chunks)
            s.flush()
            self.keywords.insert(
                s.connection(),
                [
                    {"stems": st, "chunk_id": c.id, "document_id": document_id}
                    for c, st in zip(chunks, stems, strict=True)
                ],
            )
            doc = s.get(Document, document_id)
            if doc is not None:
                doc.chunk_count = len(chunks)
                for key, value in fields.items():
                    setattr(doc, key, value)
                s.add(doc)
            s.commit()
        self._keywords_written()

    def swap_in(self, version_id: str, document_id: str, **fields: Any) -> Document:
        """Make a re-index's new version the document's, in one transaction: its fragments and
        keyword rows replace the document's, ``fields`` are set, and the version's row goes."""
        with Session(self.engine, expire_on_commit=False) as s:
            self._delete_chunks(s, document_id)
            conn = s.connection()
            moved = {"d": document_id, "v": version_id}
            conn.execute(text(f"UPDATE {FTS_TABLE} SET document_id = :d WHERE document_id = :v"), moved)
            self.keywords.changed(conn, [document_id, version_id])
            conn.execute(text("UPDATE chunk SET document_id = :d WHERE document_id = :v"), moved)
            s.exec(delete(Document).where(col(Document.id) == version_id))
            doc = s.get(Document, document_id)
            if doc is None:
                raise NotFoundError(document_id)
            count = s.exec(
                select(func.count()).select_from(Chunk).where(col(Chunk.document_id) == document_id)
            )
            doc.chunk_count = int(count.one())
            for key, value in fields.items():
                setattr(doc, key, value)
            s.add(doc)
            s.commit()
            self._keywords_written()
            return doc

    def existing_chunk_ids(self, ids: Sequence[str]) -> set[str]:
        """Those of the chunk ids that have a row now."""
        out: set[str] = set()
        with Session(self.engine) as s:
            for i in range(0, len(ids), 500):  # bounded statements: ids may be many
                batch = list(ids[i : i + 500])
                out.update(s.exec(select(Chunk.id).where(col(Chunk.id).in_(batch))))
        return out

    def documents_in(self, collection_ids: Collection[str]) -> set[str]:
        """Ids of the documents in any of these collections."""
        with Session(self.engine) as s:
            stmt = select(CollectionDocument.document_id).where(
                col(CollectionDocument.collection_id).in_(list(collection_ids))
            )
            return set(s.exec(stmt.distinct()))

    def names_in(self, collection_ids: Collection[str], document_ids: Collection[str]) -> dict[str, str]:
        """Each of these documents that is in one of the collections, under its name there (the
        first place it was put, when several)."""
        out: dict[str, str] = {}
        if not collection_ids or not document_ids:
            return out
        with Session(self.engine) as s:
            stmt = (
                select(CollectionDocument.document_id, CollectionDocument.filename)
                .where(col(CollectionDocument.collection_id).in_(list(collection_ids)))
                .where(col(CollectionDocument.document_id).in_(list(document_ids)))
                .order_by(col(CollectionDocument.added_at))
            )
            for doc_id, name in s.exec(stmt):
                out.setdefault(doc_id, name)
        return out

    def stems_in_use(self, stems: Sequence[str]) -> set[str]:
        """Those of the stems some fragment's keyword row still has (any document, any state)."""
        states = [st.name for st in DocumentStatus]
        out: set[str] = set()
        with self.engine.connect() as conn:
            for stem in safe_terms(stems):
                if self.keywords.search(conn, [stem], 1, states, None):
                    out.add(stem)
        return out

    def delete_chunks(self, document_id: str) -> None:
        """Remove a document's chunks and keyword rows."""
        with Session(self.engine) as s:
            self._delete_chunks(s, document_id)
            s.commit()
        self._keywords_written()

    def _delete_chunks(self, s: Session, document_id: str) -> None:
        conn = s.connection()
        # FTS5 cannot index document_id: its DELETE reads every keyword row, a second at a million
        # fragments. A new document (the usual case) has no chunks, so no keyword rows either
        # (both are written in one transaction; stray rows are the check's to remove).
        if conn.execute(
            text("SELECT 1 FROM chunk WHERE document_id = :d LIMIT 1"), {"d": document_id}
        ).first():
            conn.execute(text(f"DELETE FROM {FTS_TABLE} WHERE document_id = :d"), {"d": document_id})
            self.keywords.changed(conn, [document_id], deleted=True)
        s.exec(delete(Chunk).where(col(Chunk.document_id) == document_id))

    def delete(self, document_id: str) -> None:
        """Delete a document row with its chunks and keyword rows."""
        with Session(self.engine) as s:
            self._delete_chunks(s, document_id)
            s.exec(delete(Document).where(col(Document.id) == document_id))
            s.commit()
        self._keywords_written()

    def chunks(self, document_id: str) -> list[Chunk]:
        """A document's chunks in order."""
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(Chunk).where(col(Chunk.document_id) == document_id).order_by(col(Chunk.ordinal))
            return list(s.exec(stmt))

    def chunks_by_ids(self, ids: Sequence[str], ready_only: bool = True) -> dict[str, tuple[Chunk, Document]]:
        """Chunks with their documents, keyed by chunk id (only searchable documents by default)."""
        if not ids:
            return {}
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(Chunk, Document).join(Document).where(col(Chunk.id).in_(list(ids)))
            if ready_only:
                stmt = stmt.where(col(Document.status).in_(SEARCHABLE))
            return {c.id: (c, d) for c, d in s.exec(stmt)}

    def keyword_search(
        self, terms: Sequence[str], limit: int, documents: Only = None
    ) -> list[tuple[str, float]]:
        """Chunk ids of searchable documents matching any of the stems, best first (only of ``documents``:
        ids, or the documents of some collections)."""
        terms = safe_terms(terms)
        empty = (
            documents.ids == ()
            if isinstance(documents, InCollections)
            else documents is not None and not documents
        )
        if not terms or empty:
            return []
        with self.engine.connect() as conn:
            # SQLAlchemy stores enum members by name.
            return self.keywords.search(conn, terms, limit, [s.name for s in SEARCHABLE], documents)

    def chunk_ids_by_document(self) -> dict[str, list[str]]:
        """Every chunk id grouped by its document id (for consistency checks)."""
        out: dict[str, list[str]] = {}
        with Session(self.engine) as s:
            for cid, did in s.exec(select(Chunk.id, Chunk.document_id)):  # versions' included
                out.setdefault(did, []).append(cid)
        return out

    def _keywords_written(self) -> None:
        """After a commit that changed keyword rows: the mirror applies it now (if no other
        process is syncing it; then a later sync or search does), unless a batch defers it."""
        mirror = getattr(self.keywords, "mirror", None)
        if mirror is not None and not self._batches:
            with self.engine.connect() as conn:
                mirror.sync(conn, wait=False)

    @contextmanager
    def keyword_batch(self) -> Iterator[None]:
        """Write many documents with one mirror sync at the end: each sync is a tantivy commit,
        about 0.1 s of fsyncs (bench/README.md, "Issue 23"), longer than indexing a small file.
        A search meanwhile still sees every row (it syncs first, or FTS5 answers)."""
        with self._batch_lock:
            self._batches += 1
        try:
            yield
        finally:
            with self._batch_lock:
                self._batches -= 1
            self._keywords_written()

    def keyword_mirror_state(self) -> MirrorState | None:
        """How the tantivy mirror stands against the keyword rows (None: no mirror)."""
        mirror = getattr(self.keywords, "mirror", None)
        if mirror is None:
            return None
        with self.engine.connect() as conn:
            state: MirrorState = mirror.state(conn)
            return state

    def repair_keyword_mirror(self) -> None:
        """Apply what the mirror missed; rebuild it from the rows if its count still differs."""
        mirror = getattr(self.keywords, "mirror", None)
        if mirror is None:
            return
        with self.engine.connect() as conn:
            mirror.sync(conn)
            if not mirror.state(conn).consistent:
                mirror.rebuild(conn)

    def orphan_keyword_rows(self) -> int:
        """Keyword rows whose chunk no longer exists."""
        sql = text(
            f"SELECT count(*) FROM {FTS_TABLE} f LEFT JOIN chunk c ON c.id = f.chunk_id WHERE c.id IS NULL"
        )
        with self.engine.connect() as conn:
            return int(conn.execute(sql).scalar_one())

    def delete_orphan_keyword_rows(self) -> int:
        """Drop keyword rows whose chunk no longer exists; return how many."""
        sql = text(f"DELETE FROM {FTS_TABLE} WHERE chunk_id NOT IN (SELECT id FROM chunk)")
        affected = text(
            f"SELECT DISTINCT document_id FROM {FTS_TABLE} WHERE chunk_id NOT IN (SELECT id FROM chunk)"
        )
        with self.engine.begin() as conn:
            docs = [str(r[0]) for r in conn.execute(affected)]
            n = int(conn.execute(sql).rowcount or 0)
            self.keywords.changed(conn, docs)
        self._keywords_written()
        return n

    def totals(self) -> dict[str, int]:
        """Searchable documents and their chunks, plus how many documents are in each other state."""
        with Session(self.engine) as s:
            by_status = dict(
                s.exec(
                    select(Document.status, func.count())
                    .where(col(Document.replaces).is_(None))
                    .group_by(col(Document.status))
                ).all()
            )
            chunks = s.exec(
                select(func.count())
                .select_from(Chunk)
                .join(Document, col(Document.id) == col(Chunk.document_id))
                .where(col(Document.status) == DocumentStatus.READY)
            ).one()
        return {
            "documents": int(by_status.get(DocumentStatus.READY, 0)),
            "chunks": int(chunks),
            "failed": int(by_status.get(DocumentStatus.FAILED, 0)),
            "indexing": int(
                by_status.get(DocumentStatus.INDEXING, 0)
                + by_status.get(DocumentStatus.QUEUED, 0)
                + by_status.get(DocumentStatus.KEYWORDS, 0)
            ),
        }

    def touch_indexed(self, document_id: str, when: datetime | None = None) -> None:
        """Mark a document ready now."""
        self.update(document_id, status=DocumentStatus.READY, error=None, indexed_at=when or utcnow())
