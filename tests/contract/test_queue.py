"""The indexing queue contract, on both queues: the in-process one and the shared one on
PostgreSQL with a worker. Jobs run off the page's thread, in order, report progress and their
outcome, can be cancelled, and whole-library work is for admins only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rag.identity.access import Forbidden
from rag.jobs.local import IndexingQueue, Queue
from rag.library import Library
from storage import DocumentStatus, NotFoundError
from storage.models import Role
from tests.backends import Servers

SENTENCE = "Арендатор обязан своевременно вносить арендную плату и содержать помещение в порядке. "


@pytest.fixture
def library(make_library: Callable[..., Library], test_servers: Servers | None) -> Library:
    """An empty library on the backend under test (the shared queue's settings on the servers)."""
    if test_servers is None:
        return make_library()
    return make_library(**test_servers.fresh(), RAG_QUEUE="postgres")


@pytest.fixture
def queue(library: Library, test_servers: Servers | None) -> Iterator[Queue]:
    """The queue of the backend: in-process, or shared with one worker running in a thread."""
    if test_servers is None:
        yield IndexingQueue(library)
        return
    from rag.jobs.shared import SharedQueue

    shared = SharedQueue(library)
    stop = threading.Event()
    worker = threading.Thread(
        target=shared.run_worker, kwargs={"heartbeat_s": 1.0, "stop": stop}, daemon=True
    )
    worker.start()
    yield shared
    stop.set()
    worker.join(30)
    assert not worker.is_alive(), "the worker did not stop"
    shared.close()


def _wait(queue: Queue, job: Any, timeout: float = 600) -> Any:
    """The job once done (a shared job's record is read again)."""
    deadline = time.monotonic() + timeout
    while True:
        job = queue.get(job.id)
        if job.state == "done":
            return job
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.05)


def test_jobs_index_in_order_and_report_progress(library: Any, queue: Queue) -> None:
    first = queue.submit("a.txt", ("Первый документ о сроке аренды. " * 20).encode())
    second = queue.submit("b.txt", ("Второй документ об арендной плате. " * 20).encode())
    assert first.state in ("queued", "running", "done")
    first, second = _wait(queue, first), _wait(queue, second)
    assert first.result is not None and first.result.status == "indexed"
    assert second.result is not None and second.result.status == "indexed"
    assert first.fraction == second.fraction == 1.0
    assert {d.filename for d in library.docs.list_all()} == {"a.txt", "b.txt"}


def test_cancelled_job_leaves_nothing_behind(library: Any, queue: Queue) -> None:
    job = queue.submit("big.txt", (SENTENCE * 400).encode())
    deadline = time.monotonic() + 600
    seen: list[float] = []
    while job.state != "running" or job.fraction < 0.6:  # extraction done, embedding about to start
        assert time.monotonic() < deadline
        time.sleep(0.02)
        job = queue.get(job.id)
        seen.append(job.fraction)
    assert seen == sorted(seen)  # the page that queued it sees its progress grow
    queue.cancel(job.id)
    job = _wait(queue, job)
    assert job.result is not None and job.result.status == "failed"
    assert "отменена" in job.result.message
    (doc,) = library.docs.list_all()
    assert doc.status == DocumentStatus.FAILED
    assert library.docs.chunks(doc.id) == []
    assert library.vectors.count(library.embedding_model) == 0
    assert library.check().ok


def test_cancel_before_start_skips_the_file(library: Any, queue: Queue) -> None:
    blocker = queue.submit("first.txt", (SENTENCE * 60).encode())
    waiting = queue.submit("second.txt", b"text that never gets indexed")
    queue.cancel(waiting.id)
    blocker, waiting = _wait(queue, blocker), _wait(queue, waiting)
    assert waiting.result is not None and waiting.result.status == "failed"
    assert [d.filename for d in library.docs.list_all()] == ["first.txt"]


def test_maintenance_runs_in_the_queue_in_order(library: Any, queue: Queue) -> None:
    upload = queue.submit("c.txt", (SENTENCE * 30).encode())
    upload = _wait(queue, upload)
    assert upload.result is not None and upload.result.status == "indexed"
    doc_id = upload.document_id
    assert doc_id is not None
    reindex = queue.reindex(doc_id)
    assert queue.reindex(doc_id).id == reindex.id  # a second click while queued adds nothing
    delete = queue.delete(doc_id)  # queued behind the re-index: waits for it
    assert queue.pending(document_id=doc_id) is not None
    delete = _wait(queue, delete)
    reindex = queue.get(reindex.id)
    assert reindex.state == "done" and not reindex.failed and "переиндексирован" in reindex.message
    assert not delete.failed and "удалён" in delete.message
    assert library.docs.list_all() == []
    assert queue.pending() is None
    repair = queue.repair()
    assert repair.wait(60) and not repair.failed
    reembed = queue.reembed()
    assert reembed.wait(60) and not reembed.failed and "0 док." in reembed.message


def test_deleting_a_document_that_is_gone_says_not_found(library: Any, queue: Queue) -> None:
    upload = queue.submit("d.txt", (SENTENCE * 30).encode())
    upload = _wait(queue, upload)
    assert upload.document_id is not None
    library.delete(upload.document_id)  # gone by another route meanwhile
    with pytest.raises(NotFoundError):
        queue.delete(upload.document_id)


def test_whole_library_work_is_for_admins(queue: Queue) -> None:
    library = queue.library  # type: ignore[attr-defined]
    admin = library.users.create("boss", role=Role.ADMIN)
    alice = library.users.create("alice")
    upload = _wait(queue, queue.submit("e.txt", (SENTENCE * 10).encode(), user=alice))
    assert upload.result is not None and upload.result.status == "indexed"
    doc_id = upload.document_id
    assert doc_id is not None
    for work in (
        lambda u: queue.delete(doc_id, u),
        lambda u: queue.reindex(doc_id, u),
        lambda u: queue.reembed(u),
        lambda u: queue.repair(u),
    ):
        with pytest.raises(Forbidden):
            work(alice)  # even the uploader: her path is Library.remove
    assert queue.pending() is None
    assert library.docs.get(doc_id).status == DocumentStatus.READY
    gone = _wait(queue, queue.delete(doc_id, admin))
    assert not gone.failed and library.docs.list_all() == []


def _idle(queue: Queue, timeout: float = 600) -> None:
    """Wait until no job is queued or running (including jobs the queue made by itself)."""
    deadline = time.monotonic() + timeout
    while queue.pending() is not None:
        assert time.monotonic() < deadline, "the queue did not empty"
        time.sleep(0.05)


def test_a_small_upload_is_not_stuck_behind_another_members_large_one(queue: Queue) -> None:
    library = queue.library  # type: ignore[attr-defined]
    alice, bob = library.users.create("alice"), library.users.create("bob")
    # About fifty fragments: two batches of vectors, each a point where the queue serves someone else.
    large = queue.submit("large.txt", (SENTENCE * 400).encode(), user=alice)
    small = queue.submit("small.txt", "Склад работает с 8:00 до 20:00 без выходных.".encode(), user=bob)
    small = _wait(queue, small, 600)
    assert small.result is not None and small.result.status == "indexed"
    # Bob's upload waited for at most one step of Alice's, not for her whole file.
    statuses = {d.filename: d.status for d in library.docs.list_all()}
    assert statuses["small.txt"] == DocumentStatus.READY
    assert statuses["large.txt"] != DocumentStatus.READY
    large = _wait(queue, large, 600)
    assert large.result is not None and large.result.status == "indexed"
    assert library.docs.get(large.document_id).status == DocumentStatus.READY


def test_only_the_uploader_follows_and_cancels_a_job_and_an_admin_cancels_any(queue: Queue) -> None:
    library = queue.library  # type: ignore[attr-defined]
    boss = library.users.create("boss", role=Role.ADMIN)
    alice, bob = library.users.create("alice"), library.users.create("bob")
    blocker = queue.submit("first.txt", (SENTENCE * 60).encode(), user=alice)
    job = queue.submit("second.txt", "Текст, который так и не проиндексируют.".encode(), user=alice)
    assert queue.get(job.id, bob) is None  # another member learns nothing about it
    with pytest.raises(Forbidden):
        queue.cancel(job.id, bob)
    mine = queue.get(job.id, alice)
    assert mine is not None and mine.filename == "second.txt"
    queue.cancel(job.id, boss)
    job = _wait(queue, job)
    assert job.failed and "отменена" in job.message
    _wait(queue, blocker)
    assert [d.filename for d in library.docs.list_all()] == ["first.txt"]


def test_cancelling_an_upload_keeps_the_document_for_another_member_who_added_it(queue: Queue) -> None:
    library = queue.library  # type: ignore[attr-defined]
    alice, bob = library.users.create("alice"), library.users.create("bob")
    data = ("Общий регламент приёмки товара на складе. " * 20).encode()
    blocker = queue.submit("first.txt", (SENTENCE * 60).encode(), user=alice)
    mine = queue.submit("regl.txt", data, user=alice)  # waits behind Alice's own first file
    queue.submit("priemka.txt", data, user=bob)  # the same bytes, in Bob's collection
    queue.cancel(mine.id, alice)
    _wait(queue, blocker)
    assert _wait(queue, mine).failed
    _idle(queue)
    (entry,) = library.documents(bob)
    assert entry.name == "priemka.txt"
    assert entry.document.status == DocumentStatus.READY
    assert [e.name for e in library.documents(alice)] == ["first.txt"]


def test_an_admin_sees_who_uses_the_queue(queue: Queue) -> None:
    library = queue.library  # type: ignore[attr-defined]
    boss = library.users.create("boss", role=Role.ADMIN)
    alice, bob = library.users.create("alice"), library.users.create("bob")
    first = queue.submit("first.txt", (SENTENCE * 300).encode(), user=alice)
    second = queue.submit("second.txt", "Второй файл Алисы.".encode(), user=alice)
    third = queue.submit("third.txt", "Файл Боба о складе.".encode(), user=bob)
    with pytest.raises(Forbidden):
        queue.overview(alice)
    jobs = queue.overview(boss)
    assert {j.id for j in jobs} <= {first.id, second.id, third.id}
    by_user = {j.id: j.user_id for j in jobs}
    assert by_user.get(second.id, alice.id) == alice.id and by_user.get(third.id, bob.id) == bob.id
    assert second.id in by_user  # Alice's second file waits behind her first
    queue.cancel(second.id, boss)
    for job in (first, second, third):
        _wait(queue, job)
    assert queue.overview(boss) == []
    assert queue.get(second.id).failed
