"""SQLite new enough for Chroma, on hosts whose Python links an older one.

Chroma refuses SQLite older than 3.35 at import; Debian 11, which Streamlit Community Cloud runs,
ships 3.34. There, and only there, the ``sqlite3`` module is replaced once per process by
``pysqlite3`` (the ``pysqlite3-binary`` wheel bundles a current SQLite) before Chroma or
SQLAlchemy import it. A leaf module: it imports nothing of this project.
"""

from __future__ import annotations

import sys

MIN_SQLITE = (3, 35, 0)


def needs_swap(version: tuple[int, ...]) -> bool:
    """Whether a linked SQLite of this version is too old for Chroma."""
    return tuple(version[:3]) < MIN_SQLITE


def ensure_modern_sqlite() -> str:
    """Make ``import sqlite3`` give a SQLite Chroma accepts; the module that serves it."""
    import sqlite3

    if sqlite3.__name__ == "pysqlite3" or not needs_swap(sqlite3.sqlite_version_info):
        return sqlite3.__name__
    try:
        import pysqlite3
    except ImportError as exc:
        raise RuntimeError(
            f"SQLite {sqlite3.sqlite_version} слишком старый для Chroma (нужен 3.35 или новее): "
            "установите пакет pysqlite3-binary (он есть в requirements.txt)."
        ) from exc
    sys.modules["sqlite3"] = pysqlite3
    sys.modules["sqlite3.dbapi2"] = pysqlite3.dbapi2
    return "pysqlite3"
