"""An app configured for sign-in that this release cannot offer opens to nobody."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.conftest import make_app


@pytest.mark.parametrize("mode", ["password", "oidc"])
def test_an_unsupported_sign_in_mode_shows_no_page(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("RAG_AUTH", mode)
    at = make_app().run()
    assert not at.exception
    assert any(f"RAG_AUTH={mode}" in e.value for e in at.error)
    # Neither the chat nor its sidebar (uploads, chats) is rendered.
    assert not at.chat_input and not at.sidebar.file_uploader


def test_without_sign_in_the_chat_opens(data_dir: Path) -> None:
    at = make_app().run()
    assert not at.exception and not at.error
    assert at.chat_input
