#!/usr/bin/env bash
# Set up (first time only) and start the app on its offline defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/system-packages.sh
./scripts/setup.sh
exec .venv/bin/streamlit run streamlit_app.py "$@"
