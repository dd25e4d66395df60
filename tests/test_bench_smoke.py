"""The benchmark scripts stay runnable: each one, at a tiny size, as a subprocess.

These check that the scripts run and that what they write is well formed, never how
fast anything is (figures come from full runs, recorded in bench/README.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_otel_bench_reports_every_configuration_and_the_export_thread(tmp_path: Path) -> None:
    out = tmp_path / "otel.json"
    done = run_script(
        "bench/otel.py",
        "--section",
        "permsg",
        "--n",
        "300",
        "--repeats",
        "1",
        "--only",
        "call",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "thread sleeps/1k msgs" in done.stdout
    data = json.loads(out.read_text())
    call = data["workloads"]["call"]
    configs = {
        "off",
        "no SDK",
        "always-off",
        "no export",
        "full",
        "full+m",
        "bare",
        "bare in node",
    }
    assert set(call["best_us_per_msg"]) == configs
    assert all(v > 0 for v in call["best_us_per_msg"].values())
    assert set(call["thread_switches"]) == configs
    # No SDK means no export thread: nothing of it can have slept.
    assert call["thread_switches"]["off"] == [0]
    assert all(isinstance(v, int) and v >= 0 for vs in call["thread_switches"].values() for v in vs)


def test_otel_bench_modes_count_the_delivered_failure_traces(tmp_path: Path) -> None:
    """The trace-mode sections against a receiver subprocess, one second each."""
    out = tmp_path / "modes.json"
    done = run_script(
        "bench/otel.py",
        "--section",
        "failures",
        "--section",
        "paced",
        "--seconds",
        "1.5",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "failure traces delivered complete" in done.stdout
    data = json.loads(out.read_text())
    failures = data["failures"]
    # One crash a second was injected, and each arrived as a complete trace.
    assert failures["injected"] >= 1 and failures["delivered"] == failures["injected"]
    assert set(data["paced"]) == {"2000", "20000"}
    assert all(p["exported"] > 0 and p["produced"] > 0 for p in data["paced"].values())
    assert data["paced"]["2000"]["nothing_dropped"] is not None  # the target is judged there


def test_core_bench_quick_run_judges_the_call_targets(tmp_path: Path) -> None:
    out = tmp_path / "core.json"
    done = run_script("bench/core.py", "--quick", "--only", "call", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "suptrace call()" in done.stdout
    assert ">= 0.6x asyncio Queue+Future" in done.stdout
    assert json.loads(out.read_text())


def test_tracing_bench_quick_flood_prints_ratio_and_stall() -> None:
    done = run_script("bench/tracing.py", "--quick", "--only", "flood", "--messages", "20000")
    # Exit 1 only says a target was missed on this machine: figures are not judged here.
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr
    assert "ratio traced / untraced" in done.stdout
    assert "longest trace-delivery callback" in done.stdout
    assert "events accepted / rate pauses" in done.stdout


def test_control_bench_quick_run_reports_the_burst(tmp_path: Path) -> None:
    out = tmp_path / "control.json"
    done = run_script("bench/control.py", "--quick", "--connections", "100", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "rapid connect/close" in done.stdout
    assert "x of before (target >= 0.8x)" in done.stdout
    assert "longest loop stall (ms)" in done.stdout
    data = json.loads(out.read_text())
    assert data["connections"] == 100
    assert data["before"]["rate"] > 0 and data["during"]["rate"] >= 0
    assert data["during"]["stall_ms"] >= 0


def test_switch_count_stays_whole_when_a_thread_ends_in_the_region() -> None:
    """A thread that slept, then ended inside the timed region, used to take its
    switches out of the sum and make it negative."""
    import importlib.util
    import threading
    import time

    spec = importlib.util.spec_from_file_location("bench_otel", ROOT / "bench" / "otel.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    go = threading.Event()
    asleep = threading.Event()

    def sleeper() -> None:
        time.sleep(0.001)  # the thing counted: a thread that goes to sleep (not a wait)
        asleep.set()
        go.wait()

    worker = threading.Thread(target=sleeper, daemon=True)
    worker.start()
    try:
        asleep.wait()
        before = bench.thread_switches()
        assert before.get(str(worker.native_id), 0) >= 1
    finally:
        go.set()  # a failed check must not leave the thread waiting
    worker.join()
    assert bench.switches_since(before) >= 0
