#!/usr/bin/env bash
# Set up everything the test suite needs, then run lint, type checks and the full
# suite (doctests of suptrace/ included).
#  - system packages: Prometheus (scrape and dashboard tests) and tmux (terminal tests),
#    installed with apt when running as root, otherwise those tests are skipped;
#  - a virtual environment with the package and its dev extra.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=""
command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"
command -v tmux >/dev/null 2>&1 || missing="$missing tmux"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing system packages:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
        echo "note: not installed:$missing; the tests that need them will be skipped" >&2
    fi
fi
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
