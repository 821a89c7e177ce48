"""OIDC accounts keyed on issuer and subject; pending accounts (issue 18).

Adds ``user.oidc_issuer`` and ``user.oidc_subject`` (unique together: one account per person of
a provider) and ``user.pending`` (a first sign-in that waits for an admin). Accounts made by an
earlier release have no identity yet; their owner's next sign-in with a verified address binds it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the identity columns, their unique pair and the pending flag."""
    with op.batch_alter_table("user") as batch:
        batch.add_column(sa.Column("oidc_issuer", sa.String(), nullable=True))
        batch.add_column(sa.Column("oidc_subject", sa.String(), nullable=True))
        batch.add_column(sa.Column("pending", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_unique_constraint("uq_user_oidc_identity", ["oidc_issuer", "oidc_subject"])


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("user") as batch:
        batch.drop_constraint("uq_user_oidc_identity", type_="unique")
        batch.drop_column("pending")
        batch.drop_column("oidc_subject")
        batch.drop_column("oidc_issuer")
