"""Ratings of answers: one row per rated answer, written and filtered here (storage.models.Rating)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from storage.models import Rating, utcnow


class RatingRepo:
    """Ratings, found by answer, by user, or filtered for the admin's «Отзывы»."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, message_id: str, **fields: Any) -> Rating:
        """The answer's rating, created or changed (one per answer)."""
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.exec(select(Rating).where(col(Rating.message_id) == message_id)).first()
            if row is None:
                row = Rating(message_id=message_id, **fields)
            else:
                for name, value in fields.items():
                    setattr(row, name, value)
                row.updated_at = utcnow()
            s.add(row)
            s.commit()
            return row

    def of_messages(self, message_ids: list[str]) -> dict[str, Rating]:
        """The ratings of these answers, by answer id."""
        if not message_ids:
            return {}
        with Session(self.engine, expire_on_commit=False) as s:
            rows = s.exec(select(Rating).where(col(Rating.message_id).in_(message_ids)))
            return {r.message_id: r for r in rows}

    def find(
        self,
        *,
        value: int | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        user_id: str | None = None,
        limit: int = 500,
    ) -> list[Rating]:
        """Ratings matching every given filter, newest first."""
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(Rating)
            if value is not None:
                stmt = stmt.where(col(Rating.value) == value)
            if model is not None:
                stmt = stmt.where(col(Rating.model) == model)
            if since is not None:
                stmt = stmt.where(col(Rating.created_at) >= since)
            if until is not None:
                stmt = stmt.where(col(Rating.created_at) < until)
            if user_id is not None:
                stmt = stmt.where(col(Rating.user_id) == user_id)
            stmt = stmt.order_by(col(Rating.created_at).desc(), col(Rating.id)).limit(limit)
            return list(s.exec(stmt))

    def models(self) -> list[str]:
        """The models that have been rated."""
        with Session(self.engine) as s:
            stmt = select(Rating.model).where(col(Rating.model).is_not(None)).distinct()
            return sorted(str(m) for m in s.exec(stmt))
