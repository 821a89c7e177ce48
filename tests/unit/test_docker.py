"""The Docker image and the scale-out set, tested on the host: no image is built here, so every
command the image runs is a script under deploy/ and these tests run those scripts themselves."""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.backends import unavailable

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGE = "multimodal-rag-ru:latest"


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _programs(command: str) -> list[str]:
    """The programs a RUN/CMD command starts: exec form's first item, or each shell command's first word."""
    if command.startswith("["):
        return [json.loads(command)[0]]
    programs = []
    for part in re.split(r"&&|\|\||;|\|", command):
        words = shlex.split(part)
        if words:
            programs.append(words[0])
    return programs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        res = subprocess.run([DEPLOY / "healthcheck.sh", url], env=_script_env(), capture_output=True)
        if res.returncode == 0:
            return
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer in {timeout_s} s")


def _script_env(**extra: str) -> dict[str, str]:
    """The deploy scripts run with this venv's Python, as the image runs them with /opt/venv's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "CHROMA_", "DATABASE_URL"))}
    env["PYTHON"] = sys.executable
    env["RAG_SECRETS_FILE"] = str(ROOT / "tests" / "no-secrets.toml")  # as conftest: never a real one
    env.update(extra)
    return env


@pytest.fixture
def server() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_image_runs_only_scripts_under_deploy_each_copied_before_its_run() -> None:
    instructions = _instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim-bookworm")
    copied: list[str] = []  # what the image holds so far (sources of COPY)
    checked = []
    for word, args in instructions:
        if word == "COPY":
            sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
            copied += [s.rstrip("/") for s in sources]
            continue
        if word == "HEALTHCHECK":
            args = re.sub(r"^(--\S+\s+)*", "", args)
            assert args.startswith("CMD "), "HEALTHCHECK must run a command (deploy/healthcheck.sh)"
            args = args.removeprefix("CMD ").strip()
        elif word not in {"RUN", "CMD", "ENTRYPOINT"}:
            continue
        for program in _programs(args):
            assert program.startswith("deploy/") and program.endswith(".sh"), f"{word} {args}"
            assert (ROOT / program).is_file(), f"{word} {args}: {program} is not in the repository"
            assert any(c in {".", "deploy", program} for c in copied), f"{program} runs before it is copied"
            checked.append((word, program))
    assert {w for w, _ in checked} == {"RUN", "CMD", "HEALTHCHECK"}
    assert ("CMD", "deploy/start-app.sh") in checked
    assert ("HEALTHCHECK", "deploy/healthcheck.sh") in checked
    assert ("RUN", "deploy/install-python.sh") in checked
    env = " ".join(args for word, args in instructions if word == "ENV")
    assert "RAG_DATA_DIR=/data" in env
    assert ("VOLUME", "/data") in instructions
    assert ("EXPOSE", "8501") in instructions
    users = [args for word, args in instructions if word == "USER"]
    assert users and users[-1] not in {"root", "0"}


def test_every_deploy_script_parses_and_is_executable() -> None:
    scripts = [*sorted(DEPLOY.glob("*.sh")), ROOT / "scripts" / "servers.sh"]
    assert len(scripts) >= 7
    for script in scripts:
        res = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
        assert res.returncode == 0, f"{script}: {res.stderr}"
        assert os.access(script, os.X_OK), f"{script} is not executable (git update-index --chmod=+x)"
        assert "set -euo pipefail" in script.read_text(encoding="utf-8"), script


def test_the_system_step_installs_packages_txt() -> None:
    res = subprocess.run([DEPLOY / "install-system.sh", "--dry-run"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    wanted = [
        line.strip()
        for line in (ROOT / "packages.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    installed = res.stdout.split("--no-install-recommends")[1].split()
    assert installed[: len(wanted)] == wanted
    assert {"tesseract-ocr-rus", "ca-certificates"} <= set(installed)


def _certificate() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Russian Trusted Root CA (test)")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def test_the_russian_ca_step_installs_der_and_pem_certificates_as_pem(tmp_path: Path) -> None:
    certs, ca_dir = tmp_path / "certs", tmp_path / "ca-certificates"
    certs.mkdir()
    der, pem = _certificate(), _certificate()
    # Gosuslugi's names: DER as .cer, PEM as *_pem.crt.
    (certs / "russian_trusted_root_ca.cer").write_bytes(der.public_bytes(serialization.Encoding.DER))
    (certs / "Russian_Trusted_Sub_CA_pem.crt").write_bytes(pem.public_bytes(serialization.Encoding.PEM))
    (certs / "README.md").write_text("not a certificate", encoding="utf-8")
    env = _script_env(CA_DIR=str(ca_dir), UPDATE_CA_CERTIFICATES="echo updated")

    res = subprocess.run([DEPLOY / "add-russian-ca.sh", certs], env=env, capture_output=True, text=True)

    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith("updated")
    assert sorted(p.name for p in ca_dir.iterdir()) == [
        "russian_trusted_root_ca.crt",
        "russian_trusted_sub_ca.crt",
    ]
    assert x509.load_pem_x509_certificate((ca_dir / "russian_trusted_root_ca.crt").read_bytes()) == der
    assert x509.load_pem_x509_certificate((ca_dir / "russian_trusted_sub_ca.crt").read_bytes()) == pem


def test_the_russian_ca_step_skips_an_empty_folder_and_refuses_a_missing_or_broken_file(
    tmp_path: Path,
) -> None:
    ca_dir = tmp_path / "ca-certificates"
    env = _script_env(CA_DIR=str(ca_dir), UPDATE_CA_CERTIFICATES="false")
    empty = tmp_path / "certs"
    empty.mkdir()
    res = subprocess.run([DEPLOY / "add-russian-ca.sh", empty], env=env, capture_output=True, text=True)
    assert res.returncode == 0 and "not added" in res.stdout  # the image builds without the CA

    res = subprocess.run(
        [DEPLOY / "add-russian-ca.sh", tmp_path / "nope.crt"], env=env, capture_output=True, text=True
    )
    assert res.returncode != 0 and "gosuslugi.ru/crt" in res.stderr

    broken = tmp_path / "russian_trusted_root_ca.crt"
    broken.write_text("<html>Страница не найдена</html>", encoding="utf-8")
    res = subprocess.run([DEPLOY / "add-russian-ca.sh", broken], env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "is not a certificate" in res.stderr
    assert not ca_dir.exists() or not any(ca_dir.iterdir())


def test_the_start_script_serves_the_app_and_the_healthcheck_sees_it(
    tmp_path: Path, server: list[subprocess.Popen[bytes]]
) -> None:
    port = _free_port()
    health = f"http://127.0.0.1:{port}/_stcore/health"
    res = subprocess.run([DEPLOY / "healthcheck.sh", health], env=_script_env(), capture_output=True)
    assert res.returncode != 0  # nothing listens yet
    env = _script_env(PORT=str(port), RAG_SERVER_ADDRESS="127.0.0.1", RAG_DATA_DIR=str(tmp_path))
    server.append(
        subprocess.Popen(
            [DEPLOY / "start-app.sh"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    )
    _wait_healthy(health, server[0], timeout_s=60)
    # The default URL is the image's HEALTHCHECK: Streamlit's health endpoint on PORT.
    res = subprocess.run([DEPLOY / "healthcheck.sh"], env=_script_env(PORT=str(port)), capture_output=True)
    assert res.returncode == 0, res.stderr


def test_the_start_script_refuses_an_open_app_beyond_loopback(
    tmp_path: Path, server: list[subprocess.Popen[bytes]]
) -> None:
    port = _free_port()
    for auth in ({}, {"RAG_AUTH": "none"}):
        env = _script_env(PORT=str(port), RAG_SERVER_ADDRESS="0.0.0.0", RAG_DATA_DIR=str(tmp_path), **auth)
        try:
            res = subprocess.run(
                [DEPLOY / "start-app.sh"], env=env, capture_output=True, text=True, timeout=30
            )
        except subprocess.TimeoutExpired:
            pytest.fail("the app started without sign-in on every interface")
        assert res.returncode != 0
        # In Russian, naming both ways out.
        assert "RAG_AUTH=password" in res.stderr and "RAG_ALLOW_OPEN_ACCESS=1" in res.stderr, res.stderr
        assert "вход" in res.stderr.lower()
    # The deployer who means it says so; the app then starts and warns on its page as before.
    env = _script_env(
        PORT=str(port), RAG_SERVER_ADDRESS="0.0.0.0", RAG_DATA_DIR=str(tmp_path), RAG_ALLOW_OPEN_ACCESS="1"
    )
    server.append(
        subprocess.Popen(
            [DEPLOY / "start-app.sh"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    )
    _wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", server[0], timeout_s=60)


def test_the_chroma_script_serves_a_chroma_server(
    tmp_path: Path, server: list[subprocess.Popen[bytes]]
) -> None:
    port = _free_port()
    server.append(
        subprocess.Popen(
            [DEPLOY / "start-chroma.sh", tmp_path / "chroma", str(port), "127.0.0.1"],
            env=_script_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    _wait_healthy(f"http://127.0.0.1:{port}/api/v2/heartbeat", server[0], timeout_s=30)
    assert (tmp_path / "chroma").is_dir()


def test_the_worker_script_starts_the_rag_worker_command() -> None:
    res = subprocess.run(
        [DEPLOY / "start-worker.sh", "--help"], env=_script_env(), capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert "worker" in res.stdout


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return data


def test_the_compose_set_wires_every_process_to_postgres_chroma_and_the_queue() -> None:
    services = _compose()["services"]
    # PostgreSQL 15 with the RUM extension, built on the official image (deploy/postgres.Dockerfile).
    postgres = services["postgres"]
    assert postgres["build"] == {"context": ".", "dockerfile": "postgres.Dockerfile"}
    dockerfile = (DEPLOY / "postgres.Dockerfile").read_text()
    assert "FROM postgres:15\n" in dockerfile and "postgresql-15-rum" in dockerfile
    assert services["haproxy"]["image"] == "haproxy:2.6"
    ours = {name: s for name, s in services.items() if s.get("image") == IMAGE}
    assert set(ours) == {"chroma", "app1", "app2", "worker"}
    for name, service in ours.items():
        assert service["build"]["context"] == ".."
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        program = service["command"][0]
        assert program.startswith("deploy/") and (ROOT / program).is_file(), name
    assert ours["chroma"]["command"] == ["deploy/start-chroma.sh", "/chroma", "8000"]
    assert ours["worker"]["command"] == ["deploy/start-worker.sh"]
    for name in ("app1", "app2", "worker"):
        env = ours[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://rag:"), name
        assert env["DATABASE_URL"].endswith("@postgres:5432/rag"), name
        assert (env["CHROMA_HOST"], env["CHROMA_PORT"], env["RAG_QUEUE"]) == ("chroma", "8000", "postgres")
        assert env["RAG_SECRET_KEY"].startswith("${RAG_SECRET_KEY:?"), name  # one key, required
        assert ours[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert ours["app1"]["command"] == ours["app2"]["command"] == ["deploy/start-app.sh"]


def test_the_compose_secrets_are_all_in_the_env_example() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", (DEPLOY / "compose.yaml").read_text(encoding="utf-8")))
    assert required == {"POSTGRES_PASSWORD", "RAG_SECRET_KEY"}
    example = (DEPLOY / ".env.example").read_text(encoding="utf-8")
    for name in required:
        assert re.search(rf"^{name}=$", example, re.M), f"{name} missing from deploy/.env.example"
    # A blank admin password must never be set by copying the example.
    assert not re.search(r"^RAG_ADMIN_PASSWORD=", example, re.M)


def test_haproxy_balances_the_compose_replicas_with_sticky_cookies() -> None:
    cfg = (DEPLOY / "haproxy.cfg").read_text(encoding="utf-8")
    servers = re.findall(r"^\s*server (\S+) (\S+):8501 .*\bcookie (\S+)", cfg, re.M)
    apps = {n for n, s in _compose()["services"].items() if s.get("command") == ["deploy/start-app.sh"]}
    assert {name for name, _, _ in servers} == {host for _, host, _ in servers} == apps
    assert len({cookie for _, _, cookie in servers}) == len(servers)
    assert re.search(r"^\s*cookie SERVERID insert indirect nocache", cfg, re.M)
    assert re.search(r"^\s*timeout tunnel 1h", cfg, re.M)
    assert re.search(r"^\s*option httpchk GET /_stcore/health", cfg, re.M)
    haproxy = _compose()["services"]["haproxy"]
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy["volumes"]


def test_haproxy_accepts_its_configuration() -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        unavailable("haproxy (packages-dev.txt: apt-get install haproxy)")
    res = subprocess.run([haproxy, "-c", "-f", DEPLOY / "haproxy.cfg"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Configuration file is valid" in res.stdout + res.stderr
    assert "[ALERT]" not in res.stdout + res.stderr


def _pg_bin() -> Path | None:
    """PostgreSQL's programs, where scripts/servers.sh looks for them."""
    pg_config = shutil.which("pg_config")
    found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True) if pg_config else None
    for folder in (found.stdout.strip() if found else "", "/usr/lib/postgresql/15/bin"):
        if folder and (Path(folder) / "initdb").is_file():
            return Path(folder)
    return None


def test_the_servers_script_starts_and_stops_postgres_and_chroma_on_loopback(tmp_path: Path) -> None:
    pg_bin = _pg_bin()
    if pg_bin is None:
        unavailable("PostgreSQL 15 (packages-dev.txt: apt-get install postgresql-15)")
    script, folder = ROOT / "scripts" / "servers.sh", tmp_path / "servers"
    try:
        start = subprocess.run([script, "start", folder], capture_output=True, text=True, timeout=120)
        assert start.returncode == 0, start.stderr
        match = re.fullmatch(
            r"export RAG_TEST_DATABASE_URL=postgresql\+psycopg://rag@127\.0\.0\.1:(\d+)/postgres\n"
            r"export RAG_TEST_CHROMA=127\.0\.0\.1:(\d+)\n",
            start.stdout,
        )
        assert match, start.stdout
        assert (folder / "env").read_text(encoding="utf-8") == start.stdout
        pg_port, chroma_port = match.groups()
        ready = [str(pg_bin / "pg_isready"), "-h", "127.0.0.1", "-p", pg_port, "-U", "rag"]
        heartbeat = [str(DEPLOY / "healthcheck.sh"), f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat"]
        assert subprocess.run(ready, capture_output=True).returncode == 0
        assert subprocess.run(heartbeat, env=_script_env(), capture_output=True).returncode == 0
        again = subprocess.run([script, "start", folder], capture_output=True, text=True, timeout=120)
        assert (again.returncode, again.stdout) == (0, start.stdout)  # running: the same servers
        chroma_pid = int((folder / "chroma.pid").read_text(encoding="utf-8"))
    finally:
        stop = subprocess.run([script, "stop", folder], capture_output=True, text=True, timeout=120)
    assert stop.returncode == 0, stop.stderr
    assert subprocess.run(ready, capture_output=True).returncode != 0
    assert subprocess.run(heartbeat, env=_script_env(), capture_output=True).returncode != 0
    assert not Path(f"/proc/{chroma_pid}").exists()
    assert not (folder / "env").exists() and not (folder / "pgbase").exists()
    stop = subprocess.run([script, "stop", folder], capture_output=True, text=True, timeout=120)
    assert stop.returncode == 0, stop.stderr  # stopping twice is fine


@pytest.mark.slow
def test_the_python_step_builds_a_venv_that_runs_the_app_without_torch(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = _script_env()
    res = subprocess.run(
        [DEPLOY / "install-python.sh", venv], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout + res.stderr
    python = str(venv / "bin" / "python")
    app_env = {**env, "PYTHONPATH": str(ROOT)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, *args], cwd=tmp_path, env=app_env, capture_output=True, text=True, timeout=300
        )

    torch = run("-c", "import torch")
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr
    # The app's modules, the libraries its pages and ingestion import, and the PostgreSQL driver
    # that deploy/compose.yaml's DATABASE_URL (postgresql+psycopg) names.
    imports = "import rag.cli, settings, streamlit, chromadb, pytesseract, psycopg"
    res = run("-c", imports)
    assert res.returncode == 0, res.stderr
    res = run("-m", "rag", "--help")
    assert res.returncode == 0, res.stderr
    assert "ingest" in res.stdout
    # The image's two programs besides Streamlit: the worker and the Chroma server.
    res = run("-m", "rag", "worker", "--help")
    assert res.returncode == 0, res.stderr
    assert (venv / "bin" / "chroma").is_file()
    # And it answers offline: indexing with the bundled embedders, the extractive provider.
    doc = tmp_path / "dogovor.txt"
    doc.write_bytes("Договор аренды. Срок аренды составляет 11 месяцев.".encode("cp1251"))
    data = str(tmp_path / "data")
    res = run("-m", "rag", "ingest", str(doc), "--data-dir", data)
    assert res.returncode == 0 and "indexed" in res.stdout, res.stdout + res.stderr
    res = run("-m", "rag", "ask", "Какой срок аренды?", "--json", "--data-dir", data)
    assert res.returncode == 0, res.stderr
    assert "11 месяцев" in json.loads(res.stdout)["answer"]
