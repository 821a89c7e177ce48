"""Sign-in hardening: session versions, throttling by address, first-admin marker (issue 18, 24).

- ``user.session_version``: raised by a password change or reset, a sign-out and disabling;
  a session that began under an older value ends.
- ``signinaddressfailures``: failed sign-ins per client address, beside the per-name table.
- ``libraryflag``: facts that stay true once set. ``had_admin`` means a library had an admin who
  could sign in with a password, so the first-run screen never opens on it again; a library
  that already has one (even disabled or demoted since) gets the flag here.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HAD_ADMIN = "had_admin"


def upgrade() -> None:
    """Add the column and the two tables; mark libraries that had a password admin."""
    with op.batch_alter_table("user") as batch:
        batch.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "signinaddressfailures",
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("address"),
    )
    flag = op.create_table(
        "libraryflag",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    user = sa.table("user", sa.column("role", sa.String()), sa.column("password_hash", sa.String()))
    bind = op.get_bind()
    had_admin = bind.execute(
        sa.select(
            sa.exists().where(
                sa.cast(user.c.role, sa.String) == "ADMIN",
                user.c.password_hash.is_not(None),
                user.c.password_hash != "",
            )
        )
    ).scalar()
    if had_admin:
        op.bulk_insert(flag, [{"name": HAD_ADMIN, "set_at": datetime.now(UTC)}])


def downgrade() -> None:
    """Drop them again."""
    op.drop_table("libraryflag")
    op.drop_table("signinaddressfailures")
    with op.batch_alter_table("user") as batch:
        batch.drop_column("session_version")
