"""Uploaded originals, kept for re-indexing: in a folder, or in the database.

A document's ``stored_path`` holds the key its store handed out: the file's name in the folder
(releases before this one wrote a path, which is read by its name too, so neither the working
directory nor a moved data directory matters), ``db:<sha256>`` for the database. A folder serves
one machine, or several when it is a volume they all mount (RAG_FILES_DIR); the database serves
every replica and worker that reaches it. ``Originals`` is the library's store: it writes where
RAG_ORIGINALS says and reads both kinds of key, so switching stores loses no document.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePath
from typing import Protocol

from sqlalchemy import delete, func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.models import StoredOriginal

DB_PREFIX = "db:"


class OriginalStore(Protocol):
    """Keeps file bytes under their sha256."""

    def put(self, sha256: str, filename: str, data: bytes) -> str:
        """Store the bytes; return the key to keep in ``Document.stored_path``."""

    def get(self, key: str) -> bytes | None:
        """The stored bytes, or None when they are gone."""

    def delete(self, key: str) -> None:
        """Forget the bytes (nothing happens if they are already gone)."""

    def clear(self) -> None:
        """Forget every stored original."""

    def count(self) -> int:
        """How many originals are stored."""


class FileOriginals:
    """Originals as files named by content hash in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def put(self, sha256: str, filename: str, data: bytes) -> str:
        """Write the file atomically; the user's file name never becomes a path (no traversal)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        suffix = PurePath(filename).suffix.lower()
        if not suffix.isascii() or len(suffix) > 10 or not suffix[1:].isalnum():
            suffix = ""
        path = self.folder / f"{sha256}{suffix}"
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        return path.name

    def _path(self, key: str) -> Path | None:
        """The file a key names: always in this folder, by the key's last part (an older key is a
        path, relative to the working directory it was written from, or absolute)."""
        if key.startswith(DB_PREFIX):
            return None
        name = PurePath(key.replace("\\", "/")).name
        return self.folder / name if name and name not in (".", "..") else None

    def get(self, key: str) -> bytes | None:
        """The file's bytes (None for a key of another store or a missing file)."""
        path = self._path(key)
        return path.read_bytes() if path is not None and path.is_file() else None

    def delete(self, key: str) -> None:
        """Remove the file."""
        path = self._path(key)
        if path is not None:
            path.unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove the folder."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def count(self) -> int:
        """Files in the folder, half-written ones aside."""
        if not self.folder.is_dir():
            return 0
        return sum(1 for p in self.folder.iterdir() if p.is_file() and not p.name.endswith(".part"))


class DatabaseOriginals:
    """Originals as rows of the ``original`` table, reachable from every process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, sha256: str, filename: str, data: bytes) -> str:
        """Insert the bytes (the same bytes twice are one row)."""
        try:
            with Session(self.engine) as s:
                if s.get(StoredOriginal, sha256) is None:
                    s.add(StoredOriginal(sha256=sha256, data=data))
                    s.commit()
        except IntegrityError:  # another process stored the same bytes a moment ago
            pass
        return DB_PREFIX + sha256

    def get(self, key: str) -> bytes | None:
        """The row's bytes (None for a file key or a missing row)."""
        if not key.startswith(DB_PREFIX):
            return None
        with Session(self.engine) as s:
            row = s.get(StoredOriginal, key.removeprefix(DB_PREFIX))
            return bytes(row.data) if row is not None else None

    def delete(self, key: str) -> None:
        """Delete the row."""
        if key.startswith(DB_PREFIX):
            with Session(self.engine) as s:
                s.exec(
                    delete(StoredOriginal).where(col(StoredOriginal.sha256) == key.removeprefix(DB_PREFIX))
                )
                s.commit()

    def clear(self) -> None:
        """Delete every row."""
        with Session(self.engine) as s:
            s.exec(delete(StoredOriginal))
            s.commit()

    def count(self) -> int:
        """Rows in the table."""
        with Session(self.engine) as s:
            return int(s.exec(select(func.count()).select_from(StoredOriginal)).one())


class Originals:
    """The library's store: writes to the folder or the database, reads and deletes either key."""

    def __init__(self, folder: Path, engine: Engine, in_database: bool) -> None:
        self.files = FileOriginals(folder)
        self.database = DatabaseOriginals(engine)
        self._target: OriginalStore = self.database if in_database else self.files

    def _of(self, key: str) -> OriginalStore:
        return self.database if key.startswith(DB_PREFIX) else self.files

    def put(self, sha256: str, filename: str, data: bytes) -> str:
        """Store the bytes where the settings say; the key."""
        return self._target.put(sha256, filename, data)

    def get(self, key: str) -> bytes | None:
        """The bytes under a key of either store (None when they are gone)."""
        return self._of(key).get(key)

    def delete(self, key: str) -> None:
        """Forget the bytes under a key of either store."""
        self._of(key).delete(key)

    def clear(self) -> None:
        """Forget every original in both stores."""
        self.files.clear()
        self.database.clear()

    def count(self) -> int:
        """Originals in both stores."""
        return self.files.count() + self.database.count()
