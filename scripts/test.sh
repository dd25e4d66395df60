#!/usr/bin/env bash
# Set up a virtual environment with the package and its dev tools, then run
# lint, type checks and the full test suite (doctests of suptrace/ included).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${SUPTRACE_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
"$VENV/bin/ruff" check suptrace tests examples bench
"$VENV/bin/mypy" suptrace
"$VENV/bin/python" -m pytest suptrace tests examples "$@"
