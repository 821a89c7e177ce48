"""The chat page's search box and export, driven headlessly: a word finds the chat, the result
opens it at the message; the export control is there for a chat with messages."""

from __future__ import annotations

from pathlib import Path

from tests.app.conftest import make_app, upload

CONTRACT = (
    "Договор аренды нежилого помещения.\n\n"
    "Срок аренды составляет одиннадцать месяцев с даты подписания договора. "
    "Арендная плата составляет 45 000 рублей в месяц."
)
HANDBOOK = "Справочник. Обед длится один час, с 13:00 до 14:00, в столовой на втором этаже."


def test_search_finds_an_older_chat_and_opens_it_at_the_message(data_dir: Path) -> None:
    at = make_app()
    at.run()
    upload(
        at, [("dogovor.txt", CONTRACT.encode(), "text/plain"), ("obed.txt", HANDBOOK.encode(), "text/plain")]
    )
    at.chat_input[0].set_value("Какой срок аренды?").run()
    lease_chat = at.session_state["chat_id"]
    new_chat = next(b for b in at.sidebar.button if b.label == "Новый чат")
    new_chat.click().run()
    at.chat_input[0].set_value("Когда обед?").run()
    assert at.session_state["chat_id"] != lease_chat
    assert not at.exception

    # An inflected form of a word of the answer («месяцев» → «месяц»).
    at.sidebar.text_input(key="chat_search").set_value("месяца").run()
    hits = [b for b in at.sidebar.button if b.key and b.key.startswith("chat_hit_")]
    assert hits and all("Какой срок аренды" in b.label for b in hits)
    assert any("одиннадцать месяцев" in b.label for b in hits)
    hits[-1].click().run()
    assert not at.exception
    assert at.session_state["chat_id"] == lease_chat
    assert any("Найдено поиском" in c.value for m in at.chat_message for c in m.caption)
    # The export control is on the open chat; a word nobody wrote finds nothing.
    assert any(p.proto.popover.label == "Экспорт" for p in at.get("popover"))
    at.sidebar.text_input(key="chat_search").set_value("ипотека").run()
    assert "Ничего не найдено." in [c.value for c in at.sidebar.caption]


def test_a_thumbs_up_answer_goes_into_a_test_set_of_the_lab(data_dir: Path) -> None:
    from rag.lab.services import open_lab
    from rag.library import open_library
    from settings import Settings

    at = make_app()
    at.run()
    upload(at, [("dogovor.txt", CONTRACT.encode(), "text/plain")])
    at.chat_input[0].set_value("Какой срок аренды?").run()
    chat_id = at.session_state["chat_id"]
    lib = open_library(Settings(_env_file=None, RAG_DATA_DIR=data_dir), recover=False)  # type: ignore[call-arg]
    answer_id = lib.chats.messages(chat_id)[-1].id
    assert not [b for b in at.button if b.key == f"testset_add_{answer_id}"]  # only for a 👍
    at.session_state[f"rating_{answer_id}"] = 1  # 👍
    at.run()
    at.text_input(key=f"testset_new_{answer_id}").set_value("Аренда")
    at.text_input(key=f"testset_fact_{answer_id}").set_value("одиннадцать месяцев")
    at.selectbox(key=f"testset_file_{answer_id}").set_value("dogovor.txt")
    next(b for b in at.button if b.key == f"testset_add_{answer_id}").click().run()
    assert not at.exception
    assert any("добавлен в тестовый набор" in c.value for c in at.caption)

    try:
        lab = open_lab(lib, {})
        user = lib.users.get(lib.chats.get(chat_id).owner_id) if lib.chats.get(chat_id).owner_id else None
        [made] = lab.sets.sets_of(user)
        assert made.name == "Аренда"
        [q] = lab.sets.questions(made.id, user)
        assert (q.question, q.expected_fact, q.expected_file) == (
            "Какой срок аренды?",
            "одиннадцать месяцев",
            "dogovor.txt",
        )
    finally:
        lib.engine.dispose()


def test_two_chats_with_one_title_keep_each_its_own_questions(data_dir: Path) -> None:
    # Found in chromium: with two chats of the same title, asking in the older one moved it to the
    # top of the list, the list kept its selected position, and the next question landed in the other.
    at = make_app()
    at.run()
    upload(at, [("obed.txt", HANDBOOK.encode(), "text/plain")])
    at.chat_input[0].set_value("Когда обед?").run()
    first = at.session_state["chat_id"]
    next(b for b in at.sidebar.button if b.label == "Новый чат").click().run()
    at.chat_input[0].set_value("Когда обед?").run()
    second = at.session_state["chat_id"]
    assert first != second
    at.sidebar.radio[0].set_value(first).run()  # the older one, second in the list
    assert at.session_state["chat_id"] == first
    at.chat_input[0].set_value("А где столовая?").run()
    assert at.session_state["chat_id"] == first
    at.run()  # the list reorders: the chat just asked in goes to the top
    assert at.session_state["chat_id"] == first
    at.chat_input[0].set_value("До скольки обед?").run()
    assert not at.exception

    from rag.library import open_library
    from settings import Settings

    lib = open_library(Settings(_env_file=None, RAG_DATA_DIR=data_dir), recover=False)  # type: ignore[call-arg]
    try:
        asked = {c: [m.content for m in lib.chats.messages(c) if m.role == "user"] for c in (first, second)}
    finally:
        lib.engine.dispose()
    assert asked == {
        first: ["Когда обед?", "А где столовая?", "До скольки обед?"],
        second: ["Когда обед?"],
    }
