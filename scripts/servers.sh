#!/usr/bin/env bash
# The two servers of the scale-out tests, on loopback only: PostgreSQL 15 (rows, keyword search,
# the indexing queue) and a Chroma server (vectors).
#
#   scripts/servers.sh start DIR   # prints (and writes to DIR/env) the two variables below
#   scripts/servers.sh stop DIR
#
#   export RAG_TEST_DATABASE_URL=postgresql+psycopg://rag@127.0.0.1:PORT/postgres
#   export RAG_TEST_CHROMA=127.0.0.1:PORT2
#
# Usage from a shell: eval "$(scripts/servers.sh start /tmp/rag-servers)"; pytest ...;
# scripts/servers.sh stop /tmp/rag-servers.
#
# PostgreSQL: user rag, trust authentication, no fsync (test data only), a fresh cluster in DIR/pg
# (initdb on the first start, kept by stop). PostgreSQL refuses to run as root: as root the cluster
# belongs to the system user `postgres`; when that user cannot reach DIR (pytest's tmp folders are
# private to root) the cluster lives in a scratch folder under /tmp instead, named in DIR/pgbase and
# deleted by stop. Chroma: `chroma run` of the project's venv (VENV, default .venv), data in
# DIR/chroma, log in DIR/chroma.log, pid in DIR/chroma.pid.
# Needs Debian's postgresql-15 and postgresql-15-rum (packages-dev.txt) and the venv
# (scripts/setup.sh). The user rag is the cluster's superuser, so the app's migration creates the
# RUM extension itself. Debian's RUM package follows the newest postgresql-15 and upgrades it: a
# server started before the upgrade runs the old binary, which cannot load the new extension
# library, so start restarts such a server in place (same port, same data).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

usage() {
  echo "usage: $0 start|stop DIR" >&2
  exit 2
}
[[ $# -eq 2 && ( "$1" == start || "$1" == stop ) ]] || usage
action=$1
if [[ "$action" == stop && ! -d "$2" ]]; then
  exit 0 # nothing was ever started there
fi
mkdir -p "$2"
DIR="$(cd "$2" && pwd)"

PYTHON="$VENV/bin/python"
[[ -x "$PYTHON" ]] || PYTHON=python3

pg_bin() {
  local dir
  dir="$(pg_config --bindir 2>/dev/null || true)"
  if [[ -z "$dir" || ! -x "$dir/initdb" ]]; then
    dir=/usr/lib/postgresql/15/bin
  fi
  if [[ ! -x "$dir/initdb" ]]; then
    echo "PostgreSQL 15 is not installed: apt-get install postgresql-15 (packages-dev.txt)" >&2
    exit 1
  fi
  echo "$dir"
}

# Runs a PostgreSQL program as the user that owns the cluster (postgres when we are root), from a
# folder that user can enter.
as_pg() {
  if [[ "$(id -u)" -eq 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# Where the cluster lives: DIR, or (root only) the scratch folder recorded in DIR/pgbase.
pg_base() {
  if [[ -f "$DIR/pgbase" ]]; then
    cat "$DIR/pgbase"
  else
    echo "$DIR"
  fi
}

env_value() { # NAME: its value in DIR/env
  sed -n "s/^export $1=//p" "$DIR/env" 2>/dev/null
}

pg_answers() { # PORT
  "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$1" -t 2 >/dev/null 2>&1
}

# A running server whose binary was upgraded under it (apt) is restarted in place: extensions
# built for the installed version (RUM) cannot be loaded by the old one.
pg_restart_if_upgraded() { # PORT
  local bin running installed
  bin="$(pg_bin)"
  running="$("$bin/psql" -XAtq -h 127.0.0.1 -p "$1" -U rag -d postgres -c 'SHOW server_version' 2>/dev/null |
    cut -d' ' -f1)" || return 0
  installed="$("$bin/postgres" --version | awk '{print $3}')"
  if [[ -n "$running" && "$running" != "$installed" ]]; then
    echo "PostgreSQL $running runs, $installed is installed: restarting it" >&2
    as_pg "$bin/pg_ctl" -D "$(pg_base)/pg" -m fast -w -t 30 restart -l "$(pg_base)/pg/server.log" >/dev/null
  fi
}

chroma_answers() { # PORT
  "$PYTHON" - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/v2/heartbeat", timeout=2).read()
PY
}

stop_servers() {
  local base pid
  base="$(pg_base)"
  if [[ -f "$base/pg/postmaster.pid" ]]; then
    as_pg "$(pg_bin)/pg_ctl" -D "$base/pg" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  fi
  if [[ "$base" != "$DIR" ]]; then
    rm -rf "$base"
    rm -f "$DIR/pgbase"
  fi
  if [[ -f "$DIR/chroma.pid" ]]; then
    pid="$(cat "$DIR/chroma.pid")"
    # Only our chroma: the pid may have been reused since.
    if [[ -n "$pid" ]] && grep -qa chroma "/proc/$pid/cmdline" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
      done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/chroma.pid"
  fi
  rm -f "$DIR/env"
}

start_servers() {
  local bin base sock pg_port chroma_port pid
  bin="$(pg_bin)"
  if [[ ! -x "$VENV/bin/chroma" ]]; then
    echo "$VENV/bin/chroma not found: run scripts/setup.sh (or set VENV)" >&2
    exit 1
  fi

  # Already running: print what the last start wrote.
  if [[ -f "$DIR/env" ]]; then
    pg_port="$(env_value RAG_TEST_DATABASE_URL | sed -n 's/.*@127\.0\.0\.1:\([0-9]*\)\/.*/\1/p')"
    chroma_port="$(env_value RAG_TEST_CHROMA | sed -n 's/.*:\([0-9]*\)$/\1/p')"
    if [[ -n "$pg_port" && -n "$chroma_port" ]] && pg_answers "$pg_port" && chroma_answers "$chroma_port"; then
      pg_restart_if_upgraded "$pg_port"
      cat "$DIR/env"
      return
    fi
  fi
  stop_servers # whatever is left of an earlier start
  trap 'stop_servers' ERR

  read -r pg_port chroma_port < <("$PYTHON" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')

  base="$DIR"
  if [[ "$(id -u)" -eq 0 ]] && ! runuser -u postgres -- test -x "$DIR" 2>/dev/null; then
    base="$(mktemp -d /tmp/rag-pg.XXXXXX)"
    chmod 755 "$base"
    echo "$base" >"$DIR/pgbase"
  fi
  mkdir -p "$base/pg" "$base/pgsock"
  chmod 700 "$base/pg"
  [[ "$(id -u)" -eq 0 ]] && chown postgres: "$base/pg" "$base/pgsock"
  if [[ ! -f "$base/pg/PG_VERSION" ]]; then
    # UTF-8: the documents and the Russian full-text search are Cyrillic.
    as_pg "$bin/initdb" -N -A trust -U rag -E UTF8 --locale=C.UTF-8 -D "$base/pg" >"$DIR/initdb.log" 2>&1 || {
      cat "$DIR/initdb.log" >&2
      false
    }
  fi
  # A Unix socket path longer than 107 bytes stops the server: then TCP only.
  sock="$base/pgsock"
  [[ ${#sock} -le 80 ]] || sock=""
  as_pg "$bin/pg_ctl" -w -t 30 -D "$base/pg" -l "$base/pg/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k '$sock' -c fsync=off -c max_connections=200" \
    start >/dev/null || {
    tail -n 20 "$base/pg/server.log" >&2
    false
  }

  ANONYMIZED_TELEMETRY=False nohup "$VENV/bin/chroma" run --path "$DIR/chroma" --host 127.0.0.1 \
    --port "$chroma_port" </dev/null >"$DIR/chroma.log" 2>&1 &
  pid=$!
  echo "$pid" >"$DIR/chroma.pid"
  for _ in $(seq 150); do
    chroma_answers "$chroma_port" && break
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "chroma run exited: $DIR/chroma.log" >&2
      tail -n 20 "$DIR/chroma.log" >&2
      false
    fi
    sleep 0.2
  done
  chroma_answers "$chroma_port" || {
    echo "chroma did not answer in 30 s: $DIR/chroma.log" >&2
    false
  }
  trap - ERR

  cat >"$DIR/env" <<ENV
export RAG_TEST_DATABASE_URL=postgresql+psycopg://rag@127.0.0.1:$pg_port/postgres
export RAG_TEST_CHROMA=127.0.0.1:$chroma_port
ENV
  cat "$DIR/env"
}

case "$action" in
  start) start_servers ;;
  stop) stop_servers ;;
  *) usage ;;
esac
