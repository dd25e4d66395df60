"""`suptrace top` in a real terminal (tmux) against a real node: it refreshes, the
keys switch the order, a crash shows up, q and Ctrl-C quit and give the terminal back."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_scripts.harness import SUPTRACE, NodeProcess
from node_scripts.terminal import Pane

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None or shutil.which("bash") is None, reason="needs tmux and bash"
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess(tmp_path_factory.mktemp("top") / "run", "top")
    n.wait_ready()
    yield n
    n.stop()


def _env(node: NodeProcess) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "SUPTRACE_RUNTIME_DIR": node.env["SUPTRACE_RUNTIME_DIR"],
    }


def _first_row(screen: str) -> str:
    lines = screen.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("PID "))
    return lines[head + 1]


def test_top_sorts_shows_a_crash_and_quits_at_80_columns(node: NodeProcess, tmp_path: Path) -> None:
    argv = [*SUPTRACE, "top", "--node", node.id, "--interval", "0.3"]
    pane = Pane(tmp_path, _env(node), argv, width=80, height=30)
    try:
        screen = pane.wait_screen(lambda s: "sorted by mailbox" in s, "top's first screen")
        assert "app.sup" in screen and "one_for_one" in screen and "0/5 in 3600s" in screen
        assert re.search(r"^PID\s+NAME\s+MQ\s+MSG/S\s+RESTARTS\s+MEM~\s+STATUS", screen, re.M)
        assert "m mailbox" in screen and "q quit" in screen  # the keys, in the footer
        assert all(len(line) <= 80 for line in screen.splitlines())
        # By mailbox (all empty): ties in pid order, the main process first.
        assert _first_row(screen).startswith("<0.1.0>")

        pane.keys("y")  # by memory: the supervisors (state with children) lead
        screen = pane.wait_screen(lambda s: "sorted by memory" in s, "the memory order")
        assert re.search(r"app\.(sup|pool)\s", _first_row(screen)), screen

        pane.keys("s")
        pane.wait_screen(lambda s: "sorted by messages/s" in s, "the messages/s order")
        node.command("crash")  # app.echo crashes and is restarted
        screen = pane.wait_screen(
            lambda s: re.search(r"crash app\.echo .*echo was told to crash", s) is not None,
            "the crash in the latest reports",
        )
        assert "1/5 in 3600s" in screen  # the restart used intensity of app.sup

        pane.keys("q")
        assert pane.exit_status() == 0
        after = pane.text()
        assert "Traceback" not in after
        assert "sorted by" not in pane.screen()  # the alternate screen is gone
    finally:
        pane.close()


def test_top_ctrl_c_restores_the_terminal(node: NodeProcess, tmp_path: Path) -> None:
    top = shlex.join([*SUPTRACE, "top", "--node", node.id, "--interval", "0.3"])
    # After top, the shell prints the terminal's line-editing and echo modes.
    script = f"{top}; status=$?; stty -a | grep -o -- '-\\?icanon\\|-\\?echo ' ; exit $status"
    pane = Pane(tmp_path, _env(node), ["bash", "-c", script], width=200, height=40)
    try:
        pane.wait_screen(lambda s: "sorted by mailbox" in s, "top's first screen")
        pane.keys("C-c")
        assert pane.exit_status() == 0
        text = pane.text()
        assert "Traceback" not in text
        modes = re.findall(r"^-?(?:icanon|echo) ?$", text, re.M)
        assert sorted(m.strip() for m in modes) == ["echo", "icanon"], text
    finally:
        pane.close()


def test_top_once_and_a_bad_sort(node: NodeProcess) -> None:
    result = node.cli("top", "--once", "--interval", "0.2", "--sort", "memory")
    assert result.returncode == 0, result.stderr
    assert "sorted by memory" in result.stdout and "latest reports" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) < 120  # piped: not padded
    data = node.cli_json("top", "--interval", "0.2", "--sort", "s")
    assert data["sort"] == "s" and data["total"] == len(data["processes"])
    assert {"pid", "name", "message_queue_len", "messages_per_s", "memory"} <= set(
        data["processes"][0]
    )
    assert any(s["name"] == "app.sup" for s in data["supervisors"])
    bad = node.cli("top", "--sort", "cpu")
    assert bad.returncode == 2
    assert "--sort must be one of m (mailbox), s (messages/s)" in bad.stderr


def test_the_top_op_orders_counts_rates_and_reads_supervisors_in_place() -> None:
    """The node side, without a CLI: one pass, the first rows in the asked order."""
    import suptrace
    from suptrace.core.runtime import current_runtime
    from suptrace.node.control import processes

    async def idle() -> None:
        await suptrace.receive()

    async def main() -> None:
        rt = current_runtime()
        await suptrace.Supervisor.start_link([], name="top.sup", intensity=3, period=7)
        quiet = suptrace.spawn(idle, name="top.quiet")
        busy = suptrace.spawn(idle, name="top.busy")
        for i in range(30):
            suptrace.send(busy, ("job", i))  # never received: its mailbox grows
        first, counts = processes.top(rt, None, 2, 0, "m", None)
        assert first["processes"][0]["name"] == "top.busy"
        assert first["processes"][0]["message_queue_len"] == 30
        assert first["processes"][0]["messages_per_s"] is None  # no earlier refresh
        assert first["total"] >= 4 and len(first["processes"]) == 2
        (sup,) = first["supervisors"]
        assert (sup["name"], sup["intensity"], sup["period"]) == ("top.sup", 3, 7)
        assert sup["restarts_in_window"] == 0
        for i in range(10):
            suptrace.send(quiet, ("more", i))
        second, _ = processes.top(rt, None, 2, 0, "s", counts)
        # The sender (main, 10 out) and top.quiet (10 in) moved; top.busy did not.
        fastest = {r["name"]: r["messages_per_s"] for r in second["processes"]}
        assert set(fastest) == {None, "top.quiet"} and all(v > 0 for v in fastest.values())
        by_memory, _ = processes.top(rt, None, 1, 0, "y", counts)
        assert by_memory["processes"][0]["name"] == "top.busy"  # 30 queued messages
        assert by_memory["processes"][0]["memory"] > 0

    suptrace.run(main, node="topop", control=False, log_reports=False, system_monitor=False)
