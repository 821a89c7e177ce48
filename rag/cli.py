"""Command line: ``python -m rag ingest|ask|eval|check|reembed``, sharing the app's data directory."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from providers import PROVIDER_NAMES, ProviderError, build_providers
from providers.offline import embedder_similarity
from rag.chat import ChatService, TurnChoice
from rag.eval import evaluate, evaluate_corpus, format_corpus_report
from rag.ingest import SUPPORTED_EXTENSIONS
from rag.library import Library, open_library, too_large_message
from rag.pipeline import answer
from rag.retrieve import METHODS
from rag.rewrite import rewriter_from
from settings import Settings
from storage import NotFoundError


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    if getattr(args, "data_dir", None):
        settings = settings.model_copy(update={"data_dir": Path(args.data_dir)})
    return settings


def _files(paths: Sequence[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and f.suffix.lower() in SUPPORTED_EXTENSIONS:
                    yield f
        else:
            yield path


def cmd_ingest(args: argparse.Namespace) -> int:
    """Index files and folders; exit 1 if any failed."""
    lib = open_library(_settings(args))
    failed = 0
    for path in _files(args.paths):
        if not path.exists():
            print(f"failed: {path}: файл не найден")
            failed += 1
            continue
        size = path.stat().st_size
        if size > lib.settings.max_file_bytes:
            # Refused before reading: a 200 MB file must not be loaded into memory first.
            print(f"failed: {path}: {too_large_message(path.name, size, lib.settings)}")
            failed += 1
            continue
        res = lib.ingest(path.name, path.read_bytes())
        if res.status == "indexed" and res.document is not None:
            doc = res.document
            print(f"indexed: {path} ({doc.chunk_count} chunks, {doc.encoding or doc.mime_type})")
        elif res.status == "duplicate":
            print(f"duplicate: {path}")
        else:
            failed += 1
            print(f"failed: {path}: {res.message}")
    return 1 if failed else 0


def cmd_ask(args: argparse.Namespace) -> int:
    """Answer a question from the index; with ``--chat`` the exchange is stored in that chat."""
    settings = _settings(args)
    lib = open_library(settings)
    providers = build_providers(settings, similarity=embedder_similarity(lib.embedder))
    provider = providers[args.provider]
    status = provider.status()
    if not status.available:
        print(f"{provider.label}: {status.reason}", file=sys.stderr)
        return 2
    choice = TurnChoice(
        provider=provider.name,
        model=args.model or provider.models()[0].id,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
    )
    chat_id: str | None = None
    rewriter = rewriter_from(settings)
    if args.chat:
        service = ChatService(
            lib.chats,
            lib.retriever,
            providers,
            top_k=args.top_k,
            history_turns=settings.history_turns,
            rewriter=rewriter,
        )
        if args.chat != "new":
            try:
                lib.chats.get(args.chat)
            except NotFoundError:
                print(f"Чат {args.chat} не найден: укажите id из списка чатов или new.", file=sys.stderr)
                return 2
        turn = service.ask(None if args.chat == "new" else args.chat, args.question, choice)
        chat_id = turn.chat.id
        turn.prepare()
        text, error = _print_stream(turn.deltas(), quiet=args.json), turn.error
        sources = turn.sources
    else:
        prepared = answer(
            lib.retriever,
            provider,
            args.question,
            choice.model,
            choice.params(),
            top_k=args.top_k,
            rewriter=rewriter,
        )
        sources = prepared.sources
        try:
            text, error = _print_stream(prepared.completion, quiet=args.json), None
        except ProviderError as exc:
            text, error = prepared.completion.text, exc.user_message
    if error:
        print(error, file=sys.stderr)
    if args.json:
        out: dict[str, object] = {
            "answer": text,
            "provider": provider.name,
            "model": choice.model,
            "sources": [s.model_dump(mode="json") for s in sources],
        }
        if chat_id is not None:
            out["chat_id"] = chat_id
        print(json.dumps(out, ensure_ascii=False))
    else:
        print("\n\nИсточники:")
        for src in sources:
            page = f", стр. {src.page}" if src.page else ""
            page += ", OCR" if src.ocr else ""
            print(f"[{src.n}] {src.filename}{page} (score {src.score:.3f})")
        if chat_id is not None:
            print(f"Чат: {chat_id}")
    return 1 if error else 0


def _print_stream(deltas: Iterable[str], quiet: bool) -> str:
    """Print the deltas as they arrive (unless ``quiet``); the whole text."""
    parts = []
    for delta in deltas:
        parts.append(delta)
        if not quiet:
            print(delta, end="", flush=True)
    return "".join(parts)


def cmd_eval(args: argparse.Namespace) -> int:
    """Retrieval quality on a SQuAD-format dataset, or on a document folder with its questions."""
    methods = (args.method,) if args.method else METHODS
    if args.corpus:
        corpus, questions = Path(args.corpus), Path(args.questions or "")
        if not args.questions:
            print("--corpus требует --questions FILE.", file=sys.stderr)
            return 2
        if not corpus.is_dir() or not questions.is_file():
            print(f"Нет папки {corpus} или файла {questions}.", file=sys.stderr)
            return 2
        report = evaluate_corpus(
            corpus, questions, Settings(), methods=methods, progress=lambda s: print(s, file=sys.stderr)
        )
        print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else format_corpus_report(report))
        return 0
    if args.questions:
        print("--questions идёт только вместе с --corpus.", file=sys.stderr)
        return 2
    result = evaluate(
        Path(args.dataset),
        level=args.level,
        methods=methods,
        settings=Settings(),
        progress=lambda s: print(s, file=sys.stderr),
    )
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    print(
        f"{result['dataset']}: {result['paragraphs']} paragraphs, {result['questions']} questions, "
        f"{result['chunks']} chunks, mean chunk {result['mean_chunk_words']} words "
        f"(max {result['max_chunk_words']}), level {result['level']}, "
        f"embedder {result['embedding_model']}"
    )
    print(f"{'method':<10}{'R@1':>8}{'R@5':>8}{'MRR@10':>8}{'ms':>8}")
    methods_out = result["methods"]
    assert isinstance(methods_out, dict)
    for name, m in methods_out.items():
        print(f"{name:<10}{m['recall@1']:>8.3f}{m['recall@5']:>8.3f}{m['mrr@10']:>8.3f}{m['query_ms']:>8.1f}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Consistency check of SQL, keyword rows and vectors (``--repair`` fixes)."""
    lib: Library = open_library(_settings(args), recover=False)
    report = lib.check(repair=args.repair)
    print(json.dumps(report.__dict__ | {"ok": report.ok}, ensure_ascii=False, indent=2))
    return 0 if report.ok or args.repair else 1


def cmd_reembed(args: argparse.Namespace) -> int:
    """Re-embed documents made with another embedding model."""
    lib = open_library(_settings(args))
    n = lib.reembed(lambda f, t: print(t, file=sys.stderr))
    print(f"re-embedded {n} documents with {lib.embedding_signature}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m rag``."""
    p = argparse.ArgumentParser(prog="python -m rag", description="Multimodal RAG RU: CLI")
    sub = p.add_subparsers(dest="command", required=True)

    ing = sub.add_parser("ingest", help="index files or folders")
    ing.add_argument("paths", nargs="+")
    ing.add_argument("--data-dir")
    ing.set_defaults(func=cmd_ingest)

    ask = sub.add_parser("ask", help="answer a question from the index")
    ask.add_argument("question")
    ask.add_argument("--data-dir")
    ask.add_argument("--provider", choices=PROVIDER_NAMES, default="offline")
    ask.add_argument("--model")
    ask.add_argument("--temperature", type=float, default=0.3)
    ask.add_argument("--max-tokens", type=int, default=1024)
    ask.add_argument("--top-k", type=int, default=5)
    ask.add_argument("--json", action="store_true")
    ask.add_argument("--chat", metavar="ID|new", help="store the exchange in this chat (new: a new chat)")
    ask.set_defaults(func=cmd_ask)

    ev = sub.add_parser(
        "eval", help="retrieval evaluation on a SQuAD-format file or on a document folder with questions"
    )
    mode = ev.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dataset", help="SQuAD v1.1 JSON (XQuAD): each paragraph indexed as a document")
    mode.add_argument("--corpus", metavar="DIR", help="folder of documents, every file ingested as uploaded")
    ev.add_argument("--questions", metavar="FILE", help="questions about --corpus (ru-docs-dev schema)")
    ev.add_argument("--level", choices=("paragraph", "chunk"), default="chunk", help="--dataset only")
    ev.add_argument("--method", choices=METHODS)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_eval)

    chk = sub.add_parser("check", help="consistency check of the index")
    chk.add_argument("--data-dir")
    chk.add_argument("--repair", action="store_true")
    chk.set_defaults(func=cmd_check)

    re_ = sub.add_parser("reembed", help="re-embed documents after changing RAG_EMBEDDING_MODEL")
    re_.add_argument("--data-dir")
    re_.set_defaults(func=cmd_reembed)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:  # pydantic validation of CLI numbers
        print(f"Ошибка в параметрах: {exc}", file=sys.stderr)
        return 2
