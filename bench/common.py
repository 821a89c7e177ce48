"""Shared helpers of the performance benchmarks: a seeded Russian corpus, percentiles, machine
facts, timing wrappers, and starting, driving and stopping the real Streamlit app.

The corpus recombines the sentences of the XQuAD-ru paragraphs (``../shared/eval``) into many
documents, so the text is real Russian prose while the size is whatever a benchmark needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from language import stem_string
from settings import Settings
from storage import Chunk, Document, DocumentRepo, DocumentStatus
from storage.models import utcnow
from tests.e2e.harness import browser, free_port  # noqa: F401  (re-exported for the scripts)

# The scripts put the repository root on sys.path before importing this module.
REPO_ROOT = Path(__file__).resolve().parents[1]
XQUAD_RU = REPO_ROOT.parent / "shared" / "eval" / "xquad-ru.json"
STREAMLIT = REPO_ROOT / ".venv" / "bin" / "streamlit"

# Settings from the shell must not change what a benchmark measures.
SETTINGS_ENV = [f.alias for f in Settings.model_fields.values() if f.alias is not None]


# -- environment and machine ---------------------------------------------------------------


def isolate_env() -> None:
    """Drop every setting from the environment and point secrets.toml at nothing."""
    for name in SETTINGS_ENV:
        os.environ.pop(name, None)
    # A developer's .streamlit/secrets.toml would otherwise reach Settings (and the fakes).
    os.environ["RAG_SECRETS_FILE"] = str(Path(tempfile.gettempdir()) / "rag-bench-no-secrets.toml")


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Default settings on a data directory, never reading .env."""
    return Settings(_env_file=None, RAG_DATA_DIR=data_dir, **overrides)


def machine_info() -> dict[str, Any]:
    """CPU count and model, Python, embedding model, and the load average now."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "embedding_model": Settings.model_fields["embedding_model"].default,
        "load_avg": load_avg(),
    }


def load_avg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_self_mb() -> float:
    """This process's peak resident set size in MiB (ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmHWM (peak RSS) and VmRSS of a process, in MiB, from /proc."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def emit(result: dict[str, Any]) -> None:
    """Print the benchmark's one JSON object."""
    print(json.dumps(result, ensure_ascii=False, indent=2))


def log(message: str) -> None:
    """Progress on stderr, so stdout stays one JSON object."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- statistics ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """p50, p95, mean and max of durations given in seconds, as milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "mean_ms": round(sum(ms) / len(ms), 2) if ms else float("nan"),
        "max_ms": round(max(ms), 2) if ms else float("nan"),
    }


@dataclass
class Stopwatch:
    """Accumulated seconds per named stage."""

    seconds: dict[str, float] = field(default_factory=dict)

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with its running time added to ``stage``."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started

        return timed


# -- corpus ----------------------------------------------------------------------------------


def _xquad() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(XQUAD_RU.read_text(encoding="utf-8-sig"))
    return data


@cache
def sentence_pool() -> tuple[str, ...]:
    """Every XQuAD-ru sentence of 4 to 60 words, in file order (razdel)."""
    from razdel import sentenize

    out: list[str] = []
    for article in _xquad()["data"]:
        for para in article["paragraphs"]:
            context = para["context"].replace("\ufeff", "")
            for s in sentenize(context):
                words = len(s.text.split())
                if 4 <= words <= 60:
                    out.append(" ".join(s.text.split()))
    return tuple(out)


@cache
def questions() -> tuple[str, ...]:
    """Every XQuAD-ru question, in file order."""
    return tuple(
        qa["question"].strip()
        for article in _xquad()["data"]
        for para in article["paragraphs"]
        for qa in para["qas"]
    )


def sample_questions(n: int, seed: int) -> list[str]:
    """n questions drawn without replacement (with replacement beyond 1190)."""
    rng = random.Random(seed)
    pool = list(questions())
    if n <= len(pool):
        return rng.sample(pool, n)
    return [rng.choice(pool) for _ in range(n)]


def _document_text(rng: random.Random, paragraphs: int) -> str:
    pool = sentence_pool()
    paras = []
    for _ in range(paragraphs):
        paras.append(" ".join(rng.choice(pool) for _ in range(rng.randint(3, 7))))
    return "\n\n".join(paras)


def generate_documents(target_chunks: int, seed: int = 1) -> list[tuple[str, bytes, int]]:
    """Plain-text documents (name, UTF-8 bytes, chunk count) adding up to ``target_chunks``.

    Each document has 4 to 40 paragraphs of 3 to 7 random XQuAD-ru sentences; its chunk count
    is taken from the app's own chunker with default settings, so the total is exact.
    """
    from rag.chunking import chunk_pages
    from rag.ingest import Page

    defaults = make_settings(Path("unused"))
    rng = random.Random(seed)
    docs: list[tuple[str, bytes, int]] = []
    total = 0
    while total < target_chunks:
        text = _document_text(rng, rng.randint(4, 40))
        chunks = chunk_pages(
            [Page(None, text)], max_words=defaults.chunk_words, overlap=defaults.chunk_overlap_sentences
        )
        if total + len(chunks) > target_chunks:
            # The last document is cut down so the corpus has exactly the requested size.
            kept = chunks[: target_chunks - total]
            text = text[: kept[-1].end]
            chunks = chunk_pages(
                [Page(None, text)],
                max_words=defaults.chunk_words,
                overlap=defaults.chunk_overlap_sentences,
            )
        docs.append((f"корпус-{len(docs) + 1:05d}.txt", text.encode("utf-8"), len(chunks)))
        total += len(chunks)
    return docs


def generate_chunk_texts(n: int, seed: int = 1, max_words: int = 100) -> list[str]:
    """n chunk-like texts: runs of whole random sentences of at most ``max_words`` words."""
    rng = random.Random(seed)
    pool = sentence_pool()
    out = []
    for _ in range(n):
        words, parts = 0, list[str]()
        target = rng.randint(max_words // 2, max_words)
        while True:
            s = rng.choice(pool)
            w = len(s.split())
            if parts and words + w > target:
                break
            parts.append(s)
            words += w
        out.append(" ".join(parts))
    return out


# -- the app ---------------------------------------------------------------------------------


def app_env(data_dir: Path) -> dict[str, str]:
    """Environment for the app: no settings from the shell, this data directory."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    env["RAG_DATA_DIR"] = str(data_dir)
    env["RAG_SECRETS_FILE"] = str(Path(tempfile.gettempdir()) / "rag-bench-no-secrets.toml")
    return env


class App:
    """``streamlit run streamlit_app.py`` on a free port; ``pid`` is the server's Python process."""

    def __init__(self, data_dir: Path, log_path: Path | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"rag-bench-app-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> float:
        """Launch the server; return the perf_counter time of the launch."""
        cmd = [
            str(STREAMLIT),
            "run",
            "streamlit_app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(self.port),
            "--server.address",
            "127.0.0.1",
        ]
        with self.log_path.open("wb") as out:
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(
                cmd, cwd=REPO_ROOT, env=app_env(self.data_dir), stdout=out, stderr=subprocess.STDOUT
            )
        return self.started_at

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def wait_healthy(self, timeout: float = 60.0) -> float:
        """Seconds from launch until ``/_stcore/health`` answers 200."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: see {self.log_path}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1) as r,
            ):
                if r.status == 200:
                    return time.perf_counter() - self.started_at
            time.sleep(0.02)
        raise TimeoutError(f"streamlit not healthy after {timeout} s: see {self.log_path}")

    def stop(self) -> None:
        """SIGTERM the server (SIGKILL after 10 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def running_app(data_dir: Path) -> Iterator[App]:
    """An app started on ``data_dir`` and stopped on exit."""
    app = App(data_dir)
    app.start()
    try:
        yield app
    finally:
        app.stop()


def answer_markers() -> list[str]:
    """Openings of every offline answer (found, nothing found, no fragments)."""
    from providers.offline import NO_FRAGMENTS, NOTHING_FOUND

    return ["По документам", NOTHING_FOUND[:30], NO_FRAGMENTS[:30]]


# Resolves once the assistant's message shows answer text (not just the spinner).
_ANSWER_VISIBLE = """(markers) => {
  const msgs = document.querySelectorAll('[data-testid="stChatMessage"]');
  if (msgs.length < 2) return false;
  const text = msgs[msgs.length - 1].innerText || '';
  return markers.some((m) => text.includes(m));
}"""


def ask_in_browser(b: Any, app: App, question: str, timeout_s: float = 300.0) -> dict[str, float]:
    """Open the app, ask one question; seconds since the app's launch at each milestone."""
    page = b.new_page()
    try:
        since = app.started_at
        marks: dict[str, float] = {}
        opened = time.perf_counter()
        page.goto(app.url, timeout=timeout_s * 1000)
        box = page.get_by_test_id("stChatInputTextArea")
        box.wait_for(state="visible", timeout=timeout_s * 1000)
        marks["chat_input_visible_s"] = time.perf_counter() - since
        marks["page_open_to_input_s"] = time.perf_counter() - opened
        box.fill(question)
        box.press("Enter")
        marks["question_sent_s"] = time.perf_counter() - since
        page.wait_for_function(_ANSWER_VISIBLE, arg=answer_markers(), polling=50, timeout=timeout_s * 1000)
        marks["answer_visible_s"] = time.perf_counter() - since
        marks["answer_after_question_s"] = marks["answer_visible_s"] - marks["question_sent_s"]
        return {k: round(v, 3) for k, v in marks.items()}
    finally:
        page.close()


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command name may hold spaces and parentheses: split after its closing one.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(stat.parent.name))
    return out


def count_rows(data_dir: Path) -> dict[str, int]:
    """Documents and chunks in a data directory's SQLite file (read-only)."""
    import sqlite3

    path = make_settings(data_dir).sqlite_path
    if not path.exists():
        return {"documents": 0, "chunks": 0}
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        docs = db.execute("SELECT count(*) FROM document").fetchone()[0]
        chunks = db.execute("SELECT count(*) FROM chunk").fetchone()[0]
    return {"documents": int(docs), "chunks": int(chunks)}


def write_ready_document(
    repo: DocumentRepo,
    texts: list[str],
    model: str,
    stems: list[str] | None = None,
    chunk_ids: list[str] | None = None,
    **fields: Any,
) -> list[Chunk]:
    """A ready text document of these fragments with their keyword rows, written the app's way."""
    doc = repo.add(
        Document(
            **fields,
            mime_type="text/plain",
            encoding="utf-8",
            status=DocumentStatus.READY,
            chunk_count=len(texts),
            embedding_model=model,
            indexed_at=utcnow(),
        )
    )
    chunks, offset = [], 0
    for j, t in enumerate(texts):
        chunk = Chunk(document_id=doc.id, ordinal=j, text=t, char_start=offset, char_end=offset + len(t))
        if chunk_ids is not None:
            chunk.id = chunk_ids[j]
        chunks.append(chunk)
        offset += len(t) + 2
    repo.store_chunks(doc.id, chunks, stems if stems is not None else [stem_string(t) for t in texts])
    return chunks
