"""Maintenance: deleting, recovering after a crash, re-embedding, the consistency check and
repair; each change to a document under its lock."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from rag import DocumentBusy
from rag.library.indexing import Indexing
from rag.library.results import (
    INTERRUPTED,
    MODEL_SEPARATOR,
    ConsistencyReport,
    Progress,
    _no_progress,
)
from storage import (
    Document,
    DocumentStatus,
    NotFoundError,
)

log = logging.getLogger(__name__)


class Maintenance(Indexing):
    """Keeps SQL, keyword rows and vectors in step after crashes, model changes and deletions."""

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
        mirror = self.docs.keyword_mirror_state()
        if mirror is not None:
            report.keyword_index_behind = mirror.behind
            if not mirror.behind:
                report.keyword_index_mismatch = abs(mirror.mirror_rows - mirror.sql_rows)
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
            self.docs.repair_keyword_mirror()
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
