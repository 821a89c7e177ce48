"""Background indexing: files are indexed one at a time off the page's thread.

The page stays usable (chat, other pages) while a 50-page scan is recognised; each session
sees its own jobs with per-file and overall progress, and can cancel them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from rag import IngestCancelled
from rag.library import IngestResult, Library

log = logging.getLogger(__name__)
KEEP_DONE_S = 3600.0
JobState = Literal["queued", "running", "done"]


@dataclass
class Job:
    """One file being indexed; fields are written by the worker and read by the page."""

    filename: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: JobState = "queued"
    fraction: float = 0.0
    text: str = "В очереди"
    result: IngestResult | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    finished_at: float | None = None  # time.monotonic() when done


class IndexingQueue:
    """A single worker: embedding and OCR use every core, so one file at a time is fastest."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="indexing")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, filename: str, data: bytes) -> Job:
        """Queue a file; returns at once."""
        job = Job(filename)
        with self._lock:
            # Finished jobs stay readable for a while (a page may report them more than once,
            # from two overlapping runs); then their records go.
            now = time.monotonic()
            stale = [k for k, j in self._jobs.items() if j.finished_at and now - j.finished_at > KEEP_DONE_S]
            for k in stale:
                del self._jobs[k]
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, data)
        return job

    def get(self, job_id: str) -> Job | None:
        """A job by id (None once forgotten)."""
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self, job: Job, data: bytes) -> None:
        def progress(fraction: float, text: str) -> None:
            if job.cancel.is_set():
                raise IngestCancelled(f"«{job.filename}»: индексация отменена.")
            job.fraction, job.text = fraction, text

        if job.cancel.is_set():
            job.result = IngestResult(
                job.filename, "failed", message=f"«{job.filename}»: индексация отменена."
            )
        else:
            job.state = "running"
            try:
                job.result = self.library.ingest(job.filename, data, progress)
            except Exception:  # the library reports bad files itself; this is a last resort
                log.exception("indexing %s failed", job.filename)  # details for the log only
                job.result = IngestResult(
                    job.filename,
                    "failed",
                    message=f"«{job.filename}»: внутренняя ошибка при индексации (подробности в журнале).",
                )
        job.fraction, job.finished_at, job.state = 1.0, time.monotonic(), "done"
