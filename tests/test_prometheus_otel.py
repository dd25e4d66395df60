"""Prometheus scrapes a node's ``/metrics`` endpoint and sees the pinned metrics (SPEC §7).

A real ``prometheus`` (Debian's package; `.ci/run` installs it) runs on
127.0.0.1 with a temporary configuration that scrapes the node every second.
The test waits for scrapes by counting them in the node's registry (a
condition variable, not a sleep), then asks Prometheus' HTTP API.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from otlp_receivers import dodos, free_port

import suptrace
from suptrace.node.parts import current_parts

PROMETHEUS = shutil.which("prometheus") or (
    "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
)

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus binary is not installed (apt-get install prometheus; .ci/run does it as root)",
)


class Scrapes:
    """A collector that only counts how often the endpoint was scraped."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.count = 0

    def collect(self) -> list[Any]:
        with self.cond:
            self.count += 1
            self.cond.notify_all()
        return []

    def wait_beyond(self, count: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.count >= count, timeout)


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def start_prometheus(tmp_path: Path, target_port: int) -> tuple[subprocess.Popen[bytes], int]:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: suptrace\n"
        "    scrape_interval: 1s\n"
        "    scrape_timeout: 1s\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )
    web_port = free_port()
    assert PROMETHEUS is not None
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{web_port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    return process, web_port


async def test_prometheus_scrapes_the_pinned_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPTRACE_OTLP_FILE", str(tmp_path / "node.otlp.jsonl"))
    scrapes = Scrapes()
    results: dict[str, Any] = {}

    async def main() -> None:
        telemetry = current_parts("test").telemetry
        telemetry.setup.prometheus_registry.register(scrapes)
        process, web_port = start_prometheus(tmp_path, telemetry.prometheus_port)
        try:
            await dodos(3)
            # Two scrapes after the scenario: the first saw its metrics, and Prometheus
            # commits a scrape before it starts the next one of the same target.
            done = scrapes.count
            ok = await asyncio.to_thread(scrapes.wait_beyond, done + 2, 30.0)
            log = (tmp_path / "prometheus.log").read_text(errors="replace")
            assert ok, f"Prometheus never scraped the node; its log:\n{log}"
            for promql in (
                "suptrace_process_restarts_total",
                "suptrace_supervisor_intensity_breaches_total",
                'suptrace_process_exits_total{suptrace_process_name="dodo"}',
                "suptrace_processes",
                "suptrace_messages_sent_total",
                "suptrace_message_duration_seconds_count",
            ):
                results[promql] = await asyncio.to_thread(query, web_port, promql)
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 10)

    await asyncio.wait_for(_run(main), 60)

    (restarts,) = results["suptrace_process_restarts_total"]
    assert restarts["metric"]["suptrace_supervisor"] == "dodos"
    assert restarts["metric"]["suptrace_child_id"] == "dodo"
    assert restarts["metric"]["suptrace_exit_reason"] == "RuntimeError"
    assert restarts["value"][1] == "3"
    (breaches,) = results["suptrace_supervisor_intensity_breaches_total"]
    assert breaches["metric"]["suptrace_supervisor"] == "dodos"
    assert breaches["value"][1] == "1"
    (exits,) = results['suptrace_process_exits_total{suptrace_process_name="dodo"}']
    assert exits["value"][1] == "4"
    assert exits["metric"]["job"] == "suptrace"
    assert results["suptrace_processes"], "no live-process gauge"
    assert int(results["suptrace_processes"][0]["value"][1]) >= 2  # main and world at least
    sent = {
        (r["metric"]["messaging_destination_name"], r["metric"]["messaging_operation_name"]): r[
            "value"
        ][1]
        for r in results["suptrace_messages_sent_total"]
    }
    assert sent[("dodo", "cast")] == "5"
    assert results["suptrace_message_duration_seconds_count"]


async def _run(main: Any) -> None:
    async with suptrace.Node(
        "prom-test", prometheus=("127.0.0.1", 0), control=False, log_reports=False
    ) as node:
        await node.run_root(main)
