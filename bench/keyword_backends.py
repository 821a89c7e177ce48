"""Keyword retrieval quality of the two keyword engines on XQuAD, side by side.

Each XQuAD paragraph is a ready document with one fragment, written by ``DocumentRepo`` into a
SQLite file (FTS5, bm25) and into a fresh PostgreSQL database (``simple`` tsvector of the same
stems, GIN, ``ts_rank`` normalisation 1); every question is searched on both with the app's own
``keyword_search(query_terms(q))``. Only keyword search differs between the backends (the
vectors are Chroma's either way), so this is the backends' whole quality difference.

    eval "$(scripts/servers.sh start /tmp/srv)"
    .venv/bin/python bench/keyword_backends.py ../shared/eval/xquad-ru.json ../shared/eval/xquad-en.json
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from language import query_terms, stem_string  # noqa: E402
from rag.eval import load_squad  # noqa: E402
from storage import Chunk, Document, DocumentRepo, DocumentStatus, make_engine  # noqa: E402
from tests.backends import Servers  # noqa: E402


def _fill(repo: DocumentRepo, paragraphs: list[str]) -> list[str]:
    """One ready document per paragraph; the chunk id of each paragraph."""
    ids = []
    for i, text in enumerate(paragraphs):
        sha = hashlib.sha256(f"{i}:{text}".encode()).hexdigest()
        doc = repo.add(
            Document(filename=f"p{i}.txt", sha256=sha, size=len(text), status=DocumentStatus.INDEXING)
        )
        chunk = Chunk(document_id=doc.id, ordinal=0, text=text)
        repo.store_chunks(doc.id, [chunk], [stem_string(text)])
        repo.touch_indexed(doc.id)
        ids.append(chunk.id)
    return ids


def main() -> int:
    """Print R@1, R@5, MRR@10 and query time of both engines per dataset."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("datasets", nargs="+", type=Path)
    args = p.parse_args()
    url, chroma = os.environ.get("RAG_TEST_DATABASE_URL"), os.environ.get("RAG_TEST_CHROMA")
    if not url or not chroma:
        print('start the servers first: eval "$(scripts/servers.sh start DIR)"', file=sys.stderr)
        return 2
    servers = Servers(url, chroma)
    print(f"{'dataset':<14}{'engine':<12}{'R@1':>7}{'R@5':>7}{'MRR@10':>8}{'p50 ms':>8}{'p95 ms':>8}")
    for path in args.datasets:
        paragraphs, questions = load_squad(path)
        with tempfile.TemporaryDirectory() as tmp:
            engines = {
                "sqlite-fts5": make_engine(f"sqlite:///{Path(tmp) / 'kw.sqlite3'}"),
                "postgresql": make_engine(servers.new_database()),
            }
            repos = {name: DocumentRepo(e) for name, e in engines.items()}
            chunk_of = {name: _fill(repo, paragraphs) for name, repo in repos.items()}
            ranks: dict[str, list[int | None]] = {name: [] for name in repos}
            times: dict[str, list[float]] = {name: [] for name in repos}
            for q in questions:
                terms = query_terms(q.text)
                for name, repo in repos.items():  # the engines alternate question by question
                    start = time.perf_counter()
                    hits = [cid for cid, _ in repo.keyword_search(terms, 10)]
                    times[name].append((time.perf_counter() - start) * 1000)
                    want = chunk_of[name][q.paragraph]
                    ranks[name].append(hits.index(want) + 1 if want in hits else None)
            for name in repos:
                r = ranks[name]
                n = len(r)
                r1 = sum(1 for x in r if x == 1) / n
                r5 = sum(1 for x in r if x is not None and x <= 5) / n
                mrr = sum(1 / x for x in r if x is not None) / n
                t = sorted(times[name])
                p95 = t[int(0.95 * (len(t) - 1))]
                print(
                    f"{path.stem:<14}{name:<12}{r1:>7.3f}{r5:>7.3f}{mrr:>8.3f}{statistics.median(t):>8.2f}{p95:>8.2f}"
                )
            for e in engines.values():
                e.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
