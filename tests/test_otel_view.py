"""The embedded default: OTLP-JSON lines in a file, rendered by ``suptrace view`` (SPEC §7, §8)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from otlp_receivers import call_chain, dodos

import suptrace


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


def test_view_exit_codes(tmp_path: Path) -> None:
    missing = view(str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    assert view(str(tmp_path)).returncode == 2
    junk = tmp_path / "junk.jsonl"
    junk.write_text('not json\n{"something": "else"}\n')
    done = view(str(junk), "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["bad_lines"] == 2
