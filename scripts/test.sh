#!/usr/bin/env bash
# Set up everything the test suite needs, then run lint and type checks once and the full
# suite (doctests of suptrace/ included) on every supported Python found, plus the core and
# supervisor tests on uvloop.
#  - system packages: Prometheus (scrape and dashboard tests) and tmux (terminal tests),
#    installed with apt when running as root, otherwise those tests are skipped;
#  - one virtual environment per Python with the package and its dev extra: .venv for
#    python3 (lint, mypy, the suite, the uvloop run), .venv-3.X for each other version;
#    a rerun that finds them up to date installs nothing.
# Arguments are passed to every pytest run (e.g. `-x -q`). SUPTRACE_TEST_VERSIONS="3.11"
# restricts the Python versions; a supported version that is not installed is reported
# and skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
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
SUPPORTED="3.11 3.12 3.13"
VERSIONS=${SUPTRACE_TEST_VERSIONS:-$SUPPORTED}
PY=${PYTHON:-python3}
VENV=${SUPTRACE_VENV:-.venv}
MAIN=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# The core and supervisor tests, run again on uvloop's event loop.
UVLOOP_TESTS="tests/test_event_loops.py tests/test_process.py tests/test_links_monitors.py
    tests/test_registry.py tests/test_genserver.py tests/test_node.py tests/test_deadlines.py
    tests/test_intensity.py tests/test_not_restarted.py tests/test_dynamic_supervisor.py
    tests/test_supervisor_*.py tests/test_supervision_api.py tests/test_hot_path.py tests/test_reports.py
    tests/test_hooks.py tests/test_plain_tasks.py tests/test_cli_tasks.py tests/test_spawn_fast_paths.py"
started=$SECONDS
results=()
failed=0

run_suite() {  # label, python of the venv, pytest arguments...
    local label=$1 python=$2
    shift 2
    echo "=== $label"
    if "$python" -m pytest "$@"; then
        results+=("ok      $label")
    else
        results+=("FAILED  $label")
        failed=1
    fi
}

ensure_venv "$PY" "$VENV" "[dev]"
echo "=== lint and types (Python $MAIN)"
"$VENV/bin/ruff" check suptrace tests examples bench
"$VENV/bin/mypy" suptrace
for version in $VERSIONS; do
    if [ "$version" = "$MAIN" ]; then
        run_suite "Python $MAIN, asyncio" "$VENV/bin/python" suptrace tests examples "$@"
        continue
    fi
    python=$(find_python "$version")
    if [ -z "$python" ]; then
        echo "warning: Python $version not found (looked for python$version on PATH and under" \
            "${PYENV_ROOT:-~/.pyenv}/versions); its run is SKIPPED" >&2
        results+=("SKIPPED Python $version (not installed)")
        continue
    fi
    ensure_venv "$python" ".venv-$version" "[dev]"
    run_suite "Python $version, asyncio" ".venv-$version/bin/python" suptrace tests examples "$@"
done
# shellcheck disable=SC2086  # the list is word-split and globbed on purpose
SUPTRACE_TEST_LOOP=uvloop run_suite "Python $MAIN, uvloop (core and supervisors)" \
    "$VENV/bin/python" $UVLOOP_TESTS "$@"
echo "=== summary ($((SECONDS - started))s)"
printf '  %s\n' "${results[@]}"
exit $failed
