"""SIGKILL in the middle of work: indexing (app and CLI) and a streamed answer.

After a restart nothing may be falsely ready, no vector or keyword row may be orphaned, the
admin page's consistency check must say so, and what a crash leaves behind must be repairable.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from rag.library import open_library
from settings import Settings
from storage import DocumentStatus
from tests.contract.fake_gigachat import make_case
from tests.e2e.harness import browser, running_app, wait_for_app
from tests.e2e.test_browser import CONTRACT, shot, upload

TOPICS = ["аренда", "поставка", "охрана труда", "бухгалтерия", "склад", "персонал", "закупки", "логистика"]


def long_text(paragraphs: int) -> str:
    """A Russian text of many distinct paragraphs (each about one chunk)."""
    out = []
    for i in range(paragraphs):
        topic = TOPICS[i % len(TOPICS)]
        out.append(
            f"Раздел {i + 1}. Правила по теме «{topic}». Сотрудник отдела номер {i + 7} "
            f"отвечает за документы по теме «{topic}» и хранит их в шкафу {i * 3 + 1}. "
            f"Проверка проводится каждые {i % 12 + 1} недель, отчёт направляется руководителю "
            f"направления, а копия остаётся в архиве компании на {i % 5 + 2} лет. "
            "Нарушение порядка фиксируется в журнале, и виновный сотрудник получает замечание. "
            "Изменения в правила вносятся приказом генерального директора после согласования."
        )
    return "\n\n".join(out)


def settings_for(data: Path) -> Settings:
    """Settings for opening the crashed data directory from the test process."""
    return Settings(_env_file=None, RAG_DATA_DIR=data)  # type: ignore[call-arg]


def assert_consistent(data: Path, failed: str | None, ready: list[str]) -> None:
    """No document falsely ready, nothing orphaned, the failed one (if any) holds nothing."""
    lib = open_library(settings_for(data), recover=False)
    try:
        report = lib.check()
        assert report.ok, report
        docs = {d.filename: d for d in lib.docs.list_all()}
        if failed is not None:
            assert docs[failed].status == DocumentStatus.FAILED
            assert not lib.docs.chunks(docs[failed].id)
            assert docs[failed].id not in lib.vectors.document_ids(lib.embedding_model)
        for name in ready:
            assert docs[name].status == DocumentStatus.READY
        # The vector index still answers after the crash.
        hits = lib.retriever.search("Какой срок аренды?", k=3, method="dense")
        assert hits and hits[0].filename == "dogovor.txt"
    finally:
        lib.engine.dispose()


def test_app_killed_while_indexing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with browser() as chromium:
        with running_app(data, tmp_path / "app.log") as app:
            page = chromium.new_page(viewport={"width": 1280, "height": 900}, locale="ru-RU")
            page.goto(app.url)
            page.get_by_test_id("stChatInputTextArea").wait_for(timeout=60_000)
            wait_for_app(page)
            upload(
                page, [{"name": "dogovor.txt", "mimeType": "text/plain", "buffer": CONTRACT.encode("cp1251")}]
            )
            page.get_by_text("Проиндексирован: dogovor.txt").wait_for(timeout=180_000)
            big = long_text(300).encode("utf-8")
            upload(page, [{"name": "reglament.txt", "mimeType": "text/plain", "buffer": big}])
            page.get_by_text("Векторизация «reglament.txt»").first.wait_for(timeout=120_000)
            shot(page, "30-before-kill")
            app.kill()  # SIGKILL: no cleanup code runs

        with running_app(data, tmp_path / "app2.log") as app:
            page = chromium.new_page(viewport={"width": 1280, "height": 900}, locale="ru-RU")
            page.goto(f"{app.url}/admin")
            page.get_by_role("heading", name="Проиндексированные файлы").wait_for(timeout=60_000)
            wait_for_app(page)
            # A bookmarked /admin still goes through the app's navigation (Russian labels).
            nav = page.get_by_test_id("stSidebarNav")
            expect(nav.get_by_text("Администрирование")).to_be_visible()
            expect(nav.get_by_text("Чат", exact=True)).to_be_visible()
            cells = page.get_by_test_id("stDataFrame").first.locator("td[role=gridcell]")
            cells.first.wait_for(state="attached")
            rows = " | ".join(cells.all_text_contents())
            # Killed in the vector stage: its keyword rows were committed, so it stays searchable.
            assert "reglament.txt" in rows and "поиск по словам готов, векторы:" in rows, rows
            assert rows.count("готов") == 2, rows  # dogovor.txt ready, reglament.txt by keyword
            page.get_by_role("button", name="Проверить целостность").click()
            page.get_by_text("Векторы посчитаны не полностью").wait_for(timeout=60_000)
            page.get_by_role("button", name="Исправить").click()
            page.get_by_text("Расхождения исправлены").first.wait_for(timeout=300_000)
            page.get_by_role("button", name="Проверить целостность").click()
            page.get_by_text("Расхождений нет").wait_for(timeout=60_000)
            shot(page, "31-after-restart-repair")
            assert "Traceback" not in app.log()
    assert_consistent(data, failed=None, ready=["dogovor.txt", "reglament.txt"])


def _chunk_rows(db: Path, name: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            row = con.execute(
                "SELECT count(*) FROM chunk JOIN document ON chunk.document_id = document.id "
                "WHERE document.filename = ?",
                (name,),
            ).fetchone()
            return int(row[0])
    except sqlite3.OperationalError:  # not created yet, or busy for a moment
        return 0


def test_cli_killed_between_rows_and_vectors_is_found_and_repaired(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    data = tmp_path / "data"
    env = {**child_env, "RAG_DATA_DIR": str(data)}
    first = tmp_path / "dogovor.txt"
    first.write_bytes(CONTRACT.encode("cp1251"))
    subprocess.run([sys.executable, "-m", "rag", "ingest", str(first)], env=env, cwd=tmp_path, check=True)
    big = tmp_path / "reglament.txt"
    big.write_text(long_text(120), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "rag", "ingest", str(big)], env=env, cwd=tmp_path)
    # The chunk and keyword rows are committed first (status KEYWORDS), then the vectors batch
    # by batch, then READY: kill the moment the rows appear, inside the vector stage.
    deadline = time.monotonic() + 240
    while _chunk_rows(data / "rag.sqlite3", "reglament.txt") == 0:
        assert proc.poll() is None, "ingest finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    lib = open_library(settings_for(data), recover=False)  # as found: no start-up recovery
    try:
        found = lib.check()
        assert not found.ok
        assert found.unfinished_vectors == ["reglament.txt"] and found.stale_documents == []
        # Searchable by keyword all along.
        hits = lib.retriever.search("охрана труда журнал замечание", k=3, method="keyword")
        assert hits and hits[0].filename == "reglament.txt"
        repaired = lib.check(repair=True)
        assert repaired.unfinished_vectors == ["reglament.txt"]
    finally:
        lib.engine.dispose()
    assert_consistent(data, failed=None, ready=["dogovor.txt", "reglament.txt"])


def test_app_killed_while_streaming_an_answer(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with make_case(tmp_path, RAG_LLM_TIMEOUT_S="10") as case, browser() as chromium:
        case.fake.deltas = [f"Часть {i}. " for i in range(1, 41)]
        case.fake.delta_delay_s = 0.25  # ten seconds of answer
        env = {**case.env, "RAG_PROVIDER": "gigachat"}
        with running_app(data, tmp_path / "app.log", env=env) as app:
            page: Any = chromium.new_page(viewport={"width": 1280, "height": 900}, locale="ru-RU")
            page.goto(app.url)
            page.get_by_test_id("stChatInputTextArea").wait_for(timeout=60_000)
            wait_for_app(page)
            box = page.get_by_test_id("stChatInputTextArea")
            box.fill("Расскажи подробно о порядке работы")
            box.press("Enter")
            page.get_by_text("Часть 6.").wait_for(timeout=60_000)
            shot(page, "32-streaming")
            app.kill()

        with running_app(data, tmp_path / "app2.log", env=env) as app:
            page = chromium.new_page(viewport={"width": 1280, "height": 900}, locale="ru-RU")
            page.goto(app.url)
            page.get_by_test_id("stChatInputTextArea").wait_for(timeout=60_000)
            wait_for_app(page)
            feed = [m.inner_text() for m in page.get_by_test_id("stChatMessage").all()]
            shot(page, "33-after-restart")
            # The question survives, and so does the part of the answer that had arrived.
            assert len(feed) == 2, feed
            assert "Расскажи подробно о порядке работы" in feed[0]
            assert "Часть 1." in feed[1] and "Часть 40." not in feed[1]
            assert "Ответ оборвался" in feed[1]
            expect(page.get_by_role("button", name="Повторить")).to_be_visible()
            page.goto(f"{app.url}/admin")
            page.get_by_role("button", name="Проверить целостность").click()
            page.get_by_text("Расхождений нет").wait_for(timeout=60_000)
            assert "Traceback" not in app.log()


REINDEX_CHILD = """
import sys
from pathlib import Path
from settings import Settings
from rag.library import open_library
lib = open_library(Settings(_env_file=None))
if sys.argv[1] == "ingest":
    print(lib.ingest("big.txt", Path(sys.argv[2]).read_bytes()).status, flush=True)
else:
    [doc] = lib.docs.list_all()
    print("reindexing", flush=True)
    print(lib.reindex(doc.id).status, flush=True)
"""


def _new_vectors(engine: Any) -> int:
    """Vectors the re-index has stored so far (counted on the row it writes, not yet ready)."""
    from sqlalchemy import text

    sql = "SELECT max(embedded_chunks) FROM document WHERE status <> 'READY'"
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar() or 0)
    except Exception:  # the table is being written: ask again
        return 0


def test_a_worker_killed_mid_reindex_leaves_the_current_version(
    tmp_path: Path, child_env: dict[str, str], backend: str, test_servers: Any
) -> None:
    from sqlalchemy import text

    from storage import make_engine

    data = tmp_path / "data"
    backend_env = test_servers.fresh() if test_servers is not None else {}
    env = {**child_env, **backend_env, "RAG_DATA_DIR": str(data), "RAG_CHUNK_WORDS": "20"}
    source = tmp_path / "big.txt"
    source.write_text(long_text(60), encoding="utf-8")
    made = subprocess.run(
        [sys.executable, "-c", REINDEX_CHILD, "ingest", str(source)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert made.stdout.strip() == "indexed", made.stderr
    settings = Settings(_env_file=None, RAG_DATA_DIR=data, RAG_CHUNK_WORDS=20, **backend_env)  # type: ignore[call-arg]
    engine = make_engine(settings.resolved_database_url)
    with engine.connect() as conn:
        before = {r[0] for r in conn.execute(text("SELECT id FROM chunk"))}
    assert len(before) > 64

    proc = subprocess.Popen(
        [sys.executable, "-c", REINDEX_CHILD, "reindex"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        # Killed in the new version's vector stage: its fragments and some vectors are written.
        while not _new_vectors(engine):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the re-index never reached its vector stage"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, _ = proc.communicate()
    engine.dispose()
    assert proc.returncode == -signal.SIGKILL and b"indexed" not in out

    lib = open_library(settings)  # start-up recovery drops the unfinished version
    try:
        [doc] = lib.docs.list_all()
        assert doc.status == DocumentStatus.READY
        assert {c.id for c in lib.docs.chunks(doc.id)} == before
        assert lib.docs.versions_in_progress() == []
        for model in lib.embedding_models:
            assert lib.vectors.ids_of_document(doc.id, model) == before
        assert lib.originals.get(doc.stored_path or "") == source.read_bytes()
        for method in ("keyword", "dense", "hybrid"):
            hits = lib.retriever.search("охрана труда журнал замечание", k=3, method=method)  # type: ignore[arg-type]
            assert hits and hits[0].filename == "big.txt" and hits[0].chunk_id in before, method
        assert lib.check().ok, lib.check().findings()
        assert lib.reindex(doc.id).status == "indexed"  # the lock died with the worker
        assert lib.check().ok
    finally:
        lib.engine.dispose()
