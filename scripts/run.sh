#!/usr/bin/env bash
# Set up (first time only) and start the app on its offline defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/system-packages.sh
./scripts/setup.sh
# Loopback only unless the operator says otherwise (RAG_SERVER_ADDRESS=0.0.0.0, or
# --server.address): without sign-in (RAG_AUTH=none) anyone who reaches the port sees everything,
# and the app then warns on every page.
exec .venv/bin/streamlit run streamlit_app.py --server.address "${RAG_SERVER_ADDRESS:-127.0.0.1}" "$@"
