"""Records of the shared indexing queue's jobs: written by workers, read by the pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from storage.models import IndexJob, utcnow
from storage.repos import add_row, get_row, update_row

ACTIVE = ("queued", "running")


class JobRepo:
    """IndexJob rows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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

    def active(self, kind: str | None = None, document_id: str | None = None) -> list[IndexJob]:
        """Queued or running jobs, of a kind and a document when given, oldest first."""
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(IndexJob).where(col(IndexJob.state).in_(ACTIVE))
            if kind is not None:
                stmt = stmt.where(col(IndexJob.kind) == kind)
            if document_id is not None:
                stmt = stmt.where(col(IndexJob.document_id) == document_id)
            return list(s.exec(stmt.order_by(col(IndexJob.created_at))))

    def active_documents(self, exclude: Sequence[str] = (), states: Sequence[str] = ACTIVE) -> set[str]:
        """Documents that a job in these states (queued or running), other than ``exclude``, is about."""
        with Session(self.engine) as s:
            stmt = select(IndexJob.document_id).where(col(IndexJob.state).in_(list(states)))
            if exclude:
                stmt = stmt.where(col(IndexJob.id).not_in(list(exclude)))
            return {d for d in s.exec(stmt) if d is not None}

    def running_documents(self, exclude: Sequence[str] = ()) -> set[str]:
        """Documents that a running job (other than ``exclude``) is writing."""
        return self.active_documents(exclude, ("running",))

    def queued_documents(self) -> set[str]:
        """Documents that a job waits to work on."""
        return self.active_documents(states=("queued",))
