"""Teams: users, collections with grants, and owners of chats and documents.

A library made before this revision had one implicit user. Its documents become the shared
collection «Общие документы» that everyone may read; chats and documents keep no owner (NULL
means unclaimed: the service layer gives them to the first admin).

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-02
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHARED_COLLECTION = "Общие документы"

# Enum members are stored by name; on PostgreSQL these are native ENUM types, and Alembic
# creates "access" once though two tables use it.
ROLE = sa.Enum("ADMIN", "MEMBER", name="role")
ACCESS = sa.Enum("NONE", "READ", "WRITE", name="access")


def upgrade() -> None:
    """Create the user and collection tables, add the owner columns, share existing documents."""
    op.create_table(
        "user",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("role", ROLE, nullable=False),
        sa.Column("password_hash", sa.String(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_user_name", "user", ["name"], unique=True)
    op.create_index("ix_user_email", "user", ["email"])
    op.create_table(
        "collection",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("owner_id", sa.String(), nullable=True),
        sa.Column("everyone", ACCESS, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["owner_id"], ["user.id"]),
        sa.UniqueConstraint("owner_id", "name"),
    )
    op.create_index("ix_collection_owner_id", "collection", ["owner_id"])
    op.create_table(
        "collectiongrant",
        sa.Column("collection_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("access", ACCESS, nullable=False),
        sa.PrimaryKeyConstraint("collection_id", "user_id"),
        sa.ForeignKeyConstraint(["collection_id"], ["collection.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
    )
    op.create_table(
        "collectiondocument",
        sa.Column("collection_id", sa.String(), nullable=False),
        sa.Column("document_id", sa.String(), nullable=False),
        sa.Column("filename", sa.String(), nullable=False),
        sa.Column("added_by", sa.String(), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("collection_id", "document_id"),
        sa.ForeignKeyConstraint(["collection_id"], ["collection.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["document_id"], ["document.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["added_by"], ["user.id"]),
    )
    op.create_index("ix_collectiondocument_document_id", "collectiondocument", ["document_id"])

    # Inline REFERENCES keep SQLite on a plain ALTER TABLE ADD COLUMN: a separate constraint
    # would make batch mode copy the whole table.
    with op.batch_alter_table("chat") as batch:
        batch.add_column(
            sa.Column("owner_id", sa.String(), sa.ForeignKey("user.id"), nullable=True),
            inline_references=True,
        )
        batch.add_column(sa.Column("collection_ids", sa.JSON(), nullable=True))
        batch.create_index("ix_chat_owner_id", ["owner_id"])
    with op.batch_alter_table("document") as batch:
        batch.add_column(
            sa.Column("owner_id", sa.String(), sa.ForeignKey("user.id"), nullable=True),
            inline_references=True,
        )
        batch.create_index("ix_document_owner_id", ["owner_id"])

    _share_existing_documents()


def _share_existing_documents() -> None:
    """Put every document of a pre-teams library into one collection that everyone may read."""
    bind = op.get_bind()
    document = sa.table("document", sa.column("id", sa.String()), sa.column("filename", sa.String()))
    chat = sa.table("chat", sa.column("id", sa.String()))
    used = bind.execute(
        sa.select(sa.or_(sa.exists().select_from(document), sa.exists().select_from(chat)))
    ).scalar()
    if not used:
        return
    now = datetime.now(UTC)
    collection_id = uuid.uuid4().hex
    collection = sa.table(
        "collection",
        sa.column("id", sa.String()),
        sa.column("name", sa.String()),
        sa.column("owner_id", sa.String()),
        sa.column("everyone", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    bind.execute(
        collection.insert().values(
            id=collection_id, name=SHARED_COLLECTION, owner_id=None, everyone="READ", created_at=now
        )
    )
    link = sa.table(
        "collectiondocument",
        sa.column("collection_id", sa.String()),
        sa.column("document_id", sa.String()),
        sa.column("filename", sa.String()),
        sa.column("added_at", sa.DateTime(timezone=True)),
    )
    bind.execute(
        link.insert().from_select(
            ["collection_id", "document_id", "filename", "added_at"],
            sa.select(
                sa.literal(collection_id, sa.String()),
                document.c.id,
                document.c.filename,
                sa.literal(now, sa.DateTime(timezone=True)),
            ),
        )
    )


def downgrade() -> None:
    """Drop the owner columns and the user and collection tables (and PostgreSQL's enum types)."""
    with op.batch_alter_table("document") as batch:
        batch.drop_index("ix_document_owner_id")
        batch.drop_column("owner_id")
    with op.batch_alter_table("chat") as batch:
        batch.drop_index("ix_chat_owner_id")
        batch.drop_column("collection_ids")
        batch.drop_column("owner_id")
    op.drop_table("collectiondocument")
    op.drop_table("collectiongrant")
    op.drop_table("collection")
    op.drop_table("user")
    bind = op.get_bind()
    ACCESS.drop(bind, checkfirst=True)
    ROLE.drop(bind, checkfirst=True)
