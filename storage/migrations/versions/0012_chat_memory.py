"""Chats that remember and can be found (issue 22): ratings, turn vectors, the message index.

``rating``: a 👍 / 👎 on an answer with a copy of what was rated. ``turnvector``: a message's
embedding, the chat's semantic memory (filled when a message is stored; older messages lazily, on
the chat's next question, or by ``rag reembed``). ``message_fts``: the keyword index of chat search,
made by ``storage.chat_index`` for the engine (FTS5 or a tsvector) and filled here from the
messages already stored, so old chats are found at once. Existing chats and messages are unchanged.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage.chat_index import MESSAGE_FTS, message_index

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500


def upgrade() -> None:
    """Create the two tables and the message index, and index the stored messages."""
    op.create_table(
        "rating",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("chat_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=True),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=True),
        sa.Column("provider", sa.String(), nullable=True),
        sa.Column("model", sa.String(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rating_message_id", "rating", ["message_id"], unique=True)
    op.create_index("ix_rating_chat_id", "rating", ["chat_id"])
    op.create_index("ix_rating_user_id", "rating", ["user_id"])
    op.create_index("ix_rating_model", "rating", ["model"])
    op.create_index("ix_rating_created_at", "rating", ["created_at"])
    op.create_table(
        "turnvector",
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("chat_id", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["chat_id"], ["chat.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_index("ix_turnvector_chat_id", "turnvector", ["chat_id"])

    conn = op.get_bind()
    index = message_index(conn.dialect.name)
    index.create(conn)
    # Pages by id, each read to the end before its rows are written (one statement at a time).
    page = sa.text("SELECT id, chat_id, content FROM message WHERE id > :last ORDER BY id LIMIT :n")
    last = ""
    while batch := conn.execute(page, {"last": last, "n": BATCH}).all():
        index.add(conn, [(str(m), str(c), str(t)) for m, c, t in batch])
        last = str(batch[-1][0])


def downgrade() -> None:
    """Drop them."""
    op.execute(sa.text(f"DROP TABLE IF EXISTS {MESSAGE_FTS}"))
    op.drop_index("ix_turnvector_chat_id", table_name="turnvector")
    op.drop_table("turnvector")
    for name in ("created_at", "model", "user_id", "chat_id", "message_id"):
        op.drop_index(f"ix_rating_{name}", table_name="rating")
    op.drop_table("rating")
