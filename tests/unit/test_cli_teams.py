"""``python -m rag`` with several people: accounts, collections, and what each of them may see.

Real library, real embedders, the real CLI entry point: in-process (``main``) for most calls so
the models load once, as a child process where the environment and stdin are the point.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import rag.cli as cli
import rag.library
import rag.library.core
from rag.identity.passwords import MIN_PASSWORD_LENGTH, check_password_rules, hash_password, verify_password
from rag.library import Library
from rag.search.embedding import Embedder
from rag.search.embedding import load_embedder as real_load
from storage.models import Access

SECRET_NAME = "alice_birjuza_plan.txt"
SECRET = (
    "Проект «Бирюза»: кодовое слово проекта — фиолетовый жираф.\n"
    "Бюджет проекта «Бирюза» составляет 913 тысяч рублей, запуск назначен на март."
)
QUESTION = "Какое кодовое слово у проекта Бирюза?"
BOB_NAME = "bob_recipe.txt"
BOB_TEXT = "Рецепт борща: бульон из говядины варят два часа на медленном огне, свёклу тушат отдельно."
PERSONAL = "Мои документы"

_EMBEDDERS: dict[tuple[str, str], Embedder] = {}


@dataclass
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def run(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Cli]:
    """``python -m rag ARGS --data-dir DATA`` in-process; each model is loaded once per test run."""
    monkeypatch.chdir(tmp_path)  # no developer's .env

    def load(name: str, engine: str = "auto") -> Embedder:
        if (name, engine) not in _EMBEDDERS:
            _EMBEDDERS[(name, engine)] = real_load(name, engine)
        return _EMBEDDERS[(name, engine)]

    monkeypatch.setattr(rag.library.core, "load_embedder", load)
    opened: list[Library] = []
    real_open = rag.library.open_library

    def open_library(*args: Any, **kwargs: Any) -> Library:
        lib = real_open(*args, **kwargs)
        opened.append(lib)
        return lib

    monkeypatch.setattr(cli, "open_library", open_library)

    def _run(*args: str, stdin: str = "") -> Result:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = cli.main([*args, "--data-dir", str(data_dir)])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return Result(code, out, err)

    yield _run
    for lib in opened:
        lib.engine.dispose()


@pytest.fixture
def inspect(data_dir: Path, make_library: Callable[..., Library]) -> Callable[[], Library]:
    """A library on the same data directory, to check what the CLI stored."""
    return lambda: make_library(data_dir, recover=False)


def ok(res: Result) -> Result:
    assert res.code == 0, res.out + res.err
    return res


def refused(res: Result, *words: str) -> Result:
    assert res.code == 2, res.out + res.err
    for word in words:
        assert word in res.err, res.err
    return res


def ask_json(run: Cli, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(run("ask", QUESTION, "--json", *args)).out)
    return data


@pytest.fixture
def team(run: Cli, tmp_path: Path) -> dict[str, Path]:
    """alice and bob (members); alice's secret plan and bob's recipe, each in their own collection."""
    ok(run("users", "add", "alice", "--password-stdin", stdin="alice-password\n"))
    ok(run("users", "add", "bob", "--password-stdin", stdin="bob-password\n"))
    files = tmp_path / "files"
    files.mkdir()
    (files / SECRET_NAME).write_text(SECRET, encoding="utf-8")
    (files / BOB_NAME).write_text(BOB_TEXT, encoding="utf-8")
    assert "indexed" in ok(run("ingest", str(files / SECRET_NAME), "--user", "alice")).out
    assert "indexed" in ok(run("ingest", str(files / BOB_NAME), "--user", "bob")).out
    return {"secret": files / SECRET_NAME, "recipe": files / BOB_NAME}


# -- passwords --------------------------------------------------------------------------------


def test_password_hashes_verify_and_never_raise() -> None:
    stored = hash_password("correct horse")
    assert stored != "correct horse" and stored.startswith("$argon2id$")
    assert hash_password("correct horse") != stored  # salted
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "correct hors")
    assert not verify_password("not a hash", "correct horse")
    assert not verify_password("$argon2id$v=19$m=65536,t=3,p=4$broken", "correct horse")
    assert not verify_password("", "")
    assert check_password_rules("x" * MIN_PASSWORD_LENGTH) is None
    reason = check_password_rules("x" * (MIN_PASSWORD_LENGTH - 1))
    assert reason is not None and "короткий" in reason


# -- users ------------------------------------------------------------------------------------


def test_users_add_list_disable_round_trip(run: Cli, inspect: Callable[[], Library]) -> None:
    ok(run("users", "add", "Alice", "--password-stdin", stdin="correct horse\n"))
    ok(run("users", "add", "boss", "--role", "admin"))
    listed = ok(run("users", "list")).out.splitlines()
    assert listed == [
        "alice\tmember\tактивен\tпароль задан",
        "boss\tadmin\tактивен\tбез пароля",
    ]
    alice = inspect().users.by_name("alice")
    assert alice is not None and alice.password_hash
    assert "correct horse" not in alice.password_hash
    assert verify_password(alice.password_hash, "correct horse")
    assert not verify_password(alice.password_hash, "wrong horse")

    refused(run("users", "add", "ALICE", "--password-stdin", stdin="other password\n"), "уже существует")
    refused(run("users", "add", "carol", "--password-stdin", stdin="short\n"), "короткий")
    refused(run("users", "add", "all"), "зарезервировано")
    assert [u.name for u in inspect().users.list_all()] == ["alice", "boss"]  # nothing half-made

    ok(run("users", "disable", "alice"))
    assert "alice\tmember\tотключён\tпароль задан" in ok(run("users", "list")).out
    assert inspect().users.by_name("alice").active is False  # type: ignore[union-attr]
    refused(run("users", "disable", "nobody"), "«nobody» не найден")


def test_the_password_is_read_from_stdin_by_a_child_process(
    tmp_path: Path, child_env: dict[str, str], inspect: Callable[[], Library]
) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "rag", "users", "add", "dora", "--password-stdin"],
        cwd=tmp_path,
        env={**child_env, "RAG_DATA_DIR": str(tmp_path / "data")},
        input="пароль с пробелами \n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "пароль с пробелами" not in res.stdout + res.stderr
    dora = inspect().users.by_name("dora")
    assert dora is not None and verify_password(dora.password_hash or "", "пароль с пробелами ")


# -- collections ------------------------------------------------------------------------------


def test_collections_add_share_and_list(run: Cli, inspect: Callable[[], Library]) -> None:
    for name in ("alice", "bob", "carol"):
        ok(run("users", "add", name))
    ok(run("collections", "add", "Проекты", "--user", "alice", "--shared"))
    ok(run("collections", "add", "Проекты", "--user", "bob"))
    refused(run("collections", "add", "Проекты", "--user", "bob"), "уже есть")
    refused(run("collections", "add", "Архив", "--user", "nobody"), "не найден")

    # alice's is shared with everyone, bob's is not: carol reads only alice's.
    assert ok(run("collections", "list", "--user", "carol")).out.splitlines() == [
        "Проекты\tвладелец: alice\tчтение"
    ]
    refused(run("collections", "share", "Проекты", "--with", "carol"), "--owner", "alice", "bob")
    ok(run("collections", "share", "Проекты", "--with", "carol", "--write", "--owner", "bob"))
    refused(run("collections", "share", "Нет такой", "--with", "carol"), "не найдена")
    refused(run("collections", "share", "Проекты", "--with", "nobody", "--owner", "bob"), "не найден")

    mine = ok(run("collections", "list", "--user", "carol")).out.splitlines()
    assert sorted(mine) == ["Проекты\tвладелец: alice\tчтение", "Проекты\tвладелец: bob\tзапись"]
    everything = ok(run("collections", "list")).out
    assert "Проекты\tвладелец: bob\tвсем: нет доступа\tcarol: запись" in everything
    assert "Проекты\tвладелец: alice\tвсем: чтение" in everything

    ok(run("collections", "share", "Проекты", "--with", "all", "--write", "--owner", "alice"))
    lib = inspect()
    alice = lib.users.by_name("alice")
    assert alice is not None
    coll = lib.collections.by_name("Проекты", alice.id)
    assert coll is not None and coll.everyone == Access.WRITE


# -- who sees what ----------------------------------------------------------------------------


def test_a_private_document_stays_private_until_shared(
    run: Cli, team: dict[str, Path], inspect: Callable[[], Library]
) -> None:
    mine = ask_json(run, "--user", "alice")
    assert any(s["filename"] == SECRET_NAME for s in mine["sources"])
    assert "жираф" in mine["answer"]

    before = ask_json(run, "--user", "bob")
    text = json.dumps(before, ensure_ascii=False)
    assert before["sources"], "bob's own recipe should still be searched"
    assert {s["filename"] for s in before["sources"]} == {BOB_NAME}
    assert SECRET_NAME not in text and "alice_birjuza" not in text
    assert "жираф" not in text and "913" not in text
    lib = inspect()
    secret_id = next(e.document.id for e in lib.documents(None) if e.name == SECRET_NAME)
    assert secret_id not in text

    ok(run("collections", "share", PERSONAL, "--with", "bob", "--owner", "alice"))
    after = ask_json(run, "--user", "bob")
    assert any(s["document_id"] == secret_id for s in after["sources"])
    assert "жираф" in after["answer"]


def test_writing_into_another_users_collection_needs_the_write_right(
    run: Cli, team: dict[str, Path], tmp_path: Path, inspect: Callable[[], Library]
) -> None:
    note = tmp_path / "files" / "bob_note.txt"
    note.write_text("Заметка Боба о поставках кирпича на склад номер четыре.", encoding="utf-8")
    target = ("--user", "bob", "--collection", PERSONAL, "--owner", "alice")

    refused(run("ingest", str(note), *target), "не найдена")  # not even readable: unknown
    ok(run("collections", "share", PERSONAL, "--with", "bob", "--owner", "alice"))
    refused(run("ingest", str(note), *target), "нет права")  # readable, not writable
    refused(run("ingest", str(note), "--user", "bob", "--collection", "Чужая"), "не найдена")
    alice = inspect().users.by_name("alice")
    assert alice is not None
    assert "bob_note.txt" not in {e.name for e in inspect().documents(alice)}

    ok(run("collections", "share", PERSONAL, "--with", "bob", "--write", "--owner", "alice"))
    assert "indexed" in ok(run("ingest", str(note), *target)).out
    lib = inspect()
    alice_personal = lib.collections.by_name(PERSONAL, alice.id)
    assert alice_personal is not None
    in_alice = {e.name for e in lib.documents(alice, collection_id=alice_personal.id)}
    assert in_alice == {SECRET_NAME, "bob_note.txt"}


def test_someone_elses_chat_is_as_unknown_as_a_made_up_id(
    run: Cli, team: dict[str, Path], inspect: Callable[[], Library]
) -> None:
    chat_id = ask_json(run, "--user", "alice", "--chat", "new")["chat_id"]
    assert ok(run("ask", "А бюджет?", "--json", "--user", "alice", "--chat", chat_id)).code == 0

    theirs = refused(run("ask", "А бюджет?", "--json", "--user", "bob", "--chat", chat_id), "не найден")
    unknown = refused(run("ask", "А бюджет?", "--json", "--user", "bob", "--chat", "0" * 32))
    assert theirs.err.replace(chat_id, "ID") == unknown.err.replace("0" * 32, "ID")
    assert theirs.out == unknown.out == ""
    lib = inspect()
    assert len(lib.chats.messages(chat_id)) == 4  # bob's question did not land in alice's chat
    bob = lib.users.by_name("bob")
    assert bob is not None and lib.chats.list_all(owner_id=bob.id) == []


def test_a_disabled_user_cannot_act(run: Cli, team: dict[str, Path], inspect: Callable[[], Library]) -> None:
    ok(run("users", "disable", "bob"))
    other = team["recipe"].with_name("bob_other.txt")
    other.write_text("Другой текст Боба про ремонт крыши гаража.", encoding="utf-8")
    refused(run("ingest", str(other), "--user", "bob"), "«bob» отключён")
    refused(run("ask", QUESTION, "--json", "--user", "bob"), "«bob» отключён")
    refused(run("ask", QUESTION, "--user", "bob", "--chat", "new"), "«bob» отключён")
    refused(run("collections", "list", "--user", "bob"), "«bob» отключён")
    refused(run("ask", QUESTION, "--user", "nobody"), "«nobody» не найден")
    lib = inspect()
    assert "bob_other.txt" not in {e.name for e in lib.documents(None)}
    assert lib.chats.list_all() == []


def test_with_sign_in_on_a_user_must_be_named(
    run: Cli,
    team: dict[str, Path],
    data_dir: Path,
    tmp_path: Path,
    child_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**child_env, "RAG_AUTH": "password"}
    for args in (["ask", QUESTION, "--json"], ["ingest", str(team["recipe"])]):
        res = subprocess.run(
            [sys.executable, "-m", "rag", *args, "--data-dir", str(data_dir)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 2, res.stdout + res.stderr
        assert "При RAG_AUTH=password укажите --user" in res.stderr
        assert "Traceback" not in res.stderr and res.stdout == ""

    monkeypatch.setenv("RAG_AUTH", "oidc")
    refused(run("ask", QUESTION, "--json"), "RAG_AUTH=oidc", "--user")
    # Naming a user works under sign-in, and sees only what that user may read.
    data = ask_json(run, "--user", "bob")
    assert {s["filename"] for s in data["sources"]} == {BOB_NAME}


def test_without_sign_in_the_local_admin_reads_everything(run: Cli, team: dict[str, Path]) -> None:
    data = ask_json(run)
    assert SECRET_NAME in {s["filename"] for s in data["sources"]}


# -- the last admin and the password limit (issue 18, 24) -------------------------------------


def test_the_cli_never_takes_away_the_last_admin_who_can_sign_in(
    run: Cli, inspect: Callable[[], Library], monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(run("users", "add", "local", "--role", "admin"))  # as RAG_AUTH=none leaves it: no password
    monkeypatch.setenv("RAG_AUTH", "password")
    ok(run("users", "add", "boss", "--role", "admin", "--password-stdin", stdin="boss-password\n"))
    # The password-less admin cannot sign in under RAG_AUTH=password: boss is the last one.
    how = "python -m rag users add ИМЯ --role admin --password-stdin"
    refused(run("users", "disable", "boss"), "последнего администратора", how)
    refused(run("users", "role", "boss", "member"), "последнего администратора", how)
    boss = inspect().users.by_name("boss")
    assert boss is not None and boss.active and boss.role == "admin"

    ok(run("users", "add", "ann", "--role", "admin", "--password-stdin", stdin="ann-password\n"))
    ok(run("users", "role", "boss", "member"))
    refused(run("users", "disable", "ann"), "последнего администратора")
    ok(run("users", "role", "boss", "admin"))
    ok(run("users", "disable", "ann"))
    ok(run("users", "enable", "ann"))
    assert "ann\tadmin\tактивен\tпароль задан" in ok(run("users", "list")).out


def test_the_cli_takes_passwords_no_longer_than_the_sign_in_field(run: Cli) -> None:
    refused(run("users", "add", "carol", "--password-stdin", stdin="x" * 257 + "\n"), "256")
    ok(run("users", "add", "carol", "--password-stdin", stdin="x" * 256 + "\n"))
    reason = check_password_rules("x" * 257)
    assert reason is not None and "256" in reason
