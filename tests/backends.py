"""The storage backends a test can run on: embedded (SQLite, a Chroma folder) or servers.

The servers are a PostgreSQL and a Chroma server that ``scripts/servers.sh`` starts on
loopback and names in ``RAG_TEST_DATABASE_URL`` and ``RAG_TEST_CHROMA``. Each caller of
``Servers.fresh`` gets a database of its own on both, so tests never see each other's rows
or vectors; PostgreSQL's copies are made from a template migrated once per session.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

# Which backend the regular tests' libraries use: "embedded", or "server" (.ci/run's second pass).
BACKEND = os.environ.get("RAG_TEST_BACKEND", "embedded")
TEMPLATE = "rag_template"


class Servers:
    """A PostgreSQL server where databases may be created, and a Chroma server."""

    def __init__(self, admin_url: str, chroma: str) -> None:
        self.admin_url = admin_url
        host, _, port = chroma.rpartition(":")
        self.chroma_host, self.chroma_port = host, int(port)
        self._template_ready = False
        self._lock = threading.Lock()
        self._by_key: dict[str, dict[str, str]] = {}

    def _admin(self):  # type: ignore[no-untyped-def]
        return create_engine(self.admin_url, isolation_level="AUTOCOMMIT")

    def _ensure_template(self) -> None:
        if self._template_ready:
            return
        from storage import make_engine  # the schema at head, once

        admin = self._admin()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE}"))
            conn.execute(text(f"CREATE DATABASE {TEMPLATE}"))
        engine = make_engine(self.url_of(TEMPLATE))
        engine.dispose()
        admin.dispose()
        self._template_ready = True

    def url_of(self, database: str) -> str:
        """The SQLAlchemy URL of a database on the PostgreSQL server."""
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def new_database(self) -> str:
        """A fresh database, migrated to head; its URL."""
        with self._lock:
            self._ensure_template()
            name = "t_" + uuid.uuid4().hex[:16]
            admin = self._admin()
            with admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
            admin.dispose()
        return self.url_of(name)

    def fresh(self, key: str | None = None) -> dict[str, str]:
        """Settings (by their environment names) for a database and a Chroma database of their own.

        The same ``key`` (e.g. a data directory opened twice) gets the same databases back.
        """
        if key is not None and key in self._by_key:
            return self._by_key[key]
        env = {
            "DATABASE_URL": self.new_database(),
            "CHROMA_HOST": self.chroma_host,
            "CHROMA_PORT": str(self.chroma_port),
            "CHROMA_DATABASE": "t-" + uuid.uuid4().hex[:16],
        }
        if key is not None:
            self._by_key[key] = env
        return env


_servers: Servers | None = None


def unavailable(reason: str) -> NoReturn:
    """Skip a test whose servers or tools are missing here; in CI, where they must be, fail it."""
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def servers() -> Servers | None:
    """The test servers named in the environment, or None when there are none."""
    global _servers
    url, chroma = os.environ.get("RAG_TEST_DATABASE_URL"), os.environ.get("RAG_TEST_CHROMA")
    if not url or not chroma:
        return None
    if _servers is None:
        _servers = Servers(url, chroma)
    return _servers


def required_servers() -> Servers:
    """The test servers; a clear failure when the server pass runs without them."""
    found = servers()
    if found is None:
        raise RuntimeError(
            "RAG_TEST_BACKEND=server needs RAG_TEST_DATABASE_URL and RAG_TEST_CHROMA "
            "(scripts/servers.sh start DIR)"
        )
    return found


def backend_overrides(data_dir: Path) -> dict[str, str]:
    """Settings that put a test's library on the selected backend (nothing for embedded)."""
    if BACKEND != "server":
        return {}
    return required_servers().fresh(str(Path(data_dir).resolve()))
