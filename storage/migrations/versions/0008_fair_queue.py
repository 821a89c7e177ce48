"""Fair indexing queue (issue 18, 24): no schema change was needed; kept so the revision chain stays.

The job rows already say who queued them (``indexjob.user_id``); the turns are kept in memory and in
procrastinate's priorities.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change."""


def downgrade() -> None:
    """Nothing to change."""
