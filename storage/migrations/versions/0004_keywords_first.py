"""Keywords first: a document is searchable by keyword while its vectors are computed.

Adds the ``KEYWORDS`` document status (chunks and keyword rows committed, vectors being
computed) and ``document.embedded_chunks`` (how many chunks have their vectors so far, for the
documents page and for finishing the vectors after a crash).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the status value and the column."""
    if op.get_bind().dialect.name == "postgresql":
        # PostgreSQL keeps the enum as a type of its own; SQLite stores the name as text, in a
        # VARCHAR(8) that the new name (no longer than INDEXING) fits.
        op.execute("ALTER TYPE documentstatus ADD VALUE IF NOT EXISTS 'KEYWORDS' AFTER 'INDEXING'")
    with op.batch_alter_table("document") as batch:
        batch.add_column(sa.Column("embedded_chunks", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    """Drop the column (PostgreSQL cannot drop an enum value; an unused one is harmless)."""
    with op.batch_alter_table("document") as batch:
        batch.drop_column("embedded_chunks")
