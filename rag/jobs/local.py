"""The indexing queues' common part: jobs, the one job body, and fair turns between uploaders.

Uploads, re-indexing, re-embedding, repair and deletion are jobs, run off the page's thread. A
click on the page starts a new script run but never interrupts a job. Each job reports its
progress and outcome, and can be cancelled by whoever queued it (or an admin).

There are two queues, and they differ only in how they hand out and record jobs:

- ``IndexingQueue`` (here) is the embedded mode's: jobs in this process's memory, one worker
  thread;
- ``rag.jobs.shared.SharedQueue`` keeps jobs in PostgreSQL (procrastinate), run by
  ``python -m rag worker`` processes.

Both admit an upload on the caller's thread (checks, deduplication, the document row in
«queued», the original) and run every job through the same body (``job_work``) and the same
ending (``run_job``, then ``settle_unstarted`` for an upload that never began).

Fairness. Uploaders are served in turn, not in the order of their files: the next job handed out
is the oldest one of the user served least recently, and a running job gives other users a turn
at each of its progress steps (a page of OCR, a batch of vectors). There, one waiting job of
another user runs to its end, nested on the same worker, before the paused job goes on; it gives
turns in its own steps to users not yet on that stack. So one member's large upload delays
another member's small one by at most one step. Only jobs about one document take such turns;
whole-library work (re-embedding, repair) neither pauses nor runs nested, so it never waits on a
paused document (nor a paused job on it), and the jobs of one document keep their order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from rag import DocumentBusy, IngestCancelled, RagError
from rag.identity.access import Forbidden
from rag.library import IngestResult, Library
from storage import DocumentStatus, NotFoundError
from storage.models import CollectionDocument, User

log = logging.getLogger(__name__)
KEEP_DONE_S = 3600.0
JobState = Literal["queued", "running", "done"]
JobKind = Literal["ingest", "reindex", "reembed", "repair", "delete"]
# Jobs about one document: they take turns with other users' jobs. The others are library-wide.
DOCUMENT_KINDS: tuple[str, ...] = ("ingest", "reindex", "delete")
INTERNAL = "внутренняя ошибка при индексации (подробности в журнале)."
NOT_YOURS = "Эту задачу поставил другой пользователь: отменить её может он сам или администратор."


@dataclass
class Job:
    """One piece of work; fields are written by the worker and read by the page."""

    kind: JobKind
    filename: str  # what the job is about, as shown next to its progress bar
    document_id: str | None = None
    user_id: str | None = None  # who queued it: only they (and admins) follow and cancel it
    collection_id: str | None = None  # where an upload was put (taken back if it never starts)
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


Progress = Callable[[float, str], None]
Work = Callable[[Job, Progress], None]


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

    def get(self, job_id: str, user: User | None = None) -> Job | None:
        """A job's current state, for the user who queued it or an admin (None otherwise)."""

    def pending(self, kind: JobKind | None = None, document_id: str | None = None) -> Job | None:
        """A queued or running job of this kind and document, if any."""

    def cancel(self, job_id: str, user: User | None = None) -> None:
        """Ask a queued or running job to stop (its uploader or an admin)."""

    def overview(self, user: User | None = None) -> list[Job]:
        """Every queued or running job, oldest first, with who queued it (admins)."""


# -- the one job body -------------------------------------------------------------------------


def job_work(library: Library, job: Job, data: bytes | None = None) -> Work:
    """The work of a job of any kind; ``data`` is an upload's bytes when this process has them."""

    def ingest(job: Job, progress: Progress) -> None:
        assert job.document_id is not None
        doc = library.docs.get(job.document_id)
        if doc.status == DocumentStatus.READY:  # indexed meanwhile by a job queued for the same bytes
            job.result = IngestResult(
                job.filename, "indexed", doc.model_copy(update={"filename": job.filename})
            )
            return
        job.result = library.index_admitted(job.document_id, progress, data, name=job.filename)

    def reindex(job: Job, progress: Progress) -> None:
        assert job.document_id is not None
        job.result = library.reindex(job.document_id, progress)
        if job.result.status == "indexed":
            job.message = f"«{job.filename}» переиндексирован."

    def delete(job: Job, _progress: Progress) -> None:
        assert job.document_id is not None
        with contextlib.suppress(NotFoundError):  # already gone: what the admin asked for
            library.delete(job.document_id)
        job.message = f"Файл «{job.filename}» удалён."

    def reembed(job: Job, progress: Progress) -> None:
        job.message = f"Векторы пересчитаны для {library.reembed(progress)} док."

    def repair(job: Job, _progress: Progress) -> None:
        report = library.check(repair=True)
        job.message = "Расхождения исправлены." if not report.ok else "Расхождений не было."

    works: dict[str, Work] = {
        "ingest": ingest,
        "reindex": reindex,
        "delete": delete,
        "reembed": reembed,
        "repair": repair,
    }
    return works[job.kind]


def run_job(
    job: Job,
    work: Work,
    on_progress: Callable[[Job], None] | None = None,
    on_turn: Callable[[Job], None] | None = None,
    on_end: Callable[[Job], None] | None = None,
) -> None:
    """Run a job's work, turning every way it can end into the job's outcome; never raises.

    ``on_progress`` sees the job after each progress step (the shared queue saves it there and
    reads back a cancel request); ``on_turn`` then lets other users' jobs have a turn. ``on_end``
    tidies up after the outcome is known and before anyone can see the job done.
    """

    def progress(fraction: float, text: str) -> None:
        if job.cancel.is_set():
            raise IngestCancelled(f"«{job.filename}»: индексация отменена.")
        job.fraction, job.text = fraction, text
        if on_progress is not None:
            on_progress(job)
        if on_turn is not None:
            on_turn(job)

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
    if on_end is not None:
        try:
            on_end(job)
        except Exception:
            log.exception("tidying up after the %s job for %s failed", job.kind, job.filename)
    job.fraction, job.finished_at, job.state = 1.0, time.monotonic(), "done"


def _cancelled(job: Job) -> None:
    message = f"«{job.filename}»: индексация отменена."
    if job.kind == "ingest":
        job.result = IngestResult(job.filename, "failed", message=message)
    job.failed, job.message = True, message


def settle_unstarted(library: Library, job: Job) -> CollectionDocument | None:
    """Take back an upload whose job ended before indexing began (cancelled, refused).

    The uploader's link goes. The document goes too, unless someone else put the same bytes in
    their collection meanwhile: then it stays, and the link returned says for whom the queue
    must index it.
    """
    if job.kind != "ingest" or job.document_id is None:
        return None
    try:
        doc = library.docs.get(job.document_id)
    except NotFoundError:
        return None
    if doc.status != DocumentStatus.QUEUED:
        return None
    if job.collection_id is not None:
        library.collections.unlink(job.collection_id, doc.id)
    others = library.collections.links_of_document(doc.id)
    if others:
        return others[0]
    with contextlib.suppress(NotFoundError, DocumentBusy):  # gone, or a live job has it: leave it be
        library.delete(doc.id)
    return None


def target_collection(library: Library, actor: User, collection_id: str | None) -> str:
    """The collection an upload goes to: the given one, or the user's own."""
    return collection_id or library.access.personal_collection(actor).id


def visible(library: Library, job: Job | None, actor: User) -> bool:
    """True if the user may follow this job: they queued it, or they are an admin."""
    return job is not None and (job.user_id == actor.id or library.access.is_admin(actor))


def check_cancel(library: Library, job: Job | None, actor: User) -> bool:
    """True if the user may cancel the job (False for an unknown one); Forbidden for another's."""
    if job is None:
        return False
    if job.user_id != actor.id and not library.access.is_admin(actor):
        raise Forbidden(NOT_YOURS)
    return True


# -- fair turns -------------------------------------------------------------------------------

# Claims one waiting job of a user not in the first set, about a document not in the second, and
# returns what runs it to its end; None when no such job waits.
Claim = Callable[[frozenset[str | None], frozenset[str]], Callable[[], None] | None]


class Turns:
    """Round-robin between uploaders at a running job's progress steps (jobs nest on one thread)."""

    def __init__(self, claim: Claim) -> None:
        self._claim = claim
        self._local = threading.local()

    def _stack(self) -> list[Job]:
        stack: list[Job] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    @contextlib.contextmanager
    def running(self, job: Job) -> Iterator[None]:
        """Mark the job as running on this thread (paused, when another runs nested above it)."""
        stack = self._stack()
        stack.append(job)
        try:
            yield
        finally:
            stack.pop()

    def checkpoint(self, job: Job) -> None:
        """A progress step of the innermost running job: one other user's waiting job runs now."""
        stack = self._stack()
        if not stack or stack[-1] is not job or any(j.kind not in DOCUMENT_KINDS for j in stack):
            return
        users = frozenset(j.user_id for j in stack)
        documents = frozenset(j.document_id for j in stack if j.document_id is not None)
        run = self._claim(users, documents)
        if run is not None:
            run()


# -- the in-process queue -----------------------------------------------------------------------


class IndexingQueue:
    """Jobs in this process's memory, run by one worker thread, uploaders in turn."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._jobs: dict[str, Job] = {}
        self._waiting: list[tuple[Job, Work]] = []
        self._served: dict[str | None, int] = {}  # user -> when they were last handed a job
        self._round = 0
        self._cond = threading.Condition()
        self._turns = Turns(self._claim)
        self._worker: threading.Thread | None = None
        # Documents whose upload waits here are in «queued» by design, not left by a crash.
        library.queued_elsewhere = self._queued_documents

    # -- submitting -------------------------------------------------------------------------

    def submit(
        self, filename: str, data: bytes, user: User | None = None, collection_id: str | None = None
    ) -> Job:
        """Admit an upload now and queue its indexing into a collection (the user's own by default)."""
        actor = self.library.actor(user)
        target = target_collection(self.library, actor, collection_id)
        admitted = self.library.admit(filename, data, actor, target, status=DocumentStatus.QUEUED)
        if isinstance(admitted, IngestResult):  # nothing to index: the outcome is known now
            job = Job(
                "ingest",
                admitted.filename,
                admitted.document.id if admitted.document else None,
                actor.id,
                target,
                state="done",
                fraction=1.0,
                text="",
                result=admitted,
                message=admitted.message,
                failed=admitted.status == "failed",
                finished_at=time.monotonic(),
            )
            with self._cond:
                self._jobs[job.id] = job
            return job
        job = Job("ingest", admitted.filename, admitted.id, actor.id, target)
        return self._queue(job, job_work(self.library, job, data))

    def _admin(self, user: User | None) -> User:
        # Whole-library work (any document, every vector) is an admin's, whichever page asks.
        actor = self.library.actor(user)
        self.library.access.require_admin(actor)
        return actor

    def reindex(self, document_id: str, user: User | None = None) -> Job:
        """Queue indexing a stored document again from its original (admins)."""
        actor = self._admin(user)
        doc = self.library.docs.get(document_id)
        return self._queue_once(Job("reindex", doc.filename, doc.id, actor.id))

    def delete(self, document_id: str, user: User | None = None) -> Job:
        """Queue deleting a document (admins; after any work on it that is queued before)."""
        actor = self._admin(user)
        doc = self.library.docs.get(document_id)
        return self._queue_once(Job("delete", doc.filename, doc.id, actor.id))

    def reembed(self, user: User | None = None) -> Job:
        """Queue re-embedding every document made with another embedding model (admins)."""
        actor = self._admin(user)
        return self._queue_once(Job("reembed", "Пересчёт векторов", None, actor.id))

    def repair(self, user: User | None = None) -> Job:
        """Queue the consistency check with repair (admins)."""
        actor = self._admin(user)
        return self._queue_once(Job("repair", "Исправление расхождений", None, actor.id))

    # -- reading ----------------------------------------------------------------------------

    def get(self, job_id: str, user: User | None = None) -> Job | None:
        """A job by id, for whoever queued it or an admin (None once forgotten, or not theirs)."""
        actor = self.library.actor(user)
        with self._cond:
            job = self._jobs.get(job_id)
        return job if visible(self.library, job, actor) else None

    def pending(self, kind: JobKind | None = None, document_id: str | None = None) -> Job | None:
        """A queued or running job of this kind (any kind if None) and document, if there is one."""
        with self._cond:
            for job in self._jobs.values():
                if job.state == "done" or (kind is not None and job.kind != kind):
                    continue
                if document_id is None or job.document_id == document_id:
                    return job
        return None

    def cancel(self, job_id: str, user: User | None = None) -> None:
        """Ask a queued or running job to stop (at its next progress step): its uploader or an admin."""
        actor = self.library.actor(user)
        with self._cond:
            job = self._jobs.get(job_id)
        if check_cancel(self.library, job, actor):
            assert job is not None
            job.cancel.set()

    def overview(self, user: User | None = None) -> list[Job]:
        """Every queued or running job, oldest first, with who queued it (admins)."""
        self._admin(user)
        with self._cond:
            return [j for j in self._jobs.values() if j.state != "done"]

    def _queued_documents(self) -> set[str]:
        with self._cond:
            return {j.document_id for j, _ in self._waiting if j.document_id is not None}

    # -- handing out ------------------------------------------------------------------------

    def _queue_once(self, job: Job) -> Job:
        """Queue unless the same kind of work on the same document is already waiting or running."""
        with self._cond:
            for other in self._jobs.values():
                same = other.kind == job.kind and other.document_id == job.document_id
                if same and other.state != "done":
                    return other
        return self._queue(job, job_work(self.library, job))

    def _queue(self, job: Job, work: Work) -> Job:
        with self._cond:
            # Finished jobs stay readable for a while (a page may report them more than once,
            # from two overlapping runs); then their records go.
            now = time.monotonic()
            stale = [k for k, j in self._jobs.items() if j.finished_at and now - j.finished_at > KEEP_DONE_S]
            for k in stale:
                del self._jobs[k]
            self._jobs[job.id] = job
            self._waiting.append((job, work))
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name="indexing", daemon=True)
                self._worker.start()
            self._cond.notify()
        return job

    def _pick(
        self, users: frozenset[str | None], documents: frozenset[str], nested: bool
    ) -> tuple[Job, Work] | None:
        """The next job in turn: the oldest of the user served least recently (under the lock)."""
        best: tuple[int, int] | None = None
        found = None
        earlier: set[str] = set()
        for pos, (job, work) in enumerate(self._waiting):
            doc = job.document_id
            eligible = doc is None or doc not in earlier  # one document's jobs keep their order
            if doc is not None:
                earlier.add(doc)
            if nested and (job.kind not in DOCUMENT_KINDS or job.user_id in users or doc in documents):
                continue
            if not eligible:
                continue
            rank = (self._served.get(job.user_id, -1), pos)
            if best is None or rank < best:
                best, found = rank, (job, work)
        if found is not None:
            self._waiting.remove(found)
            self._round += 1
            self._served[found[0].user_id] = self._round
        return found

    def _claim(self, users: frozenset[str | None], documents: frozenset[str]) -> Callable[[], None] | None:
        with self._cond:
            found = self._pick(users, documents, nested=True)
        if found is None:
            return None
        return lambda: self._execute(*found)

    def _serve(self) -> None:
        while True:
            with self._cond:
                found = self._pick(frozenset(), frozenset(), nested=False)
                while found is None:
                    self._cond.wait()
                    found = self._pick(frozenset(), frozenset(), nested=False)
            self._execute(*found)

    def _execute(self, job: Job, work: Work) -> None:
        with self._turns.running(job):
            run_job(job, work, on_turn=self._turns.checkpoint, on_end=self._settle)

    def _settle(self, job: Job) -> None:
        link = settle_unstarted(self.library, job)
        with self._cond:
            waiting = [
                j for j in self._jobs.values() if j is not job and j.state != "done" and j.kind == "ingest"
            ]
        if link is not None and not any(j.document_id == link.document_id for j in waiting):
            # Someone else put the same bytes in, and no job of theirs will index them: queue one.
            other = Job("ingest", link.filename, link.document_id, link.added_by, link.collection_id)
            self._queue(other, job_work(self.library, other))
