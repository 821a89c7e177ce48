"""The catalogue: the documents a user may read, under their names, and moving or taking them
out of collections."""

from __future__ import annotations

import logging

from rag import DocumentBusy
from rag.identity.access import Forbidden
from rag.library.maintenance import Maintenance
from rag.library.results import (
    DocumentEntry,
)
from storage import (
    NotFoundError,
)
from storage.models import CollectionDocument, User

log = logging.getLogger(__name__)


class Catalogue(Maintenance):
    """Documents as each user sees them."""

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
