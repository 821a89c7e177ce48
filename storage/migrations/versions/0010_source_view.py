"""Where a fragment stands, for the source view (issue 19).

``chunk.anchor``: the nearest enclosing numbered item of the fragment («п. 2.1», «пп. 2.1–2.3»,
«Раздел 3», «Статья 5»; ``rag.ingest.clauses``). ``chunk.heading``: its section's heading path
or title line. ``chunk.boxes``: for a PDF page (text layer or OCR) the rectangles of the
fragment's words, as fractions of the page, so the view marks them without reading or
recognising the page again. All NULL for fragments indexed before this revision: the view then
opens the page without marks (a re-index fills them in).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the three nullable columns."""
    with op.batch_alter_table("chunk") as batch:
        batch.add_column(sa.Column("anchor", sa.String(), nullable=True))
        batch.add_column(sa.Column("heading", sa.Text(), nullable=True))
        batch.add_column(sa.Column("boxes", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("chunk") as batch:
        batch.drop_column("boxes")
        batch.drop_column("heading")
        batch.drop_column("anchor")
