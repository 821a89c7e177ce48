"""The indexing queue: every long change to the library runs here, off the page's thread.

Uploads, re-indexing, re-embedding, repair and deletion are jobs run one at a time by one
worker thread, in the order they were queued: embedding and OCR use every core, so one job at
a time is fastest, and a deletion queued behind an upload of the same file waits for it. A
click on the page starts a new script run but never interrupts a job. Each job reports its
progress and outcome, and can be cancelled.

This is the queue of the embedded mode. ``rag.shared_queue`` is the other implementation of
the same ``Queue`` interface: jobs kept in PostgreSQL, run by ``python -m rag worker``
processes; both run a job's work through ``run_job``, so a job ends the same way in either.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Protocol

from rag import IngestCancelled, RagError
from rag.library import IngestResult, Library
from storage.models import User

log = logging.getLogger(__name__)
KEEP_DONE_S = 3600.0
JobState = Literal["queued", "running", "done"]
JobKind = Literal["ingest", "reindex", "reembed", "repair", "delete"]
INTERNAL = "внутренняя ошибка при индексации (подробности в журнале)."


@dataclass
class Job:
    """One piece of work; fields are written by the worker and read by the page."""

    kind: JobKind
    filename: str  # what the job is about, as shown next to its progress bar
    document_id: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: JobState = "queued"
    fraction: float = 0.0
    text: str = "В очереди"
    result: IngestResult | None = None  # uploads and re-indexing
    message: str = ""  # the outcome in Russian
    failed: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    finished_at: float | None = None  # time.monotonic() when done

    def wait(self, timeout: float | None = None, poll_s: float = 0.02) -> bool:
        """Block until the job is done (the CLI and tests); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state != "done":
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(poll_s)
            self.refresh()
        return True

    def refresh(self) -> None:
        """Bring the fields up to date (the worker thread writes this object itself: nothing to do)."""


Work = Callable[[Job, Callable[[float, str], None]], None]


class Queue(Protocol):
    """What the pages, the CLI and the tests ask of an indexing queue."""

    def submit(
        self, filename: str, data: bytes, user: User | None = None, collection_id: str | None = None
    ) -> Job:
        """Queue an uploaded file for indexing into a collection (the user's own by default)."""

    def reindex(self, document_id: str, user: User | None = None) -> Job:
        """Queue indexing a stored document again (admins)."""

    def delete(self, document_id: str, user: User | None = None) -> Job:
        """Queue deleting a document (admins)."""

    def reembed(self, user: User | None = None) -> Job:
        """Queue re-embedding documents made with another model (admins)."""

    def repair(self, user: User | None = None) -> Job:
        """Queue the consistency check with repair (admins)."""

    def get(self, job_id: str) -> Job | None:
        """A job's current state by id (None once forgotten)."""

    def pending(self, kind: JobKind | None = None, document_id: str | None = None) -> Job | None:
        """A queued or running job of this kind and document, if any."""

    def cancel(self, job_id: str) -> None:
        """Ask a queued or running job to stop."""


def run_job(job: Job, work: Work, on_progress: Callable[[Job], None] | None = None) -> None:
    """Run a job's work, turning every way it can end into the job's outcome; never raises.

    ``on_progress`` sees the job after each progress step (the shared queue saves it there and
    reads back a cancel request).
    """

    def progress(fraction: float, text: str) -> None:
        if job.cancel.is_set():
            raise IngestCancelled(f"«{job.filename}»: индексация отменена.")
        job.fraction, job.text = fraction, text
        if on_progress is not None:
            on_progress(job)

    if job.cancel.is_set():
        _cancelled(job)
    else:
        job.state = "running"
        try:
            work(job, progress)
        except IngestCancelled:
            _cancelled(job)
        except RagError as exc:  # a refusal meant for the user (e.g. the document is busy)
            job.failed, job.message = True, str(exc)
        except Exception:  # the library reports bad files itself; this is a last resort
            log.exception("%s job for %s failed", job.kind, job.filename)  # details for the log only
            job.failed, job.message = True, f"«{job.filename}»: {INTERNAL}"
            if job.kind == "ingest":
                job.result = IngestResult(job.filename, "failed", message=job.message)
    if job.result is not None:
        job.failed = job.result.status == "failed"
        job.message = job.message or job.result.message
    job.fraction, job.finished_at, job.state = 1.0, time.monotonic(), "done"


def _cancelled(job: Job) -> None:
    message = f"«{job.filename}»: индексация отменена."
    if job.kind == "ingest":
        job.result = IngestResult(job.filename, "failed", message=message)
    job.failed, job.message = True, message


class IndexingQueue:
    """One worker thread over the library; jobs of every kind share its order."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="indexing")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    # -- submitting -------------------------------------------------------------------------

    def submit(
        self, filename: str, data: bytes, user: User | None = None, collection_id: str | None = None
    ) -> Job:
        """Queue an uploaded file for indexing into a collection (the user's own by default)."""
        return self._queue(
            Job("ingest", filename),
            lambda job, progress: self._ingested(job, data, progress, user, collection_id),
        )

    def _admin(self, user: User | None) -> None:
        # Whole-library work (any document, every vector) is an admin's, whichever page asks.
        self.library.access.require_admin(self.library.actor(user))

    def reindex(self, document_id: str, user: User | None = None) -> Job:
        """Queue indexing a stored document again from its original (admins)."""
        self._admin(user)
        doc = self.library.docs.get(document_id)
        return self._queue_once(Job("reindex", doc.filename, doc.id), self._reindexed)

    def delete(self, document_id: str, user: User | None = None) -> Job:
        """Queue deleting a document (admins; after any work on it that is queued before)."""
        self._admin(user)
        doc = self.library.docs.get(document_id)

        def run(job: Job, _progress: Callable[[float, str], None]) -> None:
            self.library.delete(document_id)
            job.message = f"Файл «{doc.filename}» удалён."

        return self._queue_once(Job("delete", doc.filename, doc.id), run)

    def reembed(self, user: User | None = None) -> Job:
        """Queue re-embedding every document made with another embedding model (admins)."""
        self._admin(user)

        def run(job: Job, progress: Callable[[float, str], None]) -> None:
            n = self.library.reembed(progress)
            job.message = f"Векторы пересчитаны для {n} док."

        return self._queue_once(Job("reembed", "Пересчёт векторов"), run)

    def repair(self, user: User | None = None) -> Job:
        """Queue the consistency check with repair (admins)."""
        self._admin(user)

        def run(job: Job, _progress: Callable[[float, str], None]) -> None:
            report = self.library.check(repair=True)
            job.message = "Расхождения исправлены." if not report.ok else "Расхождений не было."

        return self._queue_once(Job("repair", "Исправление расхождений"), run)

    # -- reading ----------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """A job by id (None once forgotten)."""
        with self._lock:
            return self._jobs.get(job_id)

    def pending(self, kind: JobKind | None = None, document_id: str | None = None) -> Job | None:
        """A queued or running job of this kind (any kind if None) and document, if there is one."""
        with self._lock:
            for job in self._jobs.values():
                if job.state == "done" or (kind is not None and job.kind != kind):
                    continue
                if document_id is None or job.document_id == document_id:
                    return job
        return None

    def cancel(self, job_id: str) -> None:
        """Ask a queued or running job to stop (at its next progress step)."""
        job = self.get(job_id)
        if job is not None:
            job.cancel.set()

    # -- the worker -------------------------------------------------------------------------

    def _queue_once(self, job: Job, work: Work) -> Job:
        """Queue unless the same kind of work on the same document is already waiting or running."""
        with self._lock:
            for other in self._jobs.values():
                same = other.kind == job.kind and other.document_id == job.document_id
                if same and other.state != "done":
                    return other
        return self._queue(job, work)

    def _queue(self, job: Job, work: Work) -> Job:
        with self._lock:
            # Finished jobs stay readable for a while (a page may report them more than once,
            # from two overlapping runs); then their records go.
            now = time.monotonic()
            stale = [k for k, j in self._jobs.items() if j.finished_at and now - j.finished_at > KEEP_DONE_S]
            for k in stale:
                del self._jobs[k]
            self._jobs[job.id] = job
        self._pool.submit(run_job, job, work)
        return job

    def _ingested(
        self,
        job: Job,
        data: bytes,
        progress: Callable[[float, str], None],
        user: User | None,
        collection_id: str | None,
    ) -> None:
        job.result = self.library.ingest(job.filename, data, progress, user=user, collection_id=collection_id)
        if job.result.document is not None:
            job.document_id = job.result.document.id

    def _reindexed(self, job: Job, progress: Callable[[float, str], None]) -> None:
        assert job.document_id is not None
        job.result = self.library.reindex(job.document_id, progress)
        if job.result.status == "indexed":
            job.message = f"«{job.filename}» переиндексирован."
