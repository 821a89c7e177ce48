"""Migration 0005 on a library made before it: one whose only admin was already disabled (or
demoted) by an earlier release must not open the first-run screen after the upgrade."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from rag.identity.access import AccessControl
from rag.identity.auth import AuthService
from rag.identity.passwords import hash_password
from storage import make_engine
from storage.migrate import _config
from storage.teams import CollectionRepo, UserRepo


def _library_at_0004(path: Path, users: list[tuple[str, str, bool, bool]]) -> str:
    """A SQLite library migrated to 0004 with (name, role, active, has password) users; its URL."""
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(_config(conn), "0004")
        for i, (name, role, active, has_password) in enumerate(users):
            conn.execute(
                text(
                    'INSERT INTO "user" (id, name, role, password_hash, active, created_at) '
                    "VALUES (:id, :name, :role, :hash, :active, CURRENT_TIMESTAMP)"
                ),
                {
                    "id": f"u{i}",
                    "name": name,
                    "role": role,
                    "hash": hash_password("old-password") if has_password else None,
                    "active": active,
                },
            )
    engine.dispose()
    return url


def _auth(url: str) -> AuthService:
    engine = make_engine(url)  # migrates to head
    users = UserRepo(engine)
    return AuthService(users, AccessControl(users, CollectionRepo(engine)), "secret")


@pytest.mark.parametrize(
    ("users", "first_run"),
    [
        ([("boss", "ADMIN", False, True)], False),  # the only admin, disabled before the upgrade
        ([("boss", "ADMIN", True, True)], False),
        ([("local", "ADMIN", True, False)], True),  # RAG_AUTH=none's admin: nobody signs in as it
        ([], True),
    ],
)
def test_the_upgrade_remembers_a_library_that_had_a_password_admin(
    tmp_path: Path, users: list[tuple[str, str, bool, bool]], first_run: bool
) -> None:
    auth = _auth(_library_at_0004(tmp_path / "rag.sqlite3", users))
    assert auth.needs_first_admin() is first_run
    assert auth.users.had_admin() is not first_run
