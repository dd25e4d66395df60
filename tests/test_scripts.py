"""scripts/venv.sh, which the README's two commands share: a rerun that finds the
environment up to date runs nothing and prints nothing; a change reinstalls; an install
that fails shows pip's whole output.

The virtual environment's python is a stand-in that records how it was called, so no
test here installs anything.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_SH = REPO / "scripts" / "venv.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A directory with a pyproject.toml and a venv whose python records its calls."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1" = -c ]; then exec "{sys.executable}" "$@"; fi\n'  # it is this Python
        'echo "$*" >> "$(dirname "$0")/../calls"\n'
        'if [ -n "${FAIL_INSTALL:-}" ]; then echo "pip says: no such distribution" >&2; exit 1; fi\n'
        'echo "Editable installation banner"; echo "WARNING: Location x is ignored" >&2\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def _ensure(checkout: Path, extras: str, **env: str) -> subprocess.CompletedProcess[str]:
    script = f'. "{VENV_SH}"; ensure_venv "{sys.executable}" venv "{extras}"'
    return subprocess.run(
        ["bash", "-c", script],
        cwd=checkout,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def _calls(checkout: Path) -> list[str]:
    path = checkout / "venv" / "calls"
    calls = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return calls


def test_a_rerun_with_nothing_changed_runs_and_prints_nothing(checkout: Path) -> None:
    first = _ensure(checkout, "[dev]")
    assert first.returncode == 0, first.stderr
    assert _calls(checkout) == ["-m pip install --disable-pip-version-check -e .[dev]"]
    # One line saying what happens; pip's chatter is in the log, not on the terminal.
    assert first.stdout.startswith("setting up venv") and first.stderr == ""
    assert "Editable installation" not in first.stdout
    assert "is ignored" in (checkout / "venv" / "setup.log").read_text()
    again = _ensure(checkout, "[dev]")
    assert again.returncode == 0 and again.stdout == "" and again.stderr == ""
    assert _calls(checkout) == []
    # An install with the dev extra serves the demo's request for none...
    assert _ensure(checkout, "").stdout == "" and _calls(checkout) == []


def test_a_changed_pyproject_or_a_wider_request_reinstalls(checkout: Path) -> None:
    assert _ensure(checkout, "").returncode == 0
    _calls(checkout)
    # ...but an install without extras does not serve a request for the dev extra.
    assert _ensure(checkout, "[dev]").returncode == 0
    assert _calls(checkout) == ["-m pip install --disable-pip-version-check -e .[dev]"]
    (checkout / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    assert _ensure(checkout, "[dev]").returncode == 0
    assert len(_calls(checkout)) == 1


def test_a_failed_install_shows_pips_output_and_fails(checkout: Path) -> None:
    result = _ensure(checkout, "[dev]", FAIL_INSTALL="1")
    assert result.returncode == 1
    assert "pip says: no such distribution" in result.stderr
    assert "error: installing suptrace[dev] into venv failed" in result.stderr
    assert not (checkout / "venv" / ".suptrace-stamp").exists()  # the next run tries again
    assert _ensure(checkout, "[dev]").returncode == 0
    assert len(_calls(checkout)) == 2


def test_find_python_finds_this_version_and_reports_a_missing_one_as_nothing() -> None:
    version = "{}.{}".format(*sys.version_info[:2])
    script = f'. "{VENV_SH}"; find_python {version}; echo "[$(find_python 3.99)]"'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    found, missing = result.stdout.splitlines()
    check = subprocess.run(
        [found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
    )
    assert check.stdout.strip() == version
    assert missing == "[]"
