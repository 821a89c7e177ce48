"""AppTest fixtures: every test gets an empty data directory and a fresh resource cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_ENV = (
    "GIGACHAT_CREDENTIALS",
    "YC_FOLDER_ID",
    "YC_API_KEY",
    "YC_IAM_TOKEN",
    "YC_OAUTH_TOKEN",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "RAG_EMBEDDING_MODEL",
    "DATABASE_URL",
)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty data directory the app is pointed at through RAG_DATA_DIR."""
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    yield tmp_path / "data"
    st.cache_resource.clear()


def make_app(page: str = "streamlit_app.py") -> AppTest:
    """An AppTest for a page script (or the whole app) with no secrets."""
    at = AppTest.from_file(str(ROOT / page), default_timeout=120)
    at.secrets["_placeholder"] = ""  # an explicit, empty secrets set: nothing from ~/.streamlit
    return at


def upload(at: AppTest, files: object, key: str = "chat_uploads", timeout: float = 120) -> AppTest:
    """Upload through the sidebar and wait until background indexing has finished."""
    at.sidebar.file_uploader[0].set_value(files).run()  # type: ignore[arg-type]
    return finish_jobs(at, key, timeout)


def finish_jobs(at: AppTest, key: str, timeout: float = 120) -> AppTest:
    """Rerun the page until the session's jobs under ``key`` are done and reported."""
    import time

    deadline = time.monotonic() + timeout
    while at.session_state.get(f"{key}_jobs"):
        assert time.monotonic() < deadline, "the jobs did not finish"
        time.sleep(0.2)
        at.run()
    assert not at.exception, at.exception
    return at
