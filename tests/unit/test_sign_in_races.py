"""Two replicas (processes) or two sessions (threads) doing the same thing at the same moment.

Each race is run for several rounds, both actors released together; on the embedded SQLite
database and, when the test servers are up (RAG_TEST_DATABASE_URL), on PostgreSQL. What must
hold: at most one first admin; never zero admins after two admins demote each other; every
failed sign-in counted; first-use rows (the ``local`` user, «Мои документы») made once, with no
error for the one who came second.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from rag.identity.access import PERSONAL_COLLECTION, AccessControl
from rag.identity.auth import AuthService
from storage import make_engine
from storage.models import Collection, Role, User
from storage.teams import CollectionRepo, UserRepo
from tests.backends import servers
from tests.unit.sign_in_race_child import PASSWORD, act

ROOT = Path(__file__).resolve().parents[2]
PROCESS_ROUNDS = 6
THREAD_ROUNDS = 12


class Replicas:
    """Two child processes that act on a database when told, both at the same moment."""

    def __init__(self, folder: Path, env: dict[str, str], n: int = 2) -> None:
        self.folder, self.n, self.round = folder, n, 0
        folder.mkdir(parents=True, exist_ok=True)
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.unit.sign_in_race_child", str(folder), str(i)],
                cwd=ROOT,
                env=env,
            )
            for i in range(n)
        ]
        self._wait_for([folder / f"ready-{i}" for i in range(n)])

    def _wait_for(self, paths: list[Path], timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(p.exists() for p in paths):
            for proc in self.procs:
                assert proc.poll() is None, "a replica died"
            assert time.monotonic() < deadline, f"the replicas did not answer: {paths}"
            time.sleep(0.01)

    def race(self, url: str, action: str, args: list[list[str]]) -> list[dict[str, Any]]:
        """Every replica does ``action`` with its own arguments at once; their outcomes."""
        r, folder = self.round, self.folder
        order = {"url": url, "action": action, "args": args}
        (folder / f".go-{r}.json").write_text(json.dumps(order), encoding="utf-8")
        (folder / f".go-{r}.json").rename(folder / f"go-{r}.json")
        self._wait_for([folder / f"armed-{r}-{i}" for i in range(self.n)])
        (folder / f"fire-{r}").touch()
        results = [folder / f"res-{r}-{i}.json" for i in range(self.n)]
        self._wait_for(results)
        self.round += 1
        return [json.loads(p.read_text(encoding="utf-8")) for p in results]

    def close(self) -> None:
        (self.folder / f"go-{self.round}.json").write_text(json.dumps({"action": "stop"}), encoding="utf-8")
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(params=["sqlite", "postgresql"])
def new_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """A maker of fresh, migrated databases on one backend."""
    made = iter(range(10_000))
    if request.param == "postgresql":
        found = servers()
        if found is None:
            pytest.skip("PostgreSQL test server not running (RAG_TEST_DATABASE_URL)")
        return found.new_database

    def sqlite() -> str:
        url = f"sqlite:///{tmp_path / f'db{next(made)}' / 'rag.sqlite3'}"
        make_engine(url).dispose()  # migrated before the replicas open it
        return url

    return sqlite


@pytest.fixture
def replicas(tmp_path: Path, child_env: dict[str, str]) -> Iterator[Replicas]:
    pair = Replicas(tmp_path / "race", child_env)
    yield pair
    pair.close()


def _service(url: str) -> AuthService:
    engine = make_engine(url)
    users = UserRepo(engine)
    return AuthService(users, AccessControl(users, CollectionRepo(engine)), "race-secret")


def _admins(auth: AuthService) -> list[User]:
    return [u for u in auth.users.admins() if u.password_hash]


def _threads(actions: list[tuple[AuthService, str, list[str]]]) -> list[dict[str, Any]]:
    """Run ``act(service, action, args)`` for each in threads released together; their outcomes."""
    results: list[dict[str, Any]] = [{} for _ in actions]
    start = threading.Barrier(len(actions))

    def run(i: int) -> None:
        start.wait()
        results[i] = act(*actions[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _no_errors(results: list[dict[str, Any]]) -> None:
    errors = [r for r in results if "error" in r]
    assert not errors, errors[0].get("trace", errors[0]["error"])


# -- the first admin ----------------------------------------------------------------------------


def test_two_replicas_on_a_fresh_database_create_one_first_admin(
    replicas: Replicas, new_url: Callable[[], str]
) -> None:
    for _ in range(PROCESS_ROUNDS):
        url = new_url()
        results = replicas.race(url, "first_admin", [["ann"], ["bob"]])
        _no_errors(results)
        assert len([r for r in results if "ok" in r]) == 1, results
        assert len(_admins(_service(url))) == 1


def test_two_threads_create_one_first_admin(new_url: Callable[[], str]) -> None:
    for _ in range(THREAD_ROUNDS):
        url = new_url()
        a, b = _service(url), _service(url)  # two replicas in one process
        results = _threads([(a, "first_admin", ["ann"]), (b, "first_admin", ["bob"])])
        _no_errors(results)
        assert len([r for r in results if "ok" in r]) == 1, results
        assert len(_admins(a)) == 1


def test_two_replicas_starting_with_rag_admin_user_make_one_admin(
    replicas: Replicas, new_url: Callable[[], str]
) -> None:
    # RAG_ADMIN_USER / RAG_ADMIN_PASSWORD on every replica of a fresh deployment.
    for _ in range(PROCESS_ROUNDS):
        url = new_url()
        results = replicas.race(url, "bootstrap", [["root"], ["root"]])
        _no_errors(results)
        assert len({r.get("ok") for r in results}) == 1 and "refused" not in str(results), results
        assert [u.name for u in _admins(_service(url))] == ["root"]


def test_two_sessions_starting_with_rag_admin_user_make_one_admin(new_url: Callable[[], str]) -> None:
    for _ in range(THREAD_ROUNDS):
        url = new_url()
        a, b = _service(url), _service(url)
        results = _threads([(a, "bootstrap", ["root"]), (b, "bootstrap", ["root"])])
        _no_errors(results)
        assert len({r.get("ok") for r in results}) == 1 and "refused" not in str(results), results


# -- two admins demoting each other -------------------------------------------------------------


def _two_admins(url: str) -> AuthService:
    auth = _service(url)
    boss = auth.create_first_admin("boss", PASSWORD)
    auth.add_user(boss, "ann", Role.ADMIN, PASSWORD)
    return auth


def _both_admins_again(auth: AuthService) -> None:
    for name in ("boss", "ann"):
        user = auth.users.by_name(name)
        assert user is not None
        auth.users.update(user.id, role=Role.ADMIN, active=True)


def test_two_admins_demoting_each_other_on_two_replicas_leave_one(
    replicas: Replicas, new_url: Callable[[], str]
) -> None:
    url = new_url()
    auth = _two_admins(url)
    for _ in range(PROCESS_ROUNDS):
        _both_admins_again(auth)
        results = replicas.race(url, "demote", [["boss", "ann"], ["ann", "boss"]])
        _no_errors(results)
        assert len(_admins(auth)) == 1, results


def test_two_admins_demoting_each_other_in_two_threads_leave_one(new_url: Callable[[], str]) -> None:
    url = new_url()
    auth, other = _two_admins(url), _service(url)
    for _ in range(THREAD_ROUNDS):
        _both_admins_again(auth)
        results = _threads([(auth, "demote", ["boss", "ann"]), (other, "demote", ["ann", "boss"])])
        _no_errors(results)
        assert len(_admins(auth)) == 1, results


# -- failures counted by every replica ----------------------------------------------------------


def test_failures_on_two_replicas_at_once_both_count(replicas: Replicas, new_url: Callable[[], str]) -> None:
    url = new_url()
    auth = _service(url)
    boss = auth.create_first_admin("boss", PASSWORD)
    auth.add_user(boss, "alice", Role.MEMBER, PASSWORD)
    for _ in range(PROCESS_ROUNDS):
        auth.users.set_failures("alice", 0, 0.0)
        results = replicas.race(url, "fail", [["alice"], ["alice"]])
        _no_errors(results)
        assert auth.users.failures("alice").failures == 2, results


def test_failures_in_two_threads_at_once_both_count(new_url: Callable[[], str]) -> None:
    url = new_url()
    auth, other = _service(url), _service(url)
    boss = auth.create_first_admin("boss", PASSWORD)
    auth.add_user(boss, "alice", Role.MEMBER, PASSWORD)
    for _ in range(THREAD_ROUNDS):
        auth.users.set_failures("alice", 0, 0.0)
        results = _threads([(auth, "fail", ["alice"]), (other, "fail", ["alice"])])
        _no_errors(results)
        assert auth.users.failures("alice").failures == 2, results


# -- first-use rows -----------------------------------------------------------------------------


def _count(url: str, model: type[Any], *where: Any) -> int:
    engine = make_engine(url)
    try:
        with Session(engine) as s:
            return len(list(s.exec(select(model).where(*where))))
    finally:
        engine.dispose()


def test_the_local_user_is_made_once_by_two_replicas(replicas: Replicas, new_url: Callable[[], str]) -> None:
    for _ in range(PROCESS_ROUNDS):
        url = new_url()
        results = replicas.race(url, "local_user", [[], []])
        _no_errors(results)
        assert len({r["ok"] for r in results}) == 1, results
        assert _count(url, User, col(User.name) == "local") == 1


def test_the_local_user_is_made_once_by_two_sessions(new_url: Callable[[], str]) -> None:
    for _ in range(THREAD_ROUNDS):
        url = new_url()
        auth = _service(url)  # one app process: its sessions share the engine
        results = _threads([(auth, "local_user", []), (auth, "local_user", [])])
        _no_errors(results)
        assert len({r["ok"] for r in results}) == 1, results
        assert _count(url, User, col(User.name) == "local") == 1


def test_a_personal_collection_is_made_once_by_two_replicas(
    replicas: Replicas, new_url: Callable[[], str]
) -> None:
    url = new_url()
    auth = _service(url)
    for i in range(PROCESS_ROUNDS):
        user = auth.users.create(f"user{i}")
        results = replicas.race(url, "personal", [[user.name], [user.name]])
        _no_errors(results)
        assert len({r["ok"] for r in results}) == 1, results
        where = (col(Collection.owner_id) == user.id, col(Collection.name) == PERSONAL_COLLECTION)
        assert _count(url, Collection, *where) == 1


def test_a_personal_collection_is_made_once_by_two_sessions(new_url: Callable[[], str]) -> None:
    url = new_url()
    auth = _service(url)
    for i in range(THREAD_ROUNDS):
        user = auth.users.create(f"user{i}")
        results = _threads([(auth, "personal", [user.name]), (auth, "personal", [user.name])])
        _no_errors(results)
        assert len({r["ok"] for r in results}) == 1, results
        where = (col(Collection.owner_id) == user.id, col(Collection.name) == PERSONAL_COLLECTION)
        assert _count(url, Collection, *where) == 1
