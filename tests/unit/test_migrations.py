"""Alembic migrations: a previous release's data directory upgrades in place, a fresh one starts at head."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from rag.library import Library
from storage import make_engine
from storage.migrate import MIGRATIONS, include_name
from storage.models import Access, Collection, CollectionDocument, DocumentStatus
from storage.repos import FTS_TABLE

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "datadir-v1"
OLD_TABLES = ["chat", "message", "document", "chunk", FTS_TABLE]
SHARED = "Общие документы"


def _head() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def _version(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _rows(db: Path, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    names = ", ".join(f'"{c}"' for c in columns)
    with sqlite3.connect(db) as conn:
        return conn.execute(f'SELECT {names} FROM "{table}" ORDER BY rowid').fetchall()


def _columns(db: Path, table: str) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]


def _dump(engine: Engine) -> dict[str, list[Any]]:
    """Every row of every table (the FTS5 shadow tables through their virtual table)."""
    with engine.connect() as conn:
        names = [n for n in inspect(conn).get_table_names() if not n.startswith(FTS_TABLE)]
        out = {n: sorted(conn.execute(text(f'SELECT * FROM "{n}"')).all(), key=repr) for n in names}
        out[FTS_TABLE] = sorted(conn.execute(text(f"SELECT * FROM {FTS_TABLE}")).all(), key=repr)
    return out


@pytest.fixture
def v1_dir(tmp_path: Path) -> Path:
    """A copy of the data directory the release before migrations made."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "data"))


def test_fixture_was_made_before_migrations() -> None:
    # Immutable: reading a WAL database in place would leave -wal and -shm files in the repository.
    uri = f"{(FIXTURE / 'rag.sqlite3').as_uri()}?immutable=1"
    with sqlite3.connect(uri, uri=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "alembic_version" not in tables
    assert {"chat", "message", "document", "chunk"} <= tables
    assert "collection" not in tables


def test_previous_release_upgrades_in_place(v1_dir: Path, make_library: Callable[..., Library]) -> None:
    db = v1_dir / "rag.sqlite3"
    before = {t: (_columns(db, t), _rows(db, t, _columns(db, t))) for t in OLD_TABLES}

    lib = make_library(v1_dir)

    assert _version(lib.engine) == _head()
    # Every old row of every old table is still there, column for column.
    for table, (columns, rows) in before.items():
        assert rows, table
        assert _rows(db, table, columns) == rows, table

    docs = lib.docs.list_all()
    assert sorted(d.filename for d in docs) == ["Байкал.txt", "Самовар.txt"]
    assert all(d.status == DocumentStatus.READY and d.owner_id is None for d in docs)

    [chat] = lib.chats.list_all()
    assert chat.title == "Про Байкал"
    assert chat.owner_id is None and chat.collection_ids is None
    question, answer = lib.chats.messages(chat.id)
    assert (question.role, answer.role) == ("user", "assistant")
    [source] = answer.sources
    baikal = next(d for d in docs if d.filename == "Байкал.txt")
    assert source.document_id == baikal.id
    assert source.chunk_id in {c.id for c in lib.docs.chunks(baikal.id)}

    with Session(lib.engine) as s:
        [shared] = s.exec(select(Collection)).all()
        links = s.exec(select(CollectionDocument)).all()
    assert shared.name == SHARED
    assert shared.everyone == Access.READ
    assert shared.owner_id is None
    assert sorted(link.document_id for link in links) == sorted(d.id for d in docs)
    assert all(link.collection_id == shared.id and link.added_by is None for link in links)
    assert {link.document_id: link.filename for link in links} == {d.id: d.filename for d in docs}

    hits = lib.retriever.search("Какова наибольшая глубина Байкала?")
    assert hits and hits[0].filename == "Байкал.txt"
    assert "1642" in hits[0].text


def test_second_open_changes_nothing(v1_dir: Path, make_library: Callable[..., Library]) -> None:
    first = _dump(make_library(v1_dir).engine)
    second = make_library(v1_dir)
    assert _version(second.engine) == _head()
    assert _dump(second.engine) == first


def test_enums_are_stored_by_name(v1_dir: Path, make_library: Callable[..., Library]) -> None:
    make_library(v1_dir)
    assert _rows(v1_dir / "rag.sqlite3", "collection", ["everyone"]) == [("READ",)]


def test_fresh_data_dir_starts_at_head(tmp_path: Path, make_library: Callable[..., Library]) -> None:
    lib = make_library(tmp_path / "fresh")
    assert _version(lib.engine) == _head()
    with lib.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert set(SQLModel.metadata.tables) <= tables
        assert conn.execute(text("SELECT count(*) FROM collection")).scalar_one() == 0


@pytest.fixture
def migrated(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'rag.sqlite3'}")
    yield engine
    engine.dispose()


def test_every_model_column_is_migrated(migrated: Engine) -> None:
    inspector = inspect(migrated)
    missing = []
    for table in SQLModel.metadata.sorted_tables:
        present = (
            {c["name"] for c in inspector.get_columns(table.name)}
            if inspector.has_table(table.name)
            else set()
        )
        missing += [f"{table.name}.{c.name}" for c in table.columns if c.name not in present]
    assert not missing, f"columns the migrations do not create: {missing}"


def test_migrations_match_the_models(migrated: Engine) -> None:
    # Types, nullability, indexes, unique and foreign keys as well: what autogenerate would write.
    with migrated.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": include_name})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_two_engines_opening_a_new_file_at_once(tmp_path: Path) -> None:
    # Two connections, as two processes would have: the second waits for the first's migration.
    url = f"sqlite:///{tmp_path / 'rag.sqlite3'}"
    start = threading.Barrier(2)
    engines: list[Engine] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        start.wait()
        try:
            engines.append(make_engine(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for engine in engines:
        engine.dispose()
    assert not errors
    with sqlite3.connect(tmp_path / "rag.sqlite3") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(_head(),)]
