"""The rows and keyword search contract: the same assertions on SQLite and on PostgreSQL.

Chats, messages, documents, keyword rows and concurrent writers; WAL and two engines on one
file are SQLite's own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from storage import (
    ChatRepo,
    Chunk,
    Document,
    DocumentRepo,
    DocumentStatus,
    NotFoundError,
    Source,
    make_engine,
)
from storage.keyword_mirror import KeywordMirror
from storage.keywords import has_rum_index
from tests.backends import Servers


@pytest.fixture
def engine(tmp_path: Path, test_servers: Servers | None) -> Iterator[Engine]:
    if test_servers is None:
        eng = make_engine(f"sqlite:///{tmp_path / 'db' / 'rag.sqlite3'}")
    else:
        eng = make_engine(test_servers.new_database())
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'db' / 'rag.sqlite3'}")
    yield eng
    eng.dispose()


@pytest.fixture
def chats(engine: Engine) -> ChatRepo:
    return ChatRepo(engine)


@pytest.fixture(params=["rows", "tantivy"])
def docs(request: pytest.FixtureRequest, engine: Engine, tmp_path: Path) -> DocumentRepo:
    # Every document test runs on the rows alone and, on SQLite, with the tantivy mirror ranking.
    if request.param == "tantivy":
        if engine.dialect.name != "sqlite":
            pytest.skip("the tantivy mirror is SQLite's (PostgreSQL ranks in the database)")
        return DocumentRepo(engine, KeywordMirror(tmp_path / "keywords"))
    return DocumentRepo(engine)


def test_engine_creates_the_file_and_uses_wal(sqlite_engine: Engine, tmp_path: Path) -> None:
    assert (tmp_path / "db" / "rag.sqlite3").exists()
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one().lower() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() >= 5000


def test_create_get_rename_and_list_chats(chats: ChatRepo) -> None:
    first = chats.create(title="Аренда", provider="offline", model="extractive", temperature=0.5)
    second = chats.create(title="Борщ")
    got = chats.get(first.id)
    assert (got.title, got.provider, got.model, got.temperature) == ("Аренда", "offline", "extractive", 0.5)
    # Most recently active first: a message or a rename moves a chat to the top.
    assert [c.id for c in chats.list_all()] == [second.id, first.id]
    chats.add_message(first.id, "user", "Какой срок аренды?")
    assert [c.id for c in chats.list_all()] == [first.id, second.id]
    renamed = chats.update(second.id, title="Рецепт борща", max_tokens=256)
    assert renamed.title == "Рецепт борща"
    assert chats.get(second.id).max_tokens == 256
    assert [c.id for c in chats.list_all()] == [second.id, first.id]


def test_missing_ids_raise_not_found(chats: ChatRepo, docs: DocumentRepo) -> None:
    with pytest.raises(NotFoundError):
        chats.get("nope")
    with pytest.raises(NotFoundError):
        chats.update("nope", title="x")
    with pytest.raises(NotFoundError):
        chats.add_message("nope", "user", "привет")
    with pytest.raises(NotFoundError):
        chats.update_message("nope", content="x")
    with pytest.raises(NotFoundError):
        docs.get("nope")


def test_messages_are_ordered_and_keep_their_fields(chats: ChatRepo) -> None:
    chat = chats.create()
    contents = [f"сообщение {i}" for i in range(30)]
    for i, content in enumerate(contents):
        chats.add_message(chat.id, "user" if i % 2 == 0 else "assistant", content)
    got = chats.messages(chat.id)
    assert [m.content for m in got] == contents
    assert [m.role for m in got[:2]] == ["user", "assistant"]


def test_sources_and_usage_round_trip(chats: ChatRepo, engine: Engine) -> None:
    chat = chats.create()
    sources = [
        Source(n=1, chunk_id="c1", document_id="d1", filename="договор.txt", text="Срок 11 мес.", score=0.93),
        Source(n=2, chunk_id="c2", document_id="d2", filename="акт.pdf", page=3, text="Акт", ocr=True),
    ]
    msg = chats.add_message(chat.id, "assistant", "", provider="offline", model="extractive")
    chats.update_message(
        msg.id,
        content="Срок аренды 11 месяцев [1].",
        sources=sources,
        prompt_tokens=120,
        completion_tokens=7,
        latency_ms=12.5,
    )
    [stored] = chats.messages(chat.id)
    assert stored.content == "Срок аренды 11 месяцев [1]."
    assert stored.sources == sources
    assert all(isinstance(s, Source) for s in stored.sources)
    assert (stored.prompt_tokens, stored.completion_tokens, stored.latency_ms) == (120, 7, 12.5)
    # A message stored before sources were typed (the file was "file") still reads back.
    old = '[{"n": 1, "chunk_id": "c9", "document_id": "d9", "file": "старый.txt", "page": 2, "text": "т"}]'
    with engine.begin() as conn:
        conn.execute(text("UPDATE message SET sources = :s WHERE id = :id"), {"s": old, "id": msg.id})
    [legacy] = chats.messages(chat.id)
    assert [(s.filename, s.page, s.n) for s in legacy.sources] == [("старый.txt", 2, 1)]
    assert stored.error is None


def test_deleting_a_chat_removes_only_its_messages(chats: ChatRepo, engine: Engine) -> None:
    keep, drop = chats.create(title="keep"), chats.create(title="drop")
    for i in range(3):
        chats.add_message(keep.id, "user", f"k{i}")
        chats.add_message(drop.id, "user", f"d{i}")
    chats.delete(drop.id)
    with pytest.raises(NotFoundError):
        chats.get(drop.id)
    assert chats.messages(drop.id) == []
    assert [m.content for m in chats.messages(keep.id)] == ["k0", "k1", "k2"]
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM message WHERE chat_id = :c"), {"c": drop.id})
        assert left.scalar_one() == 0
    assert chats.counts() == (1, 3)


def test_clear_messages_keeps_the_chat(chats: ChatRepo) -> None:
    chat = chats.create(title="Аренда")
    chats.add_message(chat.id, "user", "вопрос")
    chats.clear_messages(chat.id)
    assert chats.messages(chat.id) == []
    assert chats.get(chat.id).title == "Аренда"


def test_delete_all_counts_chats(chats: ChatRepo) -> None:
    assert chats.delete_all() == 0
    for i in range(4):
        chat = chats.create(title=f"чат {i}")
        chats.add_message(chat.id, "user", "вопрос")
        chats.add_message(chat.id, "assistant", "ответ")
    assert chats.counts() == (4, 8)
    assert chats.delete_all() == 4
    assert chats.counts() == (0, 0)
    assert chats.list_all() == []


def test_concurrent_writers_all_land(chats: ChatRepo) -> None:
    chat_ids = [chats.create(title=f"поток {t}").id for t in range(2)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(t: int) -> None:
        try:
            start.wait()
            for i in range(25):
                chats.add_message(chat_ids[t % 2], "user", f"{t}:{i}")
                if i % 5 == 0:
                    chats.update(chat_ids[t % 2], title=f"поток {t} шаг {i}")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert chats.counts() == (2, 100)
    for t in range(4):
        mine = [m.content for m in chats.messages(chat_ids[t % 2]) if m.content.startswith(f"{t}:")]
        assert mine == [f"{t}:{i}" for i in range(25)]  # each thread's messages in its order


def test_two_engines_on_one_file_see_each_other(tmp_path: Path) -> None:
    # The app and the CLI may hold the same database open at once.
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    a, b = make_engine(url), make_engine(url)
    try:
        chat = ChatRepo(a).create(title="из приложения")
        ChatRepo(b).add_message(chat.id, "user", "из консоли")
        assert [m.content for m in ChatRepo(a).messages(chat.id)] == ["из консоли"]
    finally:
        a.dispose()
        b.dispose()


def _doc(name: str, sha: str) -> Document:
    return Document(filename=name, sha256=sha, size=10, status=DocumentStatus.INDEXING)


def test_documents_and_keyword_rows(docs: DocumentRepo, engine: Engine) -> None:
    doc = docs.add(_doc("договор.txt", "a" * 64))
    other = docs.add(_doc("борщ.txt", "b" * 64))
    assert docs.by_sha256("a" * 64).id == doc.id  # type: ignore[union-attr]
    assert docs.by_sha256("c" * 64) is None
    chunks = [Chunk(document_id=doc.id, ordinal=i, text=f"текст {i}") for i in range(3)]
    docs.store_chunks(doc.id, chunks, ["аренд плат", "срок аренд", "адрес помещен"])
    docs.store_chunks(other.id, [Chunk(document_id=other.id, ordinal=0, text="борщ")], ["борщ"])
    assert docs.get(doc.id).chunk_count == 3
    assert [c.ordinal for c in docs.chunks(doc.id)] == [0, 1, 2]
    # Keyword search only sees ready documents.
    assert docs.keyword_search(["аренд"], 10) == []
    docs.touch_indexed(doc.id)
    found = docs.keyword_search(["аренд"], 10)
    assert {cid for cid, _ in found} == {chunks[0].id, chunks[1].id}
    assert all(score > 0 for _, score in found)
    assert set(docs.chunks_by_ids([c.id for c in chunks])) == {c.id for c in chunks}
    assert docs.chunks_by_ids([other.id]) == {}
    # Replacing chunks replaces keyword rows too.
    docs.store_chunks(doc.id, [Chunk(document_id=doc.id, ordinal=0, text="новый")], ["нов"])
    assert docs.keyword_search(["аренд"], 10) == []
    # Only the ready document is counted; the other is still indexing.
    assert docs.totals() == {"documents": 1, "chunks": 1, "failed": 0, "indexing": 1}
    assert docs.orphan_keyword_rows() == 0
    docs.delete(doc.id)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM chunk_fts WHERE document_id = :d"), {"d": doc.id})
        assert rows.scalar_one() == 0
    assert docs.totals() == {"documents": 0, "chunks": 0, "failed": 0, "indexing": 1}
    assert [d.id for d in docs.with_status(DocumentStatus.INDEXING)] == [other.id]


def test_orphan_keyword_rows_are_found_and_removed(docs: DocumentRepo, engine: Engine) -> None:
    doc = docs.add(_doc("договор.txt", "a" * 64))
    docs.store_chunks(doc.id, [Chunk(document_id=doc.id, ordinal=0, text="т")], ["аренд"])
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO chunk_fts(stems, chunk_id, document_id) VALUES ('аренд', 'gone', :d)"),
            {"d": doc.id},
        )
    assert docs.orphan_keyword_rows() == 1
    assert docs.delete_orphan_keyword_rows() == 1
    assert docs.orphan_keyword_rows() == 0
    assert docs.chunk_ids_by_document() == {doc.id: [docs.chunks(doc.id)[0].id]}


def _exhaustive_keyword_ranking(
    engine: Engine, terms: list[str], documents: set[str] | None, docs: DocumentRepo | None = None
) -> list[tuple[str, float]]:
    """Every matching chunk of a ready document scored by the engine, best first.

    Equal scores: in the order the rows were stored in FTS5 (what sorting every row by bm25()
    gave before issue 13), by chunk id in PostgreSQL. PostgreSQL's score is RUM's rank (1 over
    its distance, equal ranks by the rank normalised by length first) where the keyword rows
    have the RUM index, else ts_rank normalisation 1. With the tantivy mirror: tantivy's BM25 of
    every matching row, collected without a limit (nothing pruned), ties by rowid.
    """
    mirror = getattr(docs.keywords, "mirror", None) if docs is not None else None
    if mirror is not None:
        with engine.connect() as conn:
            ranked = mirror.exhaustive(conn, terms)
            cols = {
                int(r[0]): (str(r[1]), str(r[2]))
                for r in conn.execute(
                    text(
                        "SELECT f.rowid, f.chunk_id, f.document_id FROM chunk_fts f "
                        "JOIN document d ON d.id = f.document_id WHERE d.status = 'READY'"
                    )
                )
            }
        return [
            (cols[r][0], score)
            for r, score in ranked
            if r in cols and (documents is None or cols[r][1] in documents)
        ]
    if engine.dialect.name == "sqlite":
        sql = (
            "SELECT f.chunk_id, f.document_id, -bm25(chunk_fts), f.rowid FROM chunk_fts f "
            "JOIN document d ON d.id = f.document_id WHERE chunk_fts MATCH :q AND d.status = 'READY'"
        )
        q = " OR ".join(f'"{t}"' for t in terms)
    else:
        with engine.connect() as conn:
            rum = has_rum_index(conn)
        # RUM's equal ranks go by the rank normalised by length (shorter first), then chunk id.
        score = (
            "1.0 / (f.tsv <=> q), f.tsv <=> (q, 1)::rum_distance_query" if rum else "ts_rank(f.tsv, q, 1), 0"
        )
        sql = (
            f"SELECT f.chunk_id, f.document_id, {score}, f.chunk_id FROM chunk_fts f "
            "JOIN document d ON d.id = f.document_id, to_tsquery('simple'::regconfig, :q) q "
            "WHERE f.tsv @@ q AND d.status = 'READY'"
        )
        q = " | ".join(f"'{t}'" for t in terms)
    with engine.connect() as conn:
        rows = conn.execute(text(sql), {"q": q}).all()
    if engine.dialect.name != "sqlite":
        rows = [(c, d, s, (float(n), t)) for c, d, s, n, t in rows]
    kept = [(float(s), tie, str(c)) for c, d, s, tie in rows if documents is None or d in documents]
    return [(c, s) for s, _, c in sorted(kept, key=lambda r: (-r[0], r[1]))]


def test_limited_keyword_search_is_the_top_of_the_exhaustive_ranking(
    docs: DocumentRepo, engine: Engine
) -> None:
    # A generated library where most fragments match (a few common stems), whole fragments
    # repeat in other documents (equal scores: ties), and some documents are not ready: the
    # limited search must give exactly the first rows of scoring everything.
    import random

    rng = random.Random(7)
    vocab = [f"слов{i}" for i in range(40)]
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    pool = [" ".join(rng.choices(vocab, weights, k=rng.randint(3, 25))) for _ in range(60)]
    ready_ids: list[str] = []
    for n in range(12):
        doc = docs.add(_doc(f"д{n}.txt", f"{n:064d}"))
        stems = [rng.choice(pool) for _ in range(30)]
        chunks = [Chunk(document_id=doc.id, ordinal=i, text=st) for i, st in enumerate(stems)]
        docs.store_chunks(doc.id, chunks, stems)
        if n % 4 != 3:  # every fourth document stays indexing
            docs.touch_indexed(doc.id)
            ready_ids.append(doc.id)
    scope = set(ready_ids[1:4]) | {docs.list_all()[0].id}
    for terms in (["слов0"], ["слов0", "слов1", "слов7"], ["слов3", "слов30", "нет"], vocab[::5]):
        for documents in (None, scope):
            full = _exhaustive_keyword_ranking(engine, terms, documents, docs)
            assert full, terms
            # Ties exist and straddle limits (a repeated fragment scores the same everywhere).
            for limit in (1, 2, 5, 13, 40, len(full), len(full) + 5):
                got = docs.keyword_search(terms, limit, documents=documents)
                assert [c for c, _ in got] == [c for c, _ in full[:limit]], (terms, limit)
                assert [s for _, s in got] == pytest.approx([s for _, s in full[:limit]])
    scores = [s for _, s in _exhaustive_keyword_ranking(engine, ["слов0"], None, docs)]
    assert len(set(scores)) < len(scores)  # the corpus does have ties
