#!/usr/bin/env bash
# Test servers the end-to-end tests start themselves: the OpenID Connect provider of the
# RAG_AUTH=oidc tests (tests/e2e/oidc, panva's oidc-provider from npm, pinned by package-lock.json).
# Installs its packages into tests/e2e/oidc/node_modules when they are missing or older than the
# lock file; needs node and npm, never root. Without them the OIDC tests skip themselves on a
# developer machine, so this only warns there; in CI (CI set) it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

oidc=tests/e2e/oidc
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [[ -n "${CI:-}" ]]; then
    echo "node and npm are required in CI for the OpenID Connect tests ($oidc)" >&2
    exit 1
  fi
  echo "warning: node or npm is missing: the OpenID Connect tests ($oidc) will be skipped" >&2
  exit 0
fi

# npm ci writes node_modules/.package-lock.json: it is older than package-lock.json when the lock
# file changed since the last install.
stamp="$oidc/node_modules/.package-lock.json"
if [[ ! -f "$stamp" || "$oidc/package-lock.json" -nt "$stamp" ]]; then
  npm ci --prefix "$oidc" --no-audit --no-fund --loglevel=error
fi
