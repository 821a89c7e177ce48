"""The chat page driven headlessly: upload, ask, cite, follow up, persist, clear, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.library import open_library
from settings import Settings
from tests.app.conftest import make_app, upload

CONTRACT = (
    "Договор аренды нежилого помещения.\n\n"
    "Срок аренды составляет одиннадцать месяцев с даты подписания договора. "
    "Арендная плата составляет 45 000 рублей в месяц.\n\n"
    "Помещение расположено по адресу: город Казань, улица Баумана, дом 7."
)


def _upload(at, files):  # type: ignore[no-untyped-def]
    return upload(at, files)


def _assistant_texts(at) -> list[str]:  # type: ignore[no-untyped-def]
    return ["\n".join(md.value for md in m.markdown) for m in at.chat_message if m.name == "assistant"]


def test_cp1251_upload_then_cited_answer(data_dir: Path) -> None:
    at = make_app()
    at.run()
    assert not at.exception
    assert at.title[0].value == "Чат с документами"
    _upload(at, ("dogovor.txt", CONTRACT.encode("cp1251"), "text/plain"))
    assert any("dogovor.txt" in s.value for s in at.sidebar.success)

    at.chat_input[0].set_value("Какой срок аренды?").run()
    assert not at.exception
    answer = _assistant_texts(at)[-1]
    assert "одиннадцать месяцев" in answer
    assert "[1]" in answer
    sources = at.chat_message[-1].expander[0]
    assert sources.label == "Источники (1)"
    assert "dogovor.txt" in sources.markdown[0].value
    assert "одиннадцать месяцев" in sources.text[0].value

    lib = open_library(Settings().model_copy(update={"data_dir": data_dir}), recover=False)
    (chat,) = lib.chats.list_all()
    stored = lib.chats.messages(chat.id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].sources[0].filename == "dogovor.txt"
    assert stored[1].provider == "offline"
    assert chat.title == "Какой срок аренды?"


def test_follow_up_uses_previous_turn_and_chat_survives_reload(data_dir: Path) -> None:
    at = make_app()
    at.run()
    _upload(at, ("dogovor.txt", CONTRACT.encode("utf-8"), "text/plain"))
    at.chat_input[0].set_value("Где расположено помещение?").run()
    at.chat_input[0].set_value("А на какой улице?").run()
    assert not at.exception
    assert "Баумана" in _assistant_texts(at)[-1]

    reloaded = make_app()  # a new browser session: the chat comes back from SQLite
    reloaded.run()
    assert not reloaded.exception
    users = [m.markdown[0].value for m in reloaded.chat_message if m.name == "user"]
    assert users == ["Где расположено помещение?", "А на какой улице?"]


def test_clear_chat_asks_for_confirmation(data_dir: Path) -> None:
    at = make_app()
    at.run()
    at.chat_input[0].set_value("Привет").run()
    assert len(at.chat_message) == 2
    clear = next(b for b in at.button if b.label == "Очистить чат")
    clear.click().run()
    assert any("нельзя отменить" in w.value for w in at.warning)
    assert len(at.chat_message) == 2  # nothing removed before confirming
    next(b for b in at.button if b.label == "Да, очистить").click().run()
    assert not at.exception
    assert len(at.chat_message) == 0


def test_bad_file_reports_reason_and_batch_continues(data_dir: Path) -> None:
    at = make_app()
    at.run()
    _upload(
        at,
        [
            ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "application/pdf"),
            ("empty.txt", b"", "text/plain"),
            ("good.md", "# Правила\n\nОтпуск длится 28 дней.".encode(), "text/markdown"),
        ],
    )
    errors = [e.value for e in at.sidebar.error]
    assert any("broken.pdf" in e and "PDF" in e for e in errors)
    assert any("empty.txt" in e and "пуст" in e for e in errors)
    assert any("good.md" in s.value for s in at.sidebar.success)
    assert "Traceback" not in str(at)
    # Only the searchable file is counted; the two failed ones are not «в базе».
    assert any(c.value.startswith("В поиске: 1 док., 1 фрагм.") for c in at.sidebar.caption), [
        c.value for c in at.sidebar.caption
    ]


def test_unconfigured_provider_is_marked_and_explains(data_dir: Path) -> None:
    at = make_app()
    at.run()
    provider = at.sidebar.selectbox(key="provider")
    assert provider.options[0] == "Без LLM (локально)"
    assert "GigaChat — не настроен" in provider.options
    provider.set_value("gigachat").run()
    assert any("GIGACHAT_CREDENTIALS" in w.value for w in at.sidebar.warning)
    models = at.sidebar.selectbox(key="model").options
    assert "GigaChat 2 Max" in models and "GigaChat Max" in models
    at.chat_input[0].set_value("Какой срок аренды?").run()
    assert not at.exception
    assert any("GIGACHAT_CREDENTIALS" in e.value for e in at.error)
    # The question is kept even though no answer could be produced.
    assert [m.name for m in at.chat_message][:1] == ["user"]
    lib = open_library(Settings().model_copy(update={"data_dir": data_dir}), recover=False)
    (chat,) = lib.chats.list_all()
    stored = lib.chats.messages(chat.id)
    assert stored[0].content == "Какой срок аренды?"
    assert stored[1].error and "GIGACHAT_CREDENTIALS" in stored[1].error


def test_yandex_catalogue_lists_the_current_models(data_dir: Path) -> None:
    at = make_app()
    at.run()
    at.sidebar.selectbox(key="provider").set_value("yandexgpt").run()
    models = at.sidebar.selectbox(key="model").options
    for label in ("YandexGPT Lite 5", "YandexGPT Pro 5", "YandexGPT Pro 5.1", "Alice AI LLM"):
        assert label in models
    assert not any("32k" in m for m in models)  # retired in August 2025
    assert any("YC_FOLDER_ID" in w.value for w in at.sidebar.warning)


def test_a_chat_saved_with_a_retired_model_opens_on_its_successor(data_dir: Path) -> None:
    lib = open_library(Settings().model_copy(update={"data_dir": data_dir}), recover=False)
    lib.chats.create(title="Старый чат", provider="yandexgpt", model="yandexgpt-32k/rc")
    at = make_app()
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="provider").value == "yandexgpt"
    assert at.sidebar.selectbox(key="model").value == "yandexgpt/rc"
    notes = [i.value for i in at.sidebar.info]
    assert any("yandexgpt-32k/rc" in n and "снята" in n for n in notes), notes


def test_failed_answer_is_retried_with_one_click(data_dir: Path) -> None:
    at = make_app()
    at.run()
    _upload(at, ("dogovor.txt", CONTRACT.encode("utf-8"), "text/plain"))
    at.sidebar.selectbox(key="provider").set_value("gigachat").run()
    at.chat_input[0].set_value("Какой срок аренды?").run()
    assert any("GIGACHAT_CREDENTIALS" in e.value for e in at.error)
    at.sidebar.selectbox(key="provider").set_value("offline").run()
    next(b for b in at.button if b.label == "Повторить").click().run()
    assert not at.exception
    assert "одиннадцать месяцев" in _assistant_texts(at)[-1]
    assert not at.error
    lib = open_library(Settings().model_copy(update={"data_dir": data_dir}), recover=False)
    (chat,) = lib.chats.list_all()
    stored = lib.chats.messages(chat.id)
    # The failed answer was replaced, the question kept once.
    assert [(m.role, bool(m.error)) for m in stored] == [("user", False), ("assistant", False)]
    assert stored[1].provider == "offline"
    # The provider that answered is saved on the chat as well, so a reload brings it back.
    assert chat.provider == "offline"
    reloaded = make_app()
    reloaded.run()
    assert reloaded.sidebar.selectbox(key="provider").value == "offline"


def test_streamlit_secrets_configure_a_provider(data_dir: Path) -> None:
    at = make_app()
    at.secrets["GIGACHAT_CREDENTIALS"] = "c2VjcmV0LWZyb20tc3Qtc2VjcmV0cw=="
    at.run()
    options = at.sidebar.selectbox(key="provider").options
    assert "GigaChat" in options  # configured: no «не настроен» suffix
    assert "YandexGPT — не настроен" in options


def test_a_failing_page_shows_a_russian_error_not_a_traceback(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAG_RAISE_ERRORS")  # as in production
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    blocker = data_dir.parent / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("RAG_DATA_DIR", str(blocker))  # the data directory cannot be created
    at = make_app()
    at.run()
    assert not at.exception
    (error,) = at.error
    assert error.value.startswith("Внутренняя ошибка страницы.")
    assert "Traceback" not in str(at) and "NotADirectoryError" not in str(at)
