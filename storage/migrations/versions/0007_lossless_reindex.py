"""Re-index beside the live version; per-document locks (issue 18).

Adds ``document.replaces``: a re-index writes the new version's fragments on a hidden row that
names the live document, and swaps them in only when the whole version is built. The
per-document locks need no schema (PostgreSQL advisory locks, in-process locks on SQLite).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the column and its index."""
    with op.batch_alter_table("document") as batch:
        batch.add_column(sa.Column("replaces", sa.String(), nullable=True))
        batch.create_index("ix_document_replaces", ["replaces"])


def downgrade() -> None:
    """Drop the index and the column (a half-built version's row goes with it)."""
    op.execute(
        "DELETE FROM chunk_fts WHERE document_id IN (SELECT id FROM document WHERE replaces IS NOT NULL)"
    )
    op.execute("DELETE FROM chunk WHERE document_id IN (SELECT id FROM document WHERE replaces IS NOT NULL)")
    op.execute("DELETE FROM document WHERE replaces IS NOT NULL")
    with op.batch_alter_table("document") as batch:
        batch.drop_index("ix_document_replaces")
        batch.drop_column("replaces")
