"""The admin page: totals, the documents table, preview, delete, clearing chats, consistency."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.library import Library, open_library
from settings import Settings
from storage import DocumentStatus
from tests.app.conftest import finish_jobs, make_app
from tests.app.inert import shown

TEXT = "Регламент поддержки.\n\nЗаявки первой линии обрабатываются в течение четырёх часов."


def _library(data_dir: Path) -> Library:
    return open_library(Settings().model_copy(update={"data_dir": data_dir}), recover=False)


def _seed(data_dir: Path) -> Library:
    lib = _library(data_dir)
    assert lib.ingest("reglament.txt", TEXT.encode("koi8_r")).status == "indexed"
    lib.ingest("empty.txt", b"   ")
    chat = lib.chats.create(title="Про заявки")
    lib.chats.add_message(chat.id, "user", "Сколько обрабатываются заявки?")
    lib.chats.add_message(chat.id, "assistant", "Четыре часа [1]")
    return lib


def _button(at, label: str):  # type: ignore[no-untyped-def]
    return next(b for b in at.button if b.label == label)


def test_table_lists_files_with_encoding_status_and_errors(data_dir: Path) -> None:
    _seed(data_dir)
    at = make_app("app_pages/admin.py")
    at.run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Документы"] == "2"
    assert metrics["Чаты"] == "1"
    assert metrics["Сообщения"] == "2"
    table = at.dataframe[0].value
    rows = {r["Файл"]: r for r in table.to_dict("records")}
    assert rows["reglament.txt"]["Кодировка"] == "koi8-r"
    assert rows["reglament.txt"]["Статус"] == "готов"
    # The default engine is in the name (vectors of two engines never mix).
    assert rows["reglament.txt"]["Модель эмбеддингов"] == "multilingual-e5-small@ort-int8+use-multilingual-v3"
    assert rows["empty.txt"]["Статус"] == "ошибка"
    assert "пуст" in rows["empty.txt"]["Ошибка"]


def test_preview_and_delete_file_everywhere(data_dir: Path) -> None:
    lib = _seed(data_dir)
    doc = next(d for d in lib.docs.list_all() if d.filename == "reglament.txt")
    at = make_app("app_pages/admin.py")
    at.run()
    at.selectbox[0].set_value(doc.id).run()
    preview = at.expander[0]
    assert "reglament.txt" in preview.label
    assert any("четырёх часов" in t.value for t in preview.text)
    _button(at, "Удалить файл").click().run()
    _button(at, "Да, удалить файл").click().run()
    finish_jobs(at, "admin")
    assert any("удалён" in s.value for s in at.success)
    assert all(d.id != doc.id for d in lib.docs.list_all())
    assert lib.docs.chunks(doc.id) == []
    assert lib.docs.keyword_search(["заявк"], 10) == []
    assert lib.vectors.count(lib.embedding_model) == 0


def test_clear_all_chats_needs_confirmation(data_dir: Path) -> None:
    lib = _seed(data_dir)
    at = make_app("app_pages/admin.py")
    at.run()
    _button(at, "Очистить все чаты").click().run()
    assert lib.chats.counts() == (1, 2)  # nothing removed before confirming
    _button(at, "Да, удалить все чаты").click().run()
    assert not at.exception
    assert lib.chats.counts() == (0, 0)
    assert {m.label: m.value for m in at.metric}["Чаты"] == "0"


def test_consistency_check_finds_and_repairs_orphans(data_dir: Path) -> None:
    lib = _seed(data_dir)
    lib.vectors.add(lib.embedding_model, ["ghost-chunk"], np.ones((1, 384), dtype=np.float32), "ghost")
    at = make_app("app_pages/admin.py")
    at.run()
    _button(at, "Проверить целостность").click().run()
    assert any("Векторы без фрагментов в базе: 1." in shown(w.value) for w in at.warning)
    _button(at, "Исправить").click().run()
    finish_jobs(at, "admin")
    assert any("исправлены" in s.value for s in at.success)
    assert lib.check().ok
    assert "ghost-chunk" not in lib.vectors.ids(lib.embedding_model)


def test_table_shows_human_types_and_a_dash_for_missing_pages(data_dir: Path) -> None:
    _seed(data_dir)
    at = make_app("app_pages/admin.py")
    at.run()
    rows = {r["Файл"]: r for r in at.dataframe[0].value.to_dict("records")}
    assert rows["reglament.txt"]["Тип"] == "текст"
    assert rows["reglament.txt"]["Страниц"] == "—"
    assert "None" not in str(at.dataframe[0].value.to_dict("records"))
    assert not any("/" in str(r["Тип"]) for r in rows.values())  # no raw MIME type


def test_reindex_runs_as_a_job_and_the_file_stays_searchable(data_dir: Path) -> None:
    lib = _seed(data_dir)
    doc = next(d for d in lib.docs.list_all() if d.filename == "reglament.txt")
    at = make_app("app_pages/admin.py")
    at.run()
    at.selectbox[0].set_value(doc.id).run()
    _button(at, "Переиндексировать").click().run()
    assert not at.exception
    finish_jobs(at, "admin")
    assert any("переиндексирован" in s.value for s in at.success)
    after = lib.docs.get(doc.id)
    assert after.status == "ready" and after.chunk_count > 0
    assert lib.retriever.search("заявки первой линии", k=1)[0].document_id == doc.id


def test_a_file_being_indexed_cannot_be_deleted_or_reindexed(data_dir: Path) -> None:
    lib = _seed(data_dir)
    doc = next(d for d in lib.docs.list_all() if d.filename == "reglament.txt")
    at = make_app("app_pages/admin.py")
    at.run()  # the app opens its library (start-up recovery) before the upload begins
    lib.docs.update(
        doc.id, status=DocumentStatus.INDEXING
    )  # as another session's upload in progress shows it
    at.selectbox[0].set_value(doc.id).run()
    assert _button(at, "Удалить файл").disabled
    assert _button(at, "Переиндексировать").disabled
    assert any("индексируется" in c.value for c in at.caption)
