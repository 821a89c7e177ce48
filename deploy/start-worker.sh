#!/usr/bin/env bash
# Starts an indexing worker: it takes jobs from the PostgreSQL queue (RAG_QUEUE=postgres,
# DATABASE_URL) that the app replicas enqueue, and writes vectors to the Chroma server
# (CHROMA_HOST). As many as you like, on any machine that reaches both (deploy/compose.yaml: worker).
#
#   deploy/start-worker.sh [OPTION...]     # python -m rag worker OPTION...
set -euo pipefail
cd "$(dirname "$0")/.."

exec "${PYTHON:-python3}" -m rag worker "$@"
