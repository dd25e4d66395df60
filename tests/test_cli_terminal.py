"""What a person sees: the real CLI in a real terminal (tmux), colour on and off,
and Ctrl-C typed at an attach session."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_scripts.harness import SUPTRACE, NodeProcess
from node_scripts.terminal import Pane

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None or shutil.which("bash") is None, reason="needs tmux and bash"
)

_COLOUR = re.compile(r"\x1b\[[0-9;]*3[0-7][0-9;]*m")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess(tmp_path_factory.mktemp("tty") / "run", "tty")
    n.wait_ready()
    n.command("breach")
    yield n
    n.stop()


def _env(node: NodeProcess, colour: bool) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "SUPTRACE_RUNTIME_DIR": node.env["SUPTRACE_RUNTIME_DIR"],
    }
    if not colour:
        env["NO_COLOR"] = "1"
    return env


@pytest.mark.parametrize("colour", [True, False], ids=["colour", "no_color"])
def test_tree_on_a_terminal(node: NodeProcess, tmp_path: Path, colour: bool) -> None:
    pane = Pane(tmp_path, _env(node, colour), [*SUPTRACE, "tree", "--node", node.id])
    try:
        assert pane.exit_status() == 0
        text = pane.text()
        assert re.search(r"app\.sup <0\.\d+\.0>\s+one_for_one 0/5 in 3600s", text)
        assert "├── echo app.echo" in text and "gone for good" in text
        styled = pane.text(escapes=True)
        pool_line = next(
            line for line in styled.splitlines() if "pool" in line and "transient" in line
        )
        assert bool(_COLOUR.search(pool_line)) is colour  # the dead branch is red only with colour
        assert bool(_COLOUR.search(styled)) is colour
    finally:
        pane.close()


@pytest.mark.parametrize("colour", [True, False], ids=["colour", "no_color"])
def test_attach_then_ctrl_c_on_a_terminal(node: NodeProcess, tmp_path: Path, colour: bool) -> None:
    argv = [*SUPTRACE, "attach", "app.echo", "--flags", "receive", "--node", node.id]
    pane = Pane(tmp_path, _env(node, colour), argv)
    try:
        pane.wait_for("Ctrl-C detaches")
        node.command("send 2")
        pane.wait_for("app.echo) << ('job', 1)")
        line = next(t for t in pane.text(escapes=True).splitlines() if "('job', 0)" in t)
        assert bool(_COLOUR.search(line)) is colour
        assert re.search(
            r"\d\d:\d\d:\d\d\.\d{6} \(<0\.\d+\.0> app\.echo\) << \('job', 0\)", pane.text()
        )
        pane.keys("C-c")
        assert pane.exit_status() == 0
        assert "ended: detached; 2 events" in pane.text()
        status = node.cli_json("status")
        assert status["tracers"] == [] and status["traced_processes"] == 0
    finally:
        pane.close()
