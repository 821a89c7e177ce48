#!/usr/bin/env bash
# The Debian packages of the app (packages.txt: Tesseract OCR with Russian and English) plus the
# CA certificates, installed with apt-get. The Dockerfile runs it; so can a Debian/Ubuntu VM or CI.
#
#   deploy/install-system.sh [--clean] [--dry-run] [EXTRA_PACKAGE...]
#
# --clean removes apt's package lists afterwards (an image layer); --dry-run prints the apt-get
# command instead of running it. Needs root (or sudo without a password). Unlike
# scripts/system-packages.sh (a developer's machine, best effort) any failure fails.
set -euo pipefail
cd "$(dirname "$0")/.."

clean=false
dry_run=false
extra=()
for arg in "$@"; do
  case "$arg" in
    --clean) clean=true ;;
    --dry-run) dry_run=true ;;
    -*) echo "unknown option: $arg (use --clean, --dry-run)" >&2; exit 2 ;;
    *) extra+=("$arg") ;;
  esac
done

mapfile -t packages < <(grep -v -e '^\s*#' -e '^\s*$' packages.txt | tr -d ' \t\r')
packages+=(ca-certificates "${extra[@]}")

if $dry_run; then
  echo "apt-get install -y --no-install-recommends ${packages[*]}"
  exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo)
  else
    echo "deploy/install-system.sh needs root (or sudo): apt-get install ${packages[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"
if $clean; then
  "${SUDO[@]}" apt-get clean
  "${SUDO[@]}" rm -rf /var/lib/apt/lists/*
fi
