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
    from rag.shared_queue import SharedQueue

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
