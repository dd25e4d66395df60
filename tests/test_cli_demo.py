"""`suptrace demo` (interactive and --script) and what `suptrace --help` loads."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

from node_scripts.harness import SUPTRACE, Lines, cli, env_for, poll, spawn_cli


def test_demo_script_tours_the_silent_death_and_exits_0(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SUPTRACE, "demo", "--script"],
        env=env_for(tmp_path / "run"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "$ suptrace tree --node demo" in out
    assert re.search(
        r"demo\.imports <0\.\d+\.0>\s+one_for_one 0/2 in 5s\s+supervisor transient", out
    )
    # the live trace while the subtree dies
    assert "demo.imports) intensity reached: 3 restarts in 5s (max 2)" in out
    assert "(<0.2.0> demo.sup) not_restarted 'imports' 'shutdown' (transient)" in out
    # the report, the tree after, and the doctor
    assert "errorContext: not_restarted" in out
    assert "imports not running  supervisor transient" in out and "gone for good" in out
    assert "[silent_death] demo.sup / imports" in out
    assert "[growing_mailbox] demo.mailer" in out and "[stuck] demo.reporter" in out
    assert not list((tmp_path / "run").glob("*.sock"))  # the node cleaned up after itself
    # telemetry went to the embedded default, and the demo says how to look at it
    telemetry = tmp_path / "suptrace-demo.otlp.jsonl"
    assert telemetry.stat().st_size > 0
    assert f"suptrace view {telemetry}" in out


def test_demo_runs_a_node_the_commands_can_look_at(tmp_path: Path) -> None:
    env = env_for(tmp_path / "run")
    demo = spawn_cli(env, "demo", "--breach-after", "0.5", cwd=tmp_path)
    try:
        err = Lines(demo.stderr)
        err.wait_for(lambda line: "suptrace tree --node demo" in line, what="the demo's hints")

        def gone() -> bool:
            result = cli(env, "tree", "--json", "--node", "demo")
            if result.returncode != 0:
                return False
            kids = json.loads(result.stdout)["roots"][0]["children"]
            imports = next(c for c in kids if c["id"] == "imports")
            return imports["pid"] is None and "not_restarted" in imports

        poll(gone, what="demo.imports to die and not come back")
        demo.send_signal(signal.SIGINT)
        assert demo.wait(15) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
    assert not list((tmp_path / "run").glob("*.sock"))


_PROBE = """
import sys
sys.argv = ["suptrace", "--help"]
from suptrace.cli.app import main
try:
    main()
except SystemExit as e:
    code = e.code
heavy = [m for m in sys.modules if m.startswith(("suptrace.core", "suptrace.node.node", "opentelemetry", "asyncio", "loguru"))]
print("HEAVY", heavy, code)
"""


def test_help_does_not_load_the_runtime_or_opentelemetry() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "attach" in result.stdout and "doctor" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "HEAVY [] 0"
