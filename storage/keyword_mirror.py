"""A tantivy index that mirrors the FTS5 keyword rows, for search that does not grow with the library.

FTS5 scores every fragment that matches any stem of a question: at a million fragments a
question of common words waits on hundreds of thousands of bm25 scores. tantivy ranks by BM25
with block-max WAND, which skips the fragments that cannot reach the top k (bench/README.md,
"Issue 23"). The stems stay ours (``language.stem_string``; tantivy only splits on spaces).

SQLite stays the truth. Every change to the FTS5 rows appends to ``chunk_fts_changes``, in the
same transaction, which document's rows are now exactly which rowids. The mirror applies the
changes past the last one it applied (kept in ``applied.json`` beside the index, written after
tantivy's commit), before a search and after indexing. A crash between SQLite's commit and
tantivy's leaves the change in the log, and the next sync applies it again: an entry replaces a
document's rows in the mirror, so applying it twice is harmless. A search that finds the mirror
behind and another process syncing it falls back to FTS5, which is exact; the consistency check
(``Maintenance.check``) reports a mirror behind or whose row count differs, and repair syncs or
rebuilds it from the rows.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

FTS_TABLE = "chunk_fts"
# Named after the FTS table so that the schema comparison skips it (storage.migrate.include_name).
CHANGES_TABLE = "chunk_fts_changes"
_APPLIED = "applied.json"
_TOKENIZER = "stems"
# The writer's heap: small, since syncs are a few documents' rows (tantivy's floor is 15 MB).
_HEAP = 32_000_000
# Rows read from FTS5 and added per round of a sync or rebuild.
_BATCH = 5000


@dataclass(frozen=True)
class MirrorState:
    """How the mirror stands against the rows: changes not applied yet, and both row counts."""

    behind: int
    mirror_rows: int
    sql_rows: int

    @property
    def consistent(self) -> bool:
        """True when every change is applied and the counts agree."""
        return self.behind == 0 and self.mirror_rows == self.sql_rows


def create_changes_table(conn: Connection) -> None:
    """The change log (SQLite only: PostgreSQL has no mirror)."""
    conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {CHANGES_TABLE} ("
            "seq INTEGER PRIMARY KEY AUTOINCREMENT, document_id VARCHAR NOT NULL, rowids TEXT NOT NULL)"
        )
    )


def log_change(conn: Connection, document_id: str, rowids: Iterable[int]) -> None:
    """Record, inside the caller's transaction, that the document's keyword rows are now these."""
    conn.execute(
        text(f"INSERT INTO {CHANGES_TABLE}(document_id, rowids) VALUES (:d, :r)"),
        {"d": document_id, "r": _pack(sorted(rowids))},
    )


def _pack(rowids: Sequence[int]) -> str:
    """``1-40,52``: runs of consecutive rowids (a document's rows are inserted together)."""
    parts: list[str] = []
    i = 0
    while i < len(rowids):
        j = i
        while j + 1 < len(rowids) and rowids[j + 1] == rowids[j] + 1:
            j += 1
        parts.append(str(rowids[i]) if i == j else f"{rowids[i]}-{rowids[j]}")
        i = j + 1
    return ",".join(parts)


def _unpack(packed: str) -> list[tuple[int, int]]:
    out = []
    for part in filter(None, packed.split(",")):
        first, _, last = part.partition("-")
        out.append((int(first), int(last or first)))
    return out


class KeywordMirror:
    """The tantivy mirror of ``chunk_fts`` in one folder; one object per process and folder."""

    def __init__(self, path: Path) -> None:
        import tantivy

        self._tv = tantivy
        self.path = path
        self._lock = threading.Lock()  # this process's syncs, one at a time
        self._index: Any = None
        self._applied = -1  # the last change this process's reader has seen applied

    # -- the index --------------------------------------------------------------------------

    def _schema(self) -> Any:
        sb = self._tv.SchemaBuilder()
        # Term frequencies without positions: BM25 needs no more, and the index is smaller.
        sb.add_text_field("stems", stored=False, tokenizer_name=_TOKENIZER, index_option="freq")
        sb.add_text_field("document_id", stored=False, tokenizer_name="raw", index_option="basic")
        sb.add_unsigned_field("row", stored=True, indexed=False)
        return sb.build()

    def _open(self) -> Any:
        if self._index is None:
            self.path.mkdir(parents=True, exist_ok=True)
            schema = self._schema()
            try:
                index = self._tv.Index(schema, path=str(self.path))
            except (ValueError, OSError):
                # Another schema or a damaged folder: the mirror is derived data, made again.
                log.warning("keyword index at %s unreadable: rebuilding it from the rows", self.path)
                shutil.rmtree(self.path, ignore_errors=True)
                self.path.mkdir(parents=True)
                index = self._tv.Index(schema, path=str(self.path))
            index.register_tokenizer(
                _TOKENIZER, self._tv.TextAnalyzerBuilder(self._tv.Tokenizer.whitespace()).build()
            )
            self._schema_obj = schema
            self._index = index
        return self._index

    def _read_applied(self) -> int:
        try:
            return int(json.loads((self.path / _APPLIED).read_text())["seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return -1

    def _write_applied(self, seq: int) -> None:
        tmp = self.path / f"{_APPLIED}.tmp"
        tmp.write_text(json.dumps({"seq": seq}))
        os.replace(tmp, self.path / _APPLIED)

    @staticmethod
    def _last_change(conn: Connection) -> int:
        # The log's counter, kept by SQLite even when the applied rows are deleted.
        row = conn.execute(
            text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": CHANGES_TABLE}
        ).first()
        return int(row[0]) if row else 0

    # -- keeping it in step -----------------------------------------------------------------

    def sync(self, conn: Connection, wait: bool = True) -> bool:
        """Apply the logged changes not yet applied; False when another process holds the writer
        (``wait=False``) or the changes cannot be read."""
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            return self._sync(conn, wait)
        finally:
            self._lock.release()

    def _writer(self, wait: bool) -> Any:
        """tantivy's writer, which is also the lock between processes (its lock file)."""
        index = self._open()
        while True:
            try:
                return index.writer(_HEAP, 1)
            except ValueError:  # "LockBusy": another process is writing
                if not wait:
                    return None
                threading.Event().wait(0.05)

    def _sync(self, conn: Connection, wait: bool) -> bool:
        last = self._last_change(conn)
        if self._read_applied() == last:  # applied already, by this process or another one
            index = self._open()
            if self._applied != last:
                index.reload()
                self._applied = last
            return True
        writer = self._writer(wait)
        if writer is None:
            return False
        try:
            applied = self._read_applied()  # under the writer: another process may have synced
            if applied > last or applied < 0:
                # A mirror from another database (restored from a backup, say) or without its
                # record: the log before ``applied`` may be gone, so everything is added again.
                self._rebuild(conn, writer)
            elif applied < last:
                self._apply(conn, writer, applied)
            self._write_applied(last)
            # Each sync leaves a small segment: merged now, or searches slow down as they pile up.
            writer.wait_merging_threads()
        finally:
            del writer  # releases tantivy's lock file
        # The rows applied leave the log; what other processes log from now on stays.
        conn.execute(text(f"DELETE FROM {CHANGES_TABLE} WHERE seq <= :s"), {"s": last})
        conn.commit()
        self._index.reload()
        self._applied = last
        return True

    def _apply(self, conn: Connection, writer: Any, applied: int) -> None:
        latest: dict[str, str] = {}
        for doc_id, rowids in conn.execute(
            text(f"SELECT document_id, rowids FROM {CHANGES_TABLE} WHERE seq > :a ORDER BY seq"),
            {"a": applied},
        ):
            latest[str(doc_id)] = str(rowids)  # an entry states the document's rows: the last wins
        for doc_id in latest:
            writer.delete_documents_by_term("document_id", doc_id)
        for doc_id, packed in latest.items():
            for first, last in _unpack(packed):
                # Rows moved to another document since (a re-index swapped in) are that one's.
                self._add_rows(
                    conn,
                    writer,
                    f"SELECT rowid, stems, document_id FROM {FTS_TABLE} "
                    "WHERE rowid BETWEEN :a AND :b AND document_id = :d",
                    {"a": first, "b": last, "d": doc_id},
                )
        writer.commit()

    def _rebuild(self, conn: Connection, writer: Any) -> None:
        writer.delete_all_documents()
        start = 0
        while True:
            n = self._add_rows(
                conn,
                writer,
                f"SELECT rowid, stems, document_id FROM {FTS_TABLE} WHERE rowid > :a ORDER BY rowid LIMIT :n",
                {"a": start, "n": _BATCH},
            )
            if not n:
                break
            start = n
        writer.commit()

    def _add_rows(self, conn: Connection, writer: Any, sql: str, params: dict[str, Any]) -> int:
        """Add the rows a statement selects; the last rowid added (0: none)."""
        last = 0
        for rowid, stems, doc_id in conn.execute(text(sql), params):
            writer.add_document(self._tv.Document(stems=str(stems), document_id=str(doc_id), row=int(rowid)))
            last = int(rowid)
        return last

    def rebuild(self, conn: Connection) -> None:
        """Add every row again from the FTS5 table (repair)."""
        with self._lock:
            writer = self._writer(True)
            try:
                last = self._last_change(conn)
                self._rebuild(conn, writer)
                self._write_applied(last)
                writer.wait_merging_threads()
            finally:
                del writer
            conn.execute(text(f"DELETE FROM {CHANGES_TABLE} WHERE seq <= :s"), {"s": last})
            conn.commit()
            self._index.reload()
            self._applied = last

    def state(self, conn: Connection) -> MirrorState:
        """Changes not applied and the row counts of the mirror and of FTS5."""
        index = self._open()
        index.reload()
        applied = self._read_applied()
        behind = int(
            conn.execute(
                text(f"SELECT count(*) FROM {CHANGES_TABLE} WHERE seq > :a"), {"a": max(applied, 0)}
            ).scalar_one()
        )
        if applied < 0 and behind == 0 and self._last_change(conn) > 0:
            behind = 1  # no record of what was applied: the mirror must be rebuilt
        sql_rows = int(conn.execute(text(f"SELECT count(*) FROM {FTS_TABLE}")).scalar_one())
        return MirrorState(behind=behind, mirror_rows=int(index.searcher().num_docs), sql_rows=sql_rows)

    # -- search -----------------------------------------------------------------------------

    def search(
        self,
        conn: Connection,
        terms: Sequence[str],
        limit: int,
        excluded: Sequence[str],
        only: Sequence[str] | None,
    ) -> list[tuple[int, float]] | None:
        """The best ``limit`` rowids by BM25, best first, ties by rowid; of documents in ``only``
        (None: all) and never of ``excluded``. None when the mirror is behind and busy."""
        if self._applied != self._last_change(conn) and not self.sync(conn, wait=False):
            return None
        tv = self._tv
        schema = self._schema_obj
        should = tv.Query.boolean_query(
            [(tv.Occur.Should, tv.Query.term_query(schema, "stems", t)) for t in terms]
        )
        clauses = [(tv.Occur.Must, should)]
        # Filters score nothing: the scores stay BM25's over the terms.
        if only is not None:
            clauses.append(
                (
                    tv.Occur.Must,
                    tv.Query.const_score_query(
                        tv.Query.term_set_query(schema, "document_id", list(only)), 0.0
                    ),
                )
            )
        if excluded:
            clauses.append((tv.Occur.MustNot, tv.Query.term_set_query(schema, "document_id", list(excluded))))
        query = tv.Query.boolean_query(clauses) if len(clauses) > 1 else should
        searcher = self._index.searcher()
        # One more than asked shows whether the last kept ties with what lies past the limit;
        # if so, fetch until every tied row is in, so ties go by rowid, not by tantivy's order.
        fetch = limit + 1
        while True:
            hits = searcher.search(query, fetch, count=False).hits
            rows = [(int(searcher.doc(addr)["row"][0]), float(score)) for score, addr in hits]
            if len(rows) < fetch or rows[-1][1] != rows[limit - 1][1]:
                break
            fetch *= 4
        rows.sort(key=lambda r: (-r[1], r[0]))
        return rows[:limit]

    def _any_of(self, terms: Sequence[str]) -> Any:
        tv = self._tv
        return tv.Query.boolean_query(
            [(tv.Occur.Should, tv.Query.term_query(self._schema_obj, "stems", t)) for t in terms]
        )

    def exhaustive(self, conn: Connection, terms: Sequence[str]) -> list[tuple[int, float]]:
        """Every matching rowid scored, best first, ties by rowid (the reference for tests and bench)."""
        self.sync(conn)
        should = self._any_of(terms)
        searcher = self._index.searcher()
        total = max(int(searcher.num_docs), 1)
        hits = searcher.search(should, total, count=False).hits
        rows = [(int(searcher.doc(addr)["row"][0]), float(score)) for score, addr in hits]
        rows.sort(key=lambda r: (-r[1], r[0]))
        return rows


def rowids_of(conn: Connection, document_ids: Sequence[str]) -> dict[str, list[int]]:
    """The FTS5 rowids of these documents' keyword rows (a scan: FTS5 cannot index the column)."""
    out: dict[str, list[int]] = {d: [] for d in document_ids}
    if not document_ids:
        return out
    sql = text(f"SELECT rowid, document_id FROM {FTS_TABLE} WHERE document_id IN :d").bindparams(
        bindparam("d", expanding=True)
    )
    for rowid, doc_id in conn.execute(sql, {"d": list(document_ids)}):
        out[str(doc_id)].append(int(rowid))
    return out
