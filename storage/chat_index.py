"""The keyword index over chat messages: SQLite FTS5 or a PostgreSQL tsvector, as for documents.

Rows hold a message's Snowball stems (``language.stem_string``, the stemming of document search),
its id and its chat's id, in a table named ``message_fts``. The chat repository writes them in the
same transaction as the message (``ChatRepo``), so the index never lags the chats: an inserted or
edited message is re-indexed, a cleared or deleted chat loses its rows. Searches match any of the
query's stems (OR) and are always restricted to one owner's chats by a join on ``chat``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from language import stem_string
from storage.keywords import safe_terms

MESSAGE_FTS = "message_fts"


class MessageIndex:
    """What both engines share: rows written and deleted by message or chat, the search's shape."""

    # The search statement: :q is the engine's query, :owner the owner's id (or NULL for all).
    select = ""
    sign = 1.0  # +1 when a higher raw score is better, -1 when lower is

    def create(self, conn: Connection) -> None:
        """Create the table and its indexes if missing."""
        raise NotImplementedError

    def match(self, terms: Sequence[str]) -> str:
        """The engine's query for any of the terms."""
        raise NotImplementedError

    def put(self, conn: Connection, message_id: str, chat_id: str, content: str) -> None:
        """Index a message's text, replacing its previous row (a streamed answer grows)."""
        self.delete_messages(conn, [message_id])
        self.add(conn, [(message_id, chat_id, content)])

    def add(self, conn: Connection, messages: Sequence[tuple[str, str, str]]) -> None:
        """Index new messages: (message id, chat id, text) each."""
        rows = [{"s": s, "m": m, "c": c} for m, c, t in messages if (s := stem_string(t))]
        if rows:
            conn.execute(
                text(f"INSERT INTO {MESSAGE_FTS}(stems, message_id, chat_id) VALUES (:s, :m, :c)"), rows
            )

    def delete_messages(self, conn: Connection, message_ids: Sequence[str]) -> None:
        """Drop these messages' rows."""
        if message_ids:
            sql = text(f"DELETE FROM {MESSAGE_FTS} WHERE message_id IN :ids")
            conn.execute(sql.bindparams(bindparam("ids", expanding=True)), {"ids": list(message_ids)})

    def delete_chats(self, conn: Connection, chat_ids: Sequence[str] | None) -> None:
        """Drop the rows of these chats (None: of every chat)."""
        if chat_ids is None:
            conn.execute(text(f"DELETE FROM {MESSAGE_FTS}"))
        elif chat_ids:
            sql = text(f"DELETE FROM {MESSAGE_FTS} WHERE chat_id IN :ids")
            conn.execute(sql.bindparams(bindparam("ids", expanding=True)), {"ids": list(chat_ids)})

    def search(
        self, conn: Connection, terms: Sequence[str], owner_id: str | None, limit: int
    ) -> list[tuple[str, str, float]]:
        """(message id, chat id, score) of the owner's messages matching any term, best first."""
        terms = safe_terms(terms)
        if not terms or limit <= 0:
            return []
        owner = "AND c.owner_id = :owner " if owner_id is not None else ""
        params: dict[str, Any] = {"q": self.match(terms), "n": limit, "owner": owner_id}
        rows = conn.execute(text(self.select.format(owner=owner)), params)
        return [(str(r[0]), str(r[1]), self.sign * float(r[2])) for r in rows]


class Fts5Messages(MessageIndex):
    """SQLite FTS5, ranked by bm25 (ties: the newer message first)."""

    select = (
        f"SELECT f.message_id, f.chat_id, f.rank FROM {MESSAGE_FTS} f JOIN chat c ON c.id = f.chat_id "
        f"WHERE {MESSAGE_FTS} MATCH :q {{owner}}ORDER BY f.rank, f.rowid DESC LIMIT :n"
    )
    sign = -1.0

    def create(self, conn: Connection) -> None:
        """Create the FTS5 table (it splits on spaces only: the stems are computed in Python)."""
        conn.execute(
            text(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {MESSAGE_FTS} USING fts5("
                "stems, message_id UNINDEXED, chat_id UNINDEXED, "
                "tokenize='unicode61 remove_diacritics 0')"
            )
        )

    def match(self, terms: Sequence[str]) -> str:
        """Quoted terms joined by OR: each stem is a literal, never an FTS5 operator."""
        return " OR ".join(f'"{t}"' for t in terms)


class PostgresMessages(MessageIndex):
    """PostgreSQL: a generated ``simple`` tsvector of the stems, GIN, ``ts_rank`` normalisation 1."""

    select = (
        "SELECT f.message_id, f.chat_id, ts_rank(f.tsv, q, 1) AS score "
        f"FROM {MESSAGE_FTS} f JOIN chat c ON c.id = f.chat_id, to_tsquery('simple'::regconfig, :q) q "
        "WHERE f.tsv @@ q {owner}ORDER BY score DESC, f.message_id LIMIT :n"
    )

    def create(self, conn: Connection) -> None:
        """Create the table, its GIN index and the index that deletes by chat."""
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {MESSAGE_FTS} ("
                "message_id VARCHAR PRIMARY KEY, chat_id VARCHAR NOT NULL, stems TEXT NOT NULL, "
                "tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, stems)) STORED)"
            )
        )
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS {MESSAGE_FTS}_tsv ON {MESSAGE_FTS} USING gin (tsv)"))
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS {MESSAGE_FTS}_chat ON {MESSAGE_FTS} (chat_id)"))

    def match(self, terms: Sequence[str]) -> str:
        """Quoted lexemes joined by | (OR): a stem is never read as tsquery syntax."""
        return " | ".join(f"'{t}'" for t in terms)


def message_index(dialect: str) -> MessageIndex:
    """The message index for a SQLAlchemy dialect name."""
    if dialect == "sqlite":
        return Fts5Messages()
    if dialect == "postgresql":
        return PostgresMessages()
    raise ValueError(f"no message index for the {dialect!r} database: use SQLite or PostgreSQL")
