"""Evaluation through the app's real pipeline (chunker, FTS5 keyword index, Chroma vectors).

Two modes share it:

- SQuAD-format data (XQuAD), ``evaluate``: each paragraph is indexed as its own document; at
  paragraph level a hit is any chunk of the right paragraph, at chunk level it must also contain
  the answer text. Recall@1, recall@5, MRR@10, query time.
- A folder of real documents with a questions file (``../shared/eval/ru-docs-dev/``),
  ``evaluate_corpus``: every file is ingested as a user would upload it (all formats, OCR), every
  question goes through each retrieval method and through the offline extractive answer; the
  figures are reported per question kind and overall.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from providers.base import GenerationParams, Provider
from providers.offline import MODEL_ID as OFFLINE_MODEL
from providers.offline import NO_FRAGMENTS, NOTHING_FOUND, OfflineProvider, embedder_similarity
from rag.answer.pipeline import answer, fused_search, search_queries
from rag.library import Library, open_library
from rag.search.embedding import Embedder
from rag.search.retrieve import METHODS, Method
from rag.search.rewrite import QueryRewriter, rewriter_from
from settings import Settings
from storage import Source

Level = Literal["paragraph", "chunk"]


@dataclass(frozen=True)
class Question:
    """A question with its paragraph index and accepted answers."""

    text: str
    paragraph: int
    answers: tuple[str, ...]


def load_squad(path: Path) -> tuple[list[str], list[Question]]:
    """Paragraph texts and questions from a SQuAD v1.1 JSON file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    paragraphs: list[str] = []
    questions: list[Question] = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            idx = len(paragraphs)
            paragraphs.append(para["context"])
            for qa in para["qas"]:
                answers = tuple(a["text"] for a in qa.get("answers", []) if a.get("text"))
                questions.append(Question(qa["question"], idx, answers))
    return paragraphs, questions


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def evaluate(
    dataset: Path,
    level: Level = "chunk",
    methods: tuple[Method, ...] = METHODS,
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Index the dataset in a temporary library and score each retrieval method."""
    paragraphs, questions = load_squad(dataset)
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        base = settings or Settings()
        cfg = base.model_copy(update={"data_dir": Path(tmp), "database_url": None})
        lib = open_library(cfg, embedder=embedder, recover=False)
        doc_to_para = _index_paragraphs(lib, paragraphs, progress)
        chunk_words = [len(c.text.split()) for d in doc_to_para for c in lib.docs.chunks(d)]
        result: dict[str, object] = {
            "dataset": dataset.name,
            "level": level,
            "paragraphs": len(paragraphs),
            "questions": len(questions),
            "chunks": len(chunk_words),
            "mean_chunk_words": round(statistics.fmean(chunk_words), 1),
            "max_chunk_words": max(chunk_words),
            "embedding_model": lib.embedding_model,
            "reranker": cfg.reranker.strip() or None,
            "methods": {},
        }
        methods_out: dict[str, dict[str, float]] = {}
        for method in methods:
            if progress:
                progress(f"оценка: {method}")
            methods_out[method] = _score(lib, questions, doc_to_para, level, method)
        result["methods"] = methods_out
        lib.engine.dispose()
        return result


def _index_paragraphs(
    lib: Library, paragraphs: list[str], progress: Callable[[str], None] | None
) -> dict[str, int]:
    doc_to_para: dict[str, int] = {}
    with lib.docs.keyword_batch():
        for i, text in enumerate(paragraphs):
            res = lib.ingest(f"paragraph-{i:04d}.txt", text.encode("utf-8"))
            if res.document is None or res.status == "failed":
                raise RuntimeError(f"paragraph {i} failed to index: {res.message}")
            doc_to_para[res.document.id] = i
            if progress and (i + 1) % 40 == 0:
                progress(f"проиндексировано абзацев: {i + 1}/{len(paragraphs)}")
    return doc_to_para


def _score(
    lib: Library,
    questions: list[Question],
    doc_to_para: dict[str, int],
    level: Level,
    method: Method,
) -> dict[str, float]:
    r1 = r5 = rr = 0.0
    times: list[float] = []
    for q in questions:
        t0 = time.perf_counter()
        hits = lib.retriever.search(q.text, k=10, method=method)
        times.append(time.perf_counter() - t0)
        rank = None
        for pos, hit in enumerate(hits, start=1):
            if doc_to_para.get(hit.document_id) != q.paragraph:
                continue
            if level == "chunk" and not any(_norm(a) in _norm(hit.text) for a in q.answers):
                continue
            rank = pos
            break
        if rank is not None:
            r1 += rank == 1
            r5 += rank <= 5
            rr += 1.0 / rank
    n = len(questions) or 1
    return {
        "recall@1": round(r1 / n, 4),
        "recall@5": round(r5 / n, 4),
        "mrr@10": round(rr / n, 4),
        "query_ms": round(1000 * statistics.fmean(times), 2) if times else 0.0,
    }


# -- a folder of real documents with a questions file ---------------------------------------

# Retrieval depth for R@k and MRR@10; the offline answer uses the app's own top_k instead.
CORPUS_K = 10
# The offline answer is scored on the method the app uses.
ANSWER_METHOD: Method = "hybrid"


@dataclass(frozen=True)
class CorpusQuestion:
    """A question about a document folder; ``answer`` is None when no document answers it."""

    id: str
    text: str
    kind: str
    lang: str
    source: str | None
    page: int | None
    answer: str | None
    # The other parts of a question that asks several things: (source, page, answer) each.
    also: tuple[tuple[str, int | None, str], ...] = ()

    @property
    def parts(self) -> list[CorpusQuestion]:
        """The question once per part it asks (itself alone when it asks one thing)."""
        others = [CorpusQuestion(self.id, self.text, self.kind, self.lang, *part) for part in self.also]
        return [self, *others]

    @property
    def answerable(self) -> bool:
        """Whether some document holds the answer."""
        return self.answer is not None and self.source is not None


@dataclass
class _Outcome:
    """What happened to one question: ranks per method, query times, the offline answer."""

    question: CorpusQuestion
    rank: dict[str, int | None]  # first hit among the top CORPUS_K, 1-based
    file_rank: dict[str, int | None]  # first fragment of the right file
    all_rank: dict[str, int | None]  # the rank by which every part has had its hit (None: some never)
    seconds: dict[str, float]
    fact: bool | None  # None for unanswerable questions
    abstained: bool
    all_facts: bool | None = None  # every part's answer stated (= fact for a one-part question)


def norm_answer(text: str) -> str:
    """Lowercase, ё as е, whitespace collapsed: how answers and fragments are compared."""
    return " ".join(text.lower().replace("ё", "е").split())


def load_questions(path: Path) -> list[CorpusQuestion]:
    """Questions from a JSON list in the ru-docs-dev schema (id, question, kind, source, page, answer)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: ожидается JSON-список вопросов")
    out: list[CorpusQuestion] = []
    for i, item in enumerate(data):
        try:
            page = item.get("page")
            out.append(
                CorpusQuestion(
                    id=str(item.get("id") or f"q{i + 1}"),
                    text=str(item["question"]),
                    kind=str(item.get("kind") or "unknown"),
                    lang=str(item.get("lang") or ""),
                    source=item.get("source") or None,
                    page=int(page) if page is not None else None,
                    answer=item.get("answer") or None,
                    also=tuple(_part(a) for a in item.get("also") or []),
                )
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: вопрос №{i + 1} не по схеме ({exc})") from exc
    return out


def _part(item: dict[str, Any]) -> tuple[str, int | None, str]:
    page = item.get("page")
    return str(item["source"]), int(page) if page is not None else None, str(item["answer"])


def corpus_files(corpus: Path) -> list[Path]:
    """Every file of the folder (subfolders included, hidden files skipped), in name order."""
    return sorted(
        p
        for p in corpus.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(corpus).parts)
    )


def evaluate_corpus(
    corpus: Path,
    questions: Path,
    settings: Settings,
    methods: tuple[Method, ...] = METHODS,
    embedder: Embedder | None = None,
    progress: Callable[[str], None] | None = None,
    rewrite: tuple[Provider, str] | None = None,
) -> dict[str, Any]:
    """Ingest a document folder in a temporary library; score retrieval and the offline answer.

    ``rewrite``: a remote provider and model whose query rewrite (RAG_REWRITE) is scored as one
    more method, ``hybrid+rewrite``: the rewrites and the question searched and fused, as in chat.
    """
    say = progress or (lambda _text: None)
    qs = load_questions(questions)
    files = corpus_files(corpus)
    names = {f.name for f in files}
    # A questions file that does not match the folder would score zero everywhere: refuse early.
    unknown = sorted({q.source for q in qs if q.source and q.source not in names})
    if unknown:
        raise ValueError(f"в папке {corpus} нет файлов, на которые ссылаются вопросы: {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        cfg = settings.model_copy(update={"data_dir": Path(tmp), "database_url": None})
        lib = open_library(cfg, embedder=embedder, recover=False)
        try:
            chunks, failed = _ingest_corpus(lib, files, say)
            scored: tuple[str, ...] = (*methods, REWRITE_METHOD) if rewrite else methods
            outcomes = _ask_all(lib, qs, scored, cfg.top_k, say, _rewriting(rewrite, cfg))
            model = lib.embedding_model
        finally:
            lib.engine.dispose()
    kinds = list(dict.fromkeys(q.kind for q in qs))  # in the file's order
    return {
        "corpus": str(corpus),
        "questions_file": str(questions),
        "documents": len(files),
        "indexed": len(files) - len(failed),
        "failed": failed,
        "chunks": chunks,
        "embedding_model": model,
        "reranker": settings.reranker.strip() or None,
        "k": CORPUS_K,
        "methods": list(scored),
        "rewrite": {"provider": rewrite[0].name, "model": rewrite[1]} if rewrite else None,
        "answer_method": ANSWER_METHOD,
        "answer_top_k": cfg.top_k,
        "questions": len(qs),
        "overall": _aggregate(outcomes, scored),
        "kinds": {
            kind: _aggregate([o for o in outcomes if o.question.kind == kind], scored) for kind in kinds
        },
        "per_question": [_outcome_json(o, scored) for o in outcomes],
    }


def _ingest_corpus(
    lib: Library, files: list[Path], say: Callable[[str], None]
) -> tuple[int, list[dict[str, str]]]:
    chunks = 0
    failed: list[dict[str, str]] = []
    with lib.docs.keyword_batch():
        for i, path in enumerate(files, start=1):
            say(f"индексация {i}/{len(files)}: {path.name}")
            res = lib.ingest(path.name, path.read_bytes())
            if res.status == "indexed" and res.document is not None:
                chunks += res.document.chunk_count
            else:
                # Kept going: the questions on the other files still tell something, and the
                # failure is reported next to the figures it lowers.
                failed.append({"file": path.name, "status": res.status, "message": res.message or ""})
                say(f"не проиндексирован: {path.name}: {res.message}")
    return chunks, failed


# The query rewrite's method in a corpus report: hybrid search with the model's rewrites fused.
REWRITE_METHOD = "hybrid+rewrite"


def _rewriting(rewrite: tuple[Provider, str] | None, settings: Settings) -> Callable[[str], list[str]] | None:
    """The queries chat would search a question with, through the given provider's rewrite."""
    if rewrite is None:
        return None
    provider, model = rewrite
    rewriter = rewriter_from(settings.model_copy(update={"rewrite": True})) or QueryRewriter()
    return lambda question: search_queries(question, [], provider, model, rewriter)


def _ask_all(
    lib: Library,
    questions: list[CorpusQuestion],
    methods: tuple[str, ...],
    top_k: int,
    say: Callable[[str], None],
    rewriting: Callable[[str], list[str]] | None = None,
) -> list[_Outcome]:
    provider = OfflineProvider(embedder_similarity(lib.embedder), lib.glossary)
    params = GenerationParams()
    outcomes: list[_Outcome] = []
    for i, q in enumerate(questions, start=1):
        if i % 20 == 0 or i == len(questions):
            say(f"вопросы: {i}/{len(questions)}")
        rank: dict[str, int | None] = {}
        file_rank: dict[str, int | None] = {}
        all_rank: dict[str, int | None] = {}
        seconds: dict[str, float] = {}
        for method in methods:
            t0 = time.perf_counter()
            if method == REWRITE_METHOD and rewriting is not None:
                hits = fused_search(lib.retriever, rewriting(q.text), CORPUS_K)
            else:
                hits = lib.retriever.search(q.text, k=CORPUS_K, method=cast(Method, method))
            seconds[method] = time.perf_counter() - t0
            rank[method] = first_hit(hits, q, need_answer=True)
            part_ranks = [first_hit(hits, part, need_answer=True) for part in q.parts]
            all_rank[method] = None if None in part_ranks else max(r for r in part_ranks if r is not None)
            file_rank[method] = first_hit(hits, q, need_answer=False)
        prepared = answer(lib.retriever, provider, q.text, OFFLINE_MODEL, params, top_k=top_k)
        for _ in prepared.completion:  # the text accumulates in completion.text
            pass
        text = prepared.completion.text
        abstained = text.strip() in (NOTHING_FOUND, NO_FRAGMENTS)
        fact = norm_answer(q.answer) in norm_answer(text) if q.answerable and q.answer else None
        all_facts = fact and all(norm_answer(p.answer) in norm_answer(text) for p in q.parts if p.answer)
        outcomes.append(_Outcome(q, rank, file_rank, all_rank, seconds, fact, abstained, all_facts))
    return outcomes


def first_hit(hits: list[Source], q: CorpusQuestion, need_answer: bool) -> int | None:
    """1-based rank of the first fragment of the question's file (need_answer: page and answer too)."""
    if not q.answerable or q.answer is None:
        return None
    want = norm_answer(q.answer)
    for pos, hit in enumerate(hits, start=1):
        if hit.filename != q.source:
            continue
        if need_answer and ((q.page is not None and hit.page != q.page) or want not in norm_answer(hit.text)):
            continue
        return pos
    return None


def _within(rank: int | None, k: int) -> bool:
    return rank is not None and rank <= k


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _p95(values: list[float]) -> float:
    # Nearest-rank percentile: always one of the measured times, never interpolated.
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _aggregate(outcomes: list[_Outcome], methods: tuple[str, ...]) -> dict[str, Any]:
    answerable = [o for o in outcomes if o.question.answerable]
    unanswerable = [o for o in outcomes if not o.question.answerable]
    n = len(answerable)
    per_method: dict[str, dict[str, float | None]] = {}
    for method in methods:
        ranks = [o.rank[method] for o in answerable]
        times = [1000 * o.seconds[method] for o in outcomes]
        per_method[method] = {
            "recall@1": _rate(sum(r == 1 for r in ranks), n),
            "recall@5": _rate(sum(r is not None and r <= 5 for r in ranks), n),
            "mrr@10": round(sum(1.0 / r for r in ranks if r is not None) / n, 4) if n else None,
            "file@5": _rate(sum((r := o.file_rank[method]) is not None and r <= 5 for o in answerable), n),
            # Every part of a question that asks several things in the top 5 (= recall@5 otherwise).
            "all_parts@5": _rate(sum(_within(o.all_rank[method], 5) for o in answerable), n),
            "query_ms": round(statistics.fmean(times), 2) if times else None,
            "query_ms_p95": round(_p95(times), 2) if times else None,
        }
    return {
        "questions": len(outcomes),
        "answerable": n,
        "unanswerable": len(unanswerable),
        "retrieval": per_method,
        "answer": {
            "fact_rate": _rate(sum(bool(o.fact) for o in answerable), n),
            # Every part of a question that asks several things stated (= fact_rate otherwise).
            "all_parts_fact_rate": _rate(sum(bool(o.all_facts) for o in answerable), n),
            "false_abstention_rate": _rate(sum(o.abstained for o in answerable), n),
            "abstention_rate": _rate(sum(o.abstained for o in unanswerable), len(unanswerable)),
        },
    }


def _outcome_json(o: _Outcome, methods: tuple[str, ...]) -> dict[str, Any]:
    return {
        "id": o.question.id,
        "kind": o.question.kind,
        "lang": o.question.lang,
        "answerable": o.question.answerable,
        "rank": {m: o.rank[m] for m in methods},
        "file_rank": {m: o.file_rank[m] for m in methods},
        "all_rank": {m: o.all_rank[m] for m in methods},
        "query_ms": {m: round(1000 * o.seconds[m], 2) for m in methods},
        "fact": o.fact,
        "abstained": o.abstained,
    }


def format_corpus_report(result: dict[str, Any]) -> str:
    """The result of ``evaluate_corpus`` as plain-text tables: retrieval per method, then answers."""

    def num(value: float | None, width: int, digits: int = 3) -> str:
        return f"{'—':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    groups: list[tuple[str, dict[str, Any]]] = [*result["kinds"].items(), ("overall", result["overall"])]
    lines = [
        f"{result['corpus']}: {result['indexed']}/{result['documents']} documents indexed, "
        f"{result['chunks']} chunks, {result['questions']} questions, embedder {result['embedding_model']}"
    ]
    lines += [f"  not indexed: {f['file']} ({f['status']}): {f['message']}" for f in result["failed"]]
    for method in result["methods"]:
        lines += ["", f"retrieval: {method} (k={result['k']}; R@k and MRR over answerable questions)"]
        lines.append(
            f"{'kind':<14}{'n':>4}{'R@1':>8}{'R@5':>8}{'MRR@10':>8}{'file@5':>8}{'ms':>8}{'p95 ms':>8}"
        )
        for kind, g in groups:
            m = g["retrieval"][method]
            lines.append(
                f"{kind:<14}{g['answerable']:>4}{num(m['recall@1'], 8)}{num(m['recall@5'], 8)}"
                f"{num(m['mrr@10'], 8)}{num(m['file@5'], 8)}{num(m['query_ms'], 8, 1)}"
                f"{num(m['query_ms_p95'], 8, 1)}"
            )
    lines += [
        "",
        f"offline answer ({result['answer_method']}, top {result['answer_top_k']}): facts and false "
        "abstentions over answerable, abstentions over unanswerable",
        f"{'kind':<14}{'n':>4}{'facts':>8}{'f.abst':>8}{'unans':>6}{'abst':>8}",
    ]
    for kind, g in groups:
        a = g["answer"]
        lines.append(
            f"{kind:<14}{g['answerable']:>4}{num(a['fact_rate'], 8)}{num(a['false_abstention_rate'], 8)}"
            f"{g['unanswerable']:>6}{num(a['abstention_rate'], 8)}"
        )
    return "\n".join(lines)
