"""The prompt for remote models (rag.answer.prompts): grounding, labels, the same grounding in follow-ups."""

from __future__ import annotations

from collections.abc import Iterator

from providers import ChatMessage, Fragment, Usage
from rag.answer.chat import ChatService, TurnChoice
from rag.answer.prompts import SYSTEM_PROMPT, build_messages, past_message
from rag.library import Library
from tests.stand_in import StandInModel

TERM = "Срок аренды помещения составляет одиннадцать месяцев с даты подписания договора."
PARKING = "Арендатору выделяются два места на охраняемой парковке во дворе здания."


class RecordingModel(StandInModel):
    """A remote model stand-in that answers with a citation and records every prompt."""

    model_id = "r-1"

    def deltas(self, messages: list[ChatMessage]) -> Iterator[str | Usage]:
        yield "Так сказано в документе [1]."
        yield Usage(1, 1)


def test_the_system_prompt_grounds_the_answer() -> None:
    for rule in (
        "только на основе фрагментов",  # answer only from the fragments
        "квадратных скобках, например [1]",  # cite [n]
        "в документах этого нет",  # say so when they do not contain the answer
        "на языке вопроса",  # in the language of the question
        "факты бери только из фрагментов",  # history is no source of facts
    ):
        assert rule in SYSTEM_PROMPT


def test_fragments_are_labelled_with_number_file_and_page() -> None:
    fragments = [
        Fragment(1, "dogovor.pdf", 3, TERM, 0.9),
        Fragment(2, "zametki.txt", None, PARKING, 0.5),
    ]
    messages, kept = build_messages("Какой срок аренды?", fragments)
    system = messages[0].content
    assert messages[0].role == "system" and system.startswith(SYSTEM_PROMPT)
    assert f"[1] (dogovor.pdf, стр. 3)\n{TERM}" in system
    assert f"[2] (zametki.txt)\n{PARKING}" in system
    assert kept == fragments
    assert messages[-1] == ChatMessage(role="user", content="Какой срок аренды?")
    nothing, _ = build_messages("Какой срок аренды?", [])
    assert "(подходящих фрагментов нет)" in nothing[0].content


def test_history_brings_no_stale_instructions_or_citation_numbers() -> None:
    history = [
        ChatMessage(role="system", content="Устаревшая инструкция: отвечай без ссылок."),
        ChatMessage(role="user", content="Какой срок аренды?"),
        ChatMessage(role="assistant", content="Одиннадцать месяцев [1], с даты подписания [1, 2]."),
    ]
    messages, _ = build_messages("А парковка?", [Fragment(1, "parkovka.txt", None, PARKING, 0.8)], history)
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert "Устаревшая инструкция" not in "".join(m.content for m in messages)
    assert messages[2].content == "Одиннадцать месяцев, с даты подписания."
    assert PARKING in messages[0].content
    # An answer that was nothing but a citation is kept as it was rather than sent empty.
    only = past_message(ChatMessage(role="assistant", content="[1]"))
    assert only.content == "[1]"
    question = ChatMessage(role="user", content="Что в пункте [3]?")
    assert past_message(question) == question  # the person's words are never changed


def test_a_follow_up_is_grounded_in_its_own_fragments(library: Library) -> None:
    for name, text in (("srok.txt", TERM), ("parkovka.txt", PARKING)):
        assert library.ingest(name, text.encode()).status == "indexed"
    model = RecordingModel()
    service = ChatService(library.chats, library.retriever, {"recording": model}, top_k=1)
    choice = TurnChoice(provider="recording", model="r-1")
    first = service.ask(None, "Какой срок аренды помещения?", choice)
    first.run()
    follow = service.ask(first.chat.id, "Сколько мест выделено арендатору на парковке во дворе?", choice)
    follow.run()
    before, after = model.prompts
    assert TERM in before[0].content
    # The system prompt is rebuilt for the follow-up: the same rules, this turn's fragment only.
    assert [m.role for m in after] == ["system", "user", "assistant", "user"]
    assert after[0].content.startswith(SYSTEM_PROMPT)
    assert PARKING in after[0].content and TERM not in after[0].content
    # The history is the earlier exchange itself: no instructions, no fragments, no old numbers.
    past = after[1:-1]
    assert [m.content for m in past] == ["Какой срок аренды помещения?", "Так сказано в документе."]
    for m in past:
        assert SYSTEM_PROMPT not in m.content and "Фрагменты документов" not in m.content
