"""The model lab (issue 21): assistants, comparison votes, test sets and their runs.

New tables: ``assistant``, ``vote``, ``testset``, ``testquestion``, ``checkrun``. Two nullable
columns on existing tables: ``chat.assistant_id`` (the assistant a chat answers with) and
``message.settings`` (every setting an answer was made with). Existing chats and messages keep
NULL there and open exactly as before: a chat without an assistant uses its own settings.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _owner() -> list[Any]:
    return [
        sa.Column("owner_id", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["user.id"], ondelete="CASCADE"),
    ]


def upgrade() -> None:
    """Create the lab's tables and add the two nullable columns."""
    op.create_table(
        "assistant",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        *_owner(),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column("max_tokens", sa.Integer(), nullable=False),
        sa.Column("system_prompt", sa.Text(), nullable=False),
        sa.Column("collection_ids", sa.JSON(), nullable=True),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("top_k", sa.Integer(), nullable=False),
        sa.Column("use_documents", sa.Boolean(), nullable=False),
        sa.Column("rewrite", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_assistant_owner_id"), "assistant", ["owner_id"], unique=False)
    op.create_table(
        "testset",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        *_owner(),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_testset_owner_id"), "testset", ["owner_id"], unique=False)
    op.create_table(
        "vote",
        sa.Column("id", sa.String(), nullable=False),
        *_owner(),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("assistant_ids", sa.JSON(), nullable=False),
        sa.Column("assistant_id", sa.String(), nullable=True),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_vote_created_at"), "vote", ["created_at"], unique=False)
    op.create_index(op.f("ix_vote_owner_id"), "vote", ["owner_id"], unique=False)
    op.create_table(
        "checkrun",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("set_id", sa.String(), nullable=False),
        *_owner(),
        sa.Column("assistant_ids", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("fraction", sa.Float(), nullable=False),
        sa.Column("cancel", sa.Boolean(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["set_id"], ["testset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_checkrun_created_at"), "checkrun", ["created_at"], unique=False)
    op.create_index(op.f("ix_checkrun_owner_id"), "checkrun", ["owner_id"], unique=False)
    op.create_index(op.f("ix_checkrun_set_id"), "checkrun", ["set_id"], unique=False)
    op.create_table(
        "testquestion",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("set_id", sa.String(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("expected_fact", sa.Text(), nullable=False),
        sa.Column("expected_file", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["set_id"], ["testset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_testquestion_set_id"), "testquestion", ["set_id"], unique=False)
    with op.batch_alter_table("chat") as batch:
        batch.add_column(sa.Column("assistant_id", sa.String(), nullable=True))
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("settings", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop the columns and the tables."""
    with op.batch_alter_table("message") as batch:
        batch.drop_column("settings")
    with op.batch_alter_table("chat") as batch:
        batch.drop_column("assistant_id")
    for table in ("testquestion", "checkrun", "vote", "testset", "assistant"):
        op.drop_table(table)
