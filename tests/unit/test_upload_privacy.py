"""Small leaks (issue 18): what a member learns about another user's copy of the same bytes, and
what a deleted private document leaves in the cross-lingual vocabulary."""

from __future__ import annotations

import threading
from collections.abc import Callable

from rag.library import IngestResult, Library
from tests.unit.test_library import LEASE, RECIPE, HashEmbedder
from tests.unit.test_lossless_reindex import GatedEmbedder


def _seen(res: IngestResult) -> tuple[str, str, str, list[str], str | None]:
    """What the uploader is shown of an outcome."""
    doc = res.document
    return res.filename, res.status, res.message, res.warnings, doc.filename if doc else None


def test_uploading_bytes_another_member_has_looks_like_a_fresh_upload(
    make_library: Callable[..., Library],
) -> None:
    lib = make_library(embedder_=HashEmbedder())
    alice, bob, carol = lib.users.create("alice"), lib.users.create("bob"), lib.users.create("carol")
    first = lib.ingest("секретное_соглашение_с_ООО_Ромашка.txt", LEASE.encode(), user=alice)
    assert first.status == "indexed"
    fresh = lib.ingest("мой.txt", RECIPE.encode(), user=carol)  # bytes nobody had
    again = lib.ingest("мой.txt", LEASE.encode(), user=bob)  # bytes alice has
    assert _seen(again)[:4] == _seen(fresh)[:4]
    assert again.document is not None and again.document.filename == "мой.txt"
    assert "Ромашка" not in repr(again)
    # Stored and embedded once, listed under bob's own name.
    assert lib.docs.totals()["documents"] == 2
    assert [e.name for e in lib.documents(bob)] == ["мой.txt"]
    assert lib.retriever.search("срок аренды", k=1, scope=lib.scope(bob))[0].filename == "мой.txt"


def test_uploading_bytes_another_member_is_indexing_waits_like_a_fresh_upload(
    make_library: Callable[..., Library],
) -> None:
    emb = GatedEmbedder()
    lib = make_library(embedder_=emb)
    alice, bob = lib.users.create("alice"), lib.users.create("bob")
    emb.armed = True
    results: list[IngestResult] = []
    worker = threading.Thread(
        target=lambda: results.append(lib.ingest("секрет_Ромашки.txt", LEASE.encode(), user=alice))
    )
    worker.start()
    theirs: list[IngestResult] = []
    second = threading.Thread(target=lambda: theirs.append(lib.ingest("мой.txt", LEASE.encode(), user=bob)))
    try:
        assert emb.entered.wait(30)
        second.start()
        second.join(1.0)
        # No instant «уже индексируется»: bob's upload runs like any other until the bytes are indexed.
        assert theirs == [] or "индексируется" not in theirs[0].message
    finally:
        emb.gate.set()
        worker.join(30)
        second.join(30)
    [res] = theirs
    assert res.status == "indexed" and res.message == "" and "Ромашк" not in repr(res)
    assert res.document is not None and res.document.filename == "мой.txt"
    assert [r.status for r in results] == ["indexed"]
    assert lib.docs.totals()["documents"] == 1


def test_a_deleted_private_document_leaves_the_vocabulary(make_library: Callable[..., Library]) -> None:
    lib = make_library(embedder_=HashEmbedder())
    assert lib.terms is not None
    alice = lib.users.create("alice")
    secret = "Проект «Зубробизон»: слияние с конкурентом согласовано. Аренда склада продлена."
    doc = lib.ingest("секрет.txt", secret.encode(), user=alice).document
    lib.ingest("договор.txt", LEASE.encode(), user=alice)
    assert doc is not None
    cross = lib.embedders()[1]
    assert "зубробизон" in lib.terms.translate("zubrobizon merger", cross, min_similarity=-1.0, neighbours=50)
    lib.remove(doc.id, alice)
    left = lib.terms.translate("zubrobizon merger", cross, min_similarity=-1.0, neighbours=50)
    assert "зубробизон" not in left and "слиян" not in left
    # Words another fragment still has stay («аренд» is in the lease too).
    assert "аренд" in lib.terms.translate("lease rent", cross, min_similarity=-1.0, neighbours=200)


def test_the_job_body_shows_the_uploader_their_own_name(make_library: Callable[..., Library]) -> None:
    """A queued upload of bytes whose row another member made is indexed under the uploader's name."""
    from rag.jobs.local import Job, job_work
    from storage import DocumentStatus

    lib = make_library(embedder_=HashEmbedder())
    alice, bob = lib.users.create("alice"), lib.users.create("bob")
    # alice's upload was admitted for a worker elsewhere; bob queued the same bytes before it ran.
    row = lib.admit("секрет_Ромашки.txt", LEASE.encode(), user=alice, status=DocumentStatus.QUEUED)
    assert not isinstance(row, IngestResult)
    job = Job("ingest", "мой.txt", document_id=row.id, user_id=bob.id)
    texts: list[str] = []
    job_work(lib, job, LEASE.encode())(job, lambda _f, text: texts.append(text))
    assert job.result is not None and job.result.status == "indexed"
    assert "Ромашк" not in repr(job.result) + " ".join(texts)
    assert job.result.filename == "мой.txt"
