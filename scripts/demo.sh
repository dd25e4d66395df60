#!/usr/bin/env bash
# Set up a virtual environment and run the self-driving demo tour on the embedded defaults
# (no collector, no network): a live node, a dbg-style trace, reports, tree and doctor.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${SUPTRACE_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e .
exec "$VENV/bin/suptrace" demo --script "$@"
