"""``evaluate_corpus`` and ``python -m rag eval --corpus``: a small Russian library built here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rag.cli import build_parser, main
from rag.eval import CorpusQuestion, evaluate_corpus, first_hit, format_corpus_report, load_questions
from rag.search.embedding import Embedder
from rag.search.retrieve import METHODS
from storage import Source
from tests.conftest import make_settings

CONTRACT = (
    "Договор хранения № 17 между ООО «Верхнекамская логистика» и АО «Молочный комбинат».\r\n\r\n"
    "Стоимость хранения одного паллетоместа составляет 38 руб. 50 коп. в сутки.\r\n\r\n"
    "Заказчик оплачивает счета в течение 10 банковских дней."
)
# The look-alike: another company, the same facts with other numbers.
LOOK_ALIKE = (
    "Договор хранения № 85 между ООО «Камский склад» и АО «Новокамский молочный завод».\n\n"
    "Стоимость хранения одного паллетоместа составляет 36 руб. 40 коп. в сутки.\n\n"
    "Заказчик оплачивает счета в течение 15 банковских дней."
)
REGULATIONS = (
    "# Регламент склада\n\n## Датчики\n\nПоверка датчиков температуры проводится один раз в год.\n\n"
    "## Пропуска\n\nПостоянный пропуск выдаётся   на один календарный год отделом охраны.\n"
)
MEMO = "# Pilot service\n\nThe pilot delivery service to Almaty starts on 1 March 2025.\n"

QUESTIONS: list[dict[str, Any]] = [
    {
        "id": "t-1",
        "question": "Как часто проводится поверка датчиков температуры?",
        "lang": "ru",
        "source": "reglament.md",
        "page": None,
        "answer": "один раз в год",
        "kind": "lexical",
    },
    {
        # The answer phrase has «е» and one space where the document has «ё» and three.
        "id": "t-2",
        "question": "На какой срок выдаётся постоянный пропуск?",
        "lang": "ru",
        "source": "reglament.md",
        "page": None,
        "answer": "выдается на один календарный год",
        "kind": "lexical",
        # A second part no fragment answers: the question counts as found, all its parts do not.
        "also": [{"source": "memo.md", "page": None, "answer": "этой фразы нет нигде"}],
    },
    {
        "id": "t-3",
        "question": "Сколько стоит хранение одного паллетоместа в сутки у ООО «Верхнекамская логистика»?",
        "lang": "ru",
        "source": "dogovor_VL.txt",
        "page": None,
        "answer": "38 руб. 50 коп.",
        "kind": "distractor",
        "distractor": {"source": "KSK_dogovor.txt", "page": None, "answer": "36 руб. 40 коп."},
    },
    {
        "id": "t-4",
        "question": "When does the pilot delivery service to Almaty start?",
        "lang": "en",
        "source": "memo.md",
        "page": None,
        "answer": "1 March 2025",
        "kind": "crosslingual",
    },
    {
        "id": "t-5",
        "question": "Кто написал роман «Война и мир»?",
        "lang": "ru",
        "source": None,
        "page": None,
        "answer": None,
        "kind": "unanswerable",
    },
]

TOP_KEYS = {
    "corpus",
    "questions_file",
    "documents",
    "indexed",
    "failed",
    "chunks",
    "embedding_model",
    "reranker",
    "k",
    "methods",
    "rewrite",
    "answer_method",
    "answer_top_k",
    "questions",
    "overall",
    "kinds",
    "per_question",
}
GROUP_KEYS = {"questions", "answerable", "unanswerable", "retrieval", "answer"}
METHOD_KEYS = {"recall@1", "recall@5", "mrr@10", "file@5", "all_parts@5", "query_ms", "query_ms_p95"}
ANSWER_KEYS = {"fact_rate", "all_parts_fact_rate", "false_abstention_rate", "abstention_rate"}
ITEM_KEYS = {
    "id",
    "kind",
    "lang",
    "answerable",
    "rank",
    "file_rank",
    "all_rank",
    "query_ms",
    "fact",
    "abstained",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corpus")
    docs = root / "docs"
    docs.mkdir()
    (docs / "dogovor_VL.txt").write_bytes(CONTRACT.encode("cp1251"))
    (docs / "KSK_dogovor.txt").write_text(LOOK_ALIKE, encoding="utf-8")
    (docs / "reglament.md").write_text(REGULATIONS, encoding="utf-8")
    (docs / "memo.md").write_text(MEMO, encoding="utf-8")
    questions = root / "questions.json"
    questions.write_text(json.dumps(QUESTIONS, ensure_ascii=False), encoding="utf-8")
    return docs, questions


@pytest.fixture(scope="module")
def result(
    corpus: tuple[Path, Path], embedder: Embedder, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    settings = make_settings(tmp_path_factory.mktemp("unused-data-dir"))
    return evaluate_corpus(*corpus, settings, embedder=embedder)


def by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in result["per_question"]}


def assert_shape(result: dict[str, Any], methods: tuple[str, ...]) -> None:
    assert set(result) == TOP_KEYS
    assert result["methods"] == list(methods)
    # Kinds come from the file, in its order.
    assert list(result["kinds"]) == ["lexical", "distractor", "crosslingual", "unanswerable"]
    for group in [result["overall"], *result["kinds"].values()]:
        assert set(group) == GROUP_KEYS
        assert set(group["retrieval"]) == set(methods)
        for m in group["retrieval"].values():
            assert set(m) == METHOD_KEYS
        assert set(group["answer"]) == ANSWER_KEYS
    assert len(result["per_question"]) == len(QUESTIONS)
    for item in result["per_question"]:
        assert set(item) == ITEM_KEYS
        assert set(item["rank"]) == set(item["file_rank"]) == set(item["query_ms"]) == set(methods)


def test_every_documented_key_per_kind_and_overall(result: dict[str, Any], embedder: Embedder) -> None:
    assert_shape(result, METHODS)
    assert result["documents"] == result["indexed"] == 4
    assert result["failed"] == []
    assert result["chunks"] >= 4
    assert result["k"] == 10 and result["answer_method"] == "hybrid"
    assert result["embedding_model"] == embedder.name
    assert result["reranker"] is None  # off by default (RAG_RERANKER)
    assert result["rewrite"] is None  # no remote provider asked for
    counts = {k: (g["questions"], g["answerable"], g["unanswerable"]) for k, g in result["kinds"].items()}
    assert counts == {
        "lexical": (2, 2, 0),
        "distractor": (1, 1, 0),
        "crosslingual": (1, 1, 0),
        "unanswerable": (1, 0, 1),
    }
    assert (result["overall"]["questions"], result["overall"]["answerable"]) == (5, 4)


def test_lexical_question_is_found_at_rank_one_by_keyword(result: dict[str, Any]) -> None:
    items = by_id(result)
    assert items["t-1"]["rank"]["keyword"] == 1
    assert result["kinds"]["lexical"]["retrieval"]["keyword"]["recall@5"] == 1.0
    # Found only because «ё» and runs of spaces are normalised on both sides.
    assert items["t-2"]["rank"]["keyword"] is not None
    # A file-level hit is never worse than a hit that also needs the answer.
    for item in items.values():
        for method in METHODS:
            rank, file_rank = item["rank"][method], item["file_rank"][method]
            if rank is not None:
                assert file_rank is not None and file_rank <= rank


def test_unanswerable_questions_are_left_out_of_retrieval_metrics(result: dict[str, Any]) -> None:
    items = by_id(result)
    assert items["t-5"]["answerable"] is False
    assert all(r is None for r in items["t-5"]["rank"].values())
    for m in result["kinds"]["unanswerable"]["retrieval"].values():
        assert m["recall@1"] is m["recall@5"] is m["mrr@10"] is m["file@5"] is None
    for method in METHODS:
        ranks = [i["rank"][method] for i in items.values() if i["answerable"]]
        assert len(ranks) == 4
        overall = result["overall"]["retrieval"][method]
        assert overall["recall@5"] == round(sum(r is not None and r <= 5 for r in ranks) / 4, 4)
        assert overall["mrr@10"] == round(sum(1 / r for r in ranks if r is not None) / 4, 4)


def test_offline_answer_facts_and_abstentions(result: dict[str, Any]) -> None:
    items = by_id(result)
    # Nothing in the library is about the novel: the offline answer says so, and that counts.
    assert items["t-5"]["abstained"] is True and items["t-5"]["fact"] is None
    assert result["kinds"]["unanswerable"]["answer"]["abstention_rate"] == 1.0
    assert result["overall"]["answer"]["abstention_rate"] == 1.0
    assert result["kinds"]["unanswerable"]["answer"]["fact_rate"] is None
    # The lexical questions are answered with their sentence quoted.
    lexical = result["kinds"]["lexical"]["answer"]
    # t-2's second part is stated nowhere: its fact counts, all its parts do not.
    assert lexical == {
        "fact_rate": 1.0,
        "all_parts_fact_rate": 0.5,
        "false_abstention_rate": 0.0,
        "abstention_rate": None,
    }
    answerable = [i for i in items.values() if i["answerable"]]
    overall = result["overall"]["answer"]
    assert overall["fact_rate"] == round(sum(bool(i["fact"]) for i in answerable) / 4, 4)
    assert overall["false_abstention_rate"] == round(sum(i["abstained"] for i in answerable) / 4, 4)


def test_report_has_a_row_per_kind_and_method(result: dict[str, Any]) -> None:
    text = format_corpus_report(result)
    assert "4/4 documents indexed" in text
    for method in METHODS:
        assert f"retrieval: {method}" in text
    rows = [line.split()[0] for line in text.splitlines() if line and line.split()[0] in result["kinds"]]
    # One row per kind in each method's table and in the answer table.
    assert len(rows) == 4 * (len(METHODS) + 1)
    assert text.count("\noverall") == len(METHODS) + 1


def test_hit_needs_the_file_the_page_and_the_answer() -> None:
    q = CorpusQuestion("p", "?", "table", "ru", "price.pdf", 2, "38 руб. 50 коп.")

    def src(name: str, page: int | None, text: str) -> Source:
        return Source(
            chunk_id=f"{name}{page}{text[:3]}", document_id=name, filename=name, page=page, text=text
        )

    hits = [
        src("other.pdf", 2, "38 руб. 50 коп."),  # the look-alike file
        src("price.pdf", 1, "38 РУБ.  50 коп."),  # the right answer on the wrong page
        src("price.pdf", 2, "Хранение: 40 руб."),  # the right page without the answer
        src("price.pdf", 2, "Хранение: 38 руб.\n50 коп. в сутки"),
    ]
    assert first_hit(hits, q, need_answer=True) == 4
    assert first_hit(hits, q, need_answer=False) == 2
    unanswerable = CorpusQuestion("u", "?", "unanswerable", "ru", None, None, None)
    assert first_hit(hits, unanswerable, need_answer=True) is None


def test_questions_that_name_missing_files_are_refused(tmp_path: Path, corpus: tuple[Path, Path]) -> None:
    bad = tmp_path / "q.json"
    bad.write_text(json.dumps([{**QUESTIONS[0], "source": "nowhere.txt"}]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"nowhere\.txt"):
        evaluate_corpus(corpus[0], bad, make_settings(tmp_path))
    bad.write_text(json.dumps([{"id": "x"}]), encoding="utf-8")
    with pytest.raises(ValueError, match="схеме"):
        load_questions(bad)


def test_dataset_and_corpus_modes_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "--dataset", "x.json", "--corpus", "docs"])
    with pytest.raises(SystemExit):
        parser.parse_args(["eval"])
    args = parser.parse_args(["eval", "--dataset", "x.json"])
    assert (args.dataset, args.level, args.corpus) == ("x.json", "chunk", None)
    assert main(["eval", "--corpus", "docs"]) == 2
    assert "--questions" in capsys.readouterr().err


def test_cli_prints_the_json(
    corpus: tuple[Path, Path], tmp_path: Path, child_env: dict[str, str], result: dict[str, Any]
) -> None:
    docs, questions = corpus
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rag",
            "eval",
            "--corpus",
            str(docs),
            "--questions",
            str(questions),
            "--method",
            "keyword",
            "--json",
        ],
        cwd=tmp_path,  # no developer .env is read
        env=child_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert_shape(out, ("keyword",))
    # Keyword search is deterministic: the child ranks exactly as the in-process run.
    assert [i["rank"] for i in out["per_question"]] == [
        {"keyword": i["rank"]["keyword"]} for i in result["per_question"]
    ]
    assert "индексация 1/4" in proc.stderr


def test_a_question_with_parts_counts_in_all_parts_only_when_every_part_is_found(
    result: dict[str, Any],
) -> None:
    items = by_id(result)
    for method in result["methods"]:
        assert items["t-2"]["rank"][method] is not None
        assert items["t-2"]["all_rank"][method] is None
        for qid in ("t-1", "t-3", "t-4"):  # one part: the same rank
            assert items[qid]["all_rank"][method] == items[qid]["rank"][method]
        m = result["overall"]["retrieval"][method]
        assert m["all_parts@5"] < m["recall@5"]
    answers = result["overall"]["answer"]
    assert answers["all_parts_fact_rate"] == round(answers["fact_rate"] - 1 / 4, 4)


def test_the_query_rewrite_of_a_remote_provider_is_scored_as_one_more_method(
    corpus: tuple[Path, Path], embedder: Embedder, tmp_path: Path
) -> None:
    from tests.contract import fake_openai
    from tests.contract.harness import is_rewrite

    with fake_openai.make_case(tmp_path) as case:
        settings = make_settings(tmp_path / "unused")
        report = evaluate_corpus(
            *corpus, settings, methods=("hybrid",), embedder=embedder, rewrite=(case.provider, case.model)
        )
        rewrites = [r for r in case.fake.requests if is_rewrite(r.messages)]
    assert report["methods"] == ["hybrid", "hybrid+rewrite"]
    assert report["rewrite"] == {"provider": "openai", "model": case.model}
    assert set(report["overall"]["retrieval"]) == {"hybrid", "hybrid+rewrite"}
    # Each question went to the model (through the real SDK) once, as chat would send it.
    questions = [q["question"] for q in QUESTIONS]
    assert len(rewrites) == len(questions)
    assert all(any(q in r.messages[-1][1] for r in rewrites) for q in questions)
    # The fake echoes each question as its rewrite: searching with it is searching with the question.
    for item in report["per_question"]:
        assert item["rank"]["hybrid+rewrite"] == item["rank"]["hybrid"], item


def test_rewrite_needs_a_corpus_and_a_configured_provider(
    corpus: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["eval", "--dataset", "x.json", "--rewrite", "openai"]) == 2
    assert "--rewrite идут только вместе с --corpus" in capsys.readouterr().err
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(corpus[0].parent)  # no developer .env
    docs, questions = corpus
    assert main(["eval", "--corpus", str(docs), "--questions", str(questions), "--rewrite", "openai"]) == 2
    assert "OpenAI-совместимый: не настроен: укажите OPENAI_BASE_URL" in capsys.readouterr().err
