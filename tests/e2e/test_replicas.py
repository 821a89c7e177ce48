"""The scale-out deployment in a real browser: two app replicas behind haproxy, two workers.

Two `streamlit run` replicas (separate data directories) behind Debian's haproxy with cookie
stickiness, two ``python -m rag worker`` processes, one PostgreSQL (rows and the shared queue) and
one Chroma server (vectors), as deploy/compose.yaml runs them. What one replica admits the other
answers from; a worker SIGKILLed in the middle of indexing loses nothing: the other one runs the
job again, the document is indexed exactly once, and the page that queued it sees the outcome.

Needs the test servers (``eval "$(scripts/servers.sh start DIR)"``) and haproxy: skipped without
them on a developer machine, never in CI.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from tests.backends import Servers, servers, unavailable
from tests.e2e.harness import (
    REPO_ROOT,
    AppServer,
    Haproxy,
    WorkerProcess,
    app_env,
    ask,
    browser,
    haproxy_available,
    wait_for_app,
)
from tests.e2e.test_browser import CONTRACT, shot, sources_text, upload

WORDS = ["аренда", "склад", "оплата", "помещение", "договор", "ремонт", "этаж", "площадь"]
BIG_NAME = "reglament.txt"
# ~300 chunks of RAG_CHUNK_WORDS=20: several seconds of embedding, time to kill a worker in it.
BIG_TEXT = " ".join(
    f"Пункт {i}: {WORDS[i % 8]} и {WORDS[(i * 3) % 8]} согласованы сторонами в редакции номер {i}."
    for i in range(300)
)
STALLED_AFTER_S = 4


def required() -> Servers:
    """The test servers and haproxy; a skip without them, a failure in CI."""
    found = servers()
    missing = []
    if found is None:
        missing.append('RAG_TEST_DATABASE_URL and RAG_TEST_CHROMA (eval "$(scripts/servers.sh start DIR)")')
    if not haproxy_available():
        missing.append("haproxy (packages-dev.txt)")
    if missing:
        unavailable("the scale-out test needs " + " and ".join(missing))
    assert found is not None
    return found


@dataclass
class Deployment:
    """Everything the test started, and the settings they share."""

    env: dict[str, str]
    engine: Engine
    apps: dict[str, AppServer]
    workers: dict[int, WorkerProcess]  # by procrastinate's worker id
    front: Haproxy


def _registered(engine: Engine) -> set[int]:
    with engine.connect() as conn:
        try:
            return {int(r[0]) for r in conn.execute(text("SELECT id FROM procrastinate_workers"))}
        except Exception:  # the queue's schema is not there yet
            conn.rollback()
            return set()


def _register(worker: WorkerProcess, engine: Engine, known: set[int], timeout: float = 60.0) -> int:
    """Wait until the worker has a row in procrastinate_workers; its id."""
    worker.wait_ready(timeout)
    deadline = time.monotonic() + timeout
    while not (new := _registered(engine) - known):
        assert worker.process is not None and worker.process.poll() is None, worker.log()
        assert time.monotonic() < deadline, f"worker {worker.name} never registered:\n{worker.log()}"
        time.sleep(0.1)
    [worker_id] = new
    return worker_id


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """Two replicas, two workers and haproxy on fresh databases; stopped (and their logs read) after."""
    env = {
        **required().fresh(),
        "RAG_QUEUE": "postgres",
        "RAG_CHUNK_WORDS": "20",
        "RAG_SECRET_KEY": "replicas-e2e-secret-key-not-for-production",
    }
    engine = create_engine(env["DATABASE_URL"])
    apps = {
        c: AppServer(data_dir=tmp_path / f"app-{c}", log_path=tmp_path / f"app-{c}.log", env=env)
        for c in "ab"
    }
    spawned = [
        WorkerProcess(
            name=f"worker-{n}",
            data_dir=tmp_path / f"worker-{n}",
            log_path=tmp_path / f"worker-{n}.log",
            env=env,
        )
        for n in (1, 2)
    ]
    front = Haproxy(replicas=apps, workdir=tmp_path / "haproxy")
    workers: dict[int, WorkerProcess] = {}
    try:
        # Each worker registers alone, so its procrastinate id is known; the apps start meanwhile.
        spawned[0].start()
        apps["a"].start()
        workers[_register(spawned[0], engine, set())] = spawned[0]
        spawned[1].start()
        apps["b"].start()
        workers[_register(spawned[1], engine, set(workers))] = spawned[1]
        front.start()
        yield Deployment(env, engine, apps, workers, front)
    finally:
        front.stop()
        for worker in spawned:
            worker.stop()
        for app in apps.values():
            app.stop()
        engine.dispose()
    for app in apps.values():
        assert "Traceback" not in app.log(), app.log()


def new_page(chromium: Any, url: str, replica: str | None = None) -> Any:
    """A page in a fresh browser context (its own cookies), pinned to ``replica`` when given."""
    context = chromium.new_context(locale="ru-RU", viewport={"width": 1280, "height": 900})
    if replica is not None:
        context.add_cookies([{"name": "SERVERID", "value": replica, "url": url}])
    page = context.new_page()
    page.goto(url)
    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=60_000)
    wait_for_app(page)
    return page


def replica_of(page: Any) -> str:
    """The replica haproxy pinned this page's context to (its SERVERID cookie)."""
    found = {c["name"]: c["value"] for c in page.context.cookies()}
    assert found.get("SERVERID") in ("a", "b"), found
    return str(found["SERVERID"])


def row(engine: Engine, sql: str, **params: Any) -> Any:
    """The first row of a query (None when there is none)."""
    with engine.connect() as conn:
        return conn.execute(text(sql), params).mappings().first()


def wait_row(engine: Engine, sql: str, timeout: float, what: str, **params: Any) -> Any:
    """Poll a query until it returns a row."""
    deadline = time.monotonic() + timeout
    while (found := row(engine, sql, **params)) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def served(front: Haproxy, path: str) -> set[str]:
    """The replicas that haproxy's log says served requests for this path."""
    return set(re.findall(rf" streamlit/(\w+) .*\"[A-Z]+ {re.escape(path)}", front.log()))


def vector_ids(env: dict[str, str], document_id: str) -> set[str]:
    """The chunk ids that the Chroma server holds vectors of for a document."""
    from rag.search.index import VectorIndex, open_chroma_server

    client = open_chroma_server(env["CHROMA_HOST"], int(env["CHROMA_PORT"]), env["CHROMA_DATABASE"])
    return VectorIndex(client).ids_of_document(document_id)


def test_replicas_share_uploads_and_survive_a_killed_worker(deployment: Deployment, tmp_path: Path) -> None:
    d = deployment
    with browser() as chromium:
        first = new_page(chromium, d.front.url)
        second = None
        try:
            # 1. An upload through haproxy: indexed by a worker, reported on the page.
            upload(
                first,
                [{"name": "dogovor.txt", "mimeType": "text/plain", "buffer": CONTRACT.encode("cp1251")}],
            )
            first.get_by_test_id("stSidebar").get_by_text("Проиндексирован: dogovor.txt").wait_for(
                timeout=120_000
            )
            here = replica_of(first)
            other = "b" if here == "a" else "a"

            # 2. Another browser, on the other replica, is answered from that upload.
            second = new_page(chromium, d.front.url, replica=other)
            answer = ask(second, "Где расположено помещение?")
            assert "Казань" in answer.inner_text(), answer.inner_text()
            assert "dogovor.txt" in sources_text(answer)
            assert replica_of(second) == other  # haproxy kept it there (no redispatch)
            shot(second, "40-replicas-other-replica-answers")

            # 3. A long upload; its worker is SIGKILLed in the middle of the embedding.
            upload(first, [{"name": BIG_NAME, "mimeType": "text/plain", "buffer": BIG_TEXT.encode()}])
            doc = wait_row(
                d.engine, "SELECT id FROM document WHERE filename = :f", 60, "the document row", f=BIG_NAME
            )
            doc_id = doc["id"]
            job = wait_row(
                d.engine,
                "SELECT id FROM indexjob WHERE document_id = :d AND kind = 'ingest'",
                60,
                "the job row",
                d=doc_id,
            )
            job_id = job["id"]
            running = wait_row(
                d.engine,
                "SELECT j.state, j.text, q.worker_id FROM indexjob j "
                "JOIN procrastinate_jobs q ON q.args->>'job_id' = j.id "
                "WHERE j.id = :j AND (j.state = 'done' "
                "OR (j.state = 'running' AND j.text LIKE 'Векторизация%'))",
                120,
                "the job to reach the embedding",
                j=job_id,
            )
            assert running["state"] == "running", "indexing finished before the kill: make the text longer"
            victim = d.workers[int(running["worker_id"])]
            survivor = next(w for w in d.workers.values() if w is not victim)
            first.get_by_test_id("stProgress").first.wait_for(timeout=10_000)
            shot(first, "41-replicas-before-worker-kill")
            victim.kill()
            killed = row(d.engine, "SELECT state, attempts FROM indexjob WHERE id = :j", j=job_id)
            assert (killed["state"], killed["attempts"]) == ("running", 1), killed  # really interrupted

            # 4. The other worker takes the job over once the heartbeats stop, and finishes it.
            wait_row(
                d.engine,
                "SELECT 1 FROM document WHERE id = :d AND status IN ('READY', 'FAILED')",
                120,
                f"{BIG_NAME} to be indexed by {survivor.name}",
                d=doc_id,
            )
            first.get_by_test_id("stSidebar").get_by_text(f"Проиндексирован: {BIG_NAME}").wait_for(
                timeout=30_000
            )
            shot(first, "42-replicas-after-worker-kill")
        except Exception:
            for page, name in ((first, "43-replicas-failed-first"), (second, "44-replicas-failed-second")):
                if page is not None:
                    shot(page, name)
            raise

    # haproxy's log (a websocket's line is written when it closes, with the browser): the two
    # sessions' websockets ran on two replicas, and both uploads went to the first one's.
    deadline = time.monotonic() + 10
    while len(served(d.front, "/_stcore/stream")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert served(d.front, "/_stcore/stream") == {here, other}, d.front.log()[-3000:]
    assert served(d.front, "/_stcore/upload_file/") == {here}, d.front.log()[-3000:]

    final = row(d.engine, "SELECT status, chunk_count FROM document WHERE id = :d", d=doc_id)
    assert final["status"] == "READY", final
    with d.engine.connect() as conn:
        chunk_ids = {
            r[0] for r in conn.execute(text("SELECT id FROM chunk WHERE document_id = :d"), {"d": doc_id})
        }
    assert len(chunk_ids) == final["chunk_count"] > 100, (len(chunk_ids), final)
    # Indexed exactly once: a vector for each chunk, none left from the killed attempt.
    assert vector_ids(d.env, doc_id) == chunk_ids
    done = row(d.engine, "SELECT state, attempts, failed, message FROM indexjob WHERE id = :j", j=job_id)
    assert (done["state"], done["attempts"], done["failed"]) == ("done", 2, False), done
    # Procrastinate deletes a job once it succeeded (our indexjob row keeps the outcome).
    queued = row(d.engine, "SELECT status FROM procrastinate_jobs WHERE args->>'job_id' = :j", j=job_id)
    assert queued is None, queued
    assert "lost its worker: queued again" in survivor.log(), survivor.log()
    assert "Traceback" not in survivor.log(), survivor.log()

    check = subprocess.run(
        [sys.executable, "-m", "rag", "check"],
        cwd=REPO_ROOT,
        env=app_env(tmp_path / "check", d.env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["ok"] is True, check.stdout
