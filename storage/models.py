"""SQLModel tables: users, collections, chats, messages, documents and their chunks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, LargeBinary, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Current time in UTC, timezone-aware."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh random identifier."""
    return uuid.uuid4().hex


class DocumentStatus(StrEnum):
    """Lifecycle of an uploaded document."""

    QUEUED = "queued"
    INDEXING = "indexing"
    # Chunks and keyword rows are committed, vectors are still being computed: the document is
    # already found by keyword search (and by the vectors it has so far).
    KEYWORDS = "keywords"
    READY = "ready"
    FAILED = "failed"


# Documents that search reads: ready ones, and those whose vectors are still being computed.
SEARCHABLE = (DocumentStatus.READY, DocumentStatus.KEYWORDS)


class Role(StrEnum):
    """What a user may do: an admin manages users and sees every document."""

    ADMIN = "admin"
    MEMBER = "member"


class Access(StrEnum):
    """A right on a collection."""

    NONE = "none"
    READ = "read"
    WRITE = "write"


class User(SQLModel, table=True):
    """A person who signs in (or the single local user when sign-in is off)."""

    # Under OIDC an account is the provider's person, whatever address they have (rag.identity.oidc).
    __table_args__ = (UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_user_oidc_identity"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    # The sign-in name, stored lowercased; under OIDC the verified e-mail (an unverified one
    # with a mark of the identity appended, so it never holds somebody else's address).
    name: str = Field(unique=True, index=True)
    email: str | None = Field(default=None, index=True)
    role: Role = Role.MEMBER
    password_hash: str | None = None
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    # Under OIDC: the provider (``iss``) and its never reassigned id of the person (``sub``).
    # None for password and local users, and for an account made before these were stored,
    # until its owner's next sign-in with a verified address.
    oidc_issuer: str | None = None
    oidc_subject: str | None = None
    # Made by a first OIDC sign-in under RAG_OIDC_NEW_USERS=pending: inactive until an admin approves.
    pending: bool = False
    # Raised by a password change or reset, a sign-out and disabling: every session (cookie or
    # open tab) that began under an older value ends at its next check (rag.identity.auth).
    session_version: int = 0


class Collection(SQLModel, table=True):
    """A knowledge base: personal (its owner only) or shared with everyone or named users."""

    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str
    owner_id: str | None = Field(default=None, foreign_key="user.id", index=True)
    # What every active user may do here, besides the owner and the named grants.
    everyone: Access = Access.NONE
    created_at: datetime = Field(default_factory=utcnow)


class CollectionGrant(SQLModel, table=True):
    """A named user's right on a collection."""

    collection_id: str = Field(foreign_key="collection.id", primary_key=True, ondelete="CASCADE")
    user_id: str = Field(foreign_key="user.id", primary_key=True, ondelete="CASCADE")
    access: Access = Access.READ


class CollectionDocument(SQLModel, table=True):
    """A document's place in a collection, under the name it was uploaded with there."""

    collection_id: str = Field(foreign_key="collection.id", primary_key=True, ondelete="CASCADE")
    document_id: str = Field(foreign_key="document.id", primary_key=True, ondelete="CASCADE", index=True)
    filename: str
    added_by: str | None = Field(default=None, foreign_key="user.id")
    added_at: datetime = Field(default_factory=utcnow)


class Source(BaseModel):
    """A fragment an answer drew on: as retrieved, sent to the model, stored and shown."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    n: int = 0  # citation number in the answer, 1-based; 0 before numbering
    chunk_id: str
    document_id: str
    # Messages stored before sources were typed call the file "file".
    filename: str = PydanticField(validation_alias=AliasChoices("filename", "file"))
    page: int | None = None
    ordinal: int = 0
    text: str
    score: float = 0.0
    ocr: bool = False
    # The clause the fragment stands in («п. 2.1»); None for messages stored before issue 19.
    anchor: str | None = None


class SourceList(TypeDecorator[list[Source]]):
    """A JSON column holding a message's sources, read back as ``Source`` records."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: list[Source] | None, dialect: Dialect) -> list[dict[str, Any]]:
        """Sources as JSON objects."""
        return [Source.model_validate(s).model_dump() for s in value or []]

    def process_result_value(self, value: Any, dialect: Dialect) -> list[Source]:
        """JSON objects as sources; malformed entries are dropped, not fatal to the page."""
        out = []
        for item in value or []:
            try:
                out.append(Source.model_validate(item))
            except ValueError:
                continue
        return out


class Chat(SQLModel, table=True):
    """A conversation with its own generation settings."""

    id: str = Field(default_factory=new_id, primary_key=True)
    owner_id: str | None = Field(default=None, foreign_key="user.id", index=True)
    # The collections the chat searches; None: every collection its owner may read.
    collection_ids: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    title: str = "Новый чат"
    provider: str = "offline"
    model: str = ""
    temperature: float = 0.3
    max_tokens: int = 1024
    system_prompt: str = ""
    use_documents: bool = True
    # The assistant the chat answers with (migration 0011); None: the sidebar's own settings.
    # No foreign key: a deleted assistant leaves its chats readable, answering with their settings.
    assistant_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class Message(SQLModel, table=True):
    """One turn of a chat; assistant turns carry their sources and usage."""

    id: str = Field(default_factory=new_id, primary_key=True)
    chat_id: str = Field(foreign_key="chat.id", index=True, ondelete="CASCADE")
    role: str
    content: str = Field(default="", sa_column=Column(Text, nullable=False))
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    sources: list[Source] = Field(default_factory=list, sa_column=Column(SourceList))
    # Every setting the answer was made with (migration 0011), so editing an assistant later
    # never changes what a stored answer says it used; None for answers stored before it.
    settings: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Document(SQLModel, table=True):
    """An uploaded file; the same bytes (sha256) are indexed once."""

    id: str = Field(default_factory=new_id, primary_key=True)
    filename: str
    # Who uploaded the bytes first; what others see is their own CollectionDocument's name.
    owner_id: str | None = Field(default=None, foreign_key="user.id", index=True)
    mime_type: str = ""
    sha256: str = Field(unique=True, index=True)
    size: int = 0
    encoding: str | None = None
    pages: int | None = None
    chunk_count: int = 0
    # Chunks whose vectors are stored (under every model), while the status is KEYWORDS.
    embedded_chunks: int = 0
    status: DocumentStatus = DocumentStatus.QUEUED
    error: str | None = None
    # Problems that did not fail the document, e.g. pages that could not be read or recognised.
    warnings: str | None = None
    # The PDF text-layer gauge (migration 0009): pages whose layer was unreadable or damaged
    # (None: no text layer, e.g. not a PDF), and pages read by OCR (None: indexed before 0009).
    damaged_pages: int | None = None
    ocr_pages: int | None = None
    embedding_model: str | None = None
    stored_path: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    indexed_at: datetime | None = None
    # Set on the hidden row a re-index builds its new version on, beside the live one: the id
    # of the document it replaces when it succeeds (never searched, listed or counted itself).
    replaces: str | None = Field(default=None, index=True)


class Chunk(SQLModel, table=True):
    """A piece of a document: the text that is searched and cited."""

    id: str = Field(default_factory=new_id, primary_key=True)
    document_id: str = Field(foreign_key="document.id", index=True, ondelete="CASCADE")
    ordinal: int
    page: int | None = None
    text: str = Field(sa_column=Column(Text, nullable=False))
    char_start: int = 0
    char_end: int = 0
    ocr: bool = False  # recognised from an image (shown to the user with the source)
    # Where it stands (migration 0010): the enclosing numbered item («п. 2.1») and section
    # heading, and on a PDF or scanned page its words' boxes as fractions of the page
    # ([left, top, right, bottom], from the top-left corner). None when unknown.
    anchor: str | None = None
    heading: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    boxes: list[list[float]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class StoredOriginal(SQLModel, table=True):
    """An uploaded file's bytes, kept in the database when every replica must reach them."""

    __tablename__ = "original"

    sha256: str = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class IndexJob(SQLModel, table=True):
    """A job of the shared indexing queue: what the page that queued it reads back."""

    __tablename__ = "indexjob"

    id: str = Field(default_factory=new_id, primary_key=True)
    kind: str
    filename: str
    # No foreign keys: a job's record outlives a deleted document or user.
    document_id: str | None = Field(default=None, index=True)
    user_id: str | None = None
    collection_id: str | None = None
    state: str = Field(default="queued", index=True)  # queued, running, done
    fraction: float = 0.0
    text: str = "В очереди"
    message: str = Field(default="", sa_column=Column(Text, nullable=False))
    failed: bool = False
    result_status: str | None = None  # an upload's outcome: indexed, duplicate, failed
    warnings: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    cancel: bool = False
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class SignInFailures(SQLModel, table=True):
    """Failed sign-ins of one name in a row: the throttle every app replica shares."""

    __tablename__ = "signinfailures"

    name: str = Field(primary_key=True)
    failures: int = 0
    until: float = 0.0  # wall-clock seconds before which new attempts are refused


class AddressFailures(SQLModel, table=True):
    """Failed sign-ins from one client address, whatever the names tried: shared by every replica."""

    __tablename__ = "signinaddressfailures"

    address: str = Field(primary_key=True)
    failures: int = 0
    until: float = 0.0  # wall-clock seconds before which new attempts from there are refused
    last_at: float = 0.0  # the latest failure: a quiet address starts afresh after a while


class LibraryFlag(SQLModel, table=True):
    """A fact about the library that, once true, stays true (e.g. it has had an admin)."""

    __tablename__ = "libraryflag"

    name: str = Field(primary_key=True)
    set_at: datetime = Field(default_factory=utcnow)


# -- the model lab (migration 0011) ---------------------------------------------------------


class Assistant(SQLModel, table=True):
    """A saved setup: model and generation settings, what it searches and how (issue 21)."""

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    owner_id: str | None = Field(default=None, foreign_key="user.id", index=True, ondelete="CASCADE")
    # Published by an admin: every user may pick it (its collections still filtered per user).
    published: bool = False
    provider: str = "offline"
    model: str = ""
    temperature: float = 0.3
    max_tokens: int = 1024
    system_prompt: str = Field(default="", sa_column=Column(Text, nullable=False))
    # The collections it searches; None: every collection the asking user may read.
    collection_ids: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    method: str = "hybrid"
    top_k: int = 5
    use_documents: bool = True
    rewrite: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Vote(SQLModel, table=True):
    """A user's verdict on one comparison: an answer better or worse than the others, or a tie."""

    id: str = Field(default_factory=new_id, primary_key=True)
    owner_id: str | None = Field(default=None, foreign_key="user.id", index=True, ondelete="CASCADE")
    question: str = Field(default="", sa_column=Column(Text, nullable=False))
    # Every assistant compared (ids, in column order), and the one the verdict names (None: tie).
    assistant_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    assistant_id: str | None = None
    outcome: str = "tie"  # better, worse, tie
    comment: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)


class TestSet(SQLModel, table=True):
    """Questions with the fact each answer must state (and, optionally, the file it is in)."""

    __test__ = False  # not a pytest class, whatever its name

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str
    owner_id: str | None = Field(default=None, foreign_key="user.id", index=True, ondelete="CASCADE")
    published: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class TestQuestion(SQLModel, table=True):
    """One question of a test set."""

    __test__ = False

    id: str = Field(default_factory=new_id, primary_key=True)
    set_id: str = Field(foreign_key="testset.id", index=True, ondelete="CASCADE")
    ordinal: int = 0
    question: str = Field(sa_column=Column(Text, nullable=False))
    expected_fact: str = Field(default="", sa_column=Column(Text, nullable=False))
    expected_file: str | None = None


class CheckRun(SQLModel, table=True):
    """One run of assistants over a test set: its progress while it runs, its figures after."""

    id: str = Field(default_factory=new_id, primary_key=True)
    set_id: str = Field(foreign_key="testset.id", index=True, ondelete="CASCADE")
    owner_id: str | None = Field(default=None, foreign_key="user.id", index=True, ondelete="CASCADE")
    assistant_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    state: str = "queued"  # queued, running, done, cancelled, failed
    fraction: float = 0.0
    cancel: bool = False
    error: str | None = None
    # Per assistant (by id): its name and figures, and the outcome of every question.
    results: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)
    finished_at: datetime | None = None
    # Written at every step of a live run: a queued or running run whose beat stops (its process
    # restarted) is reported as interrupted instead of showing «идёт» for good.
    beat_at: datetime | None = None


class Rating(SQLModel, table=True):
    """A person's 👍 / 👎 on an answer, with what was rated: kept when the chat is deleted (issue 22).

    The question, the answer, its sources, provider, model and settings are copied here, so the
    admin's «Отзывы» (and a test set built from them) read what was rated, not what a chat holds now.
    """

    id: str = Field(default_factory=new_id, primary_key=True)
    # No foreign keys: a rating outlives its chat and its answer row.
    message_id: str = Field(unique=True, index=True)
    chat_id: str = Field(index=True)
    user_id: str | None = Field(default=None, index=True)
    value: int  # 1: 👍, 0: 👎 (st.feedback's thumbs)
    comment: str = Field(default="", sa_column=Column(Text, nullable=False))
    question: str = Field(default="", sa_column=Column(Text, nullable=False))
    answer: str = Field(default="", sa_column=Column(Text, nullable=False))
    sources: list[Source] = Field(default_factory=list, sa_column=Column(SourceList))
    provider: str | None = None
    model: str | None = Field(default=None, index=True)
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class TurnVector(SQLModel, table=True):
    """A chat message's embedding by the library's main embedder: the chat's semantic memory."""

    __tablename__ = "turnvector"

    message_id: str = Field(foreign_key="message.id", primary_key=True, ondelete="CASCADE")
    # The chat it belongs to: memory is searched within one chat, whose owner the service checked.
    chat_id: str = Field(foreign_key="chat.id", index=True, ondelete="CASCADE")
    model: str
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # float32, normalised
