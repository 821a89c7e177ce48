"""The scale-out CLI: ``python -m rag worker`` runs jobs that a replica queued, and the other
commands work on PostgreSQL and a Chroma server as on the data directory."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rag.library import Library
from storage import DocumentStatus
from tests.backends import Servers, servers, unavailable

LEASE = "Договор аренды склада. Срок аренды составляет 11 месяцев. Арендная плата 45 000 рублей в месяц."
ROUTE = "Маршрутный лист. Рефрижератор отправляется из Казани в 6:00 и прибывает в Самару к 14:00."


def _rag(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rag", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_worker_refuses_without_the_shared_queue(tmp_path: Path, child_env: dict[str, str]) -> None:
    res = _rag(["worker", "--once"], tmp_path, {**child_env, "RAG_DATA_DIR": str(tmp_path / "data")})
    assert res.returncode == 2
    assert "RAG_QUEUE=postgres" in res.stderr and "DATABASE_URL" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.fixture
def shared(tmp_path: Path) -> Servers:
    found = servers()
    if found is None:
        unavailable("the test servers (scripts/servers.sh start DIR)")
    return found


def test_a_worker_process_runs_what_a_replica_queued(
    shared: Servers, tmp_path: Path, child_env: dict[str, str], make_library: Callable[..., Library]
) -> None:
    backend = {**shared.fresh(), "RAG_QUEUE": "postgres"}
    replica = make_library(tmp_path / "replica", **backend)
    from rag.jobs.shared import SharedQueue

    queue = SharedQueue(replica)
    jobs = [queue.submit("dogovor.txt", LEASE.encode("cp1251")), queue.submit("marshrut.txt", ROUTE.encode())]
    assert [j.state for j in jobs] == ["queued", "queued"]
    # Queued, not yet indexed: the replica's own recovery must not take them for a crash.
    assert replica.recover() == []
    assert {d.status for d in replica.docs.list_all()} == {DocumentStatus.QUEUED}

    env = {**child_env, **backend, "RAG_DATA_DIR": str(tmp_path / "worker")}
    res = _rag(["worker", "--once", "--name", "w1"], tmp_path, env)
    assert res.returncode == 0, res.stderr
    assert "worker ready" in res.stdout
    done = [queue.get(j.id) for j in jobs]
    assert [(j.state, j.failed) for j in done if j is not None] == [("done", False), ("done", False)]
    assert {d.filename: d.status for d in replica.docs.list_all()} == {
        "dogovor.txt": DocumentStatus.READY,
        "marshrut.txt": DocumentStatus.READY,
    }
    # Another process (the CLI on a third data directory) answers from what the worker indexed.
    env["RAG_DATA_DIR"] = str(tmp_path / "cli")
    ask = _rag(["ask", "Во сколько рефрижератор прибывает в Самару?", "--json"], tmp_path, env)
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    assert "14:00" in answer["answer"] and answer["sources"][0]["filename"] == "marshrut.txt"
    check = _rag(["check"], tmp_path, env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["ok"] is True
    queue.close()


@pytest.fixture
def shared_library(shared: Servers, tmp_path: Path, make_library: Callable[..., Library]) -> Library:
    """A library on the test servers with the shared queue's settings."""
    return make_library(tmp_path / "replica", **shared.fresh(), RAG_QUEUE="postgres")


def test_a_dead_record_never_keeps_a_document_busy(shared_library: Library) -> None:
    from sqlalchemy import text

    from rag.jobs.shared import QUEUE, TASK, SharedQueue
    from storage.jobs import JobRepo
    from storage.models import IndexJob

    library = shared_library
    queue = SharedQueue(library)  # procrastinate's tables
    doc = library.ingest("dogovor.txt", LEASE.encode()).document
    assert doc is not None
    jobs = JobRepo(library.engine)
    # A record left «running» by a worker that died before procrastinate had its job.
    jobs.add(IndexJob(kind="reindex", filename="dogovor.txt", document_id=doc.id, state="running"))
    assert not library.is_busy(doc.id)
    assert queue.pending(document_id=doc.id) is None

    def running_under(heartbeat_age_s: int) -> str:
        row = jobs.add(IndexJob(kind="reindex", filename="dogovor.txt", document_id=doc.id, state="running"))
        with library.engine.begin() as conn:
            worker = conn.execute(
                text(
                    "INSERT INTO procrastinate_workers (last_heartbeat) "
                    "VALUES (now() - make_interval(secs => :age)) RETURNING id"
                ),
                {"age": heartbeat_age_s},
            ).scalar()
            conn.execute(
                text(
                    "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status, worker_id) "
                    "VALUES (:q, :t, :lock, CAST(:args AS jsonb), 'doing', :w)"
                ),
                {
                    "q": QUEUE,
                    "t": TASK,
                    "lock": f"test:{row.id}",  # procrastinate allows one running job per lock
                    "args": json.dumps({"job_id": row.id}),
                    "w": worker,
                },
            )
        return row.id

    running_under(3600)  # its worker has been silent for an hour: dead
    assert not library.is_busy(doc.id)
    assert queue.pending(document_id=doc.id) is None
    live = running_under(0)  # a worker that is alive: the document is busy while it runs
    assert library.is_busy(doc.id)
    pending = queue.pending(document_id=doc.id)
    assert pending is not None and pending.id == live
    queue.close()


def test_the_record_ends_even_when_the_queues_own_bookkeeping_fails(
    shared_library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from rag.jobs.shared import SharedQueue
    from storage.jobs import JobRepo

    queue = SharedQueue(shared_library)
    job = queue.submit("marshrut.txt", ROUTE.encode())
    real_update = JobRepo.update
    broken: list[str] = []

    def update(self: JobRepo, job_id: str, **fields: object) -> object:
        if fields.get("state") == "done" and not broken:  # the database hiccups once, at the end
            broken.append(job_id)
            raise RuntimeError("connection lost")
        return real_update(self, job_id, **fields)

    monkeypatch.setattr(JobRepo, "update", update)
    queue.run_worker(heartbeat_s=1.0, wait=False, stop=threading.Event())
    assert broken == [job.id]
    ended = queue.get(job.id)
    assert ended is not None and ended.state == "done" and ended.failed
    assert "внутренняя ошибка" in ended.message
    queue.close()
