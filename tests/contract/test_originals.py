"""The contract of the uploaded-originals store, on a folder and in the database."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import make_engine
from storage.originals import DatabaseOriginals, FileOriginals, Originals, OriginalStore
from tests.backends import Servers


@pytest.fixture
def store(tmp_path: Path, test_servers: Servers | None) -> Iterator[OriginalStore]:
    """A folder for the embedded backend; the database (PostgreSQL) for the servers."""
    if test_servers is None:
        yield FileOriginals(tmp_path / "files")
        return
    engine = make_engine(test_servers.new_database())
    yield DatabaseOriginals(engine)
    engine.dispose()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_bytes_come_back_until_deleted(store: OriginalStore) -> None:
    data = "Договор аренды".encode("cp1251") + bytes(range(256))
    key = store.put(_sha(data), "договор.txt", data)
    assert store.get(key) == data
    assert store.count() == 1
    # The same bytes under another name are stored once.
    assert store.put(_sha(data), "копия.txt", data) == key
    assert store.count() == 1
    store.delete(key)
    assert store.get(key) is None and store.count() == 0
    store.delete(key)  # already gone: nothing happens


def test_clear_forgets_everything(store: OriginalStore) -> None:
    keys = [store.put(_sha(d), f"{i}.pdf", d) for i, d in enumerate([b"one", b"two", b"three"])]
    assert store.count() == 3
    store.clear()
    assert store.count() == 0
    assert all(store.get(k) is None for k in keys)


def test_hostile_names_never_become_paths(store: OriginalStore, tmp_path: Path) -> None:
    data = b"payload"
    for name in ("../../etc/passwd", "..\\win.ini", "/abs/x.txt", "имя.тхт", "a.t xt"):
        key = store.put(_sha(data + name.encode()), name, data + name.encode())
        assert store.get(key) == data + name.encode()
    assert not (tmp_path.parent / "etc").exists()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all((tmp_path / "files") in p.parents for p in written)


def test_a_key_it_does_not_hold_is_not_found(store: OriginalStore, tmp_path: Path) -> None:
    # A data directory moved between modes: its documents say the original is gone, no crash.
    for key in ("db:" + "0" * 64, str(tmp_path / "missing.txt")):
        assert store.get(key) is None
        store.delete(key)


def test_stored_keys_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RAG_DATA_DIR=data (relative): the app started in one folder, the CLI or a worker in another.
    monkeypatch.chdir(tmp_path)
    data = "Акт сверки".encode()
    key = FileOriginals(Path("data/files")).put(_sha(data), "акт.txt", data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert FileOriginals(tmp_path / "data" / "files").get(key) == data
    # A data directory moved to another place keeps its originals too.
    moved = tmp_path / "moved"
    (tmp_path / "data").rename(moved)
    assert FileOriginals(moved / "files").get(key) == data


def test_one_store_reads_both_key_kinds(tmp_path: Path, test_servers: Servers | None) -> None:
    # RAG_ORIGINALS switched (files <-> database), or the rows moved to PostgreSQL: the documents
    # indexed before keep the keys of the other store, and re-indexing them must find the bytes.
    engine = make_engine(
        test_servers.new_database() if test_servers else f"sqlite:///{tmp_path / 'db.sqlite3'}"
    )
    try:
        old_file, old_row = b"from the folder", b"from the database"
        file_key = FileOriginals(tmp_path / "files").put(_sha(old_file), "a.txt", old_file)
        row_key = DatabaseOriginals(engine).put(_sha(old_row), "b.txt", old_row)
        for in_database in (False, True):
            store = Originals(tmp_path / "files", engine, in_database=in_database)
            assert store.get(file_key) == old_file and store.get(row_key) == old_row
            new = f"new {in_database}".encode()
            key = store.put(_sha(new), "c.txt", new)
            assert key.startswith("db:") == in_database and store.get(key) == new
        assert store.count() == 4
        store.delete(file_key)
        store.delete(row_key)
        assert store.get(file_key) is None and store.get(row_key) is None and store.count() == 2
        store.clear()
        assert store.count() == 0
    finally:
        engine.dispose()
