#!/usr/bin/env bash
# Starts a Chroma server (the `chroma` command of the chromadb wheel, already in the app's venv):
# deploy/compose.yaml runs it from the app image. No authentication: keep it on a private network.
#
#   deploy/start-chroma.sh [PATH [PORT [HOST]]]     # defaults: /chroma 8000 0.0.0.0
#
# The app reaches it through CHROMA_HOST / CHROMA_PORT. PYTHON (default python3) names the venv
# whose chroma runs.
set -euo pipefail

path="${1:-/chroma}"
port="${2:-8000}"
host="${3:-0.0.0.0}"
bin="$(dirname "$(command -v "${PYTHON:-python3}")")"
mkdir -p "$path"
export ANONYMIZED_TELEMETRY=False
exec "$bin/chroma" run --path "$path" --host "$host" --port "$port"
