"""Alembic environment: runs on the connection ``storage.migrate`` hands over.

Without one (the ``alembic`` command line, e.g. ``revision --autogenerate``) it connects to
``sqlalchemy.url`` from the Alembic config. Logging is left to the app: no ``fileConfig``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

# Registers every table on SQLModel.metadata, for autogenerate's comparison.
import storage.models  # noqa: F401
from storage.migrate import include_name

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        include_name=include_name,
        # SQLite cannot alter most of a table in place; batch mode copies it when it must.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations() -> None:
    """Run the migrations on the handed-over connection, or on a fresh one to sqlalchemy.url."""
    if context.is_offline_mode():
        # 0002 reads existing rows to fill in the shared collection: there is no SQL-only form.
        raise RuntimeError("offline (--sql) migrations are not supported")
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


run_migrations()
