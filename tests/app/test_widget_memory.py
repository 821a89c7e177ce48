"""A long session does not keep every widget it ever showed (issue 24, the 20-minute soak).

Streamlit 1.67 drops a stale widget's value at the end of a run but keeps its metadata for the
session's life: the deserializer and callbacks, and with them whatever a ``format_func`` closes
over. A widget without a key whose options change (the chat history radio, a chat title) gets a
new id each time, so every question and every new chat left one more behind, and the chat
page's lambdas kept the whole namespace of the run that made them (its list of every document):
the app's RSS grew 26 % in 20 minutes of 4 sessions (bench/README.md, "Issue 24: load").
"""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.app.conftest import make_app


def _widgets_remembered(at: AppTest) -> int:
    state = at.session_state._state._state  # the session's SessionState
    return len(state._new_widget_state.widget_metadata)


def _ask_and_start_a_new_chat(at: AppTest, n: int) -> None:
    at.chat_input[0].set_value(f"Вопрос {n}: где хранятся ключи от склада?").run()
    assert not at.exception, at.exception
    next(b for b in at.sidebar.button if b.label == "Новый чат").click().run()
    assert not at.exception, at.exception


def test_widgets_no_longer_shown_are_forgotten(data_dir: Path) -> None:
    at = make_app().run()
    assert not at.exception
    _ask_and_start_a_new_chat(at, 1)
    after_one = _widgets_remembered(at)
    for n in (2, 3, 4):
        _ask_and_start_a_new_chat(at, n)
    assert _widgets_remembered(at) == after_one, "each chat left widgets behind in the session"
