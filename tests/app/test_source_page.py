"""The source view page driven headlessly (issue 19): from an answer's source link to the fragment
marked in its text, with the clause anchor; an unknown fragment says «Фрагмент не найден»."""

from __future__ import annotations

from pathlib import Path

from rag.library import open_library
from settings import Settings
from tests.app.conftest import make_app, upload

CONTRACT = (
    "Договор аренды нежилого помещения.\n\n1. ПРЕДМЕТ ДОГОВОРА\n\n"
    "1.1. Арендодатель передаёт Арендатору помещение <b>склада</b> площадью 300 кв. м.\n\n"
    "2. СРОК АРЕНДЫ\n\n2.1. Срок аренды составляет одиннадцать месяцев с даты подписания договора.\n"
)


def test_a_source_link_opens_the_fragment_marked_in_its_text(data_dir: Path) -> None:
    at = make_app()
    at.run()
    upload(at, ("dogovor_arendy.txt", CONTRACT.encode(), "text/plain"))
    at.chat_input[0].set_value("Какой срок аренды?").run()
    assert not at.exception
    links = at.chat_message[-1].get("page_link")
    assert links, "each source links to its view"
    link = links[0].proto
    assert link.page.endswith("source") or "source" in link.page
    label = link.label.replace("\\", "")
    assert label.startswith("[1] dogovor_arendy.txt · пп. 1.1–2.1")

    lib = open_library(Settings().model_copy(update={"data_dir": data_dir}), recover=False)
    (chat,) = lib.chats.list_all()
    chunk_id = lib.chats.messages(chat.id)[-1].sources[0].chunk_id
    at.query_params["chunk"] = chunk_id
    at.query_params["chat"] = chat.id
    at.switch_page("app_pages/source.py").run()
    assert not at.exception
    assert at.title[0].value.replace("\\", "") == "dogovor_arendy.txt"
    assert any("пп. 1.1–2.1" in md.value for md in at.markdown)
    (body,) = [h.proto.body for h in at.get("html") if "source-text" in h.proto.body]
    # The fragment is marked, and the document's own markup is shown as text, never as HTML.
    assert '<mark data-testid="source-fragment"' in body and "одиннадцать месяцев" in body
    assert "&lt;b&gt;склада&lt;/b&gt;" in body and "<b>" not in body
    assert at.get("download_button"), "the original can be downloaded"

    at.query_params["chunk"] = "0" * 32
    at.run()
    assert not at.exception
    assert "Фрагмент не найден" in [w.value for w in at.warning]
    assert not at.get("download_button")
