#!/usr/bin/env bash
# Lint, type-check and run every test (unit, app, eval), offline.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/system-packages.sh --dev
./scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
