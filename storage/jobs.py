"""Records of the shared indexing queue's jobs: written by workers, read by the pages.

A record (``IndexJob``) says what the page shows; whether its job is alive is procrastinate's to
say. A record counts as queued or running only while procrastinate holds its job: waiting
(``todo``), or being run (``doing``) by a worker whose heartbeat is fresh. So a record left
behind by a killed worker, or by bookkeeping that failed half-way, never keeps a document busy:
once procrastinate's job is gone, or its worker silent, the record is dead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from storage.models import IndexJob, utcnow
from storage.repos import add_row, get_row, update_row

ACTIVE = ("queued", "running")
# A worker that sent no heartbeat for this long is taken for dead (it sends one every 10 s).
ALIVE_S = 60.0

# Records in some states whose procrastinate job waits, or runs under a live worker. The job's
# task arguments name the record: {"job_id": ...}.
_LIVE = """
SELECT i.id, i.document_id, p.status::text AS task_status, p.priority
  FROM indexjob AS i
  JOIN procrastinate_jobs AS p ON p.args->>'job_id' = i.id
  LEFT JOIN procrastinate_workers AS w ON w.id = p.worker_id
 WHERE i.state = ANY(:states)
   AND (p.status = 'todo'
        OR (p.status = 'doing' AND w.last_heartbeat > now() - make_interval(secs => :alive)))
"""


class JobRepo:
    """IndexJob rows, and which of them procrastinate still runs or holds."""

    def __init__(self, engine: Engine, alive_s: float = ALIVE_S) -> None:
        self.engine = engine
        self.alive_s = alive_s
        self._tasks_exist = False

    def add(self, job: IndexJob) -> IndexJob:
        """Insert a job record."""
        return add_row(self.engine, job)

    def get(self, job_id: str) -> IndexJob:
        """A job by id, or NotFoundError."""
        return get_row(self.engine, IndexJob, job_id)

    def update(self, job_id: str, **fields: Any) -> IndexJob:
        """Change a job's fields."""
        return update_row(self.engine, IndexJob, job_id, {**fields, "updated_at": utcnow()})

    def request_cancel(self, job_id: str) -> None:
        """Ask whoever runs the job to stop (it checks at its next progress step)."""
        with Session(self.engine) as s:
            s.exec(update(IndexJob).where(col(IndexJob.id) == job_id).values(cancel=True))
            s.commit()

    # -- liveness -------------------------------------------------------------------------------

    def _has_tasks(self) -> bool:
        # The shared queue creates procrastinate's tables when it first opens; before that no
        # job can be alive.
        if not self._tasks_exist and self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                found = conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar()
            self._tasks_exist = found is not None
        return self._tasks_exist

    def live(
        self, states: Sequence[str] = ACTIVE, task_states: Sequence[str] = ("todo", "doing")
    ) -> list[Any]:
        """(id, document_id, task_status, priority) of live records in these states."""
        if not self._has_tasks():
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(text(_LIVE), {"states": list(states), "alive": self.alive_s}).all()
        return [r for r in rows if r.task_status in task_states]

    def active(self, kind: str | None = None, document_id: str | None = None) -> list[IndexJob]:
        """Live queued or running jobs, of a kind and a document when given, oldest first."""
        ids = [r.id for r in self.live()]
        if not ids:
            return []
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(IndexJob).where(col(IndexJob.id).in_(ids))
            if kind is not None:
                stmt = stmt.where(col(IndexJob.kind) == kind)
            if document_id is not None:
                stmt = stmt.where(col(IndexJob.document_id) == document_id)
            return list(s.exec(stmt.order_by(col(IndexJob.created_at))))

    def running_documents(self, exclude: Sequence[str] = ()) -> set[str]:
        """Documents that a job run by a live worker (other than ``exclude``) is writing."""
        return {
            r.document_id
            for r in self.live(("running",), ("doing",))
            if r.document_id is not None and r.id not in exclude
        }

    def queued_documents(self) -> set[str]:
        """Documents that a job waits to work on (or to work on again, after its worker died)."""
        return {r.document_id for r in self.live(ACTIVE, ("todo",)) if r.document_id is not None}

    def user_load(self, user_id: str | None) -> int:
        """How many live jobs of this user are queued or running."""
        ids = [r.id for r in self.live()]
        if not ids:
            return 0
        with Session(self.engine) as s:
            stmt = select(IndexJob.id).where(col(IndexJob.id).in_(ids), col(IndexJob.user_id) == user_id)
            return len(list(s.exec(stmt)))

    def lock_priority(self, lock: str) -> int | None:
        """The lowest priority among procrastinate's waiting or running jobs under this lock."""
        if not self._has_tasks():
            return None
        with self.engine.connect() as conn:
            value = conn.execute(
                text(
                    "SELECT min(priority) FROM procrastinate_jobs "
                    "WHERE lock = :lock AND status IN ('todo', 'doing')"
                ),
                {"lock": lock},
            ).scalar()
        return int(value) if value is not None else None
