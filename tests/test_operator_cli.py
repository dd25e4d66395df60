"""What an operator sees of a troubled node, through the real `suptrace` command
against a node in another process: restart counts in ps, tree and inspect, the
restart loops and call timeouts doctor finds, and quiet, readable logs and
reports (no progress reports logged, short crash reports, no logging-code
location, `reports --follow` starting at now, --short, --full, --name)."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_scripts import harness
from node_scripts.harness import Lines, NodeProcess, cli, spawn_cli

TROUBLED = Path(harness.__file__).with_name("troubled_node.py")

#: importer.survey crashes this often; feeds_sup gives up (and is restarted) this often;
#: the poller makes this many calls to db, of which a third time out.
CRASHES, FEED_CRASHES, POLLS = 6, 3, 30


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(harness, "SCENARIO", TROUBLED)
        n = NodeProcess(tmp_path_factory.mktemp("troubled") / "run", "troubled")
    n.wait_ready()
    n.command(f"crash {CRASHES}")
    n.command(f"feed {FEED_CRASHES}")
    n.command(f"poll {POLLS}")
    assert f"timeouts {POLLS // 3}" in n.out.seen
    yield n
    assert n.stop() == 0


def _child(desc: dict, child_id: str) -> dict:
    return next(c for c in desc["children"] if c["id"] == child_id)


def test_ps_tree_and_inspect_show_restarts(node: NodeProcess) -> None:
    rows = {p["name"]: p for p in node.cli_json("ps")["processes"]}
    survey = rows["importer.survey"]
    assert (survey["restarts"], survey["restarts_window"]) == (CRASHES, CRASHES)
    assert (rows["db"]["restarts"], rows["poller"]["restarts"]) == (0, 0)
    assert rows["feeds_sup"]["restarts"] == FEED_CRASHES

    [root] = node.cli_json("tree")["roots"]
    assert _child(root, "feeds_sup")["restarts"] == FEED_CRASHES
    imports = _child(root, "import_sup")
    assert imports["restarts"] == 0
    assert _child(imports["tree"], "survey")["restarts_window"] == CRASHES
    assert _child(imports["tree"], "survey")["start"] == "start_importer('survey')"
    assert (
        imports["start"]
        == "Supervisor.start_link(1 child, name='import_sup', intensity=20, period=3600)"
    )

    info = node.cli_json("inspect", "feeds_sup")
    assert (info["restarts"], info["restarted_by"]) == (FEED_CRASHES, "app.sup")

    tree_text = node.cli("tree").stdout
    assert f"restarted {CRASHES} times ({CRASHES} in the window)" in tree_text
    assert f"restarted {FEED_CRASHES} times by its parent" in tree_text
    ps_text = node.cli("ps", "--sort", "restarts").stdout
    first = ps_text.splitlines()[1]
    assert "importer.survey" in first and f"{CRASHES} ({CRASHES} now)" in first
    inspect_text = node.cli("inspect", "feeds_sup").stdout
    assert f"restarted {FEED_CRASHES} times by its parent app.sup" in inspect_text
    assert "runs start_importer('survey')" in node.cli("inspect", "import_sup").stdout


def test_doctor_finds_the_restart_loops_and_the_timeouts(node: NodeProcess) -> None:
    result = node.cli("doctor", "--json", "--samples", "2", "--interval", "0.01")
    assert result.returncode == 1, result.stderr
    found = {(f["rule"], f["subject"]): f for f in json.loads(result.stdout)["findings"]}
    loop = found[("restart_loop", "import_sup / survey")]
    assert loop["severity"] == "error"
    assert f"restarted {CRASHES} times by import_sup" in loop["message"]
    assert (
        f"RuntimeError x{CRASHES} (last: RuntimeError('survey file is corrupt'))" in loop["message"]
    )
    sup = found[("restart_loop", "app.sup / feeds_sup")]
    assert f"restarted {FEED_CRASHES} times by app.sup" in sup["message"]
    assert "because of feed, which exited with: ConnectionError x" in sup["message"]
    assert "whole subtree" in sup["message"]
    slow = found[("call_timeouts", "db")]
    assert slow["severity"] == "error"
    assert f"{POLLS // 3} of the {POLLS} calls it received (33%)" in slow["message"]
    assert f"callers: poller ({POLLS // 3})" in slow["message"]
    assert "suptrace attach db --flags calls" in slow["hint"]

    text = node.cli("doctor", "--samples", "2", "--interval", "0.01").stdout
    assert "[restart_loop] import_sup / survey" in text
    assert "[call_timeouts] db" in text and "what to do:" in text


def test_the_log_is_quiet_and_readable(node: NodeProcess) -> None:
    # The node logs through loguru's default handler to stderr, synchronously: what
    # the commands so far logged was written before their "done" lines.
    node.err.wait_for(lambda line: "=SUPERVISOR REPORT====" in line and "feeds_sup" in line)
    err = "\n".join(_drain(node.err))
    assert "PROGRESS REPORT" not in err  # kept in the history, not logged (OTP 21+)
    assert "suptrace.observers.reports:_log" not in err
    assert "| ERROR    | suptrace.reports:crash:importer.survey - =CRASH REPORT====" in err
    assert "| ERROR    | suptrace.reports:supervisor:import_sup - =SUPERVISOR REPORT====" in err
    assert "start=start_importer('survey')" in err
    # One crash report: from its header to the next log record's timestamp.
    crash = re.split(r"\n(?=\d{4}-\d\d-\d\d )", err.split("=CRASH REPORT====", 1)[1])[0]
    lines = crash.splitlines()
    assert 5 <= len(lines) <= 12, lines
    assert "raised at troubled_node.py" in crash and "full report: suptrace reports --full" in crash
    progress = node.cli("reports", "--kind", "progress", "--short").stdout
    assert "progress import_sup/'survey' started as" in progress


def _drain(lines: Lines) -> list[str]:
    """What the pipe holds now (the reader thread keeps what it has read in ``seen``)."""
    while True:
        try:
            line = lines.q.get_nowait()
        except Exception:
            return lines.seen
        if line is not None:
            lines.seen.append(line)


def test_reports_short_full_and_name(node: NodeProcess) -> None:
    short = node.cli("reports", "--short", "--name", "importer.*").stdout.splitlines()
    assert len(short) == CRASHES
    assert all(re.match(r"\d\d:\d\d:\d\d\.\d{6} crash importer\.survey <", s) for s in short)
    assert all("RuntimeError('survey file is corrupt')" in s for s in short)
    default = node.cli("reports", "--kind", "crash", "--last", "1").stdout
    assert "raised at" in default and "traceback (most recent call last)" not in default
    full = node.cli("reports", "--kind", "crash", "--last", "1", "--full").stdout
    assert "traceback (most recent call last)" in full
    named = [
        json.loads(line)
        for line in node.cli("reports", "--name", "feeds_sup", "--json").stdout.splitlines()
    ]
    assert {r["kind"] for r in named} == {"child_terminated", "shutdown"}
    assert all(
        r.get("supervisor") == "feeds_sup" or r["offender"]["id"] == "feeds_sup" for r in named
    )
    recent = node.cli("reports", "--short", "--since", "1h", "--name", "db").stdout
    assert recent == ""
    bad = cli(node.env, "reports", "--since", "soon", "--node", node.id)
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def test_reports_follow_starts_at_now(node: NodeProcess) -> None:
    follower = spawn_cli(node.env, "reports", "--follow", "--short", "--node", node.id)
    try:
        out, err = Lines(follower.stdout), Lines(follower.stderr)
        err.wait_for(lambda line: "following reports" in line, what="the follow to start")
        node.command("crash 1")
        first = out.wait_for(lambda line: bool(line.strip()), what="a report line")
        # The first line is the crash just made, not one of the earlier crashes.
        assert first.split(" ", 1)[1].startswith("crash importer.survey")
        assert out.wait_for(lambda line: "child_terminated import_sup/'survey'" in line)
        assert len([s for s in out.seen if " crash " in s]) == 1
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(15)
