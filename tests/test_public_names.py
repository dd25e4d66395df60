"""The package's public names: one list, every name importable, and the node's parts."""

from __future__ import annotations

import asyncio
import subprocess
import sys

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
