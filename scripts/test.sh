#!/usr/bin/env bash
# Installs spinenet_tf with its test extra into ./.venv (created or reused) and runs the tests.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test source scripts/lib/venv.sh
# JAX backend test: the CPU wheel is small enough for CI; failure to install only skips that test.
"$VENV/bin/python" -m pip install -q "jax[cpu]" || echo "== jax not installed: the JAX backend test will be skipped"
# The multi-machine search test starts its own PostgreSQL server (Debian's package).
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing postgresql (server for the multi-worker search test)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -q postgresql || { apt-get update -q && apt-get install -y -q postgresql; }; } >/dev/null \
      || echo "== postgresql not installed: its test will be skipped (the skip says so)"
  else
    echo "== no PostgreSQL and not root: the PostgreSQL search test will be skipped"
  fi
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export PYTHONHASHSEED=0
# Progress and slow-test lines reach a CI log as they happen.
export PYTHONUNBUFFERED=1
echo "== running tests"
exec "$VENV/bin/python" -m pytest "$@"
