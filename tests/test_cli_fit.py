"""What a person sees at 80 and 200 columns: every command's text wraps between
words (no word cut across two lines, nothing the terminal had to wrap itself) and
keeps what matters. Real CLI, real node, real terminal (tmux)."""

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

_GUIDES = "│├└─┬┼┤┌┐┘╭╮╯╰"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess(tmp_path_factory.mktemp("fit") / "run", "fit")
    n.wait_ready()
    n.command("crash")
    n.command("breach")
    yield n
    n.stop()


def _env(node: NodeProcess) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
        "SUPTRACE_RUNTIME_DIR": node.env["SUPTRACE_RUNTIME_DIR"],
    }


def _words(text: str) -> set[str]:
    return {w.strip(_GUIDES) for w in text.split()} - {""}


def _program(text: str) -> list[str]:
    """The lines the command printed (before the shell's ``[exit N]`` and tmux's notice)."""
    lines = text.splitlines()
    end = next((i for i, line in enumerate(lines) if re.match(r"^\[exit \d+\]$", line)), None)
    return lines[:end]


def assert_fits(pane: Pane, reference: str, width: int) -> str:
    """The screen as a person reads it: no row wider than the terminal, no line the
    terminal wrapped (the program broke every line itself), and every word on the
    screen a whole word of the unwrapped output (a word cut in two leaves pieces
    that are not). Words with digits (times, pids, counts) may differ between runs."""
    rows = _program(pane.text(joined=False))
    joined = _program(pane.text(joined=True))
    wrapped = [line for line in joined if line.rstrip() not in {r.rstrip() for r in rows}]
    assert not wrapped, f"the terminal wrapped lines the program did not break: {wrapped}"
    assert all(len(row) <= width for row in rows)
    known = _words(reference)
    pieces = [
        w
        for w in _words("\n".join(rows))
        if w not in known and not any(c.isdigit() for c in w) and not w.endswith("…")
    ]
    assert not pieces, f"words cut or unknown at {width} columns: {pieces}\n" + "\n".join(rows)
    return "\n".join(rows)


def _run(node: NodeProcess, tmp_path: Path, width: int, *args: str) -> tuple[Pane, str]:
    pane = Pane(tmp_path, _env(node), [*SUPTRACE, *args, "--node", node.id], width, 50)
    pane.exit_status()
    return pane, node.cli(*args).stdout


@pytest.mark.parametrize("width", [80, 200])
def test_tree_fits(node: NodeProcess, tmp_path: Path, width: int) -> None:
    pane, reference = _run(node, tmp_path, width, "tree")
    try:
        screen = assert_fits(pane, reference, width)
        assert "pool not running  supervisor transient" in screen  # the child id is shown
        assert "gone for good" in screen and "vanished names:" in screen
        # A wrapped story keeps its indent under "vanished names:".
        tail = screen.split("vanished names:")[1].strip("\n").splitlines()
        assert all(line.startswith("  ") for line in tail), tail
    finally:
        pane.close()


@pytest.mark.parametrize("width", [80, 200])
def test_doctor_fits(node: NodeProcess, tmp_path: Path, width: int) -> None:
    args = ("doctor", "--samples", "2", "--interval", "0.05")
    pane, reference = _run(node, tmp_path, width, *args)
    try:
        screen = assert_fits(pane, reference, width)
        assert "[silent_death] app.sup / pool" in screen
        # The wrapped lines of a finding keep its indent.
        lines = screen.splitlines()
        summary = next(i for i, r in enumerate(lines) if re.match(r"\d+ error\(s\)", r))
        body = [r for r in lines[:summary] if r and not r.startswith(("✗", "!"))]
        assert body and all(r.startswith("    ") for r in body), screen
        assert "what to do:" in screen
    finally:
        pane.close()


@pytest.mark.parametrize("width", [80, 200])
def test_ps_fits(node: NodeProcess, tmp_path: Path, width: int) -> None:
    pane, reference = _run(node, tmp_path, width, "ps")
    try:
        screen = assert_fits(pane, reference, width)
        for header in ("PID", "NAME", "STATUS", "MQ", "IN", "OUT", "RUNS"):
            assert re.search(rf"\b{header}\b", screen)
        for name in ("app.sup", "app.echo", "app.store", "app.driver"):
            assert name in screen
    finally:
        pane.close()


@pytest.mark.parametrize("width", [80, 200])
def test_crash_report_fits(node: NodeProcess, tmp_path: Path, width: int) -> None:
    pane, reference = _run(node, tmp_path, width, "reports", "--kind", "crash")
    try:
        screen = assert_fits(pane, reference, width)
        assert "CRASH REPORT" in screen and "echo was told to crash" in screen
    finally:
        pane.close()


@pytest.mark.parametrize("width", [80, 200])
def test_attach_session_fits(node: NodeProcess, tmp_path: Path, width: int) -> None:
    args = ("attach", "app.echo", "--flags", "receive", "--max-events", "2")
    pane = Pane(tmp_path, _env(node), [*SUPTRACE, *args, "--node", node.id], width, 50)
    try:
        pane.wait_for("Ctrl-C detaches")
        node.command("send 2")
        assert pane.exit_status() == 0
        reference = (
            f"attached to app.echo on node {node.id}: receive; stops after events or s, at "
            "most events/s. Ctrl-C detaches. (<0.0.0> app.echo) << ('job', "
            f"trace of app.echo on node {node.id} ended: reached --max-events; events"
        )
        screen = assert_fits(pane, reference, width)
        assert "app.echo) << ('job', 1)" in screen and "reached --max-events; 2 events" in screen
    finally:
        pane.close()


@pytest.mark.parametrize("width", [80, 200])
def test_top_fits(node: NodeProcess, tmp_path: Path, width: int) -> None:
    pane = Pane(tmp_path, _env(node), [*SUPTRACE, "top", "--node", node.id], width, 40)
    try:
        screen = pane.wait_screen(lambda s: "sorted by mailbox" in s, "top's first screen")
        rows = screen.rstrip("\n").splitlines()
        assert all(len(r) <= width for r in rows)
        assert re.search(r"^PID\s+NAME\s+MQ\s+MSG/S\s+RESTARTS\s+MEM~\s+STATUS\s*$", screen, re.M)
        for name in ("app.sup", "app.echo", "app.store", "app.driver"):
            assert re.search(rf"\s{re.escape(name)}\s", screen)
        assert "q quit" in screen and "latest reports" in screen
        pane.keys("q")
        assert pane.exit_status() == 0
    finally:
        pane.close()
