"""SIGTERM and SIGINT stop a node in order (SPEC §2, "Added in the second
round"): real signals to a real node in a subprocess; terminate callbacks in
reverse start order, control files gone, Python's exit status, one line
instead of a traceback; a second signal stops at once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from node_scripts.harness import HERE, Lines, env_for

import suptrace
from suptrace import NodeError

SCRIPT = HERE / "signal_node.py"


def start(run_dir: Path, *args: str) -> tuple[subprocess.Popen[str], Lines, Lines]:
    run_dir.mkdir(mode=0o700, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(run_dir),
        text=True,
    )
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    out.wait_for(lambda line: line == "ready", what="the node to be ready")
    assert sorted(p.name for p in run_dir.iterdir()) == [
        f"{args[0]}.json",
        f"{args[0]}.sock",
    ]
    return proc, out, err


def stopped(proc: subprocess.Popen[str], out: Lines, err: Lines) -> tuple[int, list[str], list[str]]:
    code = proc.wait(30)
    return code, out.rest(), err.rest()


def terminates(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("terminate ")]


@pytest.mark.parametrize("embedded", [False, True], ids=["run", "Node(handle_signals=True)"])
def test_sigterm_stops_the_tree_in_reverse_order_and_exits_143(tmp_path: Path, embedded: bool) -> None:
    run_dir = tmp_path / "run"
    proc, out, err = start(run_dir, "termed", *(["--embedded"] if embedded else []))
    proc.send_signal(signal.SIGTERM)
    code, lines, errors = stopped(proc, out, err)
    assert code == 143, errors
    assert terminates(lines) == [
        "terminate third shutdown",
        "terminate second shutdown",
        "terminate first shutdown",
    ]
    assert "after run" not in lines
    assert list(run_dir.iterdir()) == []  # control socket and its sidecar removed
    said = [line for line in errors if line.startswith("suptrace:")]
    assert said == ["suptrace: SIGTERM: stopping node 'termed' in order (send SIGTERM again to stop at once)"]
    assert not any("Traceback" in line for line in errors)


def test_sigterm_flushes_telemetry(tmp_path: Path, http_receiver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the node measured reaches the collector on SIGTERM, not at the next
    periodic export (set here far beyond the test's life)."""
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
    proc, out, err = start(tmp_path / "run", "flushed")
    assert http_receiver.counts["metrics"] == 0
    proc.send_signal(signal.SIGTERM)
    code, _lines, errors = stopped(proc, out, err)
    assert code == 143, errors
    assert http_receiver.wait_for(lambda: http_receiver.counts["metrics"] > 0)
    assert any(name.startswith("suptrace.") for name in http_receiver.dump().metrics)


def test_sigterm_under_uvloop(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    run_dir = tmp_path / "run"
    proc, out, err = start(run_dir, "uv", "--uvloop")
    proc.send_signal(signal.SIGTERM)
    code, lines, errors = stopped(proc, out, err)
    assert code == 143, errors
    assert len(terminates(lines)) == 3 and terminates(lines)[0] == "terminate third shutdown"
    assert list(run_dir.iterdir()) == []


def test_ctrl_c_stops_in_order_with_one_line_and_pythons_exit_status(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc, out, err = start(run_dir, "interrupted")
    proc.send_signal(signal.SIGINT)
    code, lines, errors = stopped(proc, out, err)
    # What Python does with an uncaught KeyboardInterrupt: it dies of SIGINT (130 in a shell).
    assert code == -signal.SIGINT, errors
    assert terminates(lines)[0] == "terminate third shutdown" and len(terminates(lines)) == 3
    assert list(run_dir.iterdir()) == []
    assert not any("Traceback" in line or "CancelledError" in line for line in errors), errors
    assert [line for line in errors if not line.startswith((" ", "20"))] == [
        "suptrace: SIGINT: stopping node 'interrupted' in order (send SIGINT again to stop at once)"
    ]


def test_second_signal_during_shutdown_stops_at_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc, out, err = start(run_dir, "stuck", "--slow-terminate")
    proc.send_signal(signal.SIGTERM)
    # third's terminate never returns (and the node waits 30 s for it): only a second signal helps.
    out.wait_for(lambda line: line == "terminate third shutdown", what="the slow terminate")
    proc.send_signal(signal.SIGTERM)
    code, lines, errors = stopped(proc, out, err)
    assert code == -signal.SIGTERM  # died of the signal: 143 in a shell
    assert terminates(lines) == ["terminate third shutdown"]
    assert "suptrace: SIGTERM again: node 'stuck' stops at once" in errors
    assert list(run_dir.iterdir()) == []  # even then, no stale control socket


def test_run_catching_keyboard_interrupt_in_process() -> None:
    """In-process: the KeyboardInterrupt run() raises is an ordinary one to catch."""

    async def main() -> None:
        signal.raise_signal(signal.SIGINT)
        await suptrace.receive()

    with pytest.raises(KeyboardInterrupt):
        suptrace.run(main, control=False, log_reports=False)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_embedded_node_leaves_signals_alone_by_default() -> None:
    async def app() -> Any:
        before = signal.getsignal(signal.SIGTERM)
        async with suptrace.Node("quiet", control=False):
            return signal.getsignal(signal.SIGTERM) is before

    assert asyncio.run(app()) is True


def test_handle_signals_outside_the_main_thread_is_refused() -> None:
    errors: list[BaseException] = []

    async def app() -> None:
        async with suptrace.Node("threaded", control=False, handle_signals=True):
            pass  # never reached

    def thread() -> None:
        try:
            asyncio.run(app())
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=thread, name="worker-thread")
    t.start()
    t.join(10)
    assert len(errors) == 1 and isinstance(errors[0], NodeError)
    assert "main thread" in str(errors[0]) and "'worker-thread'" in str(errors[0])
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # nothing was installed


def test_run_in_another_thread_leaves_signals_alone() -> None:
    results: list[Any] = []

    async def main() -> str:
        return "ran"

    t = threading.Thread(
        target=lambda: results.append(suptrace.run(main, control=False, log_reports=False))
    )
    t.start()
    t.join(10)
    assert results == ["ran"]
