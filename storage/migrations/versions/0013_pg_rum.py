"""PostgreSQL keyword search ranked from the index (issue 23): the RUM extension and index.

On PostgreSQL, where the server offers the RUM extension (Debian ``postgresql-15-rum``) and the
database user may create it, the keyword rows' tsvector gets a RUM index in place of GIN, and the
search ranks by RUM's distance from the index (``storage.keywords``). Without the extension the
GIN index stays, with a warning. The rows themselves are unchanged. A no-op on SQLite.

On a fresh database the keyword table does not exist yet: it is made after the migrations
(``storage.migrate``), with the same choice of index.

Revision ID: 0013_pg_rum
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage.keywords import FTS_TABLE, GIN_INDEX, RUM_INDEX, PostgresKeywords

revision: str = "0013_pg_rum"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """On PostgreSQL: the RUM extension if possible, and the keyword rows' index by it."""
    conn = op.get_bind()
    if conn.dialect.name != "postgresql" or not sa.inspect(conn).has_table(FTS_TABLE):
        return
    PostgresKeywords().create(conn)


def downgrade() -> None:
    """Back to GIN (the extension stays: other databases' objects may use it)."""
    conn = op.get_bind()
    if conn.dialect.name != "postgresql" or not sa.inspect(conn).has_table(FTS_TABLE):
        return
    op.execute(f"CREATE INDEX IF NOT EXISTS {GIN_INDEX} ON {FTS_TABLE} USING gin (tsv)")
    op.execute(f"DROP INDEX IF EXISTS {RUM_INDEX}")
