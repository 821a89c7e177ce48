"""Load: N browser sessions at once for M minutes, each uploading new files and asking about them.

    .venv/bin/python bench/load.py --sessions 8 --minutes 3
    .venv/bin/python bench/load.py --sessions 4 --minutes 20 --warmup-minutes 5   # the soak

One app process (``streamlit run``: embedded defaults, sign-in off, the offline provider) on a
fresh data directory, and one Debian chromium with a context per session, driven through
Playwright's async API so that the sessions really overlap. Until the time is up, each session
in turn: uploads a new text (paragraphs of XQuAD-ru prose around one invented fact), waits until
its sidebar reports the file indexed, asks about the fact, and waits for the answer; every few
turns it starts a new chat, as people do.

Recorded, per turn: upload → searchable (the sidebar's «Проиндексирован», refreshed every
second), upload → first answer character, question → first answer character, and question →
answer complete; p50/p95 of each. Errors: a page showing an error, an upload reported failed, a
wait over ``--step-timeout``, an answer without its fact, and tracebacks in the app's log. The
app process's RSS (VmRSS) is sampled every ``--rss-every`` seconds: at start (healthy, before
any session), after warm-up, at the end, and the series (with the load average, as the machine
may be shared). Prints one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    emit,
    isolate_env,
    load_avg,
    log,
    machine_info,
    percentile,
    proc_memory_mb,
    sentence_pool,
)
from tests.e2e.harness import CHROMIUM, CHROMIUM_ARGS, AppServer

ERROR_TEXT = "Внутренняя ошибка страницы"
PAGE_ERROR = f'[data-testid="stException"], :text("{ERROR_TEXT}")'
UPLOAD_FAILED = '[data-testid="stSidebar"] [data-testid="stAlertContentError"]'
RUN_OVER = '[data-testid="stApp"][data-test-script-state="notRunning"]'
# Resolves once the feed has ``n`` messages and the last one shows answer text: Markdown outside
# the «Ищу в документах…» spinner and the «Остановить» button that come before it.
FIRST_CHARACTER = """n => {
    const all = document.querySelectorAll('[data-testid="stChatMessage"]');
    if (all.length < n) return false;
    const texts = all[all.length - 1].querySelectorAll('[data-testid="stMarkdown"]');
    return Array.from(texts).some(
        el => !el.closest('[data-testid="stSpinner"], [data-testid="stButton"]')
            && el.innerText.trim().length > 0
    );
}"""
SYLLABLES = "ба ве ги до ку ла ме ни ро су та фе ха це чу ша ры зо пи ле".split()


@dataclass(frozen=True)
class Upload:
    """A new file: prose around one fact nobody else has, and the question that finds it."""

    name: str
    text: str
    question: str
    fact: str


def invented_word(rng: random.Random, syllables: int) -> str:
    """A word no document has (so only its own file answers the question)."""
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables)).capitalize()


def new_upload(rng: random.Random, session: int, turn: int) -> Upload:
    """The ``turn``-th file of ``session``: 3 paragraphs of 3-5 XQuAD-ru sentences and the fact."""
    pool = sentence_pool()
    project = f"{invented_word(rng, 3)}-{session}{turn}"
    engineer = invented_word(rng, 3) + "ов"
    fact = f"За проект «{project}» отвечает инженер {engineer}."
    paragraphs = [" ".join(rng.choice(pool) for _ in range(rng.randint(3, 5))) for _ in range(3)]
    paragraphs.insert(rng.randint(0, 3), fact)
    return Upload(
        name=f"load-s{session:02d}-t{turn:03d}.txt",
        text="\n\n".join(paragraphs),
        question=f"Кто отвечает за проект «{project}»?",
        fact=engineer,
    )


@dataclass
class Turn:
    """One upload and one question of one session, in seconds."""

    session: int
    turn: int
    started_s: float
    upload_to_searchable_s: float | None = None
    upload_to_first_char_s: float | None = None
    question_to_first_char_s: float | None = None
    question_to_complete_s: float | None = None
    correct: bool | None = None


@dataclass
class Run:
    """Everything measured while the sessions ran."""

    started: float
    turns: list[Turn] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    rss: list[dict[str, float]] = field(default_factory=list)
    warmup: list[Turn] = field(default_factory=list)

    def error(self, session: int, step: str, what: str) -> None:
        """Count an error and say it on stderr."""
        self.errors.append(
            {
                "at_s": round(time.perf_counter() - self.started, 1),
                "session": session,
                "step": step,
                "error": what[:500],
            }
        )
        log(f"session {session}: {step}: {what[:200]}")


class StepFailed(Exception):
    """A step of a turn ended in an error; the session reloads its page and goes on."""


async def _page_error(page: Any) -> str | None:
    if await page.locator(PAGE_ERROR).count():
        return str(await page.inner_text("body"))[:500]
    return None


async def settle(page: Any, timeout_ms: float) -> None:
    """Wait until the page's script run is over."""
    await page.wait_for_selector(RUN_OVER, timeout=timeout_ms)


async def one_turn(
    page: Any, rng: random.Random, run: Run, session: int, turn: int, timeout_ms: float
) -> Turn:
    """Upload a new file, wait until it is searchable, ask about it and wait for the answer."""
    up = new_upload(rng, session, turn)
    t = Turn(session, turn, round(time.perf_counter() - run.started, 1))
    await settle(page, timeout_ms)
    started = time.perf_counter()
    payload = {"name": up.name, "mimeType": "text/plain", "buffer": up.text.encode()}
    await page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files([payload])
    indexed = page.get_by_test_id("stSidebar").get_by_text(f"Проиндексирован: {up.name}")
    await (
        indexed.or_(page.locator(PAGE_ERROR))
        .or_(page.locator(UPLOAD_FAILED))
        .first.wait_for(timeout=timeout_ms)
    )
    if not await indexed.count():
        raise StepFailed(await _page_error(page) or await page.locator(UPLOAD_FAILED).first.inner_text())
    t.upload_to_searchable_s = time.perf_counter() - started

    await settle(page, timeout_ms)
    before = await page.get_by_test_id("stChatMessage").count()
    box = page.get_by_test_id("stChatInputTextArea")
    await box.fill(up.question)
    asked = time.perf_counter()
    await box.press("Enter")
    await page.wait_for_function(FIRST_CHARACTER, arg=before + 2, polling=50, timeout=timeout_ms)
    first = time.perf_counter()
    t.upload_to_first_char_s = first - started
    t.question_to_first_char_s = first - asked
    await settle(page, timeout_ms)
    t.question_to_complete_s = time.perf_counter() - asked
    error = await _page_error(page)
    if error:
        raise StepFailed(error)
    answer = await page.get_by_test_id("stChatMessage").last.inner_text()
    t.correct = up.fact in answer
    if not t.correct:
        run.error(session, "answer", f"«{up.question}» without «{up.fact}»: {answer}")
    return t


async def session_loop(
    browser: Any, url: str, run: Run, session: int, deadline: float, args: argparse.Namespace, turns: int = 0
) -> None:
    """One colleague's context: turns until the deadline (or ``turns`` of them), a new chat every few."""
    timeout_ms = args.step_timeout * 1000
    rng = random.Random(args.seed * 1000 + session)
    context = await browser.new_context(locale="ru-RU", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(timeout_ms)
    page = await context.new_page()
    turn = 0
    try:
        await page.goto(url)
        while time.perf_counter() < deadline or (turns and turn < turns):
            turn += 1
            try:
                await (
                    page.get_by_test_id("stChatInputTextArea").or_(page.locator(PAGE_ERROR)).first.wait_for()
                )
                error = await _page_error(page)
                if error:
                    raise StepFailed(error)
                # A chat of its own from the first turn: with sign-in off every session is the
                # one local user, and a page opens on that user's most recent chat.
                if (turn - 1) % args.turns_per_chat == 0:
                    await settle(page, timeout_ms)
                    await page.get_by_role("button", name="Новый чат").click()
                    await page.wait_for_function(
                        "() => document.querySelectorAll('[data-testid=\"stChatMessage\"]').length == 0"
                    )
                run.turns.append(await one_turn(page, rng, run, session, turn, timeout_ms))
            except StepFailed as exc:
                run.error(session, f"turn {turn}", str(exc))
                await page.goto(url)
            except Exception as exc:  # a timeout: the page is stuck; start it again
                run.error(session, f"turn {turn}", f"{type(exc).__name__}: {exc}")
                await page.goto(url)
    finally:
        await context.close()


async def sample_rss(pid: int, run: Run, every: float, stop: asyncio.Event) -> None:
    """VmRSS of the app process (MiB) every ``every`` seconds until ``stop`` is set."""
    while True:
        memory = proc_memory_mb(pid)
        run.rss.append(
            {
                "t_s": round(time.perf_counter() - run.started, 1),
                "rss_mb": memory["VmRSS"],
                "load_1m": load_avg()[0],
            }
        )
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
            return
        except TimeoutError:
            pass


def seconds(values: list[float | None]) -> dict[str, Any]:
    """Count, p50, p95 and max of durations in seconds."""
    xs = [v for v in values if v is not None]
    if not xs:
        return {"n": 0}
    return {
        "n": len(xs),
        "p50_s": round(percentile(xs, 50), 2),
        "p95_s": round(percentile(xs, 95), 2),
        "max_s": round(max(xs), 2),
    }


async def drive(app: AppServer, args: argparse.Namespace) -> Run:
    """Start the sessions together and let them run for ``--minutes``."""
    from playwright.async_api import async_playwright

    run = Run(started=time.perf_counter())
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(app.pid, run, args.rss_every, stop))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            if args.warmup_turn:
                # One turn alone first: the app loads its embedders on the first upload, which
                # would otherwise be the first turn of every session (reported apart).
                log("warm-up turn")
                warm = Run(started=run.started)
                await session_loop(browser, app.url, warm, 0, 0.0, args, turns=1)
                run.warmup = warm.turns
                run.errors.extend(warm.errors)
            deadline = time.perf_counter() + args.minutes * 60
            log(f"{args.sessions} sessions start")
            await asyncio.gather(
                *(session_loop(browser, app.url, run, n, deadline, args) for n in range(1, args.sessions + 1))
            )
        finally:
            await browser.close()
    stop.set()
    await sampler
    # The end figure: every session closed, nothing left running but the app's own threads.
    run.rss.append(
        {
            "t_s": round(time.perf_counter() - run.started, 1),
            "rss_mb": proc_memory_mb(app.pid)["VmRSS"],
            "load_1m": load_avg()[0],
        }
    )
    return run


def rss_figures(run: Run, at_health: float, warmup_s: float) -> dict[str, Any]:
    """RSS at start, after warm-up, at the end, and the growth between the last two."""
    after = [s for s in run.rss if s["t_s"] >= warmup_s]
    warm = after[0]["rss_mb"] if after else None
    end = run.rss[-1]["rss_mb"] if run.rss else None
    growth = round(100 * (end - warm) / warm, 1) if warm and end else None
    return {
        "start_mb": at_health,
        "after_warmup_mb": warm,
        "end_mb": end,
        "max_after_warmup_mb": max((s["rss_mb"] for s in after), default=None),
        "growth_after_warmup_pct": growth,
        "series": run.rss,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8, help="browser sessions at once")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long new turns start")
    parser.add_argument("--warmup-minutes", type=float, default=1.0, help="RSS growth is counted after this")
    parser.add_argument(
        "--turns-per-chat", type=int, default=5, help="a session starts a new chat after these"
    )
    parser.add_argument(
        "--rss-every", type=float, default=5.0, metavar="S", help="seconds between RSS samples"
    )
    parser.add_argument("--step-timeout", type=float, default=300.0, metavar="S", help="one wait's limit")
    parser.add_argument("--data-dir", type=Path, help="a fresh folder (default: a new temporary one)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-warmup-turn", dest="warmup_turn", action="store_false", help="start all sessions on a cold app"
    )
    args = parser.parse_args()
    isolate_env()
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="rag-bench-load-"))
    if data.exists() and any(data.iterdir()):
        parser.error(f"{data} is not empty: the benchmark starts on a fresh data directory")
    data.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    app = AppServer(data_dir=data / "data", log_path=data / "app.log")
    app.start(timeout=120)
    try:
        at_health = proc_memory_mb(app.pid)["VmRSS"]
        log(f"app healthy at {app.url}, RSS {at_health} MB; {args.sessions} sessions for {args.minutes} min")
        run = asyncio.run(drive(app, args))
    finally:
        app.stop()
    app_log = app.log()
    tracebacks = app_log.count("Traceback")
    if tracebacks:
        run.error(0, "app log", f"{tracebacks} tracebacks in {app.log_path}")
    turns = run.turns
    emit(
        {
            "benchmark": "load",
            "machine": info,
            "load_avg_end": load_avg(),
            "sessions": args.sessions,
            "minutes": args.minutes,
            "data_dir": str(data),
            "warmup_turn": [asdict(t) for t in run.warmup],
            "turns": len(turns),
            "turns_per_session": {
                n: sum(1 for t in turns if t.session == n) for n in range(1, args.sessions + 1)
            },
            "correct_answers": sum(1 for t in turns if t.correct),
            "errors": len(run.errors),
            "error_list": run.errors,
            "upload_to_searchable": seconds([t.upload_to_searchable_s for t in turns]),
            "upload_to_first_char": seconds([t.upload_to_first_char_s for t in turns]),
            "question_to_first_char": seconds([t.question_to_first_char_s for t in turns]),
            "question_to_complete": seconds([t.question_to_complete_s for t in turns]),
            "rss": rss_figures(run, at_health, args.warmup_minutes * 60),
            "turn_list": [asdict(t) for t in turns],
        }
    )
    return 0 if not run.errors else 1


if __name__ == "__main__":
    sys.exit(main())
