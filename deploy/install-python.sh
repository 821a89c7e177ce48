#!/usr/bin/env bash
# The app's Python dependencies (requirements.txt: the pinned runtime set, no torch) in a virtual
# environment at PREFIX, created when missing. The Dockerfile runs it; so do the tests
# (tests/unit/test_docker.py, into a fresh venv) and a VM without Docker.
#
#   deploy/install-python.sh PREFIX      # e.g. /opt/venv; then PATH=PREFIX/bin:$PATH
#
# PYTHON picks the interpreter that creates the venv (default python3; it must be 3.11, the
# version the pins are tested on). pip's own variables apply (PIP_NO_CACHE_DIR=1 in the image).
# The app runs from the repository folder (streamlit run streamlit_app.py, python -m rag): it is
# not installed into the venv.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -ne 1 ]]; then
  echo "usage: $0 PREFIX (the virtual environment to create or update)" >&2
  exit 2
fi
prefix="$1"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "$prefix/bin/python" ]]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
    echo "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'): the app needs 3.11 (set PYTHON)" >&2
    exit 1
  }
  "$PYTHON" -m venv "$prefix"
fi
"$prefix/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
# The image stays small only without torch (a CUDA build is about 2.5 GB): fail if anything pulled it.
if "$prefix/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'; then
  echo "torch was installed into $prefix: requirements.txt must not pull it (it is the extra 'minilm')" >&2
  exit 1
fi
"$prefix/bin/python" -m pip check
