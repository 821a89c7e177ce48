"""``python -m rag chats list|search|export``: a user's own chats only, found by inflected words."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docx import Document as open_docx

from rag.library import Library, open_library
from rag.search.embedding import Embedder
from settings import Settings
from storage.turns import TurnVectorRepo
from tests.unit.test_cli_teams import (  # noqa: F401  (fixtures)
    QUESTION,
    Cli,
    ask_json,
    data_dir,
    ok,
    refused,
    run,
    team,
)


@pytest.fixture
def inspect(data_dir: Path, embedder: Embedder) -> Iterator[Callable[[], Library]]:  # noqa: F811
    """The library the in-process CLI opens (its settings come from the data directory alone)."""
    opened: list[Library] = []

    def _open() -> Library:
        lib = open_library(
            Settings().model_copy(update={"data_dir": data_dir}), embedder=embedder, recover=False
        )
        opened.append(lib)
        return lib

    yield _open
    for lib in opened:
        lib.engine.dispose()


def test_list_search_and_export_a_users_own_chats(
    run: Cli,  # noqa: F811
    team: dict[str, Path],  # noqa: F811
    inspect: Callable[[], Library],
    tmp_path: Path,
) -> None:
    chat_id = ask_json(run, "--user", "alice", "--chat", "new")["chat_id"]

    listed = json.loads(ok(run("chats", "list", "--user", "alice", "--json")).out)
    assert [(c["chat_id"], c["title"], c["messages"]) for c in listed] == [(chat_id, QUESTION, 2)]
    assert chat_id in ok(run("chats", "list", "--user", "alice")).out
    assert json.loads(ok(run("chats", "list", "--user", "bob", "--json")).out) == []

    # «бирюзой» is an inflected form of the question's «Бирюза».
    found = json.loads(ok(run("chats", "search", "бирюзой", "--user", "alice", "--json")).out)
    assert found and {h["chat_id"] for h in found} == {chat_id}
    assert {h["title"] for h in found} == {QUESTION}
    assert any(h["role"] == "user" and h["line"] == QUESTION for h in found)
    assert json.loads(ok(run("chats", "search", "бирюзой", "--user", "bob", "--json")).out) == []
    assert "Ничего не найдено." in ok(run("chats", "search", "бирюзой", "--user", "bob")).out

    md = tmp_path / "chat.md"
    ok(run("chats", "export", chat_id, "--format", "md", "--out", str(md), "--user", "alice"))
    text = md.read_text(encoding="utf-8")
    messages = inspect().chats.messages(chat_id)
    assert QUESTION in text
    assert messages[1].content.replace("[1]", "[^1]") in text  # its citation became a footnote
    assert "[^1]: alice_birjuza_plan.txt" in text
    docx_path = tmp_path / "chat.docx"
    ok(run("chats", "export", chat_id, "--format", "docx", "--out", str(docx_path), "--user", "alice"))
    body = "\n".join(p.text for p in open_docx(io.BytesIO(docx_path.read_bytes())).paragraphs)
    assert QUESTION in body

    theirs = refused(
        run("chats", "export", chat_id, "--out", str(tmp_path / "x.md"), "--user", "bob"), "не найден"
    )
    assert not (tmp_path / "x.md").exists() and theirs.out == ""


def test_reembed_embeds_chat_messages_stored_before_memory_with_progress(
    run: Cli,  # noqa: F811
    inspect: Callable[[], Library],
) -> None:
    lib = inspect()
    chat = lib.chats.create(title="Старый чат")
    lib.chats.add_message(chat.id, "user", "Какой срок аренды?")
    lib.chats.add_message(chat.id, "assistant", "Срок аренды — 11 месяцев.")
    lib.chats.add_message(chat.id, "assistant", "")  # an empty draft: nothing to embed
    vectors = TurnVectorRepo(lib.engine)
    assert vectors.count() == 0

    res = ok(run("reembed"))

    assert "embedded 2 chat messages" in res.out
    assert "сообщения чатов: 2/2" in res.err
    assert vectors.count([chat.id]) == 2
    assert "embedded 0 chat messages" in ok(run("reembed")).out
