"""A chat's semantic memory (rag.chats.memory) with the real e5 embedder: an earlier turn the new
question is about reaches the prompt (checked in the request the provider fake recorded), an
unrelated question adds none, a follow-up searches with the relevant earlier question, and memory
goes with its chat and never crosses users."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from providers import ChatMessage, Usage
from rag.answer.chat import ChatService, TurnChoice
from rag.chats.memory import ChatMemory
from rag.library import Library
from storage.models import User
from storage.turns import TurnVectorRepo
from tests.stand_in import StandInModel

TURNS = [
    ("Во сколько обед?", "Обед с 13:00 до 14:00 в столовой на втором этаже."),
    (
        "Какая неустойка за просрочку платежа по договору поставки?",
        "Неустойка составляет 0,1 % от суммы долга за каждый день просрочки.",
    ),
    ("Сколько дней отпуска положено?", "Ежегодный отпуск — 28 календарных дней."),
    ("Где парковка для сотрудников?", "Парковка во дворе, въезд с улицы Мира."),
    ("Как оформить командировку?", "Заявку на командировку подают за пять рабочих дней."),
    ("Кто выдаёт пропуска в офис?", "Пропуска выдаёт служба безопасности в кабинете 101."),
    ("Как заказать канцелярию?", "Канцелярию заказывают на портале до пятницы."),
    ("Когда выплачивается зарплата?", "Зарплату перечисляют 10 и 25 числа."),
    ("Как оформить больничный?", "Электронный больничный передают в отдел кадров."),
    ("Есть ли в офисе спортзал?", "Спортзал работает на минус первом этаже."),
    ("Какой дресс-код по пятницам?", "По пятницам свободный стиль одежды."),
    ("Как получить справку 2-НДФЛ?", "Справку готовит бухгалтерия за три дня."),
    ("Где хранятся архивные документы?", "Архив находится на четвёртом этаже."),
    ("Сколько стоит ДМС для родственников?", "ДМС для родственника стоит 30 000 рублей в год."),
    ("Как записаться на курсы английского?", "Запись на курсы — через отдел персонала."),
    ("Какой номер горячей линии ИТ-поддержки?", "Номер поддержки — 5555."),
    ("Можно ли работать из дома?", "Удалённо можно работать два дня в неделю."),
    ("Как вызвать курьера?", "Курьера вызывают через ресепшен до 15:00."),
    ("Когда проходит медосмотр?", "Медосмотр проходит в апреле."),
    ("Как забронировать переговорную?", "Переговорные бронируют в календаре."),
]
ANSWERS = dict(TURNS)
NO_DOCS = TurnChoice(provider="recorder", model="s-1", use_documents=False)
WITH_DOCS = TurnChoice(provider="recorder", model="s-1")
SKLAD_1 = (
    "Договор аренды склада № 1 на улице Заводской. Срок аренды первого склада составляет три года. "
    "Арендная плата за первый склад — 200 000 рублей в месяц."
)
SKLAD_2 = (
    "Договор аренды склада № 2 в посёлке Северный. Срок аренды второго склада составляет семь лет. "
    "Арендная плата за второй склад — 90 000 рублей в месяц."
)

OTHER_DOCS = [
    "Справочник сотрудника: обед с 13:00 до 14:00 в столовой на втором этаже.",
    "Склад готовой продукции работает с 8 до 20 часов, вход через проходную.",
    "Инструкция по охране труда на складе: каски и перчатки обязательны.",
]


class Recorder(StandInModel):
    """A remote model's stand-in: answers from the script, records every request it is sent."""

    name = "recorder"

    def deltas(self, messages: list[ChatMessage]) -> Iterator[str | Usage]:
        yield ANSWERS.get(messages[-1].content, "Не знаю.")
        yield Usage(prompt_tokens=10, completion_tokens=5)


def _service(lib: Library, model: Recorder, memory: bool = True) -> ChatService:
    return ChatService(
        lib.chats,
        lib.retriever,
        {"recorder": model},  # type: ignore[dict-item]
        history_turns=3,
        actor=lib.actor,
        scope=lib.scope,
        access=lib.access,
        memory=ChatMemory(TurnVectorRepo(lib.engine), lib.embedder) if memory else None,
    )


def _chat(
    service: ChatService, user: User, turns: list[tuple[str, str]], choice: TurnChoice = NO_DOCS
) -> str:
    chat_id: str | None = None
    for question, _ in turns:
        turn = service.ask(chat_id, question, choice, user)
        turn.run()
        assert not turn.error
        chat_id = turn.chat.id
    assert chat_id is not None
    return chat_id


def _history(model: Recorder) -> list[str]:
    """The earlier turns the last request carried (between the system prompt and the question)."""
    return [m.content for m in model.prompts[-1][1:-1]]


@pytest.fixture
def alice(library: Library) -> User:
    return library.users.create("alice")


def test_a_question_about_turn_2_of_20_gets_turn_2_into_the_prompt(library: Library, alice: User) -> None:
    model = Recorder()
    service = _service(library, model)
    chat_id = _chat(service, alice, TURNS)
    assert TurnVectorRepo(library.engine).count([chat_id]) == 40  # every question and answer

    turn = service.ask(chat_id, "Напомни, какой процент неустойки за просрочку мы обсуждали?", NO_DOCS, alice)
    turn.run()

    recent = [text for q, a in TURNS[-3:] for text in (q, a)]
    assert _history(model) == [*TURNS[1], *recent]  # turn 2, then the recent window, in order
    # Without memory the same chat sends the recent window only (three turns, the last one now 21).
    plain = Recorder()
    _service(library, plain, memory=False).ask(
        chat_id, "Напомни, какая была неустойка?", NO_DOCS, alice
    ).run()
    assert len(_history(plain)) == 6 and not set(TURNS[1]) & set(_history(plain))


@pytest.mark.parametrize("question", ["Какой пароль от гостевого Wi-Fi?", "Где купить билеты в театр?"])
def test_an_unrelated_question_adds_no_earlier_turn(library: Library, alice: User, question: str) -> None:
    model = Recorder()
    service = _service(library, model)
    chat_id = _chat(service, alice, TURNS[:10])

    service.ask(chat_id, question, NO_DOCS, alice).run()

    assert _history(model) == [text for q, a in TURNS[7:10] for text in (q, a)]


def test_a_follow_up_searches_with_the_earlier_question_it_depends_on(library: Library, alice: User) -> None:
    assert library.ingest("sklad_1.txt", SKLAD_1.encode(), user=alice).status == "indexed"
    assert library.ingest("sklad_2.txt", SKLAD_2.encode(), user=alice).status == "indexed"
    for i, text in enumerate(OTHER_DOCS):
        assert library.ingest(f"other_{i}.txt", text.encode(), user=alice).status == "indexed"
    model = Recorder()
    service = _service(library, model)
    turn = service.ask(None, "Какой срок аренды первого склада?", WITH_DOCS, alice)
    turn.run()
    assert turn.sources[0].filename == "sklad_1.txt"
    # Four unrelated turns push it out of the recent window (three turns).
    _chat(service, alice, TURNS[:4])  # another chat: nothing of it reaches this one
    for question, _ in TURNS[2:6]:
        service.ask(turn.chat.id, question, NO_DOCS, alice).run()

    follow = service.ask(turn.chat.id, "а для второго склада?", WITH_DOCS, alice)
    follow.run()

    assert follow.anchor == "Какой срок аренды первого склада?"
    assert follow.sources[0].filename == "sklad_2.txt"
    system = model.prompts[-1][0].content
    assert "семь лет" in system
    assert "Какой срок аренды первого склада?" in _history(model)
    assert not set(_history(model)) & {q for q, _ in TURNS[:2]}  # the other chat's turns
    # Without memory the follow-up knows nothing of the first question.
    plain = Recorder()
    control = _service(library, plain, memory=False).ask(
        turn.chat.id, "а для второго склада?", WITH_DOCS, alice
    )
    control.run()
    assert control.anchor is None and "Какой срок аренды первого склада?" not in _history(plain)


def test_memory_goes_with_its_chat_and_never_crosses_users(library: Library, alice: User) -> None:
    bob = library.users.create("bob")
    vectors = TurnVectorRepo(library.engine)
    model = Recorder()
    service = _service(library, model)
    secret = _chat(service, alice, TURNS[:6])
    bobs = _chat(service, bob, TURNS[10:16])

    service.ask(bobs, "Какая неустойка за просрочку платежа по договору поставки?", NO_DOCS, bob).run()
    assert not set(_history(model)) & {text for q, a in TURNS[:6] for text in (q, a)}

    assert vectors.count([secret]) == 12
    service.clear(secret, alice)
    assert vectors.count([secret]) == 0
    assert vectors.count([bobs]) == 14
    service.delete(bobs, bob)
    assert vectors.count() == 0


def test_old_messages_are_embedded_lazily_or_all_at_once(library: Library, alice: User) -> None:
    vectors = TurnVectorRepo(library.engine)
    # A chat stored before memory existed: messages without vectors.
    old = library.chats.create(title="Старый", owner_id=alice.id)
    for question, answer in TURNS[:8]:
        library.chats.add_message(old.id, "user", question)
        library.chats.add_message(old.id, "assistant", answer)
    other = library.chats.create(title="Ещё старый", owner_id=alice.id)
    library.chats.add_message(other.id, "user", TURNS[9][0])
    memory = ChatMemory(vectors, library.embedder)
    assert vectors.count() == 0 and vectors.count_missing(library.embedder().name) == 17

    model = Recorder()
    service = _service(library, model)
    service.ask(old.id, "Напомни, какая неустойка за просрочку платежа?", NO_DOCS, alice).run()
    assert _history(model)[:2] == list(TURNS[1])
    # The old questions (what is scored), the new question and its answer; the old answers wait.
    assert vectors.count([old.id]) == 10

    seen: list[tuple[int, int]] = []
    assert memory.embed_missing(lambda done, total: seen.append((done, total)), batch=5) == 9
    assert seen == [(5, 9), (9, 9)] and vectors.count() == 19
    assert memory.embed_missing() == 0
