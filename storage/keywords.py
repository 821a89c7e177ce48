"""The keyword index over chunk stems: SQLite FTS5 or a PostgreSQL tsvector, chosen by the engine.

Both store the same text, our own Snowball stems separated by spaces (``language.stem_string``),
in a table named ``chunk_fts`` with the columns ``stems``, ``chunk_id`` and ``document_id``, and
both match any of the question's stems (OR). FTS5 ranks by bm25; on SQLite a tantivy index that
mirrors the rows ranks instead by default, without scoring every match (storage.keyword_mirror).
PostgreSQL keeps the stems as a
``simple``-configuration tsvector, so its tokens are ours and not its own Russian stemmer's
(which drops stop words differently), with a GIN index, and ranks by ``ts_rank`` with
normalisation 1 (divided by 1 + log of the fragment's length): on XQuAD-ru R@5 0.976 against
FTS5's 0.984, where ``ts_rank_cd`` gives 0.938 and AND semantics 0.117 (DESIGN.md, section 7).

Where the RUM extension can be had (Debian ``postgresql-15-rum``), the tsvector is indexed by RUM
instead of GIN, and the search ranks by RUM's distance ``tsv <=> q``: the index keeps each
lexeme's positions, so it ranks the matches itself and the heap is read only for the rows
returned, where GIN + ``ts_rank`` reads and scores every matching row on the heap. RUM still
ranks every match before returning the first, so its cost grows with the matches too: 1.1-1.8x
GIN at 100k and 1M fragments (bench/README.md, issue 23). RUM's rank is a cover-density score
without length normalisation; equal ranks go by the rank normalised by length, then chunk id.
XQuAD-ru chunk-level R@1 / R@5 / MRR 0.859 / 0.956 / 0.902 against ``ts_rank``'s 0.858 / 0.958 /
0.902. Without the extension (not installed, or the database user may not create it) the index
is GIN and the ranking ``ts_rank`` as before, with a warning.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from storage.keyword_mirror import FTS_TABLE as FTS_TABLE
from storage.keyword_mirror import KeywordMirror, create_changes_table, log_change, rowids_of

log = logging.getLogger(__name__)

# PostgreSQL's index of the tsvector: RUM where the extension is there, GIN where it is not.
RUM_INDEX = f"{FTS_TABLE}_rum"
GIN_INDEX = f"{FTS_TABLE}_tsv"
_CREATE_RUM = f"CREATE INDEX IF NOT EXISTS {RUM_INDEX} ON {FTS_TABLE} USING rum (tsv rum_tsvector_ops)"
RUM_MISSING = (
    "PostgreSQL has no RUM extension (Debian package postgresql-15-rum, created by a superuser): "
    "keyword search falls back to GIN + ts_rank, which scores every matching fragment and slows "
    "down as the library grows"
)
# Stems are letters and digits; anything else would be query syntax in either engine.
_TERM = re.compile(r"^\w+$")
_INSERT = f"INSERT INTO {FTS_TABLE}(stems, chunk_id, document_id) VALUES (:stems, :chunk_id, :document_id)"


@dataclass(frozen=True)
class InCollections:
    """The documents of these collections: a subquery with one parameter per collection, so a
    member who may read tens of thousands of documents binds a handful of values, not one each."""

    ids: tuple[str, ...]


# Only these documents' rows (None: every document's).
Only = Collection[str] | InCollections | None


def only_clause(documents: Only) -> tuple[str, dict[str, Any], list[Any]]:
    """The filter by documents for a search statement: its SQL, parameters and expanding binds."""
    if documents is None:
        return "", {}, []
    if isinstance(documents, InCollections):
        sql = (
            "AND f.document_id IN (SELECT document_id FROM collectiondocument WHERE collection_id IN :colls) "
        )
        return sql, {"colls": list(documents.ids)}, [bindparam("colls", expanding=True)]
    return "AND f.document_id IN :docs ", {"docs": sorted(documents)}, [bindparam("docs", expanding=True)]


def safe_terms(terms: Sequence[str]) -> list[str]:
    """The distinct terms that are plain words (never query syntax), in order."""
    return [t for t in dict.fromkeys(terms) if _TERM.match(t)]


class KeywordIndex(Protocol):
    """Keyword rows that mirror the chunks, written inside the caller's transaction."""

    def create(self, conn: Connection) -> None:
        """Create the table and its index if missing."""

    def insert(self, conn: Connection, rows: Sequence[dict[str, str]]) -> None:
        """Add rows of ``stems``, ``chunk_id`` and ``document_id``."""

    def search(
        self, conn: Connection, terms: Sequence[str], limit: int, ready: Sequence[str], documents: Only
    ) -> list[tuple[str, float]]:
        """Chunk ids of documents in the ``ready`` states matching any term, best first, higher-is-better."""

    def changed(self, conn: Connection, document_ids: Sequence[str], deleted: bool = False) -> None:
        """The rows of these documents were changed by SQL of the caller's (moved, or ``deleted``)."""

    def sync(self, conn: Connection) -> None:
        """Bring a separate index (if any) up to the rows."""


class _SqlKeywords:
    """What both engines share: the rows written, the filters and the shape of a search."""

    # The search statement, with "{only}" where the filter by documents goes; :q is the
    # engine's query of the terms, the first column the chunk id, the second the raw score.
    select = ""
    # +1 when a higher raw score is better, -1 when lower is.
    sign = 1.0

    def match(self, terms: Sequence[str]) -> str:
        """The engine's query for any of the terms."""
        raise NotImplementedError

    def insert(self, conn: Connection, rows: Sequence[dict[str, str]]) -> None:
        """Add keyword rows."""
        if rows:
            conn.execute(text(_INSERT), list(rows))

    def changed(self, conn: Connection, document_ids: Sequence[str], deleted: bool = False) -> None:
        """Nothing to do: the rows are the only index."""

    def sync(self, conn: Connection) -> None:
        """Nothing to do: the rows are the only index."""

    def search(
        self, conn: Connection, terms: Sequence[str], limit: int, ready: Sequence[str], documents: Only
    ) -> list[tuple[str, float]]:
        """Chunk ids of documents in the ``ready`` states matching any term, best first, higher-is-better."""
        only, extra, binds = only_clause(documents)
        sql = text(self.select.format(only=only)).bindparams(bindparam("ready", expanding=True), *binds)
        params: dict[str, Any] = {"q": self.match(terms), "n": limit, "ready": list(ready), **extra}
        return [(str(r[0]), self.sign * float(r[1])) for r in conn.execute(sql, params)]


class Fts5Keywords(_SqlKeywords):
    """SQLite FTS5, ranked by bm25; equal scores in the order the rows were stored (rowid).

    That tie order is the one sorting every matching row by bm25() gave (SQLite's sort is
    stable and FTS5 yields rows by rowid), so the results are those of that plain statement.
    """

    # Scoring every matching row is unavoidable (FTS5 has no early termination for OR); what the
    # search avoids is reading each matching row's columns and joining its document, which cost
    # 3x the scoring at 100k fragments (bench/README.md, "Issue 13: search at 100k"). First the
    # best rowids by bm25 alone (SQLite keeps only the top n while scoring), then the columns of
    # those rows and the status of their documents.
    top = (
        f"SELECT rowid, bm25({FTS_TABLE}) AS score FROM {FTS_TABLE} "
        f"WHERE {FTS_TABLE} MATCH :q ORDER BY score LIMIT :n"
    )
    # When too few of those are in ready documents, or a search is scoped to some documents:
    # the rows in FTS5's own rank order (bm25), each filtered as it comes, so columns are read
    # only up to the limit-th row that passes. The ready documents are one list made per query.
    select = (
        f"SELECT f.chunk_id, f.rank, f.rowid FROM {FTS_TABLE} f WHERE {FTS_TABLE} MATCH :q "
        "AND f.document_id IN (SELECT id FROM document WHERE status IN :ready) {only}"
        "ORDER BY f.rank LIMIT :n"
    )
    sign = -1.0  # bm25 is negative, lower is better
    # Rows the first step takes beyond the limit: for documents that are not ready, and to see
    # whether the last row kept ties with rows past the limit.
    spare = 10

    def __init__(self, mirror: KeywordMirror | None = None) -> None:
        # The tantivy mirror that ranks without scoring every match (storage.keyword_mirror);
        # None: FTS5 alone. Writes go to FTS5 and the change log either way.
        self.mirror = mirror

    def insert(self, conn: Connection, rows: Sequence[dict[str, str]]) -> None:
        """Add keyword rows and log, per document, which rowids they got."""
        if not rows:
            return
        conn.execute(text(_INSERT), list(rows))
        # One transaction holds SQLite's write lock from the first insert to the commit, so the
        # rows got consecutive rowids ending at the last one inserted.
        last = int(conn.execute(text("SELECT last_insert_rowid()")).scalar_one())
        by_doc: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            by_doc.setdefault(row["document_id"], []).append(last - len(rows) + 1 + i)
        for doc_id, rowids in by_doc.items():
            log_change(conn, doc_id, rowids)

    def changed(self, conn: Connection, document_ids: Sequence[str], deleted: bool = False) -> None:
        """Log the rows these documents have now (after a move, or ``deleted``: none, unread)."""
        ids = list(dict.fromkeys(document_ids))
        for doc_id, rowids in ({d: [] for d in ids} if deleted else rowids_of(conn, ids)).items():
            log_change(conn, doc_id, rowids)

    def sync(self, conn: Connection) -> None:
        """Apply the logged changes to the mirror (after indexing: the next search starts up to date)."""
        if self.mirror is not None:
            self.mirror.sync(conn)

    def search(
        self, conn: Connection, terms: Sequence[str], limit: int, ready: Sequence[str], documents: Only
    ) -> list[tuple[str, float]]:
        """Chunk ids of documents in the ``ready`` states matching any term, best first, higher-is-better."""
        if limit <= 0:
            return []
        if self.mirror is not None:
            found = self._mirrored(conn, terms, limit, ready, documents)
            if found is not None:
                return found
        if documents is None:
            found = self._top(conn, terms, limit, ready)
            if found is not None:
                return found
        only, extra, binds = only_clause(documents)
        sql = text(self.select.format(only=only)).bindparams(bindparam("ready", expanding=True), *binds)
        params: dict[str, Any] = {"q": self.match(terms), "ready": list(ready), **extra}
        # One row more than asked shows whether the last one ties with rows past the limit; if
        # so, fetch until every tied row is in, so that ties go by rowid and never by the order
        # FTS5's rank sort happened to leave them in.
        fetch = limit + 1
        while True:
            rows = [(str(r[0]), -float(r[1]), int(r[2])) for r in conn.execute(sql, {**params, "n": fetch})]
            if len(rows) < fetch or rows[-1][1] != rows[limit - 1][1]:
                break
            fetch *= 4
        rows.sort(key=lambda r: (-r[1], r[2]))
        return [(cid, score) for cid, score, _ in rows[:limit]]

    def _mirrored(
        self, conn: Connection, terms: Sequence[str], limit: int, ready: Sequence[str], documents: Only
    ) -> list[tuple[str, float]] | None:
        """The search by the mirror; None when it is behind and another process is syncing it."""
        assert self.mirror is not None
        ready_sql = text("SELECT id FROM document WHERE status NOT IN :ready").bindparams(
            bindparam("ready", expanding=True)
        )
        # Documents with rows that are not searchable are few (being indexed, failed): excluded
        # in the query, so the pruning stays exact over what may be shown.
        excluded = {str(r[0]) for r in conn.execute(ready_sql, {"ready": list(ready)})}
        only = _documents_of(conn, documents)
        while True:
            rows = self.mirror.search(conn, terms, limit, sorted(excluded), only)
            if rows is None:
                return None
            if not rows:
                return []
            cols = conn.execute(
                text(f"SELECT rowid, chunk_id, document_id FROM {FTS_TABLE} WHERE rowid IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": [r for r, _ in rows]},
            ).all()
            doc_ids = sorted({str(r[2]) for r in cols})
            searchable = {
                str(r[0])
                for r in conn.execute(
                    text("SELECT id FROM document WHERE status IN :ready AND id IN :docs").bindparams(
                        bindparam("ready", expanding=True), bindparam("docs", expanding=True)
                    ),
                    {"ready": list(ready), "docs": doc_ids},
                )
            }
            if len(cols) < len(rows):
                return None  # the mirror has rows FTS5 lost: FTS5 answers, the check repairs
            # A document that changed state since the list above: excluded too, and again.
            stray = set(doc_ids) - searchable
            if not stray:
                chunk = {int(r[0]): str(r[1]) for r in cols}
                return [(chunk[r], score) for r, score in rows]
            excluded |= stray

    def _top(
        self, conn: Connection, terms: Sequence[str], limit: int, ready: Sequence[str]
    ) -> list[tuple[str, float]] | None:
        """The search from the best rowids of all documents; None when they cannot tell it for sure."""
        fetch = limit + self.spare
        best = conn.execute(text(self.top), {"q": self.match(terms), "n": fetch}).all()
        if not best:
            return []
        score = {int(r[0]): -float(r[1]) for r in best}
        cols = conn.execute(
            text(f"SELECT rowid, chunk_id, document_id FROM {FTS_TABLE} WHERE rowid IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": list(score)},
        ).all()
        searchable = {
            str(r[0])
            for r in conn.execute(
                text("SELECT id FROM document WHERE status IN :ready AND id IN :docs").bindparams(
                    bindparam("ready", expanding=True), bindparam("docs", expanding=True)
                ),
                {"ready": list(ready), "docs": sorted({str(r[2]) for r in cols})},
            )
        }
        kept = sorted(
            ((str(r[1]), score[int(r[0])], int(r[0])) for r in cols if str(r[2]) in searchable),
            key=lambda r: (-r[1], r[2]),
        )
        if len(best) == fetch:
            # Rows past ``fetch`` score at most as well as the last one taken: the kept rows are
            # the top only if that many are in and the limit-th beats it (a tie could be cut).
            last = -float(best[-1][1])
            if len(kept) < limit or kept[limit - 1][1] <= last:
                return None
        return [(cid, s) for cid, s, _ in kept[:limit]]

    def create(self, conn: Connection) -> None:
        """Create the FTS5 table (it splits on spaces only: the stems are computed in Python) and
        the log of its changes that the mirror follows."""
        create_changes_table(conn)
        conn.execute(
            text(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5("
                "stems, chunk_id UNINDEXED, document_id UNINDEXED, "
                "tokenize='unicode61 remove_diacritics 0')"
            )
        )

    def match(self, terms: Sequence[str]) -> str:
        """Quoted terms joined by OR: each stem is a literal, never an FTS5 operator."""
        return " OR ".join(f'"{t}"' for t in terms)


class PostgresKeywords(_SqlKeywords):
    """PostgreSQL: a generated ``simple`` tsvector of the stems, ranked from a RUM index by
    ``tsv <=> q``, or (no RUM) through GIN by ``ts_rank`` normalisation 1."""

    # The fallback: every matching row is read and scored, then sorted.
    select = (
        "SELECT f.chunk_id, ts_rank(f.tsv, q, 1) AS score "
        f"FROM {FTS_TABLE} f JOIN document d ON d.id = f.document_id, "
        "to_tsquery('simple'::regconfig, :q) q "
        "WHERE f.tsv @@ q AND d.status IN :ready {only}"
        "ORDER BY score DESC, f.chunk_id LIMIT :n"
    )
    # RUM: the index returns the matches nearest first (distance = 1 / rank), so the rows are
    # read and joined only up to the limit. Ordered by the distance alone: a second sort key
    # would make PostgreSQL sort every match instead of reading the index's order. RUM's rank
    # has no length normalisation, so equal ranks are common; among them the shorter fragment
    # first (the rank divided by 1 + log of the length, ts_rank's normalisation 1, computed for
    # the rows returned only), then the chunk id.
    select_rum = (
        "SELECT f.chunk_id, f.tsv <=> q AS distance, f.tsv <=> (q, 1)::rum_distance_query AS normed "
        f"FROM {FTS_TABLE} f JOIN document d ON d.id = f.document_id, "
        "to_tsquery('simple'::regconfig, :q) q "
        "WHERE f.tsv @@ q AND d.status IN :ready {only}"
        "ORDER BY distance LIMIT :n"
    )
    # A scope of a few documents: its own rows (by the index on document_id), each scored, then
    # sorted. PostgreSQL would rather filter the index's order, but RUM ranks every match of the
    # library before it returns the first (1.4 s for a stem in half of 1M fragments, when the
    # scope's own 10k rows take milliseconds): "+ 0" keeps the order out of the index.
    select_scope = select_rum.replace("ORDER BY distance", "ORDER BY (f.tsv <=> q) + 0")
    # The share of the library's documents up to which a scope is searched from its own rows.
    small_scope = 0.05

    def __init__(self) -> None:
        # Whether this database's keyword rows have the RUM index: looked up on the first search.
        self.rum: bool | None = None

    def search(
        self, conn: Connection, terms: Sequence[str], limit: int, ready: Sequence[str], documents: Only
    ) -> list[tuple[str, float]]:
        """Chunk ids of documents in the ``ready`` states matching any term, best first, higher-is-better."""
        if self.rum is None:
            self.rum = has_rum_index(conn)
            if not self.rum:
                warn_without_rum()
        if not self.rum:
            return super().search(conn, terms, limit, ready, documents)
        if limit <= 0:
            return []
        return self._ranked(conn, terms, limit, ready, documents)

    def _ranked(
        self, conn: Connection, terms: Sequence[str], limit: int, ready: Sequence[str], documents: Only
    ) -> list[tuple[str, float]]:
        """Every match ranked by RUM's distance in the index, the top ``limit`` read."""
        only, extra, binds = only_clause(documents)
        select = self.select_scope if self._small(conn, documents) else self.select_rum
        sql = text(select.format(only=only)).bindparams(bindparam("ready", expanding=True), *binds)
        params: dict[str, Any] = {"q": self.match(terms), "ready": list(ready), **extra}
        # One row more than asked shows whether the last one ties with rows past the limit; if
        # so, fetch until every tied row is in, so that ties go by length and chunk id, never by
        # the order the index happened to return them in.
        fetch = limit + 1
        while True:
            rows = [(float(r[1]), float(r[2]), str(r[0])) for r in conn.execute(sql, {**params, "n": fetch})]
            if len(rows) < fetch or rows[-1][0] != rows[limit - 1][0]:
                break
            fetch *= 4
        rows.sort()
        return [(cid, 1.0 / distance) for distance, _, cid in rows[:limit]]

    def _small(self, conn: Connection, documents: Only) -> bool:
        """Whether a search is scoped to at most ``small_scope`` of the library's documents."""
        if documents is None:
            return False
        # The planner's count of documents (as of the last ANALYZE; -1 or 0 before any).
        total = float(
            conn.execute(text("SELECT reltuples FROM pg_class WHERE oid = 'document'::regclass")).scalar_one()
        )
        if total <= 0:
            return True  # never analyzed: a small library, where either way is fast
        cap = int(total * self.small_scope) + 1
        if isinstance(documents, InCollections):
            sql = text(
                "SELECT count(*) FROM "
                "(SELECT 1 FROM collectiondocument WHERE collection_id IN :colls LIMIT :cap) s"
            ).bindparams(bindparam("colls", expanding=True))
            n = int(conn.execute(sql, {"colls": list(documents.ids), "cap": cap}).scalar_one())
        else:
            n = len(documents)
        return n < cap

    def create(self, conn: Connection) -> None:
        """Create the table, its RUM index (GIN without the extension) and the index by document."""
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {FTS_TABLE} ("
                "chunk_id VARCHAR PRIMARY KEY, document_id VARCHAR NOT NULL, stems TEXT NOT NULL, "
                "tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, stems)) STORED)"
            )
        )
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS {FTS_TABLE}_document ON {FTS_TABLE} (document_id)"))
        if rum_extension(conn) and _rum_index(conn):
            # RUM answers @@ too: GIN would only cost space and every write.
            conn.execute(text(f"DROP INDEX IF EXISTS {GIN_INDEX}"))
        else:
            conn.execute(text(f"CREATE INDEX IF NOT EXISTS {GIN_INDEX} ON {FTS_TABLE} USING gin (tsv)"))
            warn_without_rum()
        self.rum = None

    def match(self, terms: Sequence[str]) -> str:
        """Quoted lexemes joined by | (OR): a stem is never read as tsquery syntax."""
        return " | ".join(f"'{t}'" for t in terms)


def _documents_of(conn: Connection, documents: Only) -> list[str] | None:
    """The document ids a scoped search may return (None: any)."""
    if documents is None:
        return None
    if isinstance(documents, InCollections):
        sql = text(
            "SELECT DISTINCT document_id FROM collectiondocument WHERE collection_id IN :c"
        ).bindparams(bindparam("c", expanding=True))
        return sorted(str(r[0]) for r in conn.execute(sql, {"c": list(documents.ids)}))
    return sorted(documents)


def rum_extension(conn: Connection) -> bool:
    """Whether the database has the RUM extension, creating it where the server offers it."""
    if conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'rum'")).first():
        return True
    if not conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'rum'")).first():
        return False
    try:
        # A savepoint: the caller's transaction (the migration's) goes on when this fails.
        with conn.begin_nested():
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS rum"))
    except DBAPIError as exc:
        # Not a superuser (rum is not a trusted extension), or a library built for another
        # minor version of the server.
        log.warning("could not create the RUM extension: %s", str(exc.orig).strip())
        return False
    return True


def _rum_index(conn: Connection) -> bool:
    """Create the RUM index if missing; False when the server cannot load the extension's library."""
    try:
        with conn.begin_nested():
            conn.execute(text(_CREATE_RUM))
    except DBAPIError as exc:
        # The extension is there but its library was built for another minor version of the
        # server (Debian's package follows the newest): GIN serves until the server is restarted.
        log.warning("could not create the RUM index: %s", str(exc.orig).strip())
        return False
    return True


def has_rum_index(conn: Connection) -> bool:
    """Whether the keyword rows are indexed by RUM (PostgreSQL)."""
    return conn.execute(text("SELECT to_regclass(:i) IS NOT NULL"), {"i": RUM_INDEX}).scalar() is True


def keyword_ranking_note(engine: Engine) -> str | None:
    """A line for the admin page when PostgreSQL's keyword search has no RUM index (else None)."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        if has_rum_index(conn):
            return None
    return (
        "Поиск по словам: в PostgreSQL нет расширения RUM (пакет postgresql-15-rum), "
        "поэтому на больших библиотеках он медленнее."
    )


_warned = False


def warn_without_rum() -> None:
    """Log, once per process, that PostgreSQL's keyword search has no RUM index."""
    global _warned
    if not _warned:
        _warned = True
        log.warning(RUM_MISSING)


def keyword_index(dialect: str, mirror: KeywordMirror | None = None) -> KeywordIndex:
    """The keyword index for a SQLAlchemy dialect name (on SQLite, with the tantivy mirror if given)."""
    if dialect == "sqlite":
        return Fts5Keywords(mirror)
    if dialect == "postgresql":
        return PostgresKeywords()
    raise ValueError(f"no keyword index for the {dialect!r} database: use SQLite or PostgreSQL")
