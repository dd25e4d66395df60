"""`suptrace attach` and `suptrace reports --follow` against a real node: live
events of a scripted scenario, Ctrl-C (SIGINT) detaching with no trace state
left on the node, tombstones for dead names, and a node that goes away."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_scripts.harness import Lines, NodeProcess, poll, spawn_cli


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """Shared by the tests that leave the node running (each detaches before it ends)."""
    n = NodeProcess(tmp_path_factory.mktemp("att") / "run", "att")
    n.wait_ready()
    yield n
    assert n.stop() == 0


@pytest.fixture
def own_node(tmp_path: Path) -> Iterator[NodeProcess]:
    """A node of its own, for a test that stops or kills it."""
    n = NodeProcess(tmp_path / "run", "att")
    n.wait_ready()
    yield n
    n.stop()


class Attach:
    """A running `suptrace attach ...` with its output read as it comes."""

    def __init__(self, node: NodeProcess, *args: str) -> None:
        self.proc = spawn_cli(node.env, *args, "--node", node.id)
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)

    def started(self) -> str:
        return self.err.wait_for(
            lambda line: line.startswith(("attached", "following")), what="the attach to start"
        )

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        return self.proc.wait(15)


def _trace_state(node: NodeProcess) -> tuple[object, ...]:
    s = node.cli_json("status")
    return (
        len(s["tracers"]),
        s["traced_processes"],
        s["event_hooks"],
        s["spawn_hooks"],
        s["streams"],
    )


def test_attach_shows_the_scenario_and_ctrl_c_leaves_no_trace_state(node: NodeProcess) -> None:
    before = _trace_state(node)
    assert before[:2] == (0, 0)
    a = Attach(node, "attach", "app.echo", "--json")
    header = a.started()
    assert "attached to app.echo (<0." in header and "Ctrl-C detaches" in header
    during = node.cli_json("status")
    assert len(during["tracers"]) == 1 and during["traced_processes"] == 1
    assert during["streams"]["attach"] == 1
    node.command("send 3")
    got = [
        json.loads(a.out.wait_for(lambda line, i=i: f'"job", {i}' in line, what=f"job {i}"))
        for i in range(3)
    ]
    assert [e["kind"] for e in got] == ["receive"] * 3
    assert [e["data"]["msg"] for e in got] == [["job", 0], ["job", 1], ["job", 2]]
    assert all(e["name"] == "app.echo" and e["text"].startswith("(<0.") for e in got)
    assert a.interrupt() == 0
    assert any("ended: detached" in line for line in a.err.rest())
    assert _trace_state(node) == before  # the node holds nothing for the trace any more


def test_attach_text_lines_and_following_a_restart(node: NodeProcess) -> None:
    a = Attach(node, "attach", "app.echo", "--flags", "receive,procs")
    a.started()
    node.command("crash")
    exit_line = a.out.wait_for(lambda line: " exit RuntimeError" in line, what="the crash")
    assert "(<0." in exit_line and "app.echo)" in exit_line
    note = a.out.wait_for(lambda line: "--- app.echo is now" in line, what="the restart note")
    new_pid = note.split("is now ")[1].split()[0]
    node.command("send 1")
    line = a.out.wait_for(lambda text: "<< ('job', 0)" in text, what="a message to the new process")
    assert f"({new_pid} app.echo) << ('job', 0)" in line
    assert a.interrupt() == 0


def test_attach_limits_end_the_trace(node: NodeProcess) -> None:
    a = Attach(node, "attach", "app.echo", "--flags", "receive", "--max-events", "2")
    a.started()
    node.command("send 5")
    assert a.proc.wait(15) == 0
    lines = a.out.rest()
    assert len(lines) == 2 and all("<< ('job', " in line for line in lines)
    assert any("reached --max-events" in line for line in a.err.rest())
    poll(lambda: node.cli_json("status")["tracers"] == [], what="the tracer to be gone")


def test_attach_with_call_tracing(node: NodeProcess) -> None:
    a = Attach(
        node, "attach", "app.echo", "--flags", "receive", "--call", "suptrace:receive", "--json"
    )
    a.started()
    node.command("send 2")
    call = json.loads(
        a.out.wait_for(lambda line: '"call_trace"' in line, what="a call trace event")
    )
    assert call["data"]["function"] == "suptrace:receive"
    assert a.interrupt() == 0
    refused = node.cli("attach", "app.echo", "--call", "no_such_module_here:f")
    assert refused.returncode == 2 and "never imports code" in refused.stderr


def test_attach_all_never_sees_the_control_server_at_work(node: NodeProcess) -> None:
    a = Attach(node, "attach", "all", "--flags", "all", "--json")
    a.started()
    for args in (("ps",), ("status",), ("inspect", "app.echo"), ("tombstones",), ("tree",)):
        assert node.cli(*args).returncode == 0
    node.command("send 1")
    a.out.wait_for(lambda line: '"receive"' in line and '["job", 0]' in line, what="the job")
    events = [json.loads(line) for line in a.out.seen]
    # Only the command's own traffic: main -> app.driver -> app.echo; `tree` asks
    # supervisors through their admin API, which they receive as calls.
    seen = {(e["name"], e["kind"]) for e in events}
    allowed_names = {None, "app.driver", "app.echo", "app.sup", "app.pool"}
    assert {name for name, _ in seen} <= allowed_names, seen
    assert {kind for name, kind in seen if name in ("app.sup", "app.pool")} <= {"receive", "reply"}
    assert a.interrupt() == 0


def test_attach_to_a_dead_name_prints_its_tombstone(node: NodeProcess) -> None:
    node.command("breach")
    result = node.cli("attach", "app.pool")
    assert result.returncode == 1
    assert "app.pool is gone" in result.stdout and "max restart intensity" in result.stdout
    assert node.cli("attach", "never.was").returncode == 1


def test_a_node_that_stops_ends_attach_with_a_clear_line(own_node: NodeProcess) -> None:
    a = Attach(own_node, "attach", "app.echo")
    a.started()
    assert own_node.stop() == 0
    assert a.proc.wait(15) == 0
    assert any("ended: the node stopped" in line for line in a.err.rest())


def test_a_node_that_dies_ends_attach_too(own_node: NodeProcess) -> None:
    a = Attach(own_node, "attach", "app.echo")
    a.started()
    own_node.proc.send_signal(signal.SIGKILL)
    assert a.proc.wait(15) == 1
    assert any("lost the connection to node att" in line for line in a.err.rest())


def test_reports_follow(node: NodeProcess) -> None:
    a = Attach(node, "reports", "--follow", "--json", "--limit", "0")
    a.started()
    node.command("crash")
    crash = json.loads(
        a.out.wait_for(lambda line: '"kind": "crash"' in line, what="the crash report")
    )
    assert crash["name"] == "app.echo" and "echo was told to crash" in crash["reason"]
    terminated = json.loads(
        a.out.wait_for(lambda line: '"child_terminated"' in line, what="the supervisor report")
    )
    assert terminated["supervisor"] == "app.sup"
    assert a.interrupt() == 0
    poll(
        lambda: node.cli_json("status")["streams"]["reports"] == 0,
        what="the report stream to close",
    )
