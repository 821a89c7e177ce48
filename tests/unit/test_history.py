"""Which earlier turns go back to the model with a new question."""

from __future__ import annotations

from rag.answer.chat import history_for_prompt
from storage import Message


def _m(role: str, content: str, error: str | None = None) -> Message:
    return Message(chat_id="c", role=role, content=content, error=error)


def test_only_answered_pairs_are_sent_back_most_recent_last() -> None:
    messages = [
        _m("user", "Где помещение?"),
        _m("assistant", "В Казани."),
        _m("user", "Какой срок?"),
        _m("assistant", "", error="GigaChat недоступен"),  # failed: neither half goes back
        _m("user", "А плата?"),
        _m("assistant", "45 000 рублей.", error="Ответ оборвался"),  # cut off: not trusted
        _m("user", "А улица?"),
        _m("assistant", "Баумана."),
        _m("user", "Сколько этажей?"),  # unanswered (the current run was cut short)
    ]
    history = history_for_prompt(messages, turns=3)
    assert [(m.role, m.content) for m in history] == [
        ("user", "Где помещение?"),
        ("assistant", "В Казани."),
        ("user", "А улица?"),
        ("assistant", "Баумана."),
    ]
    assert [m.content for m in history_for_prompt(messages, turns=1)] == ["А улица?", "Баумана."]
    assert history_for_prompt(messages, turns=0) == []
