"""The contract suite's providers: all four for what every provider promises, and the remote
ones, each through its real SDK and fake server, for what takes a server to provoke."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.offline import MODEL_ID, NO_FRAGMENTS, OfflineProvider
from tests.contract.harness import Case, ProviderCase

REMOTE = ("gigachat", "yandexgpt", "openai")
VENDOR_ENV_PREFIXES = ("GIGACHAT_", "YC_", "YANDEX_", "OPENAI_", "RAG_")


@pytest.fixture(autouse=True)
def _clean_vendor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # SDKs read their own variables; a developer's real keys must not reach a fake (or vice versa).
    for name in list(os.environ):
        # RAG_TEST_*: where the storage contract suites find their servers, not a setting.
        if (
            name.startswith(VENDOR_ENV_PREFIXES)
            and name != "RAG_SECRETS_FILE"
            and not name.startswith("RAG_TEST_")
        ):
            monkeypatch.delenv(name, raising=False)


def _remote_case(name: str, tmp_path: Path) -> Iterator[ProviderCase]:
    module = importlib.import_module(f"tests.contract.fake_{name}")
    with module.make_case(tmp_path) as c:
        yield c


@pytest.fixture(params=REMOTE)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProviderCase]:
    """A remote provider wired to its fake server."""
    yield from _remote_case(request.param, tmp_path)


@pytest.fixture(params=("offline", *REMOTE))
def any_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    """Every provider: the offline one as it is (the question comes without fragments)."""
    if request.param == "offline":
        yield Case(name="offline", provider=OfflineProvider(), model=MODEL_ID, answer=NO_FRAGMENTS)
    else:
        yield from _remote_case(request.param, tmp_path)
