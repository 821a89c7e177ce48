"""Issue 22: chat search, the message index's upkeep and chat memory, at scale.

- search: N messages in M chats of one owner (plus as many of another owner), `ChatSearch.search`
  for a few Russian queries (p50/p95 over repeats);
- upkeep: `add_message` and `update_message` (a streamed answer's checkpoint re-indexes it) at N;
- migration: the 0012 backfill of N messages (downgrade to 0011, upgrade to 0012 timed);
- memory: recall on a 200-turn chat (vectors stored), and the first recall of a 200-turn chat
  stored before memory (every message embedded then).

    .venv/bin/python bench/chats.py --messages 50000 [--database postgresql://...]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from rag.chats.memory import ChatMemory
from rag.chats.search import ChatSearch
from rag.library import open_library
from settings import Settings
from storage.chat_index import MESSAGE_FTS
from storage.migrate import MIGRATIONS, upgrade
from storage.models import new_id, utcnow
from storage.turns import TurnVectorRepo

WORDS = (
    "договор аренды склада срок оплата неустойка поставка товар акт приёмки претензия штраф пени "
    "отпуск больничный командировка зарплата премия пропуск парковка обед столовая офис ремонт "
    "оборудование гарантия сервис заявка согласование подпись печать доверенность налог отчёт"
).split()
QUERIES = ["договоры аренды", "неустойка за просрочку", "пропуск на парковку", "акт приёмки товара"]


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def _p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--per-chat", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--database", help="a PostgreSQL URL (else SQLite in a temporary folder)")
    args = ap.parse_args()
    rng = random.Random(22)
    data = Path(tempfile.mkdtemp())
    extra = {"DATABASE_URL": args.database} if args.database else {}
    lib = open_library(Settings(_env_file=None, RAG_DATA_DIR=data, **extra))  # type: ignore[call-arg]
    alice = lib.users.create("alice")
    bob = lib.users.create("bob")
    engine, chats = lib.engine, lib.chats

    # Bulk rows: messages and their index rows, as add_message writes them, in large transactions.
    t0 = time.perf_counter()
    rows, fts = [], []
    for c in range(args.messages // args.per_chat):
        owner = alice if c % 2 == 0 else bob
        chat_id = new_id()
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO chat (id, owner_id, title, provider, model, temperature, max_tokens, "
                    "system_prompt, use_documents, created_at, updated_at) VALUES (:id, :o, :t, 'offline', "
                    "'m', 0.3, 1024, '', true, :now, :now)"
                ),
                {"id": chat_id, "o": owner.id, "t": f"Чат {c}", "now": utcnow()},
            )
        for k in range(args.per_chat):
            mid = new_id()
            content = _text(rng, 12 if k % 2 == 0 else 60)
            rows.append(
                {
                    "id": mid,
                    "c": chat_id,
                    "r": "user" if k % 2 == 0 else "assistant",
                    "t": content,
                    "now": utcnow(),
                }
            )
            fts.append((mid, chat_id, content))
        if len(rows) >= 2000:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO message (id, chat_id, role, content, sources, created_at) "
                        "VALUES (:id, :c, :r, :t, '[]', :now)"
                    ),
                    rows,
                )
                chats.index.add(conn, fts)
            rows, fts = [], []
    if rows:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO message (id, chat_id, role, content, sources, created_at) "
                    "VALUES (:id, :c, :r, :t, '[]', :now)"
                ),
                rows,
            )
            chats.index.add(conn, fts)
    print(
        f"{args.messages} messages stored and indexed in {time.perf_counter() - t0:.1f} s "
        f"({engine.dialect.name})"
    )

    search = ChatSearch(chats, lib.actor)
    times: list[float] = []
    for _ in range(args.repeats):
        for q in QUERIES:
            t = time.perf_counter()
            hits = search.search(q, alice, limit=20)
            times.append(time.perf_counter() - t)
            assert hits
    print(f"search (20 hits, one owner's half): p50 {_p(times, 0.5):.1f} ms, p95 {_p(times, 0.95):.1f} ms")

    chat = chats.create(title="Новый", owner_id=alice.id)
    add, upd = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        m = chats.add_message(chat.id, "assistant", _text(rng, 60))
        add.append(time.perf_counter() - t)
        t = time.perf_counter()
        chats.update_message(m.id, content=m.content + " " + _text(rng, 20))
        upd.append(time.perf_counter() - t)
    print(
        f"add_message p50 {_p(add, 0.5):.1f} ms; update_message (re-index) p50 {_p(upd, 0.5):.1f} ms, "
        f"p95 {_p(upd, 0.95):.1f} ms"
    )

    # The chat memory's migration alone (0012): down to the lab's (0011), timed back up to 0012,
    # then the rest (0013, PostgreSQL's RUM index) untimed.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0011")
    t = time.perf_counter()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0012")
    took = time.perf_counter() - t
    upgrade(engine)
    with engine.connect() as conn:
        n = conn.execute(text(f"SELECT count(*) FROM {MESSAGE_FTS}")).scalar()
    print(f"migration 0012 backfill: {n} rows in {took:.1f} s")

    memory = ChatMemory(TurnVectorRepo(engine), lib.embedder)
    long = chats.create(title="Длинный", owner_id=alice.id)
    for k in range(200):
        chats.add_message(long.id, "user", f"Вопрос {k}: " + _text(rng, 10))
        chats.add_message(long.id, "assistant", _text(rng, 60))
    messages = chats.messages(long.id)
    t = time.perf_counter()
    memory.recall(long.id, "Какая неустойка за просрочку поставки?", messages, 3)
    print(
        f"first recall on a 200-turn chat stored before memory (its 200 questions embedded): "
        f"{time.perf_counter() - t:.1f} s"
    )
    rec: list[float] = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        memory.recall(long.id, "Какая неустойка за просрочку поставки?", messages, 3)
        rec.append(time.perf_counter() - t)
    print(f"recall on it afterwards: p50 {_p(rec, 0.5):.0f} ms, p95 {_p(rec, 0.95):.0f} ms")
    engine.dispose()


if __name__ == "__main__":
    main()
