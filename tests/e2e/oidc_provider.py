"""A real OpenID Connect provider for the RAG_AUTH=oidc tests: ``node tests/e2e/oidc/server.mjs``.

panva's certified ``oidc-provider`` (npm, pinned in ``tests/e2e/oidc/package-lock.json``;
``scripts/test-servers.sh`` installs it) with one confidential client and these accounts (the
name typed into the provider's form / password; each account's ``sub`` is that name):

* ``alice@example.test`` / ``alice-pass``: an admin in the test configuration;
* ``bob@example.test`` / ``bob-pass``: a member;
* ``carol@example.test`` / ``carol-pass``: a newcomer (waits for approval under ``pending``);
* ``mallory`` / ``mallory-pass``: claims alice's address, which the provider has not verified;
* ``twin`` / ``twin-pass``: a second account whose verified address is bob's;
* ``eve@elsewhere.test`` / ``eve-pass``: a verified address outside the allowed domain.

Without ``node`` or the installed packages the tests skip themselves on a developer machine and
fail in CI (env ``CI`` set).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from tests.e2e.harness import REPO_ROOT, free_port

OIDC_DIR = REPO_ROOT / "tests" / "e2e" / "oidc"
CLIENT_ID = "rag-test"
ALICE = ("alice@example.test", "alice-pass")
BOB = ("bob@example.test", "bob-pass")
CAROL = ("carol@example.test", "carol-pass")
MALLORY = ("mallory", "mallory-pass")
TWIN = ("twin", "twin-pass")
EVE = ("eve@elsewhere.test", "eve-pass")
READY_TIMEOUT = 30.0


@dataclass
class Provider:
    """A running provider: where it is and the client's credentials."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    process: subprocess.Popen[str] = field(repr=False)
    output: list[str] = field(default_factory=list, repr=False)

    @property
    def metadata_url(self) -> str:
        """The discovery document (Streamlit's ``server_metadata_url``)."""
        return f"{self.issuer}/.well-known/openid-configuration"

    def log(self) -> str:
        """Everything the provider printed so far (stdout and stderr)."""
        return "".join(self.output)


def _unavailable(reason: str) -> None:
    hint = "run scripts/test-servers.sh (needs node and npm)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: the OIDC tests must run in CI; {hint}", pytrace=False)
    pytest.skip(f"{reason}; {hint}")


def _drain(process: subprocess.Popen[str], output: list[str], ready: threading.Event) -> None:
    # Reads until the process ends, so a chatty provider never blocks on a full pipe.
    assert process.stdout is not None
    for line in process.stdout:
        output.append(line)
        if line.strip() == "READY":
            ready.set()


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def run_provider(redirect_uris: list[str]) -> Iterator[Provider]:
    """Start the provider on a free loopback port for the block; stop it afterwards."""
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        _unavailable(f"{OIDC_DIR / 'node_modules'} is missing")
    assert node is not None

    port = free_port()
    secret = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "OIDC_PORT": str(port),
        "OIDC_CLIENT_SECRET": secret,
        "OIDC_REDIRECT_URIS": ",".join(redirect_uris),
    }
    process = subprocess.Popen(
        [node, str(OIDC_DIR / "server.mjs")],
        cwd=OIDC_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    provider = Provider(
        issuer=f"http://127.0.0.1:{port}",
        client_id=CLIENT_ID,
        client_secret=secret,
        redirect_uris=list(redirect_uris),
        process=process,
    )
    ready = threading.Event()
    reader = threading.Thread(target=_drain, args=(process, provider.output, ready), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.wait(0.05):
            if process.poll() is not None:
                reader.join(timeout=2)
                raise RuntimeError(f"the OIDC provider exited with {process.returncode}:\n{provider.log()}")
            if time.monotonic() > deadline:
                waited = f"{READY_TIMEOUT:.0f} s"
                raise TimeoutError(f"the OIDC provider was not READY in {waited}:\n{provider.log()}")
        yield provider
    finally:
        _stop(process)
        reader.join(timeout=5)
