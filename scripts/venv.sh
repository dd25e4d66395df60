# Shared by scripts/demo.sh and scripts/test.sh (sourced, not run).
#
# ensure_venv PYTHON VENV EXTRAS: make VENV a virtual environment of PYTHON with this
# checkout installed editable (with EXTRAS, e.g. "[dev]", or "" for none). A stamp file
# inside VENV holds a hash of pyproject.toml and the interpreter's version, and EXTRAS; when
# it matches (an install with extras also serves a request for none), nothing runs, so a
# rerun starts at once. pip's and setuptools' chatter (the editable-install notice, index
# warnings) goes to VENV/setup.log, which is printed in full if the install fails.
#
# find_python X.Y: print the path of a working Python X.Y (PATH, then pyenv's versions
# under $PYENV_ROOT or ~/.pyenv), or nothing.

ensure_venv() {
    local py=$1 venv=$2 extras=$3
    local version stamp_file want
    version=$("$py" -c 'import sys; print(sys.version)') || return 1
    want=$( { cat pyproject.toml; echo "$version"; } | sha256sum | cut -d' ' -f1)
    stamp_file="$venv/.suptrace-stamp"
    if [ -x "$venv/bin/python" ] && [ -f "$stamp_file" ]; then
        local have_hash have_extras
        read -r have_hash have_extras <"$stamp_file" || true
        if [ "$have_hash" = "$want" ] && { [ -z "$extras" ] || [ "${have_extras:-}" = "$extras" ]; }; then
            return 0
        fi
    fi
    local log="$venv/setup.log"
    mkdir -p "$venv" && : >"$log"
    echo "setting up $venv ($("$py" -c 'import platform; print("Python", platform.python_version())'), suptrace$extras); this takes a minute the first time"
    local made=""
    if [ ! -x "$venv/bin/python" ]; then
        "$py" -m venv "$venv" && made=1
    elif [ "$("$venv/bin/python" -c 'import sys; print(sys.version)' 2>/dev/null)" != "$version" ]; then
        echo "$venv was made by another Python: recreating it"
        "$py" -m venv --clear "$venv" && made=1
        : >"$log"
    fi
    if [ -n "$made" ]; then
        # Once, when the environment is created: a current pip installs pyproject-only
        # editable packages and wheels the old bundled one cannot.
        if ! "$venv/bin/python" -m pip install --upgrade pip >>"$log" 2>&1; then
            cat "$log" >&2
            echo "error: upgrading pip in $venv failed (log above, also in $log)" >&2
            return 1
        fi
    fi
    rm -f "$stamp_file"
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check -e ".$extras" >>"$log" 2>&1; then
        cat "$log" >&2
        echo "error: installing suptrace$extras into $venv failed (log above, also in $log)" >&2
        return 1
    fi
    echo "$want $extras" >"$stamp_file"
}

find_python() {
    local want=$1 candidate
    local roots=()
    [ -n "${PYENV_ROOT:-}" ] && roots+=("$PYENV_ROOT/versions")
    roots+=("$HOME/.pyenv/versions")
    # PATH first (a plain python3.X binary; a pyenv shim that has no such version fails
    # the version check below), then pyenv's installs, newest patch release first.
    for candidate in $(command -v "python$want" 2>/dev/null) \
        $(for root in "${roots[@]}"; do ls -d "$root/$want".*/bin/python 2>/dev/null | sort -rV; done); do
        if [ -x "$candidate" ] && [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 0
}
