"""``suptrace ps --all`` and ``suptrace inspect TASK`` on a real node's plain asyncio tasks,
and the crash report of a task that dies with an exception nobody retrieves, through the
real CLI against ``node_scripts/tasks_node.py`` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_LOOP
from node_scripts.harness import Lines, cli, env_for, poll

SCRIPT = Path(__file__).resolve().parent / "node_scripts" / "tasks_node.py"
#: Where the fetcher task waits: ``tasks_node.py:N in fetcher``.
FETCHER_AT = "tasks_node.py:{} in fetcher".format(
    SCRIPT.read_text().splitlines().index("    await gate.wait()") + 1
)


class TasksNode:
    def __init__(self, run_dir: Path, name: str, **env: str) -> None:
        # The node runs on the event loop the tests run on (SUPTRACE_TEST_LOOP).
        self.env = env_for(run_dir, SUPTRACE_TEST_LOOP=TEST_LOOP, **env)
        self.name = name
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
        ready = self.out.wait_for(lambda line: '"ready": true' in line, what="the node's start")
        loop_module = json.loads(ready)["loop"]
        assert loop_module.startswith("uvloop" if TEST_LOOP == "uvloop" else "asyncio"), ready

        def listed() -> bool:
            result = cli(self.env, "nodes", "--json")
            return result.returncode == 0 and any(
                n["pid"] == self.proc.pid for n in json.loads(result.stdout)["nodes"]
            )

        poll(listed, what=f"node {name} in `suptrace nodes --json`")

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        self.out.wait_for(lambda got: got == f"done {line}", what=f"the node to do {line!r}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cli(self.env, *args, "--node", self.name)

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
        return json.loads(result.stdout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[TasksNode]:
    n = TasksNode(tmp_path / "run", "tasks")
    yield n
    n.stop()


def test_ps_all_lists_plain_tasks_and_where_they_await(node: TasksNode) -> None:
    plain = node.cli_json("ps")
    assert "tasks" not in plain  # processes only, as before
    assert {p["name"] for p in plain["processes"]} >= {"tasks.worker"}
    result = node.cli_json("ps", "--all")
    assert result["task_crash_reports"] is True
    rows: dict[str, dict[str, Any]] = {}
    for row in result["tasks"]:
        rows.setdefault(row["task"], row)
    assert {"fetcher", "waiter", "gatherer", "part-1", "part-2", "twin"} <= set(rows)
    assert sum(1 for t in result["tasks"] if t["task"] == "twin") == 2
    assert result["tasks_total"] == len(result["tasks"])
    # No process shows up as a task.
    assert not any(t["coroutine"] == "worker" for t in result["tasks"])
    fetcher = rows["fetcher"]
    assert fetcher["coroutine"] == "fetcher" and fetcher["state"] == "pending"
    assert fetcher["awaiting_at"][0].endswith("in fetcher") and "tasks_node.py" in fetcher["awaiting_at"][0]
    assert fetcher["awaiting_at"][-1].endswith("in Event.wait")
    assert fetcher["awaited_by"] == ["task 'waiter'"]
    assert rows["waiter"]["awaiting"] == "task 'fetcher'"
    assert rows["gatherer"]["awaiting"] == "gather of 2: task 'part-1', task 'part-2'"
    assert rows["part-1"]["awaited_by"] == ["task 'gatherer'"]
    assert rows["fetcher"]["suptrace"] is False
    assert any(t["suptrace"] for t in result["tasks"])  # the node's own, marked as such

    wide = cli({**node.env, "COLUMNS": "200"}, "ps", "--all", "--node", node.name)
    assert wide.returncode == 0, wide.stderr
    assert "plain asyncio tasks (not processes):" in wide.stdout
    lines = {line.split()[0]: line for line in wide.stdout.splitlines() if line.strip()}
    assert f"{FETCHER_AT} → Event.wait" in lines["fetcher"]
    assert "← task 'waiter'" in lines["fetcher"]
    assert "→ task 'fetcher'" in lines["waiter"]
    assert "→ gather of 2: task 'part-1', task 'part-2'" in lines["gatherer"]
    assert "note:" not in wide.stderr
    narrow = cli({**node.env, "COLUMNS": "80"}, "ps", "--all", "--node", node.name)
    firsts = {line.split()[0] for line in narrow.stdout.splitlines() if line[:1].strip()}
    assert {"fetcher", "waiter", "gatherer", "part-1", "part-2", "twin"} <= firsts


def test_inspect_a_plain_task_by_name(node: TasksNode) -> None:
    text = node.cli("inspect", "fetcher")
    assert text.returncode == 0, text.stderr
    assert "task fetcher (a plain asyncio task, not a process)" in text.stdout
    assert "awaited by: task 'waiter'" in text.stdout
    assert FETCHER_AT in text.stdout
    assert "PYTHONASYNCIODEBUG=1" in text.stdout  # creation site: how to get it
    info = node.cli_json("inspect", "waiter")
    assert info["alive"] is True and info["kind"] == "task"
    assert info["awaiting"] == "task 'fetcher'"
    assert info["awaiting_at"][-1].endswith("in waiter")


def test_inspect_a_task_name_two_tasks_share_names_their_ids(node: TasksNode) -> None:
    result = node.cli("inspect", "twin")
    assert result.returncode == 1
    assert "2 plain tasks are named 'twin'" in result.stderr and "by its id" in result.stderr
    ids = [t["id"] for t in node.cli_json("ps", "--all")["tasks"] if t["task"] == "twin"]
    by_id = node.cli_json("inspect", ids[1])
    assert by_id["task"] == "twin" and by_id["id"] == ids[1]
    unknown = node.cli("inspect", "no-such-task")
    assert unknown.returncode == 1
    assert "no process 'no-such-task'" in unknown.stderr


def test_a_lost_task_exception_is_a_crash_report_the_cli_shows(node: TasksNode) -> None:
    node.command("lose")
    line = node.out.wait_for(lambda got: '"TaskCrashReport"' in got, what="the task crash report")
    report = json.loads(line)["report"]
    assert report["task"] == "doomed"
    assert report["reason"] == "ValueError('the price feed went away')"
    result = node.cli("reports", "--json")  # one report per line
    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    crash = [r for r in reports if r.get("task") == "doomed"]
    assert len(crash) == 1, reports
    assert crash[0]["kind"] == "crash" and crash[0]["type"] == "TaskCrashReport"
    assert "raise ValueError(\"the price feed went away\")" in crash[0]["text"]


def test_in_asyncio_debug_mode_inspect_and_the_report_name_the_creation_site(
    tmp_path: Path,
) -> None:
    n = TasksNode(tmp_path / "run", "tasks-debug", PYTHONASYNCIODEBUG="1")
    try:
        info = n.cli_json("inspect", "fetcher")
        assert info["created_at"] and "tasks_node.py" in info["created_at"][-1]
        assert info["created_at"][-1].endswith("in main")
        n.command("lose")
        line = n.out.wait_for(lambda got: '"TaskCrashReport"' in got, what="the task crash report")
        text = json.loads(line)["report"]["text"]
        assert "created at (innermost last):" in text and "tasks_node.py" in text
    finally:
        n.stop()


def test_ps_all_says_when_the_application_took_the_exception_handler(node: TasksNode) -> None:
    node.command("handler")
    result = node.cli("ps", "--all")
    assert result.returncode == 0, result.stderr
    assert "note: the application replaced the loop's exception handler" in result.stderr
    assert "gets no crash report" in result.stderr
    assert node.cli_json("ps", "--all")["task_crash_reports"] is False
