#!/usr/bin/env bash
# Lint, type-check and run every test (unit, app, eval), offline.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/system-packages.sh --dev
./scripts/setup.sh
./scripts/test-servers.sh   # the OIDC provider of the sign-in browser tests (npm)
# PostgreSQL and a Chroma server on loopback: the storage contract suites run on them as well as on
# SQLite and embedded Chroma (unless the caller started them already, as .ci/run does).
if [ -z "${RAG_TEST_DATABASE_URL:-}" ]; then
  servers_dir=$(mktemp -d /tmp/rag-test-servers.XXXXXX)
  trap './scripts/servers.sh stop "$servers_dir" >/dev/null 2>&1 || true; rm -rf "$servers_dir"' EXIT
  if servers_env=$(./scripts/servers.sh start "$servers_dir"); then
    eval "$servers_env"
  else
    echo "PostgreSQL / Chroma test servers did not start: their tests are skipped here" \
      "(CI fails them). Install postgresql-15 (packages-dev.txt)." >&2
  fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
