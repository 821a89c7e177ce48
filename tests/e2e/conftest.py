"""Browser tests need Debian's chromium: skipped without it on a developer machine, never in CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.harness import chromium_available

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if chromium_available() or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="needs /usr/bin/chromium and playwright (system-packages.sh --dev)")
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(skip)
