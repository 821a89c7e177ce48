"""A member who may read tens of thousands of documents can still search (issue 18): the scope is
a subquery over their collections, never one bound parameter per document."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import insert

from rag.library import Library
from storage import DocumentStatus
from storage.models import Access, CollectionDocument, Document, new_id, utcnow
from tests.unit.test_library import LEASE, HashEmbedder

MANY = 40_000


@pytest.mark.parametrize("method", ["keyword", "dense", "hybrid"])
def test_a_member_reading_forty_thousand_documents_can_search(
    make_library: Callable[..., Library], method: str
) -> None:
    lib = make_library(embedder_=HashEmbedder(), RAG_CROSSLINGUAL_MODEL="")
    admin = lib.access.local_user()
    member, outsider = lib.users.create("member"), lib.users.create("outsider")
    archive = lib.collections.create("Архив", admin.id, everyone=Access.NONE)
    lib.collections.grant(archive.id, member.id, Access.READ)
    real = lib.ingest("dogovor.txt", LEASE.encode(), collection_id=archive.id).document
    assert real is not None
    # The rest of the archive, inserted in bulk: rows are enough, search never reaches them.
    now = utcnow()
    ids = [new_id() for _ in range(MANY)]
    with lib.engine.begin() as conn:
        conn.execute(
            insert(Document),
            [
                {
                    "id": i,
                    "filename": f"акт-{n}.txt",
                    "owner_id": admin.id,
                    "sha256": i * 2,
                    "status": DocumentStatus.READY,
                    "created_at": now,
                    "mime_type": "text/plain",
                    "size": 1,
                    "chunk_count": 0,
                    "embedded_chunks": 0,
                }
                for n, i in enumerate(ids)
            ],
        )
        conn.execute(
            insert(CollectionDocument),
            [
                {"collection_id": archive.id, "document_id": i, "filename": f"акт-{n}.txt", "added_at": now}
                for n, i in enumerate(ids)
            ],
        )
    scope = lib.scope(member)
    hits = lib.retriever.search("какой срок аренды", k=3, method=method, scope=scope)  # type: ignore[arg-type]
    assert hits and hits[0].document_id == real.id and hits[0].filename == "dogovor.txt"
    assert lib.retriever.search("какой срок аренды", k=3, method=method, scope=lib.scope(outsider)) == []  # type: ignore[arg-type]
