"""Schema migrations: every start brings the database to the newest Alembic revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from storage.chat_index import MESSAGE_FTS
from storage.keywords import FTS_TABLE, keyword_index

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The schema of the release before migrations: its databases have tables but no alembic_version.
BASELINE = "0001"
# Any constant shared by every process of the app: PostgreSQL's lock for the migration.
_PG_LOCK_KEY = 0x52414701


def upgrade(engine: Engine) -> None:
    """Migrate the database to head, stamping a pre-migrations database at the baseline first."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            _upgrade_sqlite(conn)
            return
        if conn.dialect.name == "postgresql":
            # Two app processes starting together: the second waits, then finds head.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        config = _config(conn)
        if _pending(conn, config):
            _run(conn, config)
        keyword_index(conn.dialect.name).create(conn)
        conn.commit()


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """False for the keyword indexes' tables: one per database engine (storage.keywords, chat_index)."""
    return not (type_ == "table" and name is not None and name.startswith((FTS_TABLE, MESSAGE_FTS)))


def _upgrade_sqlite(conn: Connection) -> None:
    # Batch mode on SQLite copies a table, drops it and renames the copy: with foreign keys on,
    # the DROP would cascade into chunks and messages. The pragma is a no-op inside a
    # transaction, so it is switched before BEGIN and restored after COMMIT.
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        # pysqlite runs DDL outside any transaction and SQLAlchemy's BEGIN emits nothing: an explicit
        # BEGIN IMMEDIATE makes the migration atomic and takes the write lock before the version is
        # read, so a second process waits (busy_timeout) and then finds nothing to do.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        config = _config(conn)
        if _pending(conn, config):
            before = _dangling(conn)
            _run(conn, config)
            # Rows that pointed nowhere before the migration are not its fault (and must not stop
            # the app from starting); new ones are.
            new = _dangling(conn) - before
            if new:
                raise RuntimeError(f"the migration left rows with dangling foreign keys: {list(new)[:5]}")
        keyword_index(conn.dialect.name).create(conn)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        try:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()
        except BaseException:
            # A connection without foreign keys must never go back to the pool.
            conn.invalidate()
            raise


def _dangling(conn: Connection) -> set[tuple[object, ...]]:
    return {tuple(row) for row in conn.exec_driver_sql("PRAGMA foreign_key_check")}


def _config(conn: Connection) -> Config:
    config = Config()
    # The path goes through ConfigParser interpolation.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = conn
    return config


def _pending(conn: Connection, config: Config) -> bool:
    head = ScriptDirectory.from_config(config).get_current_head()
    return MigrationContext.configure(conn).get_current_revision() != head


def _run(conn: Connection, config: Config) -> None:
    """Run the pending migrations on ``conn``, inside the caller's transaction."""
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables and "document" in tables:
        command.stamp(config, BASELINE)
    command.upgrade(config, "head")
