"""The lab's commands: ``rag assistants add|list|show|delete``, ``rag compare``, ``rag eval --assistant``.

They act as ``--user NAME`` (the local admin when RAG_AUTH=none) through the same services
as the pages, so they see and count exactly what that user sees on the pages.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from providers import PROVIDER_NAMES, build_providers
from providers.offline import embedder_similarity
from rag.answer.chat import TurnChoice
from rag.lab.assistants import AssistantSpec, settings_of
from rag.lab.checks import parse_questions
from rag.lab.prices import PRICES_READ
from rag.lab.services import Lab, open_lab
from rag.search.retrieve import METHODS
from storage import NotFoundError
from storage.models import User

if TYPE_CHECKING:
    from rag.library import Library


# The main CLI (rag.cli: settings, the acting user, CliError), handed over by add_lab_commands:
# that module imports this one, and importing it back would make a circle.
_CORE: list[Any] = []


def _core() -> Any:
    if not _CORE:
        raise RuntimeError("add_lab_commands(sub, core) was not called")
    return _CORE[0]


def _lab(args: argparse.Namespace) -> tuple[Library, Lab, User]:
    core = _core()
    from rag.library import open_library

    settings = core._settings(args)
    lib = open_library(settings)
    user = core._acting_user(lib, args.user)
    providers = build_providers(settings, similarity=embedder_similarity(lib.embedder), glossary=lib.glossary)
    return lib, open_lab(lib, providers), user


def _assistant_named(lab: Lab, name: str, user: User) -> Any:
    try:
        return lab.assistants.by_name(name, user)
    except NotFoundError:
        raise _core().CliError(f"Ассистент «{name}» не найден.") from None


def _assistant_choice(lib: Library, name: str, user: User) -> tuple[TurnChoice, str | None]:
    """``rag ask --assistant NAME``: the assistant's turn settings for this user, and its note."""
    from rag.lab.assistants import AssistantService

    service = AssistantService(lib.engine, lib.access, lib.actor)
    try:
        found = service.by_name(name, user)
    except NotFoundError:
        raise _core().CliError(f"Ассистент «{name}» не найден.") from None
    return service.choice(found, user)


def _collection_ids(lib: Library, user: User, names: list[str] | None) -> list[str] | None:
    if not names:
        return None
    readable = lib.access.readable(user)
    out = []
    for name in names:
        found = [c for c in readable if c.name == name.strip()]
        if not found:
            raise _core().CliError(f"Коллекция «{name}» не найдена.")
        own = [c for c in found if c.owner_id == user.id]
        out.append((own or found)[0].id)
    return out


def cmd_assistants_add(args: argparse.Namespace) -> int:
    """Save an assistant (``--publish``: for everyone; admins only)."""
    lib, lab, user = _lab(args)
    spec = AssistantSpec(
        name=args.name,
        description=args.description or "",
        provider=args.provider,
        model=args.model or "",
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        system_prompt=args.system_prompt or "",
        collection_ids=_collection_ids(lib, user, args.collection),
        method=args.method,
        top_k=args.top_k,
        use_documents=not args.no_documents,
        rewrite=not args.no_rewrite,
    )
    made = lab.assistants.create(spec, user, publish=args.publish)
    kind = "опубликован для всех" if made.published else "личный"
    print(f"Ассистент «{made.name}» сохранён ({kind}).")
    return 0


def cmd_assistants_list(args: argparse.Namespace) -> int:
    """The user's own assistants and the published ones."""
    _lib, lab, user = _lab(args)
    found = lab.assistants.list_for(user)
    if args.json:
        print(json.dumps([settings_of(a) for a in found], ensure_ascii=False, indent=2))
        return 0
    if not found:
        print("Ассистентов нет.")
    for a in found:
        kind = "опубликован" if a.published else "личный"
        print(
            f"{a.name}\t{a.provider} · {a.model or 'модель по умолчанию'}\t{a.method}, top {a.top_k}\t{kind}"
        )
    return 0


def cmd_assistants_show(args: argparse.Namespace) -> int:
    """One assistant's settings."""
    _lib, lab, user = _lab(args)
    found = _assistant_named(lab, args.name, user)
    data = settings_of(found)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    for key, value in data.items():
        print(f"{key}: {value}")
    return 0


def cmd_assistants_delete(args: argparse.Namespace) -> int:
    """Delete an assistant (its owner; a published one: an admin)."""
    _lib, lab, user = _lab(args)
    found = _assistant_named(lab, args.name, user)
    lab.assistants.delete(found.id, user)
    print(f"Ассистент «{found.name}» удалён.")
    return 0


def _figures_line(c: Any) -> str:
    def ms(v: float | None) -> str:
        return "—" if v is None else f"{v:.0f} мс"

    cost = "—" if c.cost_rub is None else f"{c.cost_rub:.4f} ₽"
    tokens = "—" if c.tokens_in is None else f"{c.tokens_in} → {c.tokens_out}"
    return f"первый токен {ms(c.first_token_ms)} · всего {ms(c.total_ms)} · токены {tokens} · {cost}"


def cmd_compare(args: argparse.Namespace) -> int:
    """Answer one question with 2-4 assistants side by side; exit 1 if any column failed."""
    _lib, lab, user = _lab(args)
    ids = [_assistant_named(lab, name, user).id for name in args.assistant]
    comparison = lab.compare.run(args.question, ids, user)
    failed = False
    for c in comparison.columns:
        if c.note:
            print(f"{c.assistant}: {c.note}", file=sys.stderr)
        if c.error:
            failed = True
            print(f"{c.assistant}: {c.error}", file=sys.stderr)
    if args.json:
        print(json.dumps([c.as_json() for c in comparison.columns], ensure_ascii=False, indent=2))
        return 1 if failed else 0
    for c in comparison.columns:
        print(f"== {c.assistant} ({c.provider} · {c.model or 'по умолчанию'})")
        print(c.text or (c.error or ""))
        for s in c.sources:
            print(f"  [{s.n}] {s.filename}{f', стр. {s.page}' if s.page else ''}")
        print(f"  {_figures_line(c)}\n")
    print(
        f"Цены: по умолчанию — ориентировочные цены поставщиков на {PRICES_READ} (проверьте); "
        "свои — RAG_MODEL_PRICES."
    )
    return 1 if failed else 0


def cmd_eval_assistants(args: argparse.Namespace) -> int:
    """``rag eval --assistant NAME --questions FILE``: the figures the «Проверка» page shows."""
    if not args.questions:
        print("--assistant требует --questions FILE (CSV или JSON тестового набора).", file=sys.stderr)
        return 2
    path = Path(args.questions)
    if not path.is_file():
        print(f"Нет файла {path}.", file=sys.stderr)
        return 2
    questions = parse_questions(path.read_bytes(), path.name)
    _lib, lab, user = _lab(args)
    ids = [_assistant_named(lab, name, user).id for name in args.assistant]
    report = lab.checks.evaluate(questions, ids, user)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(
        f"{'assistant':<24}{'n':>4}{'R@5':>8}{'MRR':>8}{'facts':>8}{'abst':>6}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'₽':>9}"
    )

    def num(v: float | None, width: int, digits: int = 3) -> str:
        return f"{'—':>{width}}" if v is None else f"{v:>{width}.{digits}f}"

    for a in report["assistants"]:
        if a.get("note"):
            print(f"{a['assistant']}: {a['note']}", file=sys.stderr)
        print(
            f"{a['assistant']:<24}{a['questions']:>4}{num(a['recall@5'], 8)}{num(a['mrr@10'], 8)}"
            f"{num(a['fact_rate'], 8)}{a['abstentions']:>6}{num(a['p50_ms'], 9, 0)}{num(a['p95_ms'], 9, 0)}"
            f"{num(a['cost_rub'], 9, 4)}"
        )
    return 0


def add_lab_commands(sub: Any, core: Any) -> None:
    """Add ``assistants`` and ``compare`` to the main parser's subcommands (``core``: rag.cli)."""
    _CORE[:] = [core]
    user_help = "act as this user (required unless RAG_AUTH=none)"
    ast = sub.add_parser("assistants", help="saved model setups").add_subparsers(dest="action", required=True)
    a_add = ast.add_parser("add", help="save an assistant")
    a_add.add_argument("name")
    a_add.add_argument("--provider", choices=PROVIDER_NAMES, required=True)
    a_add.add_argument("--model")
    a_add.add_argument("--temperature", type=float, default=0.3)
    a_add.add_argument("--max-tokens", type=int, default=1024)
    a_add.add_argument("--top-k", type=int, default=5)
    a_add.add_argument("--method", choices=METHODS, default="hybrid")
    a_add.add_argument("--system-prompt", metavar="TEXT")
    a_add.add_argument("--description", metavar="TEXT")
    a_add.add_argument(
        "--collection", action="append", metavar="NAME", help="a collection it searches (repeat)"
    )
    a_add.add_argument("--no-documents", action="store_true", help="answer without searching documents")
    a_add.add_argument("--no-rewrite", action="store_true", help="search the question as asked")
    a_add.add_argument("--publish", action="store_true", help="for every user (admins only)")
    a_add.add_argument("--user", metavar="NAME", help=user_help)
    a_add.add_argument("--data-dir")
    a_add.set_defaults(func=cmd_assistants_add)
    for action, func, helptext in (
        ("list", cmd_assistants_list, "the user's and the published assistants"),
        ("show", cmd_assistants_show, "one assistant's settings"),
        ("delete", cmd_assistants_delete, "delete an assistant"),
    ):
        p = ast.add_parser(action, help=helptext)
        if action != "list":
            p.add_argument("name")
        if action != "delete":
            p.add_argument("--json", action="store_true")
        p.add_argument("--user", metavar="NAME", help=user_help)
        p.add_argument("--data-dir")
        p.set_defaults(func=func)

    cmp_ = sub.add_parser("compare", help="answer one question with 2-4 assistants side by side")
    cmp_.add_argument("question")
    cmp_.add_argument("--assistant", action="append", required=True, metavar="NAME")
    cmp_.add_argument("--json", action="store_true")
    cmp_.add_argument("--user", metavar="NAME", help=user_help)
    cmp_.add_argument("--data-dir")
    cmp_.set_defaults(func=cmd_compare)
