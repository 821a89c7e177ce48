"""Another user's text reaches every rendering site as text: a payload table over the pages.

Mallory, a member, controls her user name, a shared collection's name, a file's name and the
file's text. Bob (a member) and the admin open the chat, documents and admin pages and ask a
question. Every Markdown body on those pages must be inert in Streamlit's renderer (no link,
image, HTML, bare-URL autolink, directive, icon or logo: ``tests.app.inert``) and show the text
as written; every plain-text context (options, table cells) must show it without escapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from rag.identity.collections import CollectionService
from rag.library import Library, open_library
from settings import Settings
from storage.models import Access, Role, User
from tests.app.conftest import make_app
from tests.app.inert import live, shown, without_citation_links

# What mallory controls, one payload per kind of text.
USER_NAME = "![u](http://evil.example/user.png)**x** a@evil.example"
COLLECTION = ":red[Отдел] https://evil.example :material/lock: :streamlit:"
FILE_NAME = "<img src=x> www.evil.example :blue[f] -> $x$.txt"
SENTENCE = (
    "Пропуск выдаёт охрана: пишите a@evil.example или https://evil.example/form "
    ":red[срочно] :material/lock: ![](http://evil.example/p.png) -> ок."
)
DOC = f"Памятка о пропусках.\n\n{SENTENCE}\n\nСрок действия пропуска один год."
# Bob's own question, which becomes his chat's title.
QUESTION = "Кто выдаёт пропуск? www.evil.example :red[x]"  # 48 characters at most: the title


def _library(data_dir: Path) -> Library:
    settings = Settings(_env_file=None, RAG_DATA_DIR=data_dir, RAG_AUTH="password")  # type: ignore[call-arg]
    return open_library(settings, recover=False)


@pytest.fixture
def team(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An admin, mallory (who planted the payloads) and bob, on a library with her shared file."""
    monkeypatch.setenv("RAG_AUTH", "password")
    lib = _library(data_dir)
    boss = lib.users.create("boss", role=Role.ADMIN)
    mallory = lib.users.create(USER_NAME)
    bob = lib.users.create("bob")
    shared = CollectionService(lib.access).create(mallory, COLLECTION, everyone=Access.WRITE)
    result = lib.ingest(FILE_NAME, DOC.encode(), user=mallory, collection_id=shared.id)
    assert result.status == "indexed", result.message
    return {"lib": lib, "boss": boss, "mallory": mallory, "bob": bob, "collection": shared}


def _as(user: User, page: str) -> AppTest:
    at = make_app(page)
    at.session_state["rag_user_id"] = user.id
    return at.run()


def _markdown_bodies(at: AppTest) -> list[str]:
    """Every body on the page that Streamlit renders as Markdown (labels included)."""
    bodies = []
    for md in [*at.markdown, *at.caption]:
        bodies.append(without_citation_links(md.value, md.proto.allow_html))
    for alerts in (at.error, at.warning, at.info, at.success):
        bodies += [a.value for a in alerts]
    bodies += [e.label for e in at.expander]
    bodies += [option for radio in at.radio for option in radio.options]
    for widgets in (at.text_input, at.selectbox, at.multiselect, at.radio, at.button, at.checkbox, at.toggle):
        bodies += [w.label for w in widgets]
    return bodies


def _assert_inert(at: AppTest) -> None:
    assert not at.exception, at.exception
    bodies = _markdown_bodies(at)
    assert bodies
    offenders = {body: found for body in bodies if (found := live(body))}
    assert offenders == {}


def _plain_options(at: AppTest) -> list[str]:
    return [o for w in [*at.selectbox, *at.multiselect] for o in w.options]


def test_documents_page_as_another_user(team: dict[str, Any]) -> None:
    at = _as(team["bob"], "app_pages/documents.py")
    _assert_inert(at)
    # The list of collections (Markdown) shows mallory's names exactly as she typed them.
    listed = [shown(md.value) for md in at.markdown]
    assert f"{COLLECTION} ({USER_NAME}) · общая" in listed  # a list item
    # Options and table cells are plain text: the names as they are, no backslash in sight.
    options = _plain_options(at)
    assert f"{COLLECTION} ({USER_NAME}) · общая" in options, options
    assert FILE_NAME in options  # bob may remove it from the collection he can write to
    assert not [o for o in options if "\\" in o]
    table = at.dataframe[0].value
    assert list(table["Файл"]) == [FILE_NAME]
    assert list(table["Коллекции"]) == [f"{COLLECTION} ({USER_NAME}) · общая"]


def test_chat_page_question_answer_sources_and_titles_as_another_user(team: dict[str, Any]) -> None:
    at = _as(team["bob"], "app_pages/chat.py")
    _assert_inert(at)
    assert f"{COLLECTION} ({USER_NAME}) · общая" in _plain_options(at)
    assert not [o for o in _plain_options(at) if "\\" in o]

    at.chat_input[0].set_value(QUESTION).run()
    _assert_inert(at)
    question, answer = at.chat_message
    assert shown(question.markdown[0].value) == QUESTION
    # The offline answer quotes mallory's sentence: shown as her text, nothing of it live.
    assert SENTENCE in shown(answer.markdown[0].value)
    label = answer.expander[0].markdown[0].value
    assert shown(label).startswith(f"[1] {FILE_NAME} · релевантность ")
    assert SENTENCE in answer.expander[0].text[0].value  # the fragment: st.text, never parsed
    # The chat title (from the question) in the sidebar list and above the feed.
    assert [shown(o) for o in at.sidebar.radio[0].options] == [QUESTION]
    # Reloaded from the database, the same.
    again = _as(team["bob"], "app_pages/chat.py")
    _assert_inert(again)
    assert shown(again.chat_message[0].markdown[0].value) == QUESTION


def test_admin_page_user_names_file_names_and_collections(team: dict[str, Any]) -> None:
    lib: Library = team["lib"]
    at = _as(team["boss"], "app_pages/admin.py")
    mallory: User = team["mallory"]
    at.selectbox(key="admin_user").set_value(mallory.id).run()
    _assert_inert(at)
    options = _plain_options(at)
    assert USER_NAME in options and not [o for o in options if "\\" in o], options
    assert any(o.startswith(FILE_NAME) for o in options)
    # The reset form's label names the user: a label is Markdown, and it must not fetch her image.
    (reset,) = [t for t in at.text_input if t.label.startswith("Новый пароль")]
    assert shown(reset.label) == f"Новый пароль для «{USER_NAME}»"
    users = at.dataframe[1].value
    assert USER_NAME in list(users["Пользователь"])
    assert lib.users.get(mallory.id).name == USER_NAME
