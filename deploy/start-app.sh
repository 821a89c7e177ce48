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
#
# It refuses to start without sign-in on an address beyond loopback, unless the deployer opts
# out with RAG_ALLOW_OPEN_ACCESS=1 (e.g. behind a proxy that signs people in itself).
set -euo pipefail
cd "$(dirname "$0")/.."

address="${RAG_SERVER_ADDRESS:-0.0.0.0}"
# The mode the app will run in, read as the app reads it (environment, .env, secrets.toml).
mode="$("${PYTHON:-python3}" -c 'from settings import Settings; print(Settings().auth_mode)' 2>/dev/null || true)"
case "$address" in
  127.* | localhost | ::1 | "[::1]") loopback=1 ;;
  *) loopback=0 ;;
esac
case "${RAG_ALLOW_OPEN_ACCESS:-}" in
  1 | true | yes) open_ok=1 ;;
  *) open_ok=0 ;;
esac
if [ "$mode" = "none" ] && [ "$loopback" = 0 ] && [ "$open_ok" = 0 ]; then
  cat >&2 <<MSG
Приложение не запущено: вход выключен (RAG_AUTH=none), а адрес $address доступен не только с этого
компьютера. Любой, кто откроет приложение, увидит все документы и чаты.
Включите вход: RAG_AUTH=password (или oidc). Если доступ уже закрыт иначе (например, прокси с
проверкой входа), разрешите запуск без входа явно: RAG_ALLOW_OPEN_ACCESS=1.
MSG
  exit 2
fi

exec "${PYTHON:-python3}" -m streamlit run streamlit_app.py \
  --server.address "$address" \
  --server.port "${PORT:-8501}" \
  --server.headless true \
  "$@"
