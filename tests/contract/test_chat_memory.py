"""Chat memory on the wire: through each remote provider's real SDK and fake server, with the real
e5 embedder, a question about turn 2 of a 20-turn chat sends turn 2 in the request the fake
recorded, and an unrelated question sends the recent turns only."""

from __future__ import annotations

from rag.answer.chat import ChatService, TurnChoice
from rag.chats.memory import ChatMemory
from rag.library import Library
from storage.turns import TurnVectorRepo
from tests.contract.harness import ProviderCase
from tests.unit.test_chat_memory import TURNS


def test_turn_2_of_20_reaches_the_request_and_an_unrelated_question_adds_nothing(
    case: ProviderCase, library: Library
) -> None:
    service = ChatService(
        library.chats,
        library.retriever,
        {case.name: case.provider},
        history_turns=3,
        memory=ChatMemory(TurnVectorRepo(library.engine), library.embedder),
    )
    choice = TurnChoice(provider=case.name, model=case.model, use_documents=False)
    chat_id: str | None = None
    for question, _ in TURNS:
        turn = service.ask(chat_id, question, choice)
        turn.run()
        assert turn.error is None
        chat_id = turn.chat.id
    assert chat_id is not None

    service.ask(chat_id, "Напомни, какой процент неустойки за просрочку мы обсуждали?", choice).run()
    asked = [text for role, text in case.fake.requests[-1].messages if role == "user"]
    assert asked[:-1] == [TURNS[1][0], *(q for q, _ in TURNS[-3:])]

    service.ask(chat_id, "Какой пароль от гостевого Wi-Fi?", choice).run()
    asked = [text for role, text in case.fake.requests[-1].messages if role == "user"]
    recent = [TURNS[-2][0], TURNS[-1][0], "Напомни, какой процент неустойки за просрочку мы обсуждали?"]
    assert asked == [*recent, "Какой пароль от гостевого Wi-Fi?"]
