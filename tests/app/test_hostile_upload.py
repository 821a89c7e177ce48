"""The hostile corpus uploaded through the app: Russian errors naming each bad file, no tracebacks,
the good files indexed and searchable, and the documents and admin pages still render."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rag.library import open_library
from settings import Settings
from storage import DocumentStatus
from tests.app.conftest import make_app, upload
from tests.unit.test_hostile_files import CORPUS, assert_russian_reason

# Streamlit's own uploader refuses 200 MB (server.maxUploadSize) before the app sees it.
CASES = [c for c in CORPUS if c.id != "200-mb-txt"]
TRACEBACK = ("Traceback", 'File "')
ELEMENTS = (
    "markdown",
    "caption",
    "text",
    "code",
    "error",
    "warning",
    "info",
    "success",
    "title",
    "subheader",
)


def _plain(markdown: str) -> str:
    """The text a Markdown source displays: backslash escapes of punctuation removed."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def _shown_texts(at: Any) -> list[str]:
    """Every text the page shows: elements, expander labels, progress texts, table cells."""
    texts = [_plain(str(e.value)) for kind in ELEMENTS for e in getattr(at, kind)]
    texts += [_plain(e.label) for e in at.expander]
    for frame in at.dataframe:
        texts += [str(v) for row in frame.value.to_dict("records") for v in row.values()]
    return texts


def _assert_no_traceback(at: Any) -> None:
    assert not at.exception, at.exception
    for shown in _shown_texts(at):
        assert not any(t in shown for t in TRACEBACK), shown


def test_hostile_uploads_end_indexed_or_in_russian_errors(data_dir: Path, tmp_path: Path) -> None:
    at = make_app()
    at.run()
    files = [(c.filename, c.make(tmp_path), "application/octet-stream") for c in CASES]
    upload(at, files)
    _assert_no_traceback(at)

    errors = [_plain(e.value) for e in at.sidebar.error]
    successes = [_plain(s.value) for s in at.sidebar.success]
    for case in CASES:
        shown = case.shown or case.filename
        if case.reason:
            mine = [e for e in errors if f"«{shown}»" in e]
            assert len(mine) == 1, (shown, errors)
            assert_russian_reason(mine[0], shown)
            assert re.search(case.reason, mine[0]), mine[0]
        else:
            assert f"Проиндексирован: {shown}" in successes, (shown, successes)
    assert len(errors) == sum(1 for c in CASES if c.reason)  # nothing else went wrong

    # The good files are searchable from the chat.
    at.chat_input[0].set_value("Какой срок аренды помещения?").run()
    _assert_no_traceback(at)
    sources = at.chat_message[-1].expander[0]
    assert any("passwd.txt" in _plain(m.value) for m in sources.markdown)

    lib = open_library(Settings().model_copy(update={"data_dir": data_dir}), recover=False)
    assert lib.check().ok
    docs = {d.filename: d for d in lib.docs.list_all()}
    good = {c.shown or c.filename for c in CASES if not c.reason}
    assert {n for n, d in docs.items() if d.status == DocumentStatus.READY} == good
    assert all(
        d.status == DocumentStatus.FAILED and d.chunk_count == 0 for n, d in docs.items() if n not in good
    )
    assert not (tmp_path / "etc").exists() and not (data_dir.parent.parent / "etc").exists()

    documents = make_app("app_pages/documents.py")
    documents.run()
    _assert_no_traceback(documents)
    rows = {r["Файл"]: r for r in documents.dataframe[0].value.to_dict("records")}
    assert set(rows) == set(docs)
    assert {n for n, r in rows.items() if r["Статус"] == "готов"} == good

    admin = make_app("app_pages/admin.py")
    admin.run()
    _assert_no_traceback(admin)
    assert {m.label: m.value for m in admin.metric}["Документы"] == str(len(docs))
    failed = next(d for d in docs.values() if d.filename == "секрет.pdf")
    admin.selectbox[0].set_value(failed.id).run()
    _assert_no_traceback(admin)
    shown_error = [_plain(e.value) for e in admin.error]
    assert any("«секрет.pdf»" in e and "паролем" in e for e in shown_error), shown_error
