"""The embedded default: OTLP-JSON lines in a file, rendered by ``suptrace view`` (SPEC §7, §8)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from otlp_receivers import call_chain, dodos

import suptrace
from suptrace.cli.view import load


async def both() -> None:
    await dodos(3)
    await call_chain()


@pytest.fixture
def telemetry_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file written by a node left on the default (no endpoint configured)."""
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "SUPTRACE_TELEMETRY",
    ):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "node.otlp.jsonl"
    monkeypatch.setenv("SUPTRACE_OTLP_FILE", str(path))
    suptrace.run(both, node="viewed", control=False, log_reports=False)
    return path


def view(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "suptrace", "view", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "200"},
    )


def test_file_lines_are_otlp_json(telemetry_file: Path) -> None:
    kinds: set[str] = set()
    for line in telemetry_file.read_text().splitlines():
        doc = json.loads(line)
        (kind,) = doc.keys()
        kinds.add(kind)
        if kind == "resourceSpans":
            for rs in doc[kind]:
                for ss in rs["scopeSpans"]:
                    assert ss["scope"]["name"] == "suptrace"
                    assert ss["schemaUrl"].startswith("https://opentelemetry.io/schemas/")
                    for span in ss["spans"]:
                        # OTLP/JSON: hex ids, integer enums.
                        assert re.fullmatch(r"[0-9a-f]{32}", span["traceId"])
                        assert re.fullmatch(r"[0-9a-f]{16}", span["spanId"])
                        assert isinstance(span["kind"], int)
    assert kinds == {"resourceSpans", "resourceMetrics", "resourceLogs"}


def test_view_json_summary_round_trips(telemetry_file: Path) -> None:
    done = view(str(telemetry_file), "--json")
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    assert summary["nodes"] == ["viewed"]
    assert summary["bad_lines"] == 0
    metrics = summary["metrics"]
    assert metrics["suptrace.process.restarts"]["total"] == 3
    assert metrics["suptrace.supervisor.intensity_breaches"]["total"] == 1
    assert metrics["suptrace.call.duration"]["count"] >= 6
    assert metrics["suptrace.message.duration"]["p50"] is not None
    by_name: dict[str, list[dict[str, Any]]] = {}
    for proc in summary["processes"]:
        by_name.setdefault(proc["name"], []).append(proc)
    assert len(by_name["dodo"]) == 4 and all(p["failed"] for p in by_name["dodo"])
    (sup,) = by_name["dodos"]
    assert sup["failed"] and "intensity" in sup["events"] and sup["events"].count("restart") == 3
    (world,) = by_name["world"]
    assert "not_restarted" in world["events"]
    # dodos runs under world, which runs under the root process.
    assert sup["parent"] == world["pid"] and sup["depth"] == world["depth"] + 1
    assert summary["span_kinds"]["CLIENT"] >= 6 and summary["span_kinds"]["CONSUMER"] >= 1
    assert any(
        e["kind"] == "SERVER" and "c exploded" in e["status_message"] for e in summary["errors"]
    )
    assert summary["logs"]["by_severity"].get("WARNING") == 1  # the not_restarted report


def test_view_draws_processes_messages_and_metrics(telemetry_file: Path) -> None:
    done = view(str(telemetry_file))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Processes" in out and "Messages" in out and "Metrics" in out
    # The supervision story...
    assert "• intensity: child dodo" in out
    assert "• not_restarted: child dodos" in out
    # ... who called whom, and where it failed.
    assert "a → b call 'hello'" in out
    assert "b → c call 'crash'" in out and "✗" in out
    assert "c handles the call 'crash'" in out
    assert re.search(r"suptrace\.process\.restarts\s+│\s+3", out)
    # A tree's start: the supervisor's init, its first child spawned under it.
    assert "dodos starts (init)" in view(str(telemetry_file), "--limit", "500").stdout


def test_view_exit_codes(tmp_path: Path) -> None:
    missing = view(str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    assert view(str(tmp_path)).returncode == 2
    junk = tmp_path / "junk.jsonl"
    junk.write_text('not json\n{"something": "else"}\n')
    done = view(str(junk), "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["bad_lines"] == 2


# -- runs and the control plane ------------------------------------------------------------------


def _file_env(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "SUPTRACE_TELEMETRY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SUPTRACE_OTLP_FILE", str(path))


def test_view_keeps_the_runs_of_one_file_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "twice.otlp.jsonl"
    _file_env(monkeypatch, path)
    suptrace.run(dodos, 3, node="again", control=False, log_reports=False)
    suptrace.run(dodos, 1, node="again", control=False, log_reports=False)
    done = view(str(path), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    first, second = summary["runs"]
    assert first["run"]["node"] == second["run"]["node"] == "again"
    assert first["run"]["started"] < second["run"]["started"]
    # Each run's metrics are its own (not the last run's, not a mix of both).
    assert first["metrics"]["suptrace.process.restarts"]["total"] == 3
    assert second["metrics"]["suptrace.process.restarts"]["total"] == 1
    assert summary["metrics"]["suptrace.process.restarts"]["total"] == 1  # the latest run
    text = view(str(path)).stdout
    assert "holds 2 runs" in text
    assert re.search(r"run 1 of 2: node again, pid \d+, started", text)
    assert re.search(r"run 2 of 2: node again, pid \d+, started", text)
    one, two = text.split("run 2 of 2")
    assert re.search(r"suptrace\.process\.restarts\s+│\s+3", one)
    assert re.search(r"suptrace\.process\.restarts\s+│\s+1", two)


async def _describe_twice() -> None:
    """``tree`` as the control server runs it (a plain task), then the application's
    own ``describe`` of the same supervisor, which is traced as any call."""
    from suptrace.core.runtime import current_runtime
    from suptrace.node.control import trees

    sup = await suptrace.Supervisor.start_link([], name="app.sup")
    rt = current_runtime()
    loop = asyncio.get_running_loop()
    # The control server's requests run in tasks of the node's loop, outside any process.
    snapshot = await loop.create_task(trees.tree(rt, None, 5.0))
    assert snapshot["roots"][0]["name"] == "app.sup"
    await suptrace.describe(sup)


def test_the_clis_describe_calls_are_not_application_traces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "described.otlp.jsonl"
    _file_env(monkeypatch, path)
    suptrace.run(_describe_twice, node="described", control=False, log_reports=False)
    summary = json.loads(view(str(path), "--json").stdout)
    (run,) = load(path).runs.values()
    calls = [s for s in run.spans if s.name == "call app.sup"]
    served = [s for s in run.spans if s.name == "process app.sup"]
    # Only the application's own describe: the control plane's left no span.
    assert len(calls) == 1 and len(served) == 1, [s.name for s in run.spans]
    assert calls[0].attributes.get("suptrace.caller.pid")  # made by the root process
    assert summary["span_kinds"].get("CLIENT") == 1
