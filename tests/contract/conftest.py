"""The contract suite runs against every remote provider, each through its real SDK and fake server."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.harness import ProviderCase

REMOTE = ("gigachat", "yandexgpt", "openai")
VENDOR_ENV_PREFIXES = ("GIGACHAT_", "YC_", "YANDEX_", "OPENAI_", "RAG_")


@pytest.fixture(autouse=True)
def _clean_vendor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # SDKs read their own variables; a developer's real keys must not reach a fake (or vice versa).
    for name in list(os.environ):
        if name.startswith(VENDOR_ENV_PREFIXES) and name != "RAG_SECRETS_FILE":
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=REMOTE)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProviderCase]:
    """A remote provider wired to its fake server."""
    module = importlib.import_module(f"tests.contract.fake_{request.param}")
    with module.make_case(tmp_path) as c:
        yield c
