"""One writer per document: a lock every write to a document's rows or vectors holds.

On PostgreSQL it is a session-level advisory lock keyed on a hash of the document id, so it
holds across every app replica and worker, and the server releases it when the holder's
connection dies (a killed worker never keeps a document locked). On SQLite, which serves one
machine, it is a lock in this process. Either way the thread holding a document's lock may take
it again (a re-index that purges, a repair that finishes vectors).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine


def lock_key(document_id: str) -> int:
    """The advisory lock's key: a signed 64-bit hash of the document id."""
    return int.from_bytes(hashlib.sha256(document_id.encode()).digest()[:8], "big", signed=True)


def _halves(key: int) -> tuple[int, int]:
    """A bigint advisory key as pg_locks shows it: (classid, objid), its high and low 32 bits."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


class _Local:
    """This process's lock of one document: who holds it, how many times."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner: int | None = None
        self.depth = 0
        self.connection: Any = None  # PostgreSQL: the session holding the advisory lock
        self.users = 0  # threads holding or waiting for it (the entry goes when none is left)


# Shared by every engine of the process: two libraries opened on one database (the app and a
# job, two tests) must see each other's locks.
_table: dict[tuple[str, str], _Local] = {}
_table_lock = threading.Lock()


class DocumentLocks:
    """Per-document write locks over one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._scope = engine.url.render_as_string(hide_password=True)

    @contextmanager
    def hold(self, document_id: str, wait: bool = True) -> Iterator[bool]:
        """Hold the document's lock for the block; yields False (holding nothing) when ``wait`` is
        False and another thread or process has it."""
        me = threading.get_ident()
        key = (self._scope, document_id)
        with _table_lock:
            entry = _table.setdefault(key, _Local())
            entry.users += 1
        try:
            if entry.owner == me:  # taken again by its holder
                entry.depth += 1
                try:
                    yield True
                finally:
                    entry.depth -= 1
                return
            if not entry.lock.acquire(blocking=wait):
                yield False
                return
            try:
                if self._postgres and not self._take_advisory(entry, document_id, wait):
                    yield False
                    return
                entry.owner, entry.depth = me, 1
                try:
                    yield True
                finally:
                    entry.owner, entry.depth = None, 0
                    self._release_advisory(entry, document_id)
            finally:
                entry.lock.release()
        finally:
            with _table_lock:
                entry.users -= 1
                if entry.users == 0:
                    _table.pop(key, None)

    def held_elsewhere(self, document_id: str) -> bool:
        """Whether another thread or process holds the document's lock right now."""
        with self.hold(document_id, wait=False) as got:
            return not got

    def held(self, document_ids: Iterable[str]) -> set[str]:
        """Those of the documents whose lock someone (any thread, any process) holds now."""
        ids = set(document_ids)
        with _table_lock:
            out = {
                d
                for d in ids
                if (entry := _table.get((self._scope, d))) is not None and entry.owner is not None
            }
        if self._postgres and ids - out:
            # One look at the server's lock table, not a try-lock per document.
            sql = text(
                "SELECT classid::bigint, objid::bigint FROM pg_locks "
                "WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
            )
            with self.engine.connect() as conn:
                taken = {(int(r[0]), int(r[1])) for r in conn.execute(sql)}
            out |= {d for d in ids - out if _halves(lock_key(d)) in taken}
        return out

    def _take_advisory(self, entry: _Local, document_id: str, wait: bool) -> bool:
        conn = self.engine.connect()
        try:
            if wait:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_key(document_id)})
                got = True
            else:
                got = bool(
                    conn.execute(
                        text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(document_id)}
                    ).scalar()
                )
            conn.commit()  # the lock is the session's, not the transaction's: end the transaction
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        entry.connection = conn
        return True

    def _release_advisory(self, entry: _Local, document_id: str) -> None:
        conn, entry.connection = entry.connection, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(document_id)})
            conn.commit()
        finally:
            conn.close()
