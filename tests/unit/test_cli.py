"""``python -m rag`` as a user runs it: a real child process on a real data directory."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rag.library import open_library
from tests.backends import backend_overrides
from tests.conftest import make_settings

LEASE = (
    "Договор аренды нежилого помещения.\n"
    "Срок аренды составляет 11 месяцев с момента подписания настоящего договора.\n"
    "Арендная плата составляет 45 000 рублей в месяц."
)
RECIPE = "# Борщ\n\nБульон из говядины варят два часа на медленном огне. Свёклу тушат отдельно."


def rag(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # cwd is a temporary folder, so a developer's .env is not read either.
    data_dir = (
        args[args.index("--data-dir") + 1] if "--data-dir" in args else env.get("RAG_DATA_DIR", str(cwd))
    )
    env = {**env, **backend_overrides(Path(data_dir))}  # the server pass: the data directory's servers
    return subprocess.run(
        [sys.executable, "-m", "rag", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    good = root / "good"
    (good / "sub").mkdir(parents=True)
    (good / "dogovor.txt").write_bytes(LEASE.encode("cp1251"))
    (good / "sub" / "borsch.md").write_text(RECIPE, encoding="utf-8")
    (good / "archive.7z").write_bytes(b"7z\xbc\xaf\x27\x1c")  # not a supported type: skipped
    bad = root / "bad"
    bad.mkdir()
    (bad / "broken.txt").write_bytes(bytes(range(256)) * 8)
    return root


@pytest.fixture(scope="module")
def first_ingest(workspace: Path, child_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return rag(
        ["ingest", str(workspace / "good"), "--data-dir", str(workspace / "data")], workspace, child_env
    )


def lines(out: str) -> dict[str, str]:
    """File name -> status word of each output line."""
    got = {}
    for line in out.splitlines():
        m = re.match(r"^(indexed|duplicate|failed): (\S+)", line)
        assert m, f"unexpected line: {line!r}"
        got[Path(m[2].rstrip(":")).name] = m[1]
    return got


def test_ingest_prints_a_line_per_file_and_exits_0(first_ingest: subprocess.CompletedProcess[str]) -> None:
    assert first_ingest.returncode == 0, first_ingest.stderr
    assert lines(first_ingest.stdout) == {"dogovor.txt": "indexed", "borsch.md": "indexed"}
    assert "cp1251" in next(line for line in first_ingest.stdout.splitlines() if "dogovor.txt" in line)


def test_ingest_again_reports_duplicates_and_failures(
    first_ingest: subprocess.CompletedProcess[str], workspace: Path, child_env: dict[str, str]
) -> None:
    assert first_ingest.returncode == 0
    res = rag(
        [
            "ingest",
            str(workspace / "good"),
            str(workspace / "bad"),
            str(workspace / "missing.txt"),
            "--data-dir",
            str(workspace / "data"),
        ],
        workspace,
        child_env,
    )
    assert res.returncode == 1
    assert lines(res.stdout) == {
        "dogovor.txt": "duplicate",
        "borsch.md": "duplicate",
        "broken.txt": "failed",
        "missing.txt": "failed",
    }
    failed = next(line for line in res.stdout.splitlines() if "broken.txt" in line)
    assert re.search("[а-яА-Я]{4,}", failed), failed  # the Russian reason is printed


def test_ask_json_answers_with_cited_sources(
    first_ingest: subprocess.CompletedProcess[str], workspace: Path, child_env: dict[str, str]
) -> None:
    assert first_ingest.returncode == 0
    res = rag(
        ["ask", "Какой срок аренды?", "--json", "--data-dir", str(workspace / "data")], workspace, child_env
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout.strip()
    assert "\n" not in out  # one JSON object on one line
    data = json.loads(out)
    assert set(data) == {"answer", "provider", "model", "sources"}  # nothing stored: no chat_id
    assert data["provider"] == "offline"
    assert data["model"] == "extractive"
    assert data["sources"]
    for source in data["sources"]:
        # «anchor» (the clause, issue 19) was added; keys are only ever added, never renamed.
        assert set(source) == {
            "n",
            "anchor",
            "chunk_id",
            "document_id",
            "filename",
            "page",
            "ordinal",
            "text",
            "score",
            "ocr",
        }
        assert isinstance(source["score"], float)
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", data["answer"])]
    assert cited
    assert all(data["sources"][n - 1]["filename"] == "dogovor.txt" for n in cited)
    assert "11 месяцев" in data["answer"]


def test_ask_with_chat_stores_the_exchange_and_follow_ups_use_it(
    first_ingest: subprocess.CompletedProcess[str], workspace: Path, child_env: dict[str, str]
) -> None:
    assert first_ingest.returncode == 0
    data_dir = str(workspace / "data")
    first = rag(
        ["ask", "Какой срок аренды?", "--json", "--chat", "new", "--data-dir", data_dir], workspace, child_env
    )
    assert first.returncode == 0, first.stderr
    chat_id = json.loads(first.stdout)["chat_id"]
    follow = rag(
        ["ask", "А плата?", "--json", "--chat", chat_id, "--data-dir", data_dir], workspace, child_env
    )
    assert follow.returncode == 0, follow.stderr
    assert json.loads(follow.stdout)["chat_id"] == chat_id
    lib = open_library(make_settings(workspace / "data"), recover=False)
    try:
        chat = lib.chats.get(chat_id)
        messages = lib.chats.messages(chat_id)
    finally:
        lib.engine.dispose()
    assert chat.title == "Какой срок аренды?" and chat.provider == "offline"
    assert [(m.role, m.error) for m in messages] == [("user", None), ("assistant", None)] * 2
    assert "11 месяцев" in messages[1].content
    assert messages[1].sources and messages[1].sources[0].filename == "dogovor.txt"
    # The short follow-up was searched together with the first question, as in the app.
    assert "45 000" in messages[3].content, messages[3].content
    missing = rag(["ask", "Вопрос", "--chat", "nope", "--data-dir", data_dir], workspace, child_env)
    assert missing.returncode == 2 and "не найден" in missing.stderr


def test_check_reports_a_consistent_library(
    first_ingest: subprocess.CompletedProcess[str], workspace: Path, child_env: dict[str, str]
) -> None:
    assert first_ingest.returncode == 0
    res = rag(["check", "--data-dir", str(workspace / "data")], workspace, child_env)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] is True
    assert report["orphan_vectors"] == 0 and report["missing_vectors"] == []


def test_bad_arguments_exit_2(workspace: Path, child_env: dict[str, str]) -> None:
    res = rag(
        ["ask", "вопрос", "--max-tokens", "0", "--data-dir", str(workspace / "empty")], workspace, child_env
    )
    assert res.returncode == 2
    assert "Ошибка в параметрах" in res.stderr


def test_ingest_refuses_an_oversized_file(tmp_path: Path, child_env: dict[str, str]) -> None:
    huge = tmp_path / "ogromnyj.txt"
    with huge.open("wb") as f:  # sparse: 200 MB by its size, nothing written to disk
        f.truncate(200 * 1024 * 1024)
    env = {**child_env, "RAG_DATA_DIR": str(tmp_path / "data"), "RAG_MAX_FILE_MB": "50"}
    out = rag(["ingest", str(huge)], tmp_path, env)
    assert out.returncode == 1, out.stderr
    assert "ogromnyj.txt: «ogromnyj.txt»: файл слишком большой (200.0 МБ)" in out.stdout
    assert "Traceback" not in out.stderr
