#!/usr/bin/env bash
# Creates the unprivileged user the image runs as, and the folders it writes (owned by it, so
# Docker's named volumes mounted there start writable).
#
#   deploy/add-user.sh NAME FOLDER...      # the Dockerfile: rag /data /chroma
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 NAME [FOLDER...]" >&2
  exit 2
fi
name="$1"
shift
if ! id -u "$name" >/dev/null 2>&1; then
  # A fixed uid: files on volumes keep their owner across image rebuilds.
  useradd --system --uid "${RAG_UID:-10001}" --user-group --create-home --shell /usr/sbin/nologin "$name"
fi
for folder in "$@"; do
  mkdir -p "$folder"
  chown "$name:$name" "$folder"
done
