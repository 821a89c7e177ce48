"""The indexing run: a first index (keywords first, then vectors), a re-index built beside the
live version and swapped in on success, and finishing a document's vectors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from language import stem_string
from rag import IngestCancelled, IngestError, RagError
from rag.chunking import chunk_pages
from rag.ingest import Extracted, Options, extract
from rag.library.core import LibraryCore
from rag.library.results import (
    INTERRUPTED,
    IngestResult,
    Progress,
    _kept,
    _lost,
    _no_progress,
    _unfinished_vectors,
    too_many_fragments_message,
)
from rag.search.context import indexed_texts
from storage import (
    Chunk,
    Document,
    DocumentStatus,
    utcnow,
)
from storage.models import new_id

log = logging.getLogger(__name__)

# Fragments of several documents embedded and stored per call (index_many): a Chroma upsert
# costs about 20-50 ms whatever its size, and onnxruntime runs fuller batches.
GROUP_FRAGMENTS = 64
# Documents index_many holds the write locks of at once on PostgreSQL, where each is a pooled
# connection (SQLAlchemy's pool has 5 + 10).
LOCKED_AT_ONCE_POSTGRES = 8


class Indexing(LibraryCore):
    """Writes a document's fragments, keyword rows and vectors, under its lock."""

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
                    return _as_named(self.fail(doc.id, name, _lost(name)), name)
            # A job started again after its worker died finds that worker's half-written rows.
            self._purge_index(doc.id)
            self.docs.update(doc.id, status=DocumentStatus.INDEXING, error=None)
            return _as_named(self._index(doc.id, name, data, progress), name)

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
        self.docs.store_chunks(version_id, chunks, keyword_rows(chunks, name))
        self._store_vectors(
            version_id,
            name,
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
            **_read_fields(extracted),
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
                anchor=d.anchor,
                heading=d.heading,
                boxes=[list(b) for b in d.boxes] if d.boxes is not None else None,
            )
            for i, d in enumerate(drafts)
        ]
        return extracted, chunks

    def _index(self, doc_id: str, name: str, data: bytes, progress: Progress) -> IngestResult:
        keywords_ready = False
        try:
            extracted, chunks = self._chunks(doc_id, name, data, progress)
            self._store_keywords(doc_id, name, extracted, chunks)
            keywords_ready = True
            self._store_vectors(
                doc_id,
                name,
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
            return self.fail(doc_id, name, _internal_error(name))
        except BaseException:
            # Interrupted from outside (a stopped thread, the process shutting down): never leave
            # the document «индексируется» with its rows purged, invisible to search until restart.
            # Once its keyword rows are in, it stays searchable by them; the check finishes it.
            if not keywords_ready:
                self.fail(doc_id, name, INTERRUPTED, keep_original=True)  # it can be re-indexed
            raise

    def _store_keywords(self, doc_id: str, name: str, extracted: Extracted, chunks: list[Chunk]) -> None:
        """Keywords first: the rows and keyword stems committed with the status KEYWORDS.

        One transaction, so the document is found by keyword from here on while its vectors are
        computed. A crash after this point leaves a keyword-searchable document whose missing
        vectors the consistency check (or «Пересчитать векторы») computes.
        """
        self.docs.store_chunks(
            doc_id,
            chunks,
            keyword_rows(chunks, name),
            status=DocumentStatus.KEYWORDS,
            embedded_chunks=0,
            embedding_model=self.embedding_signature,
            error=None,
            **_read_fields(extracted),
        )

    def index_many(self, items: list[tuple[str, str, bytes]]) -> list[IngestResult]:
        """Index admitted documents (id, the uploader's name, bytes) together; outcomes in order.

        Each document's keywords are committed first, on its own, as ``index_admitted`` does;
        then the vectors of all their fragments are computed and stored together, GROUP_FRAGMENTS
        at a time, and each document is ready once all of its are in. Many small files index
        several times faster so: a vector store call costs tens of milliseconds whatever its
        size, and the embedders run full batches (bench/README.md, issue 23). A crash leaves
        every document either failed or found by keyword, its missing vectors for the check.

        Documents another writer holds (or named twice) are indexed one by one afterwards, as
        ``index_admitted`` does, once this group's locks are released: waiting for one while
        holding the others could deadlock with a writer that waits the other way round.
        """
        # On PostgreSQL each lock held is a pooled connection (storage.locks): a few at a time.
        size = LOCKED_AT_ONCE_POSTGRES if self.engine.dialect.name == "postgresql" else len(items)
        if len(items) > size > 0:
            out: list[IngestResult] = []
            try:
                for start in range(0, len(items), size):
                    out += self.index_many(items[start : start + size])
            except BaseException:
                # Interrupted: the groups not begun must not stay «индексируется» either.
                for doc_id, name, _data in items[len(out) + size :]:
                    if self.docs.get(doc_id).status == DocumentStatus.INDEXING:
                        self.fail(doc_id, name, INTERRUPTED, keep_original=True)
                raise
            return out
        results: dict[int, IngestResult] = {}
        later: list[int] = []
        staged: list[tuple[int, str, str, Extracted, list[Chunk]]] = []
        with ExitStack() as held:
            seen: set[str] = set()
            mine: list[tuple[int, Document]] = []
            try:
                for i, (doc_id, _name, _data) in enumerate(items):
                    if doc_id in seen or not held.enter_context(self.locks.hold(doc_id, wait=False)):
                        later.append(i)
                        continue
                    seen.add(doc_id)
                    held.enter_context(self._working_on(doc_id))
                    doc = self.docs.get(doc_id)
                    if doc.status in (DocumentStatus.READY, DocumentStatus.KEYWORDS):
                        later.append(i)  # indexed meanwhile: index_admitted reports (or finishes) it
                        continue
                    mine.append((i, doc))
                # Vectors a dead writer may have left, in one call per collection. A document
                # still being indexed with no fragments has none (vectors come after the keyword
                # stage, which sets the count): fresh uploads cost no call. Its fragment rows
                # are replaced with the keywords, in store_chunks.
                self.vectors.delete_documents(
                    [d.id for _, d in mine if d.chunk_count or d.status != DocumentStatus.INDEXING]
                )
                for i, doc in mine:
                    doc_id, name, data = items[i]
                    if doc.status != DocumentStatus.INDEXING or doc.error is not None:
                        self.docs.update(doc_id, status=DocumentStatus.INDEXING, error=None)
                    try:
                        extracted, chunks = self._chunks(doc_id, name, data, _no_progress)
                        self._store_keywords(doc_id, name, extracted, chunks)
                    except RagError as exc:
                        why = str(exc) if isinstance(exc, IngestError) else f"«{name}»: {exc}"
                        results[i] = _as_named(self.fail(doc_id, name, why), name)
                        continue
                    except Exception:
                        log.exception("indexing %s failed", name)
                        results[i] = _as_named(self.fail(doc_id, name, _internal_error(name)), name)
                        continue
                    staged.append((i, doc_id, name, extracted, chunks))
            except BaseException:
                # Interrupted: what has its keywords stays searchable by them (the check finishes
                # it); the rest of the group must not stay «индексируется» with nothing indexed.
                ready = {doc_id for _, doc_id, _, _, _ in staged}
                for i, (doc_id, name, _data) in enumerate(items):
                    if i not in results and i not in later and doc_id in seen and doc_id not in ready:
                        self.fail(doc_id, name, INTERRUPTED, keep_original=True)
                raise
            if staged:
                results.update(self._finish_group(staged))
        for i in later:
            doc_id, name, data = items[i]
            results[i] = self.index_admitted(doc_id, None, data, name=name)
        return [results[i] for i in range(len(items))]

    def _finish_group(
        self, staged: list[tuple[int, str, str, Extracted, list[Chunk]]]
    ) -> dict[int, IngestResult]:
        """The vectors of documents whose keywords are in, stored together; then each is ready."""
        results: dict[int, IngestResult] = {}
        try:
            self._store_group_vectors([(doc_id, name, chunks) for _, doc_id, name, _, chunks in staged])
            self._add_terms([c.text for *_, chunks in staged for c in chunks])
        except RagError as exc:  # an embedder refused: nothing kept, as for one document
            for i, doc_id, name, _, _ in staged:
                results[i] = _as_named(self.fail(doc_id, name, f"«{name}»: {exc}"), name)
            return results
        except Exception:
            log.exception("storing the vectors of %d documents failed", len(staged))
            for i, doc_id, name, _, _ in staged:
                message = _unfinished_vectors(name)
                doc = self.docs.update(doc_id, error=message)
                results[i] = IngestResult(name, "indexed", doc, message, warnings=[message])
            return results
        for i, doc_id, name, extracted, _ in staged:
            doc = self.docs.update(doc_id, status=DocumentStatus.READY, error=None, indexed_at=utcnow())
            results[i] = IngestResult(name, "indexed", doc, warnings=extracted.warnings)
        return results

    def _store_group_vectors(self, docs: list[tuple[str, str, list[Chunk]]]) -> None:
        """Embed and store the fragments of fresh documents, GROUP_FRAGMENTS at a time, each batch
        counted on its documents (``embedded_chunks``) as soon as it is stored."""
        embedders = self.embedders()
        rows: list[tuple[str, str, str]] = []  # (document id, chunk id, text as embedded)
        for doc_id, name, chunks in docs:
            texts = indexed_texts([c.text for c in chunks], name)
            rows += [(doc_id, c.id, t) for c, t in zip(chunks, texts, strict=True)]
        done: dict[str, int] = {}
        for start in range(0, len(rows), GROUP_FRAGMENTS):
            batch = rows[start : start + GROUP_FRAGMENTS]
            owners, ids, texts = [r[0] for r in batch], [r[1] for r in batch], [r[2] for r in batch]
            for emb in embedders:
                self.vectors.add_rows(emb.name, ids, emb.embed_documents(texts), owners)
            for doc_id in dict.fromkeys(owners):
                done[doc_id] = done.get(doc_id, 0) + owners.count(doc_id)
                self.docs.update(doc_id, embedded_chunks=done[doc_id])

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
            self._store_vectors(doc.id, doc.filename, chunks, progress or (lambda _done: None))
            self._add_terms([c.text for c in chunks])
            when = doc.indexed_at if was_ready and doc.indexed_at else utcnow()
            return self.docs.update(doc.id, status=DocumentStatus.READY, error=None, indexed_at=when)

    def _embedded(self, doc_id: str, chunks: list[Chunk]) -> int:
        """How many of the chunks have their vectors under every configured model."""
        have = [self.vectors.ids_of_document(doc_id, e.name) for e in self.embedders()]
        return sum(1 for c in chunks if all(c.id in ids for ids in have))


def keyword_rows(chunks: list[Chunk], name: str) -> list[str]:
    """The stems a document's fragments are keyword-indexed under: context included."""
    return [stem_string(t) for t in indexed_texts([c.text for c in chunks], name)]


def _internal_error(name: str) -> str:
    """The Russian message of an indexing run that failed inside the app (details in the log)."""
    return (
        f"«{name}»: внутренняя ошибка при индексации (подробности записаны в журнал приложения). "
        "Попробуйте загрузить файл ещё раз; если ошибка повторится, сообщите администратору."
    )


def _as_named(result: IngestResult, name: str) -> IngestResult:
    """The outcome under the uploader's own name: the row may carry another member's name for the bytes."""
    if result.document is not None:
        result.document = result.document.model_copy(update={"filename": name})
    return result


def _read_fields(extracted: Extracted) -> dict[str, Any]:
    """What a document row records of how its file was read."""
    return {
        "mime_type": extracted.mime_type,
        "encoding": extracted.encoding,
        "pages": extracted.page_count,
        "warnings": "; ".join(extracted.warnings) or None,
        "damaged_pages": extracted.damaged_pages,
        "ocr_pages": sum(1 for p in extracted.pages if p.ocr),
    }
