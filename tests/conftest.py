"""Shared fixtures: one real e5 embedder per session, a fresh library per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.library import Library, open_library
from rag.search.embedding import E5_SMALL, Embedder, load_embedder
from settings import Settings
from tests.backends import BACKEND, Servers, backend_overrides, servers, unavailable

REPO_ROOT = Path(__file__).resolve().parents[1]

# A developer's real .streamlit/secrets.toml must never reach the tests (or the fakes see real keys);
# set at import so child processes and every fixture inherit it.
os.environ["RAG_SECRETS_FILE"] = str(REPO_ROOT / "tests" / "no-secrets.toml")
# An exception in a page must fail AppTest tests, not turn into the app's polite error box.
os.environ["RAG_RAISE_ERRORS"] = "1"

# Every variable Settings reads: a developer's shell must not change what the tests see.
SETTINGS_ENV = [field.alias for field in Settings.model_fields.values() if field.alias is not None]


@pytest.fixture(scope="session", autouse=True)
def _clean_env() -> Iterator[None]:
    # Session-wide, so module- and session-scoped fixtures are protected as well.
    with pytest.MonkeyPatch.context() as mp:
        for name in SETTINGS_ENV:
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def child_env() -> dict[str, str]:
    """Environment for a child Python: no settings from the shell, the repo importable."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real default embedder (multilingual-e5-small on its default engine, bundled, offline)."""
    return load_embedder(E5_SMALL)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test: defaults plus overrides, never reading .env or the shell.

    Under RAG_TEST_BACKEND=server the data directory's rows and vectors live on the test servers.
    """
    backend: dict[str, Any] = dict(backend_overrides(data_dir))
    return Settings(_env_file=None, RAG_DATA_DIR=data_dir, **{**backend, **overrides})  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def settings_factory() -> Callable[..., Settings]:
    """``make_settings`` for fixtures of any scope."""
    return make_settings


@pytest.fixture
def make_library(tmp_path: Path, embedder: Embedder) -> Iterator[Callable[..., Library]]:
    """Open libraries (on tmp_path by default); every engine is disposed at teardown."""
    opened: list[Library] = []

    def _open(
        data_dir: Path | None = None,
        embedder_: Embedder | None = None,
        recover: bool = True,
        **overrides: Any,
    ) -> Library:
        settings = make_settings(data_dir or tmp_path, **overrides)
        lib = open_library(settings, embedder=embedder_ or embedder, recover=recover)
        opened.append(lib)
        return lib

    yield _open
    for lib in opened:
        lib.engine.dispose()


@pytest.fixture
def library(make_library: Callable[..., Library]) -> Library:
    """A fresh, empty library in tmp_path with the real e5 embedder."""
    return make_library()


@pytest.fixture(params=["embedded", "server"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each storage backend in turn: a contract suite runs the same assertions over both."""
    if request.param == "server" and servers() is None:
        unavailable("the test servers (scripts/servers.sh start DIR sets RAG_TEST_DATABASE_URL)")
    if request.param == "embedded" and BACKEND == "server":
        pytest.skip("the server pass runs the server backend only")
    return str(request.param)


@pytest.fixture
def test_servers(backend: str) -> Servers | None:
    """The test servers when the backend is "server", else None."""
    return servers() if backend == "server" else None
