"""Admission: the checks of an upload, deduplication (the same bytes are stored and embedded
once, and nobody learns of another's copy), the row, the link and the original."""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy.exc import IntegrityError

from names import clean_filename
from rag.library.catalogue import Catalogue
from rag.library.results import (
    INTERNAL_STORE,
    INTERRUPTED,
    IngestResult,
    Progress,
    too_large_message,
)
from storage import (
    Document,
    DocumentStatus,
)
from storage.models import User

log = logging.getLogger(__name__)


class Admission(Catalogue):
    """Takes uploads in."""

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

    def ingest_many(
        self,
        files: list[tuple[str, bytes]],
        user: User | None = None,
        collection_id: str | None = None,
    ) -> list[IngestResult]:
        """Index several files (name, bytes) into a collection together (``index_many``); the
        outcomes in order. What ``ingest`` refuses or finds already there is reported the same."""
        out: list[IngestResult | None] = []
        items: list[tuple[str, str, bytes]] = []
        where: list[int] = []
        try:
            for filename, data in files:
                admitted = self.admit(filename, data, user, collection_id)
                if isinstance(admitted, IngestResult):
                    out.append(admitted)
                    continue
                out.append(None)
                where.append(len(out) - 1)
                items.append((admitted.id, admitted.filename, data))
        except BaseException:
            for doc_id, name, _data in items:  # admitted, never started: not «индексируется» forever
                self.fail(doc_id, name, INTERRUPTED, keep_original=True)
            raise
        for i, result in zip(where, self.index_many(items), strict=True):
            out[i] = result
        return [r for r in out if r is not None]

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
