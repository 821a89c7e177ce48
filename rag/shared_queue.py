"""The shared indexing queue: jobs in PostgreSQL, run by ``python -m rag worker`` processes.

Any number of app replicas queue jobs and any number of workers run them, all through one
database (and one Chroma server for the vectors). Procrastinate carries the jobs: it hands each
to one worker, keeps at most one job per document waiting (``queueing_lock``) and runs the
jobs of one document one after another (``lock``). Its workers send heartbeats; a job whose
worker stopped sending them (killed, its machine gone) is started again by another worker
(``recover_stalled``), and only such jobs: the work of live workers is never touched.

What a page reads about a job (progress, outcome, a cancel request) is an ``IndexJob`` row
that the worker updates as it goes, so the page that queued a job sees it from any replica.
An upload is admitted by the page (checks, deduplication, the document row in «queued», the
original into the shared store) before its job is queued, so a worker needs nothing from the
page's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import procrastinate
from sqlalchemy import text
from sqlalchemy.engine import Engine

from rag import IngestCancelled
from rag.jobs import Job, JobKind, Work, run_job
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


def conninfo(engine: Engine) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL engine (for procrastinate)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
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
        id=row.id,
        state=row.state,  # type: ignore[arg-type]
        fraction=row.fraction,
        text=row.text,
        result=result,
        message=row.message,
        failed=row.failed,
        repo=repo,
    )
    if row.cancel:
        job.cancel.set()
    return job


class SharedQueue:
    """The ``rag.jobs.Queue`` interface over PostgreSQL; ``run_worker`` makes this process a worker."""

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
        self.app.task(name=TASK, queue=QUEUE, pass_context=False)(self._run)
        self._ensure_schema()
        self.app.open()
        # Jobs this process runs: the documents they write are "busy here", not "elsewhere".
        self._running: set[str] = set()
        self._running_lock = threading.Lock()
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
        admitted = self.library.admit(filename, data, actor, collection_id, status=DocumentStatus.QUEUED)
        if isinstance(admitted, IngestResult):  # nothing to index: the outcome is known now
            row = IndexJob(
                kind="ingest",
                filename=admitted.filename,
                document_id=admitted.document.id if admitted.document else None,
                user_id=actor.id,
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
        row = IndexJob(kind="ingest", filename=admitted.filename, document_id=admitted.id, user_id=actor.id)
        return self._queue(row)

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
        self.jobs.add(row)
        # One job per document at a time, in the order queued; whole-library work has one lock.
        lock = f"doc:{row.document_id}" if row.document_id else f"library:{row.kind}"
        try:
            self.app.configure_task(TASK, lock=lock, queue=QUEUE).defer(job_id=row.id)
        except Exception:
            self.jobs.update(
                row.id,
                state="done",
                failed=True,
                message=f"«{row.filename}»: не удалось поставить в очередь.",
            )
            raise
        return _job_of(self.jobs.get(row.id), self.jobs)

    # -- reading (any replica) ---------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """A job's current state (None for an unknown id)."""
        try:
            return _job_of(self.jobs.get(job_id), self.jobs)
        except NotFoundError:
            return None

    def pending(self, kind: JobKind | None = None, document_id: str | None = None) -> Job | None:
        """A queued or running job of this kind (any if None) and document, if there is one."""
        found = self.jobs.active(kind, document_id)
        return _job_of(found[0], self.jobs) if found else None

    def cancel(self, job_id: str) -> None:
        """Ask the job to stop: a worker checks at each progress step, and before it starts."""
        self.jobs.request_cancel(job_id)

    # -- working (workers) ------------------------------------------------------------------

    def _run(self, job_id: str) -> None:
        """Procrastinate's task: run one job to its outcome and save it."""
        try:
            row = self.jobs.get(job_id)
        except NotFoundError:
            log.warning("job %s has no record; skipped", job_id)
            return
        if row.state == "done":
            return
        with self._running_lock:
            self._running.add(job_id)
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

            run_job(job, self._work(row), on_progress)
            if job.kind == "ingest" and job.document_id:
                self._drop_if_never_started(job.document_id)
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
        finally:
            with self._running_lock:
                self._running.discard(job_id)

    def _drop_if_never_started(self, document_id: str) -> None:
        # Cancelled (or refused) before indexing began: as with the local queue, the upload
        # leaves nothing behind, rather than a document waiting in «queued» for ever.
        with contextlib.suppress(NotFoundError):
            if self.library.docs.get(document_id).status == DocumentStatus.QUEUED:
                self.library.delete(document_id)

    def _work(self, row: IndexJob) -> Work:
        library = self.library
        doc_id = row.document_id

        def ingest(job: Job, progress: Callable[[float, str], None]) -> None:
            assert doc_id is not None
            if job.cancel.is_set():
                raise IngestCancelled(f"«{job.filename}»: индексация отменена.")
            job.result = library.index_admitted(doc_id, progress)

        def reindex(job: Job, progress: Callable[[float, str], None]) -> None:
            assert doc_id is not None
            job.result = library.reindex(doc_id, progress)
            if job.result.status == "indexed":
                job.message = f"«{job.filename}» переиндексирован."

        def delete(job: Job, _progress: Callable[[float, str], None]) -> None:
            assert doc_id is not None
            with contextlib.suppress(NotFoundError):  # already gone: what the admin asked for
                library.delete(doc_id)
            job.message = f"Файл «{job.filename}» удалён."

        def reembed(job: Job, progress: Callable[[float, str], None]) -> None:
            job.message = f"Векторы пересчитаны для {library.reembed(progress)} док."

        def repair(job: Job, _progress: Callable[[float, str], None]) -> None:
            report = library.check(repair=True)
            job.message = "Расхождения исправлены." if not report.ok else "Расхождений не было."

        works: dict[str, Work] = {
            "ingest": ingest,
            "reindex": reindex,
            "delete": delete,
            "reembed": reembed,
            "repair": repair,
        }
        return works[row.kind]

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
