"""The real `suptrace` command against a real node in another process:
nodes, ps, tree, inspect, status, tombstones, reports, doctor and the write
operations, in text and --json, with their exit codes (0 ok, 1 not found or
a finding, 2 usage)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_scripts.harness import NodeProcess, cli, env_for, poll


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node after its scenario: echo crashed once, app.pool gave up for good."""
    n = NodeProcess(tmp_path_factory.mktemp("cmd") / "run", "cmd")
    n.wait_ready()
    n.command("send 3")
    n.command("crash")
    n.command("breach")
    yield n
    assert n.stop() == 0


# -- nodes -----------------------------------------------------------------------------------


def test_nodes_lists_the_node_and_removes_stale_entries(node: NodeProcess) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    ghost = node.run_dir / "ghost.json"
    ghost.write_text(
        json.dumps(
            {
                "node": "ghost",
                "id": "ghost",
                "pid": int(dead.stdout),
                "started": 1.0,
                "socket": str(node.run_dir / "ghost.sock"),
            }
        )
    )
    (node.run_dir / "ghost.sock").write_text("")
    listed = cli(node.env, "nodes", "--json")
    assert listed.returncode == 0
    data = json.loads(listed.stdout)
    assert [n["id"] for n in data["nodes"]] == ["cmd"]
    assert data["nodes"][0]["pid"] == node.proc.pid
    assert [s["id"] for s in data["stale"]] == ["ghost"]
    assert not ghost.exists() and not (node.run_dir / "ghost.sock").exists()
    text = cli(node.env, "nodes")
    assert text.returncode == 0
    assert re.search(rf"^cmd\s+cmd\s+{node.proc.pid}\s", text.stdout, re.M), text.stdout


# -- ps, status, tombstones ------------------------------------------------------------------


def test_ps(node: NodeProcess) -> None:
    data = node.cli_json("ps")
    rows = {p["name"]: p for p in data["processes"] if p["name"]}
    assert {"app.sup", "app.echo", "app.store", "app.driver"} <= set(rows)
    assert "app.pool" not in rows  # gone for good
    assert rows["app.store"]["behaviour"] == "Store"
    assert rows["app.echo"]["status"] == "waiting"
    text = node.cli("ps", "--sort", "name")
    assert text.returncode == 0
    assert re.search(r"<0\.\d+\.0>\s+app\.store\s+waiting\s+0\s+\d+\s+\d+\s+Store ", text.stdout), (
        text.stdout
    )
    lines = [
        line.split()[1]
        for line in text.stdout.splitlines()[1:]
        if len(line.split()) > 1 and line.split()[1].startswith("app.")
    ]
    assert lines == sorted(lines)


def test_status_and_tombstones(node: NodeProcess) -> None:
    status = node.cli_json("status")
    assert status["node"] == "cmd" and status["allow_write"] is False
    assert status["tracers"] == [] and status["traced_processes"] == 0
    text = node.cli("status")
    assert text.returncode == 0 and "refused (read-only)" in text.stdout
    stones = node.cli_json("tombstones")["tombstones"]
    pool = next(s for s in stones if s["name"] == "app.pool")
    assert "max restart intensity" in pool["story"] and "did not restart it" in pool["story"]
    assert "app.pool is gone" in node.cli("tombstones").stdout


# -- tree ---------------------------------------------------------------------------------------


def test_tree_json(node: NodeProcess) -> None:
    data = node.cli_json("tree")
    [root] = data["roots"]
    assert root["name"] == "app.sup" and root["strategy"] == "one_for_one"
    assert root["intensity"] == 5 and root["period"] == 3600 and root["restarts_in_window"] == 1
    kids = {c["id"]: c for c in root["children"]}
    assert list(kids) == ["echo", "store", "pool", "driver"]  # start order
    assert kids["echo"]["restart"] == "permanent" and kids["echo"]["name"] == "app.echo"
    pool = kids["pool"]
    assert pool["pid"] is None and pool["type"] == "supervisor" and pool["restart"] == "transient"
    assert "max restart intensity" in pool["not_restarted"]["cause"]
    assert "transient" in pool["not_restarted"]["rule"]
    assert pool["tombstone"]["name"] == "app.pool"
    assert any(s["name"] == "app.pool" for s in data["vanished"])


def test_tree_text(node: NodeProcess) -> None:
    result = node.cli("tree")
    assert result.returncode == 0
    out = result.stdout
    assert re.search(r"^app\.sup <0\.\d+\.0>\s+one_for_one 1/5 in 3600s$", out, re.M), out
    assert re.search(r"echo app\.echo <0\.\d+\.0>\s+worker permanent", out)
    assert re.search(r"pool not running\s+supervisor transient", out)
    assert "gone for good: exited 'shutdown' after reaching max restart intensity" in out
    assert "\x1b[" not in out  # piped: no colour


# -- inspect ------------------------------------------------------------------------------------


def test_inspect_a_genserver(node: NodeProcess) -> None:
    data = node.cli_json("inspect", "app.store")
    assert data["alive"] is True and data["registered_name"] == "app.store"
    assert data["behaviour"] == "Store" and data["status"] == "waiting"
    assert "'secret_note': 'state of app.store'" in data["state"]
    assert data["links"] and data["ancestors"][0] == "app.sup"
    assert any("gen_server.py" in frame for frame in data["current_stacktrace"])
    text = node.cli("inspect", "app.store").stdout
    assert "state:" in text and "secret_note" in text and "awaiting at" in text


def test_inspect_a_supervisor_and_by_pid(node: NodeProcess) -> None:
    pid = node.cli_json("inspect", "app.sup")["pid"]
    data = node.cli_json("inspect", pid)
    assert data["registered_name"] == "app.sup"
    assert data["supervisor"]["strategy"] == "one_for_one"
    assert "state" not in data


def test_inspect_recent_events(node: NodeProcess) -> None:
    data = node.cli_json("inspect", "app.echo")
    assert data["last_events"] == [] or all(e["pid"] == data["pid"] for e in data["last_events"])
    node.command("send 2")
    events = node.cli_json("inspect", "app.echo")["last_events"]
    assert [e["text"].split("<< ")[-1] for e in events[-2:]] == ["('job', 0)", "('job', 1)"]


def test_inspect_a_dead_name_shows_its_tombstone(node: NodeProcess) -> None:
    result = node.cli("inspect", "app.pool")
    assert result.returncode == 1
    assert "app.pool is gone" in result.stdout and "did not restart it" in result.stdout
    as_json = node.cli("inspect", "app.pool", "--json")
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert data["alive"] is False and data["tombstone"]["name"] == "app.pool"


def test_inspect_unknown(node: NodeProcess) -> None:
    result = node.cli("inspect", "nobody.here")
    assert result.returncode == 1
    assert "no process 'nobody.here'" in result.stderr and result.stdout == ""


# -- reports ------------------------------------------------------------------------------------


def test_reports(node: NodeProcess) -> None:
    result = node.cli("reports", "--json", "--kind", "not_restarted")
    assert result.returncode == 0
    [report] = [json.loads(line) for line in result.stdout.splitlines()]
    assert report["kind"] == "not_restarted" and report["supervisor"] == "app.sup"
    assert report["offender"]["id"] == "pool" and report["reason"] == "'shutdown'"
    crashes = [
        json.loads(line)
        for line in node.cli("reports", "--json", "-k", "crash").stdout.splitlines()
    ]
    assert {c["name"] for c in crashes} >= {"app.echo", "app.worker.a"}
    text = node.cli("reports").stdout
    assert "=SUPERVISOR REPORT====" in text and "=CRASH REPORT====" in text
    assert "errorContext: not_restarted" in text and "=PROGRESS REPORT" not in text
    assert "=PROGRESS REPORT" in node.cli("reports", "--kind", "progress").stdout


def test_reports_bad_kind_is_a_usage_error(node: NodeProcess) -> None:
    result = node.cli("reports", "--kind", "gossip")
    assert result.returncode == 2 and "gossip" in result.stderr


# -- doctor -------------------------------------------------------------------------------------


def test_doctor_on_the_running_node(node: NodeProcess) -> None:
    result = node.cli("doctor", "--json", "--samples", "2", "--interval", "0.05")
    assert result.returncode == 1
    findings = json.loads(result.stdout)["findings"]
    rules = {(f["rule"], f["subject"]) for f in findings}
    assert ("silent_death", "app.sup / pool") in rules
    assert ("vanished_name", "app.pool") in rules
    assert findings[0]["severity"] == "error"
    text = node.cli("doctor", "--samples", "2", "--interval", "0.05")
    assert text.returncode == 1
    assert "[silent_death] app.sup / pool" in text.stdout and "what to do:" in text.stdout


_SPECS = """
import suptrace
from suptrace import ChildSpec, Supervisor

async def start():
    ...

workers = [ChildSpec(id=f"w{i}", start=(start, ())) for i in range(3)]
risky = [
    ChildSpec(id="db", start=(start, ())),
    ChildSpec(id="imports", start=(Supervisor.start_link, (workers,), {"intensity": 3, "period": 5}),
              restart="transient", type="supervisor"),
]
safe = {"children": [ChildSpec(id="db", start=(start, ()))], "intensity": 3, "period": 5}
"""


def test_doctor_on_a_spec_without_running_it(tmp_path: Path) -> None:
    (tmp_path / "myspecs.py").write_text(textwrap.dedent(_SPECS))
    env = env_for(tmp_path / "run")
    risky = subprocess.run(
        [*_cli(), "doctor", "myspecs:risky", "--json", "--intensity", "3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert risky.returncode == 1, risky.stderr
    rules = {f["rule"] for f in json.loads(risky.stdout)["findings"]}
    assert "silent_death" in rules
    safe = subprocess.run(
        [*_cli(), "doctor", "myspecs:safe"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert safe.returncode == 0, safe.stdout + safe.stderr
    assert "no hazards found" in safe.stdout
    missing = subprocess.run(
        [*_cli(), "doctor", "myspecs:nothing"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2 and "no attribute" in missing.stderr


def _cli() -> list[str]:
    from node_scripts.harness import SUPTRACE

    return SUPTRACE


def test_doctor_on_the_demo_spec(tmp_path: Path) -> None:
    result = cli(env_for(tmp_path), "doctor", "suptrace.cli.demo_scenario:spec", "--json")
    assert result.returncode == 1
    found = {(f["rule"], f["subject"]) for f in json.loads(result.stdout)["findings"]}
    assert ("silent_death", "demo.sup / imports") in found
    assert ("intensity_burst", "demo.sup") in found


# -- exit codes ---------------------------------------------------------------------------------


def test_exit_codes(node: NodeProcess, tmp_path: Path) -> None:
    assert node.cli("ps").returncode == 0
    unknown = cli(node.env, "ps", "--node", "nosuch")
    assert unknown.returncode == 1 and "no node 'nosuch'" in unknown.stderr
    nothing = cli(env_for(tmp_path / "empty"), "ps")
    assert nothing.returncode == 1 and "no suptrace node is running" in nothing.stderr
    assert cli(node.env, "ps", "--bogus-option").returncode == 2
    assert cli(node.env, "attach").returncode == 2  # missing NAME
    bad_flag = node.cli("attach", "app.echo", "--flags", "nonsense")  # refused by the node
    assert bad_flag.returncode == 2 and "unknown trace flag 'nonsense'" in bad_flag.stderr


def test_several_nodes_need_node(node: NodeProcess) -> None:
    other = NodeProcess(node.run_dir, "cmd2")
    try:
        other.wait_ready()
        ambiguous = cli(node.env, "ps")
        assert ambiguous.returncode == 2 and "--node" in ambiguous.stderr
        by_pid = cli(node.env, "ps", "--json", "--node", str(other.proc.pid))
        assert by_pid.returncode == 0 and json.loads(by_pid.stdout)["node"] == "cmd2"
    finally:
        other.stop()
    poll(lambda: cli(node.env, "ps").returncode == 0, what="the other node to be gone")


# -- write operations -----------------------------------------------------------------------------


def test_write_ops_are_refused_on_a_read_only_node(node: NodeProcess) -> None:
    result = node.cli("terminate-child", "app.sup", "echo")
    assert result.returncode == 1 and "read-only" in result.stderr
    assert node.cli_json("inspect", "app.echo")["alive"]


def test_write_ops_on_a_node_that_allows_them(tmp_path: Path) -> None:
    n = NodeProcess(tmp_path / "run", "rw", "--allow-write")
    try:
        n.wait_ready()
        done = n.cli("terminate-child", "app.sup", "echo")
        assert done.returncode == 0, done.stderr
        assert "terminated child 'echo'" in done.stdout
        tree = n.cli_json("tree")["roots"][0]["children"]
        assert next(c for c in tree if c["id"] == "echo")["pid"] is None
        again = n.cli_json("restart-child", "app.sup", "echo")
        assert again["pid"] and n.cli_json("inspect", "app.echo")["pid"] == again["pid"]
        assert n.cli("terminate-child", "app.sup", "nosuch").returncode == 1
        store = next(c for c in tree if c["id"] == "store")["pid"]
        assert n.cli("exit", "app.store", "kill").returncode == 0
        poll(
            lambda: n.cli_json("inspect", "app.store")["pid"] != store, what="app.store to restart"
        )
    finally:
        n.stop()


# -- fitting the terminal and the user's typos ----------------------------------------------


def test_version_and_help_without_bool_metavars(node: NodeProcess) -> None:
    from suptrace import __version__

    for flag in ("--version", "-V"):
        result = node_cli_plain(node, flag)
        assert result.returncode == 0 and result.stdout.strip() == f"suptrace {__version__}"
    for command in ("attach", "ps", "top", "reports", "doctor"):
        result = node_cli_plain(node, command, "--help")
        assert result.returncode == 0 and "<bool>" not in result.stdout, result.stdout
    assert "-j" in node_cli_plain(node, "ps", "--help").stdout  # the short-option scheme


def test_did_you_mean(node: NodeProcess) -> None:
    result = node.cli("inspect", "app.stor")
    assert result.returncode == 1
    assert "no process 'app.stor'" in result.stderr and "did you mean app.store?" in result.stderr
    attach = node.cli("attach", "app.ehco", "--max-events", "1")
    assert attach.returncode == 1 and "did you mean app.echo?" in attach.stderr
    command = node_cli_plain(node, "inspct", "app.store")
    assert command.returncode == 2 and "Did you mean 'inspect'?" in command.stderr


def test_tree_shows_a_supervisor_childs_id(node: NodeProcess) -> None:
    data = node.cli_json("tree")
    pool = next(c for c in data["roots"][0]["children"] if c["id"] == "pool")
    assert pool["pid"] is None  # gave up for good in this scenario: shown by its id
    assert re.search(r"pool not running\s+supervisor transient", node.cli("tree").stdout)
    # A running supervisor child: its id, then its registered name and pid.
    from suptrace.cli.render import _sup_label

    desc = {"name": "app.pool", "pid": "<0.5.0>", "status": "ok", "strategy": "one_for_one"}
    desc |= {"intensity": 1, "period": 5, "restarts_in_window": 0}
    child = {"id_text": "pool", "restart": "transient"}
    assert _sup_label(desc, child).plain.startswith("pool app.pool <0.5.0>  one_for_one 0/1 in 5s")


def node_cli_plain(node: NodeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``suptrace ARGS`` without ``--node`` (for options that come before a command)."""
    return cli(node.env, *args)
