"""The package's public names: one list, every name importable, and the node's parts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import suptrace
from suptrace.core.errors import NodeError
from suptrace.node.parts import current_parts, parts_of


def test_every_public_name_resolves_to_the_module_listed() -> None:
    assert "spawn" in suptrace.__all__ and "__version__" in suptrace.__all__
    assert len(set(suptrace.__all__)) == len(suptrace.__all__)
    for name in suptrace.__all__:
        value = getattr(suptrace, name)
        if name != "__version__" and hasattr(value, "__module__") and callable(value):
            # each name comes from the module the list names, not from a re-export elsewhere
            assert value.__module__.startswith("suptrace."), name
    with pytest.raises(AttributeError, match="no attribute 'spawnn'"):
        _ = suptrace.spawnn  # type: ignore[attr-defined]


def test_star_import_gives_exactly_the_public_names() -> None:
    code = (
        "from suptrace import *\n"
        "import suptrace\n"
        "missing = [n for n in suptrace.__all__ if n not in globals()]\n"
        "print(missing)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_importing_the_package_loads_no_runtime() -> None:
    code = (
        "import sys, suptrace\n"
        "print(sorted(m for m in sys.modules if m.startswith('suptrace.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['suptrace._version']"


def test_node_parts_are_there_while_the_node_runs_and_gone_after() -> None:
    async def app() -> tuple[object, object]:
        async with suptrace.Node("parts", control=False, log_reports=False) as node:
            parts = current_parts("app()")
            assert parts is node.parts and parts.runtime is node.runtime
            assert parts.reports is node.reports and parts.tasks is not None
            rt = node.runtime
        return parts_of(rt), parts.control

    assert asyncio.run(app()) == (None, None)
    with pytest.raises(NodeError, match=r"report_history\(\) needs a running suptrace node"):
        suptrace.report_history()


def test_the_package_imports_from_a_zip(tmp_path: Path) -> None:
    """Installed as a zip (no .py files on disk), the package still lists its names."""
    root = Path(suptrace.__file__).parent
    archive = tmp_path / "suptrace.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in root.rglob("*.py"):
            z.write(path, Path("suptrace") / path.relative_to(root))
    code = (
        "import suptrace\n"
        f"assert suptrace.__file__.startswith({str(archive)!r}), suptrace.__file__\n"
        "print(len(suptrace.__all__), suptrace.spawn.__module__, suptrace.__version__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(archive), "PATH": os.environ.get("PATH", "")},
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    count, module, version = done.stdout.split()
    assert int(count) == len(suptrace.__all__)
    assert (module, version) == ("suptrace.core.spawn", suptrace.__version__)
