"""Assistants (rag.lab.assistants): who sees and changes them, what they search, what answers record."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from providers.offline import MODEL_ID
from rag.identity.access import Forbidden
from rag.lab.assistants import AssistantSpec
from rag.library import Library
from storage import NotFoundError
from tests.unit.lab_team import make_team

SPEC = AssistantSpec(name="Юрист", provider="offline", model=MODEL_ID, top_k=2, method="keyword")


def test_no_one_sees_or_changes_another_users_personal_assistant(
    make_library: Callable[..., Library],
) -> None:
    t = make_team(make_library)
    mine = t.lab.assistants.create(SPEC, t.alice)
    assert [a.name for a in t.lab.assistants.list_for(t.alice)] == ["Юрист"]
    assert t.lab.assistants.list_for(t.bob) == []
    for attempt in (
        lambda: t.lab.assistants.get(mine.id, t.bob),
        lambda: t.lab.assistants.by_name("Юрист", t.bob),
        lambda: t.lab.assistants.update(mine.id, SPEC.model_copy(update={"top_k": 9}), t.bob),
        lambda: t.lab.assistants.delete(mine.id, t.bob),
    ):
        with pytest.raises(NotFoundError):
            attempt()
    assert t.lab.assistants.get(mine.id, t.alice).top_k == 2
    # Only an admin publishes; a published assistant is everyone's to use, the admin's to change.
    with pytest.raises(Forbidden):
        t.lab.assistants.create(SPEC.model_copy(update={"name": "Для всех"}), t.alice, publish=True)
    with pytest.raises(Forbidden):
        t.lab.assistants.publish(mine.id, True, t.alice)
    shared = t.lab.assistants.create(SPEC.model_copy(update={"name": "Для всех"}), t.boss, publish=True)
    assert [a.name for a in t.lab.assistants.list_for(t.bob)] == ["Для всех"]
    with pytest.raises(Forbidden):
        t.lab.assistants.delete(shared.id, t.bob)
    t.lab.assistants.delete(mine.id, t.alice)
    assert [a.name for a in t.lab.assistants.list_for(t.alice)] == ["Для всех"]


def test_an_assistant_cannot_name_a_collection_its_author_cannot_read(
    make_library: Callable[..., Library],
) -> None:
    t = make_team(make_library)
    bobs = t.lib.access.personal_collection(t.bob)
    with pytest.raises(NotFoundError):
        t.lab.assistants.create(SPEC.model_copy(update={"collection_ids": [bobs.id]}), t.alice)


def test_a_published_assistant_never_widens_the_search(make_library: Callable[..., Library]) -> None:
    t = make_team(make_library)
    alices = t.lib.access.personal_collection(t.alice)
    spec = SPEC.model_copy(update={"name": "Аренда", "collection_ids": [alices.id], "method": "hybrid"})
    shared = t.lab.assistants.create(spec, t.boss, publish=True)
    # Alice reads her collection: the assistant finds the lease for her.
    choice, note = t.lab.assistants.choice(shared, t.alice)
    assert note is None and choice.collection_ids == [alices.id]
    turn = t.chats.ask(None, "Какой срок аренды?", choice, user=t.alice)
    turn.run()
    assert turn.sources and "11 месяцев" in turn.text
    # Bob may not: the collection is skipped with a visible note, and nothing else is searched.
    choice, note = t.lab.assistants.choice(shared, t.bob)
    assert choice.collection_ids == [] and note is not None and f"«{alices.name}»" in note
    turn = t.chats.ask(None, "Какой срок аренды?", choice, user=t.bob)
    turn.run()
    assert turn.sources == [] and "11 месяцев" not in turn.text
    # Even a chat of bob's set to «every collection» stays within what he reads.
    assert all(s.filename != "dogovor.txt" for s in turn.sources)


def test_a_chat_remembers_its_assistant_and_each_answer_its_settings(
    make_library: Callable[..., Library],
) -> None:
    t = make_team(make_library)
    made = t.lab.assistants.create(SPEC, t.alice)
    choice, _ = t.lab.assistants.choice(made, t.alice)
    turn = t.chats.ask(None, "Какой срок аренды?", choice, user=t.alice)
    turn.run()
    chat = t.chats.chat(turn.chat.id, t.alice)
    assert chat.assistant_id == made.id
    # The assistant's depth and method were used, and recorded with the answer.
    assert len(turn.sources) <= 2
    answer = t.chats.messages(chat.id, t.alice)[-1]
    assert answer.settings is not None
    assert (answer.settings["top_k"], answer.settings["method"], answer.settings["assistant_name"]) == (
        2,
        "keyword",
        "Юрист",
    )
    # Editing the assistant changes new answers only.
    t.lab.assistants.update(made.id, SPEC.model_copy(update={"top_k": 1, "method": "dense"}), t.alice)
    again = t.chats.messages(chat.id, t.alice)[-1]
    assert again.settings == answer.settings
    choice, _ = t.lab.assistants.choice(t.lab.assistants.get(made.id, t.alice), t.alice)
    second = t.chats.ask(chat.id, "Какая арендная плата?", choice, user=t.alice)
    second.run()
    assert len(second.sources) <= 1
    newest = t.chats.messages(chat.id, t.alice)[-1]
    assert newest.settings is not None and newest.settings["method"] == "dense"
    # Back to the sidebar's own settings: the chat forgets the assistant.
    plain = choice.model_copy(update={"assistant_id": None, "assistant_name": None})
    t.chats.ask(chat.id, "Залог?", plain, user=t.alice).run()
    assert t.chats.chat(chat.id, t.alice).assistant_id is None
