"""The contract of the uploaded-originals store, on a folder and in the database."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import make_engine
from storage.originals import DatabaseOriginals, FileOriginals, OriginalStore
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
