"""A real app and a real browser: `streamlit run` on a free port, Debian's chromium via Playwright.

Used by the end-to-end tests and by the benchmarks. The browser is the system's
``/usr/bin/chromium`` (packages-dev.txt); Playwright never downloads one here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("RAG_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Settings the app must not inherit from a developer's shell.
_APP_ENV_DROP = ("RAG_", "GIGACHAT_", "YC_", "OPENAI_", "DATABASE_URL")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def chromium_available() -> bool:
    """Whether the system chromium and the playwright package are both present."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is not None


def wait_healthy(process: subprocess.Popen[bytes], url: str, what: str, log: Any, timeout: float) -> None:
    """Wait until ``url``/_stcore/health answers 200; fail at once if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{what} did not become healthy:\n{log()}")


class _ChildProcess:
    """A child process that logs to a file and can be killed like a crash would kill it."""

    process: subprocess.Popen[bytes] | None
    log_path: Path

    def kill(self) -> None:
        """SIGKILL: what a crash, an OOM kill or a lost machine does."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


@dataclass
class AppServer(_ChildProcess):
    """A running `streamlit run streamlit_app.py` with its own data directory and log."""

    data_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    workdir: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    @property
    def url(self) -> str:
        """The app's address."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The Streamlit process id."""
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> AppServer:
        """Start the app and wait until its health endpoint answers.

        With ``workdir`` the app runs as a deployment runs it: from its own folder, reading that
        folder's ``.streamlit/secrets.toml``; otherwise from the repository, with no secrets.
        A preset ``port`` is kept (it may be part of a redirect URI).
        """
        self.port = self.port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(_APP_ENV_DROP)}
        env.update({"RAG_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1"})
        if self.workdir is None:
            env["RAG_SECRETS_FILE"] = str(REPO_ROOT / "tests" / "no-secrets.toml")
        else:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        env.update(self.env)
        log = self.log_path.open("ab")
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(REPO_ROOT / "streamlit_app.py"),
                "--server.headless",
                "true",
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(self.port),
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=self.workdir or REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_healthy(self.process, f"http://127.0.0.1:{self.port}", "the app", self.log, timeout)
        return self

    def stop(self) -> None:
        """Stop the app politely, then firmly."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def running_app(data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> Iterator[AppServer]:
    """An app for the duration of the block (on the test servers in the server pass)."""
    from tests.backends import backend_overrides

    app = AppServer(data_dir=data_dir, log_path=log_path, env={**backend_overrides(data_dir), **(env or {})})
    app.start()
    try:
        yield app
    finally:
        app.stop()


@contextmanager
def browser() -> Iterator[Any]:
    """A headless system chromium (a Playwright ``Browser``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def wait_for_app(page: Any, timeout_ms: float = 60_000, network_idle: bool = True) -> None:
    """Wait until the page's script run has finished (no 'running' indicator), and the network is idle.

    ``network_idle=False`` skips the second wait: a page with a download button (its file among
    the requests) did not reach it on a loaded machine, long after its run had finished.
    """
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)
    if network_idle:
        page.wait_for_load_state("networkidle")


def ask(page: Any, question: str, timeout_ms: float = 120_000, network_idle: bool = True) -> Any:
    """Type a question into the chat input, send it, and return the answer's message locator."""
    messages = page.get_by_test_id("stChatMessage")
    before = messages.count()
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")
    # The question and its answer are two new messages. The answer is drawn twice: live while it
    # streams, then again from storage by the rerun that follows (inside its container keyed
    # msg_<id>, with the text, sources and rating). Under load, a locator taken between the two
    # held the live form that the rerun then replaced (a click on its sources was lost, its text
    # read missing), so the wait is for the stored form with its text (or its error).
    try:
        page.wait_for_function(
            """n => {
                const all = document.querySelectorAll('[data-testid="stChatMessage"]');
                if (all.length < n) return false;
                const last = all[all.length - 1];
                if (!last.closest('[class*="st-key-msg_"]')) return false;
                const body = last.querySelector('[data-testid="stChatMessageContent"]');
                if (body === null) return false;
                if (body.querySelector('[data-testid="stAlert"]')) return true;
                return [...body.querySelectorAll('[data-testid="stMarkdownContainer"]')].some(
                    e => !e.closest('[data-testid="stExpander"]') && !e.closest('[data-testid="stPageLink"]')
                        && e.innerText.trim().length > 0);
            }""",
            arg=before + 2,
            timeout=timeout_ms,
        )
    except Exception as exc:
        last = messages.last.inner_html() if messages.count() else "(no messages)"
        raise AssertionError(f"no stored answer with text to {question!r}; the last message: {last}") from exc
    wait_for_app(page, timeout_ms, network_idle)
    return messages.last


def app_env(data_dir: Path, env: dict[str, str]) -> dict[str, str]:
    """The environment of an app-like child: the shell's minus the app's settings, plus ``env``."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(_APP_ENV_DROP)}
    out.update(
        {
            "RAG_DATA_DIR": str(data_dir),
            "PYTHONUNBUFFERED": "1",
            "RAG_SECRETS_FILE": str(REPO_ROOT / "tests" / "no-secrets.toml"),
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        }
    )
    out.update(env)
    return out


def _stop(process: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    """Stop a child politely, then firmly."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class WorkerProcess(_ChildProcess):
    """A running ``python -m rag worker`` of the shared queue (RAG_QUEUE=postgres) with its log."""

    name: str
    data_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    heartbeat_s: float = 1.0
    stalled_after_s: float = 4.0
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The worker's process id."""
        assert self.process is not None
        return self.process.pid

    def start(self) -> WorkerProcess:
        """Start the worker (without waiting: see ``wait_ready``)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rag",
                "worker",
                "--name",
                self.name,
                "--heartbeat",
                str(self.heartbeat_s),
                "--stalled-after",
                str(self.stalled_after_s),
            ],
            cwd=REPO_ROOT,
            env=app_env(self.data_dir, self.env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 60.0) -> WorkerProcess:
        """Wait until the worker has said "worker ready"."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while "worker ready" not in self.log():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {self.name} did not start:\n{self.log()}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        """SIGTERM (the worker finishes its job and stops), then SIGKILL."""
        _stop(self.process)


# haproxy in front of app replicas as deploy/haproxy.cfg has it (sticky sessions by a cookie, one
# long-lived websocket per tab), on loopback: {port} is the front, {servers} the replicas.
HAPROXY_CONFIG = """\
global
    log stdout format raw local0
    maxconn 1024

defaults
    mode http
    log global
    option httplog
    option dontlognull
    option redispatch
    retries 3
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h

frontend web
    bind 127.0.0.1:{port}
    default_backend streamlit

backend streamlit
    balance roundrobin
    cookie SERVERID insert indirect nocache
    option httpchk GET /_stcore/health
    http-check expect status 200
    default-server inter 1s fall 2 rise 1
{servers}
"""


def haproxy_available() -> bool:
    """Whether Debian's haproxy is installed."""
    return shutil.which("haproxy") is not None


@dataclass
class Haproxy:
    """``haproxy -db`` in front of app replicas; ``replicas`` maps each one's cookie to its app."""

    replicas: dict[str, AppServer]
    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The front's address."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """haproxy's log: one line per request, naming the replica that served it."""
        return self.workdir / "haproxy.log"

    def config(self) -> str:
        """The configuration file's text."""
        servers = "\n".join(
            f"    server {cookie} 127.0.0.1:{app.port} check cookie {cookie}"
            for cookie, app in self.replicas.items()
        )
        return HAPROXY_CONFIG.format(port=self.port, servers=servers)

    def start(self, timeout: float = 30.0) -> Haproxy:
        """Write the configuration, start haproxy and wait until the front answers."""
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(self.config(), encoding="utf-8")
        haproxy = shutil.which("haproxy") or "haproxy"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [haproxy, "-f", str(cfg), "-db"], cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_healthy(self.process, self.url, "haproxy", self.log, timeout)
        return self

    def stop(self) -> None:
        """Stop haproxy."""
        _stop(self.process, timeout=5)

    def log(self) -> str:
        """Everything haproxy printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
