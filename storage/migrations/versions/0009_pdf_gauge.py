"""PDF text-layer damage gauge per document (issue 25).

``document.damaged_pages``: pages whose text layer was unreadable or damaged (glued words,
replacement characters, non-words; ``rag.ingest.pdf_text.damage``), NULL for files without a
text layer. ``document.ocr_pages``: pages read by OCR (scans, damaged layers, images), NULL for
documents indexed before this revision. The documents page shows both: «текстовый слой: хороший /
повреждён, распознано OCR: 3 стр.».

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the two nullable counts (existing documents: unknown until re-indexed)."""
    with op.batch_alter_table("document") as batch:
        batch.add_column(sa.Column("damaged_pages", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("ocr_pages", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop the counts."""
    with op.batch_alter_table("document") as batch:
        batch.drop_column("ocr_pages")
        batch.drop_column("damaged_pages")
