#!/usr/bin/env bash
# Installs spinenet_tf with its test extra into ./.venv (created or reused) and runs the tests.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test source scripts/lib/venv.sh
# JAX backend test: the CPU wheel is small enough for CI; failure to install only skips that test.
"$VENV/bin/python" -m pip install -q "jax[cpu]" || echo "== jax not installed: the JAX backend test will be skipped"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export PYTHONHASHSEED=0
echo "== running tests"
exec "$VENV/bin/python" -m pytest "$@"
