"""The lab's commands as a user runs them: ``rag assistants``, ``rag ask --assistant``, ``rag compare``,
``rag eval --assistant`` in real child processes, checked against the services the pages use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from providers import build_providers
from providers.offline import embedder_similarity
from rag.lab.checks import parse_questions
from rag.lab.services import open_lab
from rag.library import open_library
from tests.conftest import make_settings
from tests.unit.lab_team import LEASE, RECIPE
from tests.unit.test_cli import rag

QUESTIONS_CSV = (
    "question,expected_fact,expected_file\n"
    "Какой срок аренды?,11 месяцев,dogovor.txt\n"
    "Какая арендная плата?,45 000 рублей,\n"
    "Чему равен залог?,двум месячным платежам,dogovor.txt\n"
    "Кто оплачивает коммунальные услуги?,оплачивает коммунальные услуги отдельно,\n"
    "Сколько варят бульон?,два часа,\n"
)


@pytest.fixture(scope="module")
def team_dir(
    tmp_path_factory: pytest.TempPathFactory, child_env: dict[str, str]
) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("lab-cli")
    env = {**child_env, "RAG_AUTH": "password", "RAG_DATA_DIR": str(root / "data")}
    (root / "dogovor.txt").write_text(LEASE, encoding="utf-8")
    (root / "borsch.txt").write_text(RECIPE, encoding="utf-8")
    (root / "set.csv").write_text(QUESTIONS_CSV, encoding="utf-8")
    for args in (
        ["users", "add", "alice"],
        ["users", "add", "bob"],
        ["ingest", str(root / "dogovor.txt"), "--user", "alice"],
        ["ingest", str(root / "borsch.txt"), "--user", "bob"],
        ["assistants", "add", "Юрист", "--provider", "offline", "--top-k", "3", "--user", "alice"],
        ["assistants", "add", "Слова", "--provider", "offline", "--method", "keyword", "--user", "alice"],
    ):
        res = rag(args, root, env)
        assert res.returncode == 0, (args, res.stderr)
    return root, env


def test_assistants_list_show_delete_as_their_owner_only(team_dir: tuple[Path, dict[str, str]]) -> None:
    root, env = team_dir
    res = rag(["assistants", "list", "--json", "--user", "alice"], root, env)
    assert res.returncode == 0, res.stderr
    assert [a["name"] for a in json.loads(res.stdout)] == ["Слова", "Юрист"]
    shown = json.loads(rag(["assistants", "show", "Юрист", "--json", "--user", "alice"], root, env).stdout)
    assert (shown["provider"], shown["top_k"], shown["method"], shown["published"]) == (
        "offline",
        3,
        "hybrid",
        False,
    )
    # Bob sees none of alice's, cannot delete them, cannot publish.
    assert json.loads(rag(["assistants", "list", "--json", "--user", "bob"], root, env).stdout) == []
    denied = rag(["assistants", "delete", "Юрист", "--user", "bob"], root, env)
    assert denied.returncode == 2 and "не найден" in denied.stderr
    refused = rag(
        ["assistants", "add", "Всем", "--provider", "offline", "--publish", "--user", "bob"], root, env
    )
    assert refused.returncode == 2 and "администратор" in refused.stderr
    made = rag(["assistants", "add", "Временный", "--provider", "offline", "--user", "bob"], root, env)
    assert made.returncode == 0, made.stderr
    assert rag(["assistants", "delete", "Временный", "--user", "bob"], root, env).returncode == 0
    assert json.loads(rag(["assistants", "list", "--json", "--user", "bob"], root, env).stdout) == []


def test_ask_with_an_assistant_uses_its_settings(team_dir: tuple[Path, dict[str, str]]) -> None:
    root, env = team_dir
    res = rag(["ask", "Какой срок аренды?", "--assistant", "Юрист", "--json", "--user", "alice"], root, env)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert "11 месяцев" in data["answer"] and 0 < len(data["sources"]) <= 3
    missing = rag(["ask", "Какой срок аренды?", "--assistant", "Юрист", "--user", "bob"], root, env)
    assert missing.returncode == 2 and "не найден" in missing.stderr


def test_compare_json_prints_one_object_per_assistant(team_dir: tuple[Path, dict[str, str]]) -> None:
    root, env = team_dir
    res = rag(
        [
            "compare",
            "Какой срок аренды?",
            "--assistant",
            "Юрист",
            "--assistant",
            "Слова",
            "--json",
            "--user",
            "alice",
        ],
        root,
        env,
    )
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [c["assistant"] for c in data] == ["Юрист", "Слова"]
    for column in data:
        assert set(column) == {
            "assistant",
            "answer",
            "sources",
            "first_token_ms",
            "total_ms",
            "tokens_in",
            "tokens_out",
            "cost_rub",
        }
        assert "11 месяцев" in column["answer"] and column["sources"]
        assert column["cost_rub"] == 0.0 and column["total_ms"] >= column["first_token_ms"] > 0
    # The same question through the service the «Сравнение» page runs, with the page's providers:
    # the same answers, sources, tokens and cost (only the times differ from run to run).
    settings = make_settings(root / "data", RAG_AUTH="password")
    lib = open_library(settings)
    try:
        providers = build_providers(
            settings, similarity=embedder_similarity(lib.embedder), glossary=lib.glossary
        )
        lab = open_lab(lib, providers)
        alice = lib.users.by_name("alice")
        ids = [lab.assistants.by_name(n, alice).id for n in ("Юрист", "Слова")]
        direct = [c.as_json() for c in lab.compare.run("Какой срок аренды?", ids, alice).columns]
    finally:
        lib.engine.dispose()
    for got, want in zip(data, direct, strict=True):
        for key in ("assistant", "answer", "tokens_in", "tokens_out", "cost_rub"):
            assert got[key] == want[key], key
        assert [(s["n"], s["chunk_id"], s["filename"]) for s in got["sources"]] == [
            (s["n"], s["chunk_id"], s["filename"]) for s in want["sources"]
        ]
    # Three fragments for «Юрист» (top k 3), keyword search alone for «Слова»: the columns differ.
    assert len(data[0]["sources"]) <= 3


def test_eval_with_assistants_gives_the_figures_of_the_check_service(
    team_dir: tuple[Path, dict[str, str]],
) -> None:
    root, env = team_dir
    res = rag(
        [
            "eval",
            "--assistant",
            "Юрист",
            "--assistant",
            "Слова",
            "--questions",
            str(root / "set.csv"),
            "--json",
            "--user",
            "alice",
        ],
        root,
        env,
    )
    assert res.returncode == 0, res.stderr
    printed = json.loads(res.stdout)
    # The same inputs through the service the «Проверка» page runs.
    settings = make_settings(root / "data", RAG_AUTH="password")
    lib = open_library(settings)
    try:
        lab = open_lab(lib, build_providers(settings))
        alice = lib.users.by_name("alice")
        ids = [lab.assistants.by_name(n, alice).id for n in ("Юрист", "Слова")]
        questions = parse_questions((root / "set.csv").read_bytes(), "set.csv")
        direct = lab.checks.evaluate(questions, ids, alice)
    finally:
        lib.engine.dispose()
    assert [a["assistant"] for a in printed["assistants"]] == ["Юрист", "Слова"]
    for got, want in zip(printed["assistants"], direct["assistants"], strict=True):
        for key in ("questions", "recall@5", "mrr@10", "fact_rate", "abstentions", "errors", "cost_rub"):
            assert got[key] == want[key], key
        assert got["recall@5"] == pytest.approx(0.8)  # the recipe is bob's: not found for alice
    plain = rag(
        ["eval", "--assistant", "Юрист", "--questions", str(root / "set.csv"), "--user", "alice"], root, env
    )
    assert plain.returncode == 0 and "Юрист" in plain.stdout and "R@5" in plain.stdout
