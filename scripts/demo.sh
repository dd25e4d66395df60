#!/usr/bin/env bash
# Set up a virtual environment (once: a rerun that finds it up to date installs nothing) and
# run the self-driving demo tour on the embedded defaults (no collector, no network): a live
# node, a dbg-style trace, reports, tree and doctor.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
PY=${PYTHON:-python3}
VENV=${SUPTRACE_VENV:-.venv}
ensure_venv "$PY" "$VENV" ""
exec "$VENV/bin/suptrace" demo --script "$@"
