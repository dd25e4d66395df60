"""Against a real node in a subprocess and the real `suptrace` command: a read-only
`attach all --call` of the runtime's own clocks, and workers killed with hostile
exit reasons. Deaths stay complete (crash report, supervisor report, restart),
no worker vanishes, and every control operation keeps answering."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_scripts.harness import HERE, Lines, cli, env_for, poll, spawn_cli

SCRIPT = HERE / "deaths_node.py"


class DeathsNode:
    def __init__(self, run_dir: Path, name: str) -> None:
        self.env = env_for(run_dir)
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--name", name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            text=True,
        )
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)
        self.out.wait_for(lambda line: line == '{"ready": true}', what="the node to start")

        def listed() -> str | None:
            result = cli(self.env, "nodes", "--json")
            if result.returncode != 0:
                return None
            for entry in json.loads(result.stdout)["nodes"]:
                if entry["pid"] == self.proc.pid:
                    return str(entry["id"])
            return None

        self.id = poll(listed, what=f"node {name} in `suptrace nodes --json`")

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        self.out.wait_for(lambda got: got == f"done {line}", what=f"the node to do {line!r}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cli(self.env, *args, "--node", self.id)

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
        assert len(result.stdout) < 2_000_000, (args, len(result.stdout))
        return json.loads(result.stdout)

    def registered(self) -> dict[str, str]:
        rows = self.cli_json("ps")["processes"]
        return {row["name"]: row["pid"] for row in rows if row.get("name")}

    def stop(self) -> int:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except OSError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def node(tmp_path: Path) -> Iterator[DeathsNode]:
    n = DeathsNode(tmp_path / "run", "deaths")
    yield n
    n.stop()


def _reports_after(node: DeathsNode, start: int) -> list[str]:
    return [line for line in node.out.seen[start:] if line.startswith("report ")]


@pytest.mark.parametrize("function", ["time:time", "time:monotonic"])
def test_attach_all_call_tracing_a_runtime_clock_kills_nobody(
    node: DeathsNode, function: str
) -> None:
    before = node.registered()
    attach = spawn_cli(node.env, "attach", "all", "--call", function, "--json", "--node", node.id)
    try:
        err = Lines(attach.stderr)
        out = Lines(attach.stdout)
        err.wait_for(lambda line: line.startswith("attached"), what="the attach to start")
        # The workers' own calls are seen...
        seen = out.wait_for(
            lambda line: '"call_trace"' in line and f'"{function}"' in line,
            what=f"a traced call of {function}",
        )
        assert json.loads(seen)["name"] in ("app.ticker.a", "app.ticker.b")
        # ...and a death under the trace is complete: crash report, supervisor report, restart.
        start = len(node.out.seen)
        node.command("crash a")
        reports = _reports_after(node, start)
        assert "report CrashReport - app.ticker.a" in reports
        assert "report SupervisorReport child_terminated a" in reports
        after = node.registered()
        assert after["app.ticker.a"] != before["app.ticker.a"]  # restarted
        assert after["app.ticker.b"] == before["app.ticker.b"]  # nobody else vanished
        assert after["app.sup"] == before["app.sup"]
        assert node.proc.poll() is None
    finally:
        attach.send_signal(signal.SIGINT)
        code = attach.wait(15)
        # What is under test is the node; the CLI's own Ctrl-C handling is tested in
        # test_cli_attach (a busy stream may take the signal outside its handler).
        assert code in (0, -signal.SIGINT), (code, err.rest(5)[-10:])
    status = node.cli_json("status")
    assert status["hook_errors"] == 0
    node.stop()
    log = "\n".join(node.err.rest())
    assert "RecursionError" not in log and "never retrieved" not in log
    assert "Traceback" not in log.replace("ticker was told to crash", "")


def test_attach_call_refuses_builtins(node: DeathsNode) -> None:
    refused = node.cli("attach", "all", "--call", "builtins:len")
    assert refused.returncode == 2
    assert "builtins are called by every module" in refused.stderr
    assert "trace the function of your code that calls it" in refused.stderr


@pytest.mark.parametrize("kind", ["str", "repr", "bigint", "huge", "selfref"])
def test_hostile_reasons_keep_the_node_answering(node: DeathsNode, kind: str) -> None:
    before = node.registered()
    start = len(node.out.seen)
    node.command(f"hostile {kind}")
    reports = _reports_after(node, start)
    assert "report CrashReport - app.ticker.a" in reports
    assert f"report CrashReport - gone.{kind}" in reports
    assert "report SupervisorReport child_terminated a" in reports
    after = node.registered()
    assert after["app.ticker.a"] != before["app.ticker.a"]  # restarted
    # The crash reports were logged, bounded (a 100 MB message gives no 100 MB line).
    node.err.wait_for(
        lambda line: f"crasher: gone.{kind} " in line, what="the crash report in the log"
    )
    assert max(len(line) for line in node.err.seen) < 20_000
    # Every read-only operation answers, tombstones included.
    stones = node.cli_json("tombstones")
    text = json.dumps(stones)
    assert f"gone.{kind}" in text and len(text) < 200_000
    for op in ("ps", "tree", "status"):
        node.cli_json(op)
    reports_out = node.cli("reports", "--json")
    assert reports_out.returncode == 0 and len(reports_out.stdout) < 2_000_000
    crashes = [json.loads(line) for line in reports_out.stdout.splitlines()]
    assert any(r.get("name") == f"gone.{kind}" for r in crashes)
    doctor = node.cli("doctor", "--json")  # exit 1: it has findings (the vanished name)
    assert doctor.returncode == 1 and len(doctor.stdout) < 200_000
    assert f"gone.{kind}" in json.dumps(json.loads(doctor.stdout)["findings"])
    shown = node.cli("inspect", f"gone.{kind}")
    assert shown.returncode == 1 and len(shown.stdout + shown.stderr) < 8_000
    assert f"gone.{kind}" in shown.stdout
