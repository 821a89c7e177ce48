#!/usr/bin/env bash
# Starts the Streamlit app: the image's CMD (app1, app2 in deploy/compose.yaml).
#
#   deploy/start-app.sh [STREAMLIT_OPTION...]
#
# Listens on RAG_SERVER_ADDRESS (default 0.0.0.0: inside a container the port is reached through
# Docker's mapping or haproxy; scripts/run.sh, on a developer's machine, defaults to 127.0.0.1)
# and PORT (default 8501). Without sign-in (RAG_AUTH=none) anyone who reaches the port sees every
# document: set RAG_AUTH=password on a VM. PYTHON (default python3, the venv's in the image) runs
# Streamlit; the settings come from the environment (RAG_DATA_DIR, DATABASE_URL, CHROMA_HOST, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

exec "${PYTHON:-python3}" -m streamlit run streamlit_app.py \
  --server.address "${RAG_SERVER_ADDRESS:-0.0.0.0}" \
  --server.port "${PORT:-8501}" \
  --server.headless true \
  "$@"
