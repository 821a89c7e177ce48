"""The «Запомнить на этом устройстве» cookie reaches the browser even when a rerun cuts in (issue 24).

The cookie is set by a component: its iframe runs in the browser after the render and reports
back. With eight members signing in at once (tests/e2e/test_load.py), another rerun (the cookie
reader's own report, a click) came before the setter's iframe had run; that rerun no longer
rendered the setter, the browser dropped it, and the member was signed out by their next reload.
So the setter is rendered on every run until the browser says it set the cookie.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.test_sign_in import _auth, _signed_in_app

SETTER_KEY = "rag_cookie_set"


def _setters(at: AppTest) -> list[dict[str, Any]]:
    args = [json.loads(e.proto.json_args) for e in at.get("component_instance")]
    return [a for a in args if a.get("method") == "set"]


def test_the_cookie_is_handed_over_until_the_browser_confirms_it(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_AUTH", "password")
    _auth(data_dir).create_first_admin("boss", "boss-password")
    at = _signed_in_app("boss", "boss-password")
    (first,) = _setters(at)
    # Another rerun before the browser ran the setter (it has reported nothing yet).
    at.run()
    assert not at.exception
    assert _setters(at) == [first], "the cookie was handed to the browser once, then dropped"
    # The browser ran it: the component's value is True (CookieManager's "set" reports that).
    at.session_state[SETTER_KEY] = True
    at.run()
    at.run()
    assert not at.exception and at.chat_input
    assert not _setters(at), "the cookie is set again on every run after the browser confirmed it"
