#!/usr/bin/env bash
# Exits 0 when URL answers 200 within 5 s: the image's HEALTHCHECK (Streamlit's health endpoint),
# and compose's check of the Chroma server (its heartbeat). Python's urllib, so no curl in the image.
#
#   deploy/healthcheck.sh [URL]     # default http://127.0.0.1:${PORT:-8501}/_stcore/health
set -euo pipefail

url="${1:-http://127.0.0.1:${PORT:-8501}/_stcore/health}"
exec "${PYTHON:-python3}" -c '
import sys
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:
    print(f"{sys.argv[1]}: {exc}", file=sys.stderr)
    sys.exit(1)
' "$url"
