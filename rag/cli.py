"""Command line: ``python -m rag ingest|ask|eval|check|reembed|users|collections|chats``, sharing the app's
data directory.

``ingest`` and ``ask`` act as a user (``--user NAME``; without it, the local admin when
RAG_AUTH=none) and see only what that user may read or write. ``users`` and ``collections``
are the operator's: whoever runs them has the data directory, so they manage every account.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from providers import PROVIDER_NAMES, ProviderError, build_providers
from providers.offline import embedder_similarity
from rag.answer.chat import ChatService, TurnChoice
from rag.answer.pipeline import answer
from rag.chats.export import FORMATS, export_chat
from rag.chats.memory import ChatMemory
from rag.chats.search import ChatSearch
from rag.eval import evaluate, evaluate_corpus, format_corpus_report
from rag.identity.access import Forbidden
from rag.identity.auth import AuthService, auth_service
from rag.identity.passwords import check_password_rules, hash_password
from rag.ingest import SUPPORTED_EXTENSIONS
from rag.lab.cli import _assistant_choice, add_lab_commands, cmd_eval_assistants
from rag.library import Library, open_library, too_large_message
from rag.search.retrieve import METHODS
from rag.search.rewrite import rewriter_from
from settings import Settings
from storage import NotFoundError
from storage.models import Access, Collection, Role, User
from storage.teams import AlreadyExists, normalise_name
from storage.turns import TurnVectorRepo

# ``collections share NAME --with all``: every user, so no account may be called that.
EVERYONE = "all"
ACCESS_NAMES = {Access.NONE: "нет доступа", Access.READ: "чтение", Access.WRITE: "запись"}


log = logging.getLogger(__name__)


class CliError(Exception):
    """A refusal, in Russian, that ends the command with exit status 2."""


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    if getattr(args, "data_dir", None):
        settings = settings.model_copy(update={"data_dir": Path(args.data_dir)})
    return settings


def _acting_user(lib: Library, name: str | None) -> User:
    """The user a command acts as: ``--user NAME`` (existing and active), else the local admin."""
    if name:
        user = lib.users.by_name(name)
        if user is None:
            raise CliError(f"Пользователь «{name}» не найден.")
        if not user.active:
            raise CliError(f"Пользователь «{name}» отключён: от его имени действовать нельзя.")
        return user
    if lib.settings.auth_mode != "none":
        raise CliError(
            f"При RAG_AUTH={lib.settings.auth_mode} укажите --user ИМЯ: от чьего имени выполнить команду."
        )
    return lib.actor(None)


def _user_named(lib: Library, name: str) -> User:
    """An existing account by name (active or not), for the operator's commands."""
    user = lib.users.by_name(name)
    if user is None:
        raise CliError(f"Пользователь «{name}» не найден.")
    return user


def _owner_names(lib: Library) -> dict[str, str]:
    return {u.id: u.name for u in lib.users.list_all()}


def _owner_label(owners: dict[str, str], coll: Collection) -> str:
    return owners.get(coll.owner_id or "", "без владельца")


def _target_collection(lib: Library, user: User, name: str, owner: str | None) -> Collection:
    """The collection called ``name`` among those the user may read, checked for write rights."""
    candidates = [c for c in lib.access.readable(user) if c.name == name.strip()]
    if owner:
        found = lib.users.by_name(owner)
        candidates = [c for c in candidates if found is not None and c.owner_id == found.id]
    if not candidates:
        # The same words whether it does not exist or belongs to someone who did not share it.
        raise CliError(f"Коллекция «{name}» не найдена.")
    grants = lib.collections.grants_of(user.id)
    own = [c for c in candidates if c.owner_id == user.id]
    writable = [c for c in candidates if lib.access.access_to(user, c, grants) == Access.WRITE]
    chosen = own or writable or candidates
    if len(chosen) > 1:
        raise CliError(f"Вам доступны несколько коллекций «{name}»: укажите владельца, --owner ИМЯ.")
    return lib.access.writable_collection(user, chosen[0].id)  # Forbidden when read-only


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
    user = _acting_user(lib, args.user)
    collection_id: str | None = None
    if args.collection:
        collection_id = _target_collection(lib, user, args.collection, args.owner).id
    elif args.owner:
        raise CliError("--owner уточняет --collection: укажите и коллекцию.")
    failed = 0
    with lib.docs.keyword_batch():  # one keyword index commit for the whole run
        failed = _ingest_paths(lib, args, user, collection_id)
    return 1 if failed else 0


def _ingest_paths(lib: Library, args: argparse.Namespace, user: User, collection_id: str | None) -> int:
    """Index the files named, in groups; how many failed."""
    failed = 0
    for group in _ingest_groups(_files(args.paths)):
        ready: list[Path] = []
        for path in group:
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
            ready.append(path)
        # Indexed together: their vectors are stored in a few calls (Library.index_many).
        files = [(path.name, path.read_bytes()) for path in ready]
        results = lib.ingest_many(files, user=user, collection_id=collection_id)
        for path, res in zip(ready, results, strict=True):
            if res.status == "indexed" and res.document is not None:
                doc = res.document
                print(f"indexed: {path} ({doc.chunk_count} chunks, {doc.encoding or doc.mime_type})")
            elif res.status == "duplicate":
                print(f"duplicate: {path}")
            else:
                failed += 1
                print(f"failed: {path}: {res.message}")
    return failed


# Files ``rag ingest`` indexes together: at most this many, and no more bytes than this
# (held in memory until their keywords are in).
INGEST_GROUP_FILES = 64
INGEST_GROUP_BYTES = 16 * 1024 * 1024


def _ingest_groups(paths: Iterable[Path]) -> Iterator[list[Path]]:
    """The paths in groups of INGEST_GROUP_FILES files or INGEST_GROUP_BYTES bytes."""
    group: list[Path] = []
    size = 0
    for path in paths:
        size += path.stat().st_size if path.is_file() else 0
        group.append(path)
        if len(group) >= INGEST_GROUP_FILES or size >= INGEST_GROUP_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group


def cmd_ask(args: argparse.Namespace) -> int:
    """Answer a question from the index; with ``--chat`` the exchange is stored in that chat."""
    settings = _settings(args)
    lib = open_library(settings)
    user = _acting_user(lib, args.user)
    providers = build_providers(settings, similarity=embedder_similarity(lib.embedder), glossary=lib.glossary)
    if args.assistant:
        # The assistant's settings replace the generation flags (rag.lab.assistants).
        choice, note = _assistant_choice(lib, args.assistant, user)
        if note:
            print(note, file=sys.stderr)
        if choice.provider not in providers:
            raise CliError(f"Провайдер «{choice.provider}» ассистента не найден.")
        provider = providers[choice.provider]
    else:
        provider = providers[args.provider]
    status = provider.status()
    if not status.available:
        print(f"{provider.label}: {status.reason}", file=sys.stderr)
        return 2
    if not args.assistant:
        choice = TurnChoice(
            provider=provider.name,
            model=args.model or provider.models()[0].id,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
        )
    elif not choice.model:
        choice = choice.model_copy(update={"model": provider.models()[0].id})
    chat_id: str | None = None
    rewriter = rewriter_from(settings) if choice.rewrite else None
    if args.chat:
        service = ChatService(
            lib.chats,
            lib.retriever,
            providers,
            top_k=args.top_k,
            history_turns=settings.history_turns,
            rewriter=rewriter,
            actor=lib.actor,
            scope=lib.scope,
            memory=ChatMemory(TurnVectorRepo(lib.engine), lib.embedder),
        )
        if args.chat != "new":
            try:
                service.chat(args.chat, user)  # someone else's chat is as unknown as a made-up id
            except NotFoundError:
                print(f"Чат {args.chat} не найден: укажите id из списка чатов или new.", file=sys.stderr)
                return 2
        turn = service.ask(None if args.chat == "new" else args.chat, args.question, choice, user=user)
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
            top_k=choice.top_k or args.top_k,
            use_documents=choice.use_documents,
            extra_system=choice.system_prompt,
            rewriter=rewriter,
            scope=lib.scope(user, choice.collection_ids),
            method=choice.method,
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
    if args.assistant:
        return cmd_eval_assistants(args)
    methods = (args.method,) if args.method else METHODS
    if args.corpus:
        corpus, questions = Path(args.corpus), Path(args.questions or "")
        if not args.questions:
            print("--corpus требует --questions FILE.", file=sys.stderr)
            return 2
        if not corpus.is_dir() or not questions.is_file():
            print(f"Нет папки {corpus} или файла {questions}.", file=sys.stderr)
            return 2
        settings = Settings()
        rewrite = None
        if args.rewrite:
            provider = build_providers(settings)[args.rewrite]
            status = provider.status()
            if not status.available:
                print(f"{provider.label}: {status.reason}.", file=sys.stderr)
                return 2
            rewrite = (provider, args.rewrite_model or provider.models()[0].id)
        report = evaluate_corpus(
            corpus,
            questions,
            settings,
            methods=methods,
            progress=lambda s: print(s, file=sys.stderr),
            rewrite=rewrite,
        )
        print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else format_corpus_report(report))
        return 0
    if args.questions or args.rewrite:
        print("--questions и --rewrite идут только вместе с --corpus.", file=sys.stderr)
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


def cmd_worker(args: argparse.Namespace) -> int:
    """Run indexing jobs from the shared queue until stopped (SIGTERM or Ctrl+C)."""
    from rag.jobs.shared import SharedQueue  # procrastinate is only needed here and by replicas

    settings = _settings(args)
    if settings.queue != "postgres" or not settings.on_postgres:
        raise CliError(
            "Обработчику нужна общая очередь: задайте RAG_QUEUE=postgres и DATABASE_URL на PostgreSQL "
            "(а для векторов — CHROMA_HOST)."
        )
    lib = open_library(settings, recover=False)
    queue = SharedQueue(lib)
    stop = threading.Event()

    def rescue_stalled() -> None:
        # Jobs of workers that stopped sending heartbeats (killed, their machine gone) start
        # again here; a live worker's jobs never look stalled.
        while True:
            try:
                queue.recover_stalled(args.stalled_after)
            except Exception:
                log.exception("looking for stalled jobs failed")
            if stop.wait(args.heartbeat):
                return

    watcher = threading.Thread(target=rescue_stalled, name="stalled-jobs", daemon=True)
    watcher.start()
    print(f"worker ready: {settings.resolved_database_url.rsplit('@', 1)[-1]}", flush=True)
    try:
        queue.run_worker(
            name=args.name, heartbeat_s=args.heartbeat, stalled_after_s=args.stalled_after, wait=not args.once
        )
    finally:
        stop.set()
        watcher.join(timeout=5)
        queue.close()
    return 0


def cmd_reembed(args: argparse.Namespace) -> int:
    """Re-embed documents made with another embedding model."""
    lib = open_library(_settings(args))
    n = lib.reembed(lambda f, t: print(t, file=sys.stderr))
    print(f"re-embedded {n} documents with {lib.embedding_signature}")
    # Chat messages stored before chat memory, or under another model (rag.chats.memory).
    memory = ChatMemory(TurnVectorRepo(lib.engine), lib.embedder)
    turns = memory.embed_missing(
        lambda done, total: print(f"сообщения чатов: {done}/{total}", file=sys.stderr)
    )
    print(f"embedded {turns} chat messages with {lib.embedding_model}")
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    """Add an account; with ``--password-stdin`` its password is the first line of stdin."""
    lib = open_library(_settings(args), recover=False)
    name = normalise_name(args.name)
    if not name:
        raise CliError("Имя пользователя не может быть пустым.")
    if name == EVERYONE:
        raise CliError(f"Имя «{EVERYONE}» зарезервировано (collections share --with {EVERYONE}).")
    if lib.users.by_name(name) is not None:
        raise CliError(f"Пользователь «{name}» уже существует.")
    password_hash: str | None = None
    if args.password_stdin:
        plain = sys.stdin.readline().rstrip("\r\n")
        reason = check_password_rules(plain)
        if reason:
            raise CliError(reason)
        password_hash = hash_password(plain)
    try:
        user = lib.users.create(name, role=Role(args.role), password_hash=password_hash)
    except AlreadyExists:
        raise CliError(f"Пользователь «{name}» уже существует.") from None
    note = "пароль задан" if password_hash else "без пароля"
    print(f"Пользователь «{user.name}» добавлен ({Role(user.role).value}, {note}).")
    if password_hash is None and lib.settings.auth_mode == "password":
        print(
            "Без пароля этот пользователь не сможет войти: добавьте его с --password-stdin.", file=sys.stderr
        )
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    """Every account: name, role, whether active and whether it has a password."""
    lib = open_library(_settings(args), recover=False)
    users = lib.users.list_all()
    if not users:
        print("Пользователей нет.")
    for u in users:
        active = "активен" if u.active else "отключён"
        password = "пароль задан" if u.password_hash else "без пароля"
        print(f"{u.name}\t{Role(u.role).value}\t{active}\t{password}")
    return 0


# What the operator does when the last admin who can sign in would go.
ADD_ADMIN_FIRST = (
    "Сначала добавьте другого администратора: python -m rag users add ИМЯ --role admin --password-stdin "
    "(или назначьте существующего: python -m rag users role ИМЯ admin)."
)


def _accounts(lib: Library) -> AuthService:
    """The account rules (the last admin, sessions) for the operator's commands."""
    return auth_service(lib.users, lib.access, lib.settings)


def _keeping_an_admin(change: Callable[[], User]) -> User:
    try:
        return change()
    except Forbidden as exc:
        raise CliError(f"{exc} {ADD_ADMIN_FIRST}") from None


def cmd_users_disable(args: argparse.Namespace) -> int:
    """Disable an account: it can no longer sign in or act, its sessions end; documents and chats stay."""
    lib = open_library(_settings(args), recover=False)
    user = _user_named(lib, args.name)
    if not user.active:
        print(f"Пользователь «{user.name}» уже отключён.")
        return 0
    # Refused for the last admin who can sign in under this RAG_AUTH (checked under a database lock).
    _keeping_an_admin(lambda: _accounts(lib).operator_set_active(user.id, False))
    print(f"Пользователь «{user.name}» отключён.")
    return 0


def cmd_users_enable(args: argparse.Namespace) -> int:
    """Enable a disabled account again."""
    lib = open_library(_settings(args), recover=False)
    user = _user_named(lib, args.name)
    _accounts(lib).operator_set_active(user.id, True)
    print(f"Пользователь «{user.name}» снова может входить.")
    return 0


def cmd_users_role(args: argparse.Namespace) -> int:
    """Make an account an admin or a member; the last admin who can sign in stays one."""
    lib = open_library(_settings(args), recover=False)
    user = _user_named(lib, args.name)
    changed = _keeping_an_admin(lambda: _accounts(lib).operator_set_role(user.id, Role(args.role)))
    print(f"Пользователь «{changed.name}»: роль {Role(changed.role).value}.")
    return 0


def _named_collection(lib: Library, name: str, owner: str | None) -> Collection:
    """A collection by name among all of them; several of that name need ``--owner``."""
    matches = [c for c in lib.collections.list_all() if c.name == name.strip()]
    if owner:
        owner_id = _user_named(lib, owner).id
        matches = [c for c in matches if c.owner_id == owner_id]
    if not matches:
        raise CliError(f"Коллекция «{name}» не найдена.")
    if len(matches) > 1:
        owners = _owner_names(lib)
        listed = ", ".join(sorted(_owner_label(owners, c) for c in matches))
        raise CliError(f"Коллекций «{name}» несколько (владельцы: {listed}): укажите --owner ВЛАДЕЛЕЦ.")
    return matches[0]


def cmd_collections_add(args: argparse.Namespace) -> int:
    """Create a collection owned by a user: personal, or readable by everyone with ``--shared``."""
    lib = open_library(_settings(args), recover=False)
    owner = _acting_user(lib, args.user)
    if not args.name.strip():
        raise CliError("Название коллекции не может быть пустым.")
    everyone = Access.READ if args.shared else Access.NONE
    try:
        coll = lib.collections.create(args.name, owner.id, everyone=everyone)
    except AlreadyExists:
        raise CliError(f"У пользователя «{owner.name}» уже есть коллекция «{args.name.strip()}».") from None
    kind = "общая: все читают" if args.shared else "личная"
    print(f"Коллекция «{coll.name}» создана (владелец {owner.name}, {kind}).")
    return 0


def cmd_collections_share(args: argparse.Namespace) -> int:
    """Open a collection to everyone or to one user, for reading (or writing with ``--write``)."""
    lib = open_library(_settings(args), recover=False)
    coll = _named_collection(lib, args.name, args.owner)
    access = Access.WRITE if args.write else Access.READ
    if normalise_name(args.with_user) == EVERYONE:
        lib.collections.update(coll.id, everyone=access)
        print(f"Коллекция «{coll.name}»: всем — {ACCESS_NAMES[access]}.")
        return 0
    target = _user_named(lib, args.with_user)
    if target.id == coll.owner_id:
        raise CliError(f"«{target.name}» — владелец коллекции «{coll.name}», у него уже есть все права.")
    lib.collections.grant(coll.id, target.id, access)
    print(f"Коллекция «{coll.name}»: {target.name} — {ACCESS_NAMES[access]}.")
    if not target.active:
        print(f"Пользователь «{target.name}» отключён: право действует, когда его включат.", file=sys.stderr)
    return 0


def cmd_collections_list(args: argparse.Namespace) -> int:
    """Every collection with its rights, or (``--user``) those the user may read, with the user's right."""
    lib = open_library(_settings(args), recover=False)
    owners = _owner_names(lib)
    if args.user:
        user = _acting_user(lib, args.user)
        grants = lib.collections.grants_of(user.id)
        readable = lib.access.readable(user)
        if not readable:
            print("Доступных коллекций нет.")
        for c in readable:
            right = ACCESS_NAMES[lib.access.access_to(user, c, grants)]
            print(f"{c.name}\tвладелец: {_owner_label(owners, c)}\t{right}")
        return 0
    named: dict[str, list[str]] = {}
    for g in lib.collections.grants():
        named.setdefault(g.collection_id, []).append(
            f"{owners.get(g.user_id, '?')}: {ACCESS_NAMES[g.access]}"
        )
    collections = lib.collections.list_all()
    if not collections:
        print("Коллекций нет.")
    for c in collections:
        line = f"{c.name}\tвладелец: {_owner_label(owners, c)}\tвсем: {ACCESS_NAMES[Access(c.everyone)]}"
        if c.id in named:
            line += "\t" + ", ".join(sorted(named[c.id]))
        print(line)
    return 0


def _chat_service(lib: Library) -> ChatService:
    """Chats of the acting user (no provider: nothing is answered)."""
    return ChatService(lib.chats, lib.retriever, {}, actor=lib.actor, scope=lib.scope, access=lib.access)


def cmd_chats_list(args: argparse.Namespace) -> int:
    """The acting user's chats, most recently active first: id, time, messages, title."""
    lib = open_library(_settings(args), recover=False)
    user = _acting_user(lib, args.user)
    service = _chat_service(lib)
    rows = [(c, len(service.messages(c.id, user))) for c in service.chats_of(user)]
    if args.json:
        out = [
            {"chat_id": c.id, "title": c.title, "updated_at": c.updated_at.isoformat(), "messages": n}
            for c, n in rows
        ]
        print(json.dumps(out, ensure_ascii=False))
        return 0
    if not rows:
        print("Чатов нет.")
    for c, n in rows:
        print(f"{c.id}\t{c.updated_at:%Y-%m-%d %H:%M}\tсообщений: {n}\t{c.title}")
    return 0


def cmd_chats_search(args: argparse.Namespace) -> int:
    """The acting user's messages matching the words: chat id, title, the matching line."""
    lib = open_library(_settings(args), recover=False)
    user = _acting_user(lib, args.user)
    hits = ChatSearch(lib.chats, lib.actor).search(args.query, user, limit=args.limit)
    if args.json:
        out = [
            {
                "chat_id": h.chat_id,
                "title": h.title,
                "message_id": h.message_id,
                "role": h.role,
                "line": h.line,
            }
            for h in hits
        ]
        print(json.dumps(out, ensure_ascii=False))
        return 0
    if not hits:
        print("Ничего не найдено.")
    for h in hits:
        print(f"{h.chat_id}\t{h.title}\t{'вопрос' if h.role == 'user' else 'ответ'}: {h.line}")
    return 0


def cmd_chats_export(args: argparse.Namespace) -> int:
    """One of the acting user's chats as a Markdown or DOCX file."""
    lib = open_library(_settings(args), recover=False)
    user = _acting_user(lib, args.user)
    try:
        data = export_chat(_chat_service(lib), args.chat_id, args.format, user)
    except NotFoundError:
        raise CliError(f"Чат {args.chat_id} не найден: укажите id из «rag chats list».") from None
    Path(args.out).write_bytes(data)
    print(f"Чат сохранён в {args.out} ({len(data)} байт).", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m rag``."""
    p = argparse.ArgumentParser(prog="python -m rag", description="Multimodal RAG RU: CLI")
    sub = p.add_subparsers(dest="command", required=True)

    ing = sub.add_parser("ingest", help="index files or folders")
    ing.add_argument("paths", nargs="+")
    ing.add_argument("--data-dir")
    ing.add_argument("--user", metavar="NAME", help="act as this user (required unless RAG_AUTH=none)")
    ing.add_argument("--collection", metavar="NAME", help="a collection the user may write to")
    ing.add_argument("--owner", metavar="OWNER", help="the collection's owner, when several have its name")
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
    ask.add_argument("--user", metavar="NAME", help="act as this user (required unless RAG_AUTH=none)")
    ask.add_argument("--assistant", metavar="NAME", help="answer with this assistant's settings")
    ask.set_defaults(func=cmd_ask)

    ev = sub.add_parser(
        "eval", help="retrieval evaluation on a SQuAD-format file or on a document folder with questions"
    )
    mode = ev.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dataset", help="SQuAD v1.1 JSON (XQuAD): each paragraph indexed as a document")
    mode.add_argument("--corpus", metavar="DIR", help="folder of documents, every file ingested as uploaded")
    mode.add_argument(
        "--assistant",
        action="append",
        metavar="NAME",
        help="score assistants on the library with --questions FILE (a test set's CSV or JSON)",
    )
    ev.add_argument("--questions", metavar="FILE", help="questions about --corpus (ru-docs-dev schema)")
    ev.add_argument("--level", choices=("paragraph", "chunk"), default="chunk", help="--dataset only")
    ev.add_argument("--method", choices=METHODS)
    ev.add_argument(
        "--rewrite",
        metavar="PROVIDER",
        choices=[p for p in PROVIDER_NAMES if p != "offline"],
        help="--corpus only: also score retrieval with this remote provider's query rewrite (hybrid+rewrite)",
    )
    ev.add_argument("--rewrite-model", metavar="MODEL", help="the model for --rewrite (default: its first)")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--user", metavar="NAME", help="--assistant: act as this user")
    ev.add_argument("--data-dir", help="--assistant: the library's data directory")
    ev.set_defaults(func=cmd_eval)

    chk = sub.add_parser("check", help="consistency check of the index")
    chk.add_argument("--data-dir")
    chk.add_argument("--repair", action="store_true")
    chk.set_defaults(func=cmd_check)

    wk = sub.add_parser("worker", help="run indexing jobs of the shared queue (RAG_QUEUE=postgres)")
    wk.add_argument("--name", help="the worker's name in the queue (default: a random one)")
    wk.add_argument("--heartbeat", type=float, default=10.0, metavar="S", help="seconds between heartbeats")
    wk.add_argument(
        "--stalled-after",
        type=float,
        default=30.0,
        metavar="S",
        help="a worker silent this long is gone: its job starts again elsewhere",
    )
    wk.add_argument("--once", action="store_true", help="run the queued jobs, then exit")
    wk.add_argument("--data-dir")
    wk.set_defaults(func=cmd_worker)

    re_ = sub.add_parser("reembed", help="re-embed documents after changing RAG_EMBEDDING_MODEL")
    re_.add_argument("--data-dir")
    re_.set_defaults(func=cmd_reembed)

    users = sub.add_parser("users", help="manage accounts").add_subparsers(dest="action", required=True)
    u_add = users.add_parser("add", help="add an account")
    u_add.add_argument("name")
    u_add.add_argument("--role", choices=[r.value for r in Role], default=Role.MEMBER.value)
    u_add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    u_add.add_argument("--data-dir")
    u_add.set_defaults(func=cmd_users_add)
    u_list = users.add_parser("list", help="list accounts")
    u_list.add_argument("--data-dir")
    u_list.set_defaults(func=cmd_users_list)
    u_off = users.add_parser("disable", help="disable an account")
    u_off.add_argument("name")
    u_off.add_argument("--data-dir")
    u_off.set_defaults(func=cmd_users_disable)
    u_on = users.add_parser("enable", help="enable a disabled account")
    u_on.add_argument("name")
    u_on.add_argument("--data-dir")
    u_on.set_defaults(func=cmd_users_enable)
    u_role = users.add_parser("role", help="make an account an admin or a member")
    u_role.add_argument("name")
    u_role.add_argument("role", choices=[r.value for r in Role])
    u_role.add_argument("--data-dir")
    u_role.set_defaults(func=cmd_users_role)

    colls = sub.add_parser("collections", help="manage collections").add_subparsers(
        dest="action", required=True
    )
    c_add = colls.add_parser("add", help="create a collection")
    c_add.add_argument("name")
    c_add.add_argument("--user", metavar="OWNER", required=True, help="its owner")
    c_add.add_argument("--shared", action="store_true", help="everyone may read it")
    c_add.add_argument("--data-dir")
    c_add.set_defaults(func=cmd_collections_add)
    c_share = colls.add_parser("share", help="give everyone or a user access to a collection")
    c_share.add_argument("name")
    c_share.add_argument("--with", dest="with_user", metavar=f"USER|{EVERYONE}", required=True)
    c_share.add_argument("--write", action="store_true", help="the right to add documents, not only read")
    c_share.add_argument(
        "--owner", metavar="OWNER", help="the collection's owner, when several have its name"
    )
    c_share.add_argument("--data-dir")
    c_share.set_defaults(func=cmd_collections_share)
    c_list = colls.add_parser("list", help="list collections")
    c_list.add_argument("--user", metavar="NAME", help="only those this user may read")
    c_list.add_argument("--data-dir")
    c_list.set_defaults(func=cmd_collections_list)
    add_lab_commands(sub, sys.modules[__name__])

    chats = sub.add_parser("chats", help="list, search and export chats").add_subparsers(
        dest="action", required=True
    )
    ch_list = chats.add_parser("list", help="the user's chats")
    ch_list.add_argument("--user", metavar="NAME", help="act as this user (required unless RAG_AUTH=none)")
    ch_list.add_argument("--json", action="store_true")
    ch_list.add_argument("--data-dir")
    ch_list.set_defaults(func=cmd_chats_list)
    ch_search = chats.add_parser("search", help="find the user's chats by words of questions and answers")
    ch_search.add_argument("query")
    ch_search.add_argument("--user", metavar="NAME", help="act as this user (required unless RAG_AUTH=none)")
    ch_search.add_argument("--limit", type=int, default=20)
    ch_search.add_argument("--json", action="store_true")
    ch_search.add_argument("--data-dir")
    ch_search.set_defaults(func=cmd_chats_search)
    ch_export = chats.add_parser("export", help="save one of the user's chats as Markdown or DOCX")
    ch_export.add_argument("chat_id", metavar="ID")
    ch_export.add_argument("--format", choices=FORMATS, default="md")
    ch_export.add_argument("--out", metavar="FILE", required=True)
    ch_export.add_argument("--user", metavar="NAME", help="act as this user (required unless RAG_AUTH=none)")
    ch_export.add_argument("--data-dir")
    ch_export.set_defaults(func=cmd_chats_export)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CliError, Forbidden) as exc:
        print(exc, file=sys.stderr)
        return 2
    except ValueError as exc:  # pydantic validation of CLI numbers
        print(f"Ошибка в параметрах: {exc}", file=sys.stderr)
        return 2
