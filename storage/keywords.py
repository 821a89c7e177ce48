"""The keyword index over chunk stems: SQLite FTS5 or a PostgreSQL tsvector, chosen by the engine.

Both store the same text, our own Snowball stems separated by spaces (``language.stem_string``),
in a table named ``chunk_fts`` with the columns ``stems``, ``chunk_id`` and ``document_id``, and
both match any of the question's stems (OR). FTS5 ranks by bm25. PostgreSQL keeps the stems as a
``simple``-configuration tsvector, so its tokens are ours and not its own Russian stemmer's
(which drops stop words differently), with a GIN index, and ranks by ``ts_rank`` with
normalisation 1 (divided by 1 + log of the fragment's length): on XQuAD-ru R@5 0.976 against
FTS5's 0.984, where ``ts_rank_cd`` gives 0.938 and AND semantics 0.117 (DESIGN.md, section 7).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

FTS_TABLE = "chunk_fts"
# Stems are letters and digits; anything else would be query syntax in either engine.
_TERM = re.compile(r"^\w+$")
_INSERT = f"INSERT INTO {FTS_TABLE}(stems, chunk_id, document_id) VALUES (:stems, :chunk_id, :document_id)"
# Only these documents' rows (None: every document's).
Only = Collection[str] | None


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
        self, conn: Connection, terms: Sequence[str], limit: int, ready: str, documents: Only
    ) -> list[tuple[str, float]]:
        """Chunk ids of ready documents matching any term, best first, with a higher-is-better score."""


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

    def search(
        self, conn: Connection, terms: Sequence[str], limit: int, ready: str, documents: Only
    ) -> list[tuple[str, float]]:
        """Chunk ids of ready documents matching any term, best first, with a higher-is-better score."""
        only = "AND f.document_id IN :docs " if documents is not None else ""
        sql = text(self.select.format(only=only))
        params: dict[str, Any] = {"q": self.match(terms), "n": limit, "ready": ready}
        if documents is not None:
            sql = sql.bindparams(bindparam("docs", expanding=True))
            params["docs"] = sorted(documents)
        return [(str(r[0]), self.sign * float(r[1])) for r in conn.execute(sql, params)]


class Fts5Keywords(_SqlKeywords):
    """SQLite FTS5, ranked by bm25."""

    select = (
        f"SELECT f.chunk_id, bm25({FTS_TABLE}) AS score FROM {FTS_TABLE} f "
        "JOIN document d ON d.id = f.document_id "
        f"WHERE {FTS_TABLE} MATCH :q AND d.status = :ready {{only}}"
        "ORDER BY score LIMIT :n"
    )
    sign = -1.0  # bm25() is negative, lower is better

    def create(self, conn: Connection) -> None:
        """Create the FTS5 table (it splits on spaces only: the stems are computed in Python)."""
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
    """PostgreSQL: a generated ``simple`` tsvector of the stems, GIN, ``ts_rank`` normalisation 1."""

    select = (
        "SELECT f.chunk_id, ts_rank(f.tsv, q, 1) AS score "
        f"FROM {FTS_TABLE} f JOIN document d ON d.id = f.document_id, "
        "to_tsquery('simple'::regconfig, :q) q "
        "WHERE f.tsv @@ q AND d.status = :ready {only}"
        "ORDER BY score DESC, f.chunk_id LIMIT :n"
    )

    def create(self, conn: Connection) -> None:
        """Create the table, its GIN index and the index that deletes by document."""
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {FTS_TABLE} ("
                "chunk_id VARCHAR PRIMARY KEY, document_id VARCHAR NOT NULL, stems TEXT NOT NULL, "
                "tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, stems)) STORED)"
            )
        )
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS {FTS_TABLE}_tsv ON {FTS_TABLE} USING gin (tsv)"))
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS {FTS_TABLE}_document ON {FTS_TABLE} (document_id)"))

    def match(self, terms: Sequence[str]) -> str:
        """Quoted lexemes joined by | (OR): a stem is never read as tsquery syntax."""
        return " | ".join(f"'{t}'" for t in terms)


def keyword_index(dialect: str) -> KeywordIndex:
    """The keyword index for a SQLAlchemy dialect name."""
    if dialect == "sqlite":
        return Fts5Keywords()
    if dialect == "postgresql":
        return PostgresKeywords()
    raise ValueError(f"no keyword index for the {dialect!r} database: use SQLite or PostgreSQL")
