#!/usr/bin/env bash
# Lint, type-check and run every test (unit, app, eval), offline.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/system-packages.sh --dev
./scripts/setup.sh
./scripts/test-servers.sh   # the OIDC provider of the sign-in browser tests (npm)
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
