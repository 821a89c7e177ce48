"""The shared indexing queue: jobs in PostgreSQL, run by ``python -m rag worker`` processes.

Any number of app replicas queue jobs and any number of workers run them, all through one
database (and one Chroma server for the vectors). Procrastinate carries the jobs: it hands each
to one worker and runs the jobs of one document one after another (``lock``). Its workers send
heartbeats; a job whose worker stopped sending them (killed, its machine gone) is started again
by another worker (``recover_stalled``), and only such jobs: the work of live workers is never
touched. Whether a job is alive is procrastinate's to say (``storage.jobs``), never our record's.

What a page reads about a job (progress, outcome, a cancel request) is an ``IndexJob`` row
that the worker updates as it goes, so the page that queued a job sees it from any replica; the
row always ends, whatever fails. An upload is admitted by the page (checks, deduplication, the
document row in «queued», the original into the shared store) before its job is queued, so a
worker needs nothing from the page's process.

Only the hand-out and the records are this module's: the work is ``rag.jobs.local.job_work``, the
ending ``rag.jobs.local.run_job``, as in the in-process queue. Uploaders take turns here too: a job's
priority is minus the number of its user's live jobs when it is queued (procrastinate runs higher
priorities first, so each user's first waiting job comes before anyone's second), and at each
progress step a running job lets one waiting job of another user run on the same worker
(``rag.jobs.local.Turns``): that job is claimed from procrastinate like any other, under this worker's
heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable

import procrastinate
from sqlalchemy import text
from sqlalchemy.engine import Engine

from rag.jobs.local import (
    DOCUMENT_KINDS,
    INTERNAL,
    Job,
    JobKind,
    Turns,
    check_cancel,
    job_work,
    run_job,
    settle_unstarted,
    target_collection,
    visible,
)
from rag.library import IngestResult, Library
from storage import NotFoundError
from storage.jobs import JobRepo
from storage.models import DocumentStatus, IndexJob, User, utcnow

log = logging.getLogger(__name__)

TASK = "rag.run_job"
QUEUE = "indexing"
# Progress is written at most this often: a page polls once a second.
SAVE_EVERY_S = 0.3
_SCHEMA_LOCK = 0x52414702

# One waiting job of a user not on this worker's stack, about a document not on it, taken as
# procrastinate's own fetch would take it (its lock free, nothing earlier under its lock).
_CLAIM = """
WITH candidate AS (
    SELECT jobs.id
      FROM procrastinate_jobs AS jobs
      JOIN indexjob AS i ON i.id = jobs.args->>'job_id'
     WHERE jobs.status = 'todo'
       AND jobs.queue_name = :queue
       AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
       AND i.kind = ANY(:kinds)
       AND coalesce(i.user_id, '') <> ALL(:users)
       AND coalesce(i.document_id, '') <> ALL(:documents)
       AND NOT EXISTS (
           SELECT 1 FROM procrastinate_jobs AS other
            WHERE jobs.lock IS NOT NULL AND other.lock = jobs.lock
              AND (other.status = 'doing'
                   OR (other.status = 'todo'
                       AND (other.priority > jobs.priority
                            OR (other.priority = jobs.priority AND other.id < jobs.id)))))
     ORDER BY jobs.priority DESC, jobs.id ASC
     LIMIT 1
       FOR UPDATE OF jobs SKIP LOCKED
)
UPDATE procrastinate_jobs AS p
   SET status = 'doing', worker_id = :worker
  FROM candidate
 WHERE p.id = candidate.id
RETURNING p.id, p.args->>'job_id' AS job_id
"""
_FINISH = "SELECT procrastinate_finish_job_v1(:id, CAST(:status AS procrastinate_job_status), :delete)"


def conninfo(engine: Engine) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL engine (for procrastinate)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class SharedJob(Job):
    """A job as its ``IndexJob`` row had it when read; ``wait`` reads it again until done."""

    repo: JobRepo | None = None

    def wait(self, timeout: float | None = None, poll_s: float = 0.1) -> bool:
        """Block until the job is done, re-reading its row; False on timeout."""
        return super().wait(timeout, poll_s)

    def refresh(self) -> None:
        """Read the job's row again."""
        assert self.repo is not None
        fresh = _job_of(self.repo.get(self.id), self.repo)
        self.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "cancel"})


def _job_of(row: IndexJob, repo: JobRepo) -> SharedJob:
    result = None
    if row.result_status is not None:
        result = IngestResult(row.filename, row.result_status, None, row.message, list(row.warnings))  # type: ignore[arg-type]
    job = SharedJob(
        kind=row.kind,  # type: ignore[arg-type]
        filename=row.filename,
        document_id=row.document_id,
        user_id=row.user_id,
        collection_id=row.collection_id,
        id=row.id,
        state=row.state,  # type: ignore[arg-type]
        fraction=row.fraction,
        text=row.text,
        result=result,
        message=row.message,
        failed=row.failed,
    )
    job.repo = repo
    if row.cancel:
        job.cancel.set()
    return job


class SharedQueue:
    """The ``rag.jobs.local.Queue`` interface over PostgreSQL; ``run_worker`` makes this process a worker."""

    def __init__(self, library: Library) -> None:
        if library.engine.dialect.name != "postgresql":
            raise ValueError(
                "Общей очереди (RAG_QUEUE=postgres) нужна база PostgreSQL: задайте DATABASE_URL."
            )
        self.library = library
        self.jobs = JobRepo(library.engine)
        self._conninfo = conninfo(library.engine)
        self.app = procrastinate.App(
            connector=procrastinate.SyncPsycopgConnector(conninfo=self._conninfo, min_size=1, max_size=4)
        )
        self.app.task(name=TASK, queue=QUEUE, pass_context=True)(self._task)
        self._ensure_schema()
        self.app.open()
        # Jobs this process runs: the documents they write are "busy here", not "elsewhere".
        self._running: set[str] = set()
        self._running_lock = threading.Lock()
        self._turns = Turns(self._claim)
        self._worker = threading.local()  # procrastinate's id of the worker running this thread's jobs
        library.elsewhere = self._documents_elsewhere
        library.queued_elsewhere = self.jobs.queued_documents

    def close(self) -> None:
        """Close the queue's connections."""
        self.app.close()

    def _ensure_schema(self) -> None:
        # Two processes starting together: one applies procrastinate's schema, the other waits.
        with self.library.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
            if conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None:
                # Through the driver's own cursor, without parameters: the schema's "%" are literal.
                cursor = conn.connection.cursor()
                cursor.execute(self.app.schema_manager.get_schema())
                cursor.close()

    def _documents_elsewhere(self) -> set[str]:
        with self._running_lock:
            mine = list(self._running)
        return self.jobs.running_documents(exclude=mine)

    # -- submitting (any replica) -------------------------------------------------------------

    def submit(
        self, filename: str, data: bytes, user: User | None = None, collection_id: str | None = None
    ) -> Job:
        """Admit an upload here and queue its indexing for a worker."""
        actor = self.library.actor(user)
        target = target_collection(self.library, actor, collection_id)
        admitted = self.library.admit(filename, data, actor, target, status=DocumentStatus.QUEUED)
        if isinstance(admitted, IngestResult):  # nothing to index: the outcome is known now
            row = IndexJob(
                kind="ingest",
                filename=admitted.filename,
                document_id=admitted.document.id if admitted.document else None,
                user_id=actor.id,
                collection_id=target,
                state="done",
                fraction=1.0,
                text="",
                message=admitted.message,
                failed=admitted.status == "failed",
                result_status=admitted.status,
                warnings=list(admitted.warnings),
                finished_at=utcnow(),
            )
            return _job_of(self.jobs.add(row), self.jobs)
        return self._queue(
            IndexJob(
                kind="ingest",
                filename=admitted.filename,
                document_id=admitted.id,
                user_id=actor.id,
                collection_id=target,
            )
        )

    def _admin(self, user: User | None) -> User:
        actor = self.library.actor(user)
        self.library.access.require_admin(actor)
        return actor

    def reindex(self, document_id: str, user: User | None = None) -> Job:
        """Queue indexing a stored document again from its original (admins)."""
        actor = self._admin(user)
        doc = self.library.docs.get(document_id)
        return self._queue_once(
            IndexJob(kind="reindex", filename=doc.filename, document_id=doc.id, user_id=actor.id)
        )

    def delete(self, document_id: str, user: User | None = None) -> Job:
        """Queue deleting a document (admins; after any work on it that is queued before)."""
        actor = self._admin(user)
        doc = self.library.docs.get(document_id)
        return self._queue_once(
            IndexJob(kind="delete", filename=doc.filename, document_id=doc.id, user_id=actor.id)
        )

    def reembed(self, user: User | None = None) -> Job:
        """Queue re-embedding every document made with another embedding model (admins)."""
        actor = self._admin(user)
        return self._queue_once(IndexJob(kind="reembed", filename="Пересчёт векторов", user_id=actor.id))

    def repair(self, user: User | None = None) -> Job:
        """Queue the consistency check with repair (admins)."""
        actor = self._admin(user)
        return self._queue_once(IndexJob(kind="repair", filename="Исправление расхождений", user_id=actor.id))

    def _queue_once(self, row: IndexJob) -> Job:
        for other in self.jobs.active(row.kind, row.document_id):
            if other.document_id == row.document_id:
                return _job_of(other, self.jobs)
        return self._queue(row)

    def _queue(self, row: IndexJob) -> Job:
        # One job per document at a time, in the order queued; whole-library work has one lock.
        lock = f"doc:{row.document_id}" if row.document_id else f"library:{row.kind}"
        # Uploaders in turn: each user's n-th live job after everyone's (n-1)-th; never before a
        # job queued earlier under the same lock (procrastinate would run it first).
        priority = -self.jobs.user_load(row.user_id)
        under_lock = self.jobs.lock_priority(lock)
        if under_lock is not None:
            priority = min(priority, under_lock)
        self.jobs.add(row)
        try:
            self.app.configure_task(TASK, lock=lock, queue=QUEUE, priority=priority).defer(job_id=row.id)
        except Exception:
            self.jobs.update(
                row.id,
                state="done",
                failed=True,
                message=f"«{row.filename}»: не удалось поставить в очередь.",
                finished_at=utcnow(),
            )
            raise
        return _job_of(self.jobs.get(row.id), self.jobs)

    # -- reading (any replica) ---------------------------------------------------------------

    def get(self, job_id: str, user: User | None = None) -> Job | None:
        """A job's current state, for whoever queued it or an admin (None otherwise, or unknown)."""
        actor = self.library.actor(user)
        try:
            job = _job_of(self.jobs.get(job_id), self.jobs)
        except NotFoundError:
            return None
        return job if visible(self.library, job, actor) else None

    def pending(self, kind: JobKind | None = None, document_id: str | None = None) -> Job | None:
        """A live queued or running job of this kind (any if None) and document, if there is one."""
        found = self.jobs.active(kind, document_id)
        return _job_of(found[0], self.jobs) if found else None

    def cancel(self, job_id: str, user: User | None = None) -> None:
        """Ask the job to stop (its uploader or an admin): a worker checks at each step and before it."""
        actor = self.library.actor(user)
        try:
            job: Job | None = _job_of(self.jobs.get(job_id), self.jobs)
        except NotFoundError:
            job = None
        if check_cancel(self.library, job, actor):
            self.jobs.request_cancel(job_id)

    def overview(self, user: User | None = None) -> list[Job]:
        """Every live queued or running job, oldest first, with who queued it (admins)."""
        self._admin(user)
        return [_job_of(row, self.jobs) for row in self.jobs.active()]

    # -- working (workers) ------------------------------------------------------------------

    def _task(self, context: procrastinate.JobContext, job_id: str) -> None:
        """Procrastinate's task: run one job (and the turns it gives) to its outcome and save it."""
        self._worker.id = context.job.worker_id
        self._execute(job_id)

    def _claim(self, users: frozenset[str | None], documents: frozenset[str]) -> Callable[[], None] | None:
        worker_id = getattr(self._worker, "id", None)
        if worker_id is None:
            return None
        with self.library.engine.begin() as conn:
            found = conn.execute(
                text(_CLAIM),
                {
                    "queue": QUEUE,
                    "kinds": list(DOCUMENT_KINDS),
                    "users": [u or "" for u in users],
                    "documents": list(documents),
                    "worker": worker_id,
                },
            ).first()
        if found is None:
            return None
        task_id, job_id = int(found.id), str(found.job_id)

        def run() -> None:
            ended = "failed"
            try:
                self._execute(job_id)
                ended = "succeeded"
            finally:
                # As procrastinate ends a job it ran: a succeeded one goes (delete_jobs="successful").
                with self.library.engine.begin() as conn:
                    conn.execute(
                        text(_FINISH),
                        {"id": task_id, "status": ended, "delete": ended == "succeeded"},
                    )

        return run

    def _execute(self, job_id: str) -> None:
        """Run one job to its outcome; its record ends whatever fails, the bookkeeping included."""
        try:
            row = self.jobs.get(job_id)
        except NotFoundError:
            log.warning("job %s has no record; skipped", job_id)
            return
        if row.state == "done":
            return
        with self._running_lock:
            self._running.add(job_id)
        ended = False
        try:
            self.jobs.update(job_id, state="running", attempts=row.attempts + 1, text="Выполняется")
            job = _job_of(row, self.jobs)
            job.state = "running"
            saved = [0.0]

            def on_progress(current: Job) -> None:
                now = time.monotonic()
                if now - saved[0] < SAVE_EVERY_S:
                    return
                saved[0] = now
                fresh = self.jobs.update(job_id, fraction=current.fraction, text=current.text)
                if fresh.cancel:
                    current.cancel.set()

            with self._turns.running(job):
                run_job(job, job_work(self.library, job), on_progress, self._turns.checkpoint)
            link = settle_unstarted(self.library, job)
            # Someone else put the same bytes in, and no job of theirs will index them: queue one.
            if link is not None and not [
                r for r in self.jobs.active("ingest", job.document_id) if r.id != job_id
            ]:
                self._queue(
                    IndexJob(
                        kind="ingest",
                        filename=link.filename,
                        document_id=link.document_id,
                        user_id=link.added_by,
                        collection_id=link.collection_id,
                    )
                )
            result = job.result
            self.jobs.update(
                job_id,
                state="done",
                fraction=1.0,
                text="",
                message=job.message,
                failed=job.failed,
                result_status=result.status if result is not None else None,
                warnings=list(result.warnings) if result is not None else [],
                finished_at=utcnow(),
            )
            ended = True
        except Exception:
            log.exception("bookkeeping of job %s failed", job_id)
        finally:
            with self._running_lock:
                self._running.discard(job_id)
            if not ended:
                self._end_failed(job_id, row.filename)

    def _end_failed(self, job_id: str, filename: str) -> None:
        # The last word on a record whose job broke outside the work itself: never «running» for ever.
        message = f"«{filename}»: {INTERNAL}"
        try:
            self.jobs.update(
                job_id,
                state="done",
                fraction=1.0,
                text="",
                failed=True,
                message=message,
                result_status="failed" if self.jobs.get(job_id).kind == "ingest" else None,
                finished_at=utcnow(),
            )
        except Exception:
            log.exception("could not end the record of job %s", job_id)

    def recover_stalled(self, seconds_since_heartbeat: float) -> list[str]:
        """Queue again the jobs whose worker sent no heartbeat for this long; their job ids."""

        async def recover() -> list[str]:
            connector = procrastinate.PsycopgConnector(conninfo=self._conninfo, min_size=1, max_size=1)
            async with self.app.with_connector(connector).open_async() as app:
                stalled = await app.job_manager.get_stalled_jobs(
                    seconds_since_heartbeat=seconds_since_heartbeat
                )
                ids = []
                for job in stalled:
                    await app.job_manager.retry_job(job)
                    ids.append(str(job.task_kwargs.get("job_id")))
                return ids

        ids = asyncio.run(recover())
        for job_id in ids:
            log.warning("job %s lost its worker: queued again", job_id)
        return ids

    def run_worker(
        self,
        name: str | None = None,
        heartbeat_s: float = 10.0,
        stalled_after_s: float = 30.0,
        wait: bool = True,
        stop: threading.Event | None = None,
    ) -> None:
        """Run jobs one at a time until stopped: SIGINT/SIGTERM, or ``stop`` when given (a thread).

        Without ``wait`` it returns once the queue is empty.
        """
        asyncio.run(
            self._serve(name or f"worker-{uuid.uuid4().hex[:8]}", heartbeat_s, stalled_after_s, wait, stop)
        )

    async def _serve(
        self, name: str, heartbeat_s: float, stalled_after_s: float, wait: bool, stop: threading.Event | None
    ) -> None:
        connector = procrastinate.PsycopgConnector(conninfo=self._conninfo, min_size=1, max_size=4)
        async with self.app.with_connector(connector).open_async() as app:
            worker = asyncio.create_task(
                app.run_worker_async(
                    queues=[QUEUE],
                    name=name,
                    concurrency=1,  # embedding and OCR take every core
                    wait=wait,
                    update_heartbeat_interval=heartbeat_s,
                    stalled_worker_timeout=stalled_after_s,
                    install_signal_handlers=stop is None,
                    # Our own records (IndexJob) keep the outcome; procrastinate's rows of
                    # finished jobs would only grow.
                    delete_jobs="successful",
                )
            )
            while stop is not None and not worker.done():
                if stop.is_set():
                    worker.cancel()  # procrastinate finishes the running job's bookkeeping and stops
                    break
                await asyncio.sleep(0.1)
            with contextlib.suppress(asyncio.CancelledError):
                await worker
