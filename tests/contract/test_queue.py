"""Background indexing: jobs run off the page's thread, report progress and can be cancelled."""

from __future__ import annotations

import time
from typing import Any

import pytest

from rag.jobs import IndexingQueue
from storage import DocumentStatus, NotFoundError

SENTENCE = "Арендатор обязан своевременно вносить арендную плату и содержать помещение в порядке. "


def _wait(job: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while job.state != "done":
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.05)


def test_jobs_index_in_order_and_report_progress(library: Any) -> None:
    queue = IndexingQueue(library)
    first = queue.submit("a.txt", ("Первый документ о сроке аренды. " * 20).encode())
    second = queue.submit("b.txt", ("Второй документ об арендной плате. " * 20).encode())
    assert first.state in ("queued", "running", "done")
    _wait(first)
    _wait(second)
    assert first.result is not None and first.result.status == "indexed"
    assert second.result is not None and second.result.status == "indexed"
    assert first.fraction == second.fraction == 1.0
    assert {d.filename for d in library.docs.list_all()} == {"a.txt", "b.txt"}


def test_cancelled_job_leaves_nothing_behind(library: Any) -> None:
    queue = IndexingQueue(library)
    job = queue.submit("big.txt", (SENTENCE * 400).encode())
    deadline = time.monotonic() + 60
    while job.state != "running" or job.fraction < 0.6:  # extraction done, embedding about to start
        assert time.monotonic() < deadline
        time.sleep(0.02)
    job.cancel.set()
    _wait(job)
    assert job.result is not None and job.result.status == "failed"
    assert "отменена" in job.result.message
    (doc,) = library.docs.list_all()
    assert doc.status == DocumentStatus.FAILED
    assert library.docs.chunks(doc.id) == []
    assert library.vectors.count(library.embedding_model) == 0
    assert library.check().ok


def test_cancel_before_start_skips_the_file(library: Any) -> None:
    queue = IndexingQueue(library)
    blocker = queue.submit("first.txt", (SENTENCE * 60).encode())
    waiting = queue.submit("second.txt", b"text that never gets indexed")
    waiting.cancel.set()
    _wait(blocker)
    _wait(waiting)
    assert waiting.result is not None and waiting.result.status == "failed"
    assert [d.filename for d in library.docs.list_all()] == ["first.txt"]


def test_maintenance_runs_in_the_queue_in_order(library: Any) -> None:
    queue = IndexingQueue(library)
    upload = queue.submit("c.txt", (SENTENCE * 30).encode())
    upload.wait(120)
    assert upload.result is not None and upload.result.status == "indexed"
    doc_id = upload.document_id
    assert doc_id is not None
    reindex = queue.reindex(doc_id)
    assert queue.reindex(doc_id) is reindex  # a second click while queued adds nothing
    delete = queue.delete(doc_id)  # queued behind the re-index: waits for it
    assert queue.pending(document_id=doc_id) is not None
    assert delete.wait(120)
    assert reindex.state == "done" and not reindex.failed and "переиндексирован" in reindex.message
    assert not delete.failed and "удалён" in delete.message
    assert library.docs.list_all() == []
    assert queue.pending() is None
    repair = queue.repair()
    assert repair.wait(60) and not repair.failed
    reembed = queue.reembed()
    assert reembed.wait(60) and not reembed.failed and "0 док." in reembed.message


def test_deleting_a_document_that_is_gone_says_not_found(library: Any) -> None:
    queue = IndexingQueue(library)
    upload = queue.submit("d.txt", (SENTENCE * 30).encode())
    upload.wait(120)
    assert upload.document_id is not None
    library.delete(upload.document_id)  # gone by another route meanwhile
    with pytest.raises(NotFoundError):
        queue.delete(upload.document_id)
