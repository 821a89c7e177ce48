"""Pages and ``ui/`` change nothing through a repository: every write goes through a service.

A service takes the acting user and checks the right (DESIGN.md §2); a page that wrote a row
itself would be the only guard. The check reads the source: any call of a writing method on a
repository (``library.chats.update(...)``, or ``chats = library.chats`` then
``chats.delete(...)``), and any import of the repositories or of the SQL layer, fails it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("app_pages", "ui")
REPOSITORIES = {"docs", "chats", "users", "collections", "jobs", "originals", "vectors", "keywords", "terms"}
# Method names that change rows: create, update_message, delete_all, link, grant, set_failures…
WRITES = (
    "create",
    "update",
    "delete",
    "add",
    "clear",
    "link",
    "unlink",
    "grant",
    "set_",
    "put",
    "store",
    "claim",
    "bind",
    "end_",
    "hold",
    "count_",
    "forget",
    "mark",
    "get_or_create",
    "upsert",
    "merge",
    "purge",
    "wipe",
)
FORBIDDEN_MODULES = ("storage.repos", "storage.teams", "storage.db", "storage.jobs", "sqlmodel", "sqlalchemy")


def _sources() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def _is_repository(node: ast.expr, aliases: set[str]) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in REPOSITORIES
    return isinstance(node, ast.Name) and node.id in aliases


def repository_writes(source: str) -> list[str]:
    """``line: call`` for each repository write and forbidden import in this source."""
    tree = ast.parse(source)
    aliases = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and _is_repository(node.value, set())
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr.startswith(WRITES)
            and _is_repository(node.func.value, aliases)
        ):
            found.append(f"{node.lineno}: {ast.unparse(node.func)}(…)")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(FORBIDDEN_MODULES):
            found.append(f"{node.lineno}: from {node.module} import …")
        elif isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {a.name}" for a in node.names if a.name.startswith(FORBIDDEN_MODULES)
            ]
    return found


def test_the_check_sees_writes_through_attributes_aliases_and_imports() -> None:
    sample = (
        "from sqlmodel import Session\n"
        "chats = library.chats\n"
        "chats.update(chat.id, title='x')\n"
        "library.collections.create('x', user.id)\n"
        "library.users.list_all()\n"
        "service.rename(chat.id, 'x', user)\n"
    )
    assert repository_writes(sample) == [
        "1: from sqlmodel import …",
        "3: chats.update(…)",
        "4: library.collections.create(…)",
    ]


def test_pages_and_ui_write_only_through_services() -> None:
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in _sources()
        if (found := repository_writes(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
