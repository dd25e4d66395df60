"""Every query of every dashboard returns data from a real Prometheus (SPEC §7).

The Debian-packaged ``prometheus`` (`.ci/run` installs it) runs on 127.0.0.1 and
scrapes a node started with ``prometheus=`` every second, as in
``test_prometheus_otel.py``. The node runs the scenario of ``test_dashboards.py``
(the examples/dodos world plus a GenServer whose calls succeed, time out and
crash it) in two rounds, with Prometheus scraping in between, so that every
counter and histogram grows within the rate window. Waiting is done on scrapes
(a condition variable fed by the node's registry) and by polling Prometheus'
HTTP API between scrapes, with deadlines; never by sleeping.

Then the template variables are resolved as Grafana would (``label_values``
queries against Prometheus; "All" becomes the variable's ``allValue``;
``$__rate_interval``/``$__interval`` become 1m and ``$__range`` 5m) and every
panel query runs against ``/api/v1/query``: each must return at least one
series with a finite, positive value.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import pytest
from test_dashboards import (
    BUILTINS,
    DASHBOARD_FILES,
    label_values,
    load,
    prometheus_targets,
    quiet_telemetry,
    run_node,
    scenario,
    substitute,
    variables,
)
from test_prometheus_otel import PROMETHEUS, Scrapes, query, start_prometheus

from suptrace.node.parts import current_parts

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus binary is not installed (apt-get install prometheus; .ci/run does it as root)",
)

#: How long the test waits for Prometheus (start-up, scrapes, ingestion).
DEADLINE = 30.0


def until_in_api(port: int, scrapes: Scrapes, promql: str, log: Path) -> None:
    """Poll Prometheus until ``promql`` returns something, waiting for the node's next
    scrape between two polls; fail after `DEADLINE` seconds."""
    end = time.monotonic() + DEADLINE
    while True:
        seen = scrapes.count
        if query(port, promql):
            return
        left = end - time.monotonic()
        assert left > 0, (
            f"Prometheus never returned {promql}; its log:\n{log.read_text(errors='replace')}"
        )
        scrapes.wait_beyond(seen + 1, left)


def resolve(board: dict[str, Any], port: int, problems: list[str]) -> dict[str, str]:
    """Template variable values, resolved against Prometheus as Grafana does."""
    values = dict(BUILTINS)
    for var in variables(board):
        name, kind = var["name"], var.get("type")
        if kind == "query":
            selector, label = label_values(var)
            promql = f"group by ({label}) ({substitute(selector, values)})"
            found = sorted(
                {r["metric"][label] for r in query(port, promql) if label in r["metric"]}
            )
            if not found:
                problems.append(f"{board['uid']}: variable {name} has no values ({promql})")
            if var.get("includeAll"):
                values[name] = var.get("allValue") or "|".join(found)
            else:
                values[name] = found[0] if found else ""
        else:
            values[name] = str(var.get("current", {}).get("value") or var.get("query", ""))
    return values


def run_every_query(
    port: int,
) -> tuple[dict[tuple[str, str, str], list[dict[str, Any]]], list[str]]:
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    problems: list[str] = []
    for path in DASHBOARD_FILES:
        board = load(path)
        values = resolve(board, port, problems)
        for panel, target in prometheus_targets(board):
            promql = substitute(target["expr"], values)
            key = (board["uid"], panel["title"], target["refId"])
            results[key] = found = query(port, promql)
            numbers = [float(r["value"][1]) for r in found]
            if not any(math.isfinite(v) and v > 0 for v in numbers):
                problems.append(f"{key}: {promql}\n    -> {found or 'no series'}")
    return results, problems


async def test_every_dashboard_query_returns_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet_telemetry(monkeypatch, tmp_path)
    scrapes = Scrapes()
    log = tmp_path / "prometheus.log"
    outcome: dict[str, Any] = {}

    async def main() -> None:
        telemetry = current_parts("test").telemetry
        telemetry.setup.prometheus_registry.register(scrapes)
        process, web_port = start_prometheus(tmp_path, telemetry.prometheus_port)

        async def scraped() -> None:
            # Two more scrapes: the second starts after the first, which saw
            # everything done so far, was stored.
            wanted = scrapes.count + 2
            ok = await asyncio.to_thread(scrapes.wait_beyond, wanted, DEADLINE)
            assert ok, (
                f"Prometheus stopped scraping the node; its log:\n{log.read_text(errors='replace')}"
            )

        try:
            await scenario(scraped)
            await scraped()
            # The end of the second round is in Prometheus: both breaches of the
            # cockroaches supervisor, and the dodos' one.
            for promql in (
                'suptrace_supervisor_intensity_breaches_total{suptrace_supervisor="cockroaches"} == 2',
                'suptrace_supervisor_intensity_breaches_total{suptrace_supervisor="dodos"} == 1',
            ):
                await asyncio.to_thread(until_in_api, web_port, scrapes, promql, log)
            outcome["results"], outcome["problems"] = await asyncio.to_thread(
                run_every_query, web_port
            )
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 10)

    await asyncio.wait_for(run_node(main), 90)

    problems: list[str] = outcome["problems"]
    assert not problems, "dashboard queries without data:\n" + "\n".join(problems)
    results = outcome["results"]
    assert len(results) >= 40

    def series(title: str, *labels: str) -> dict[tuple[str, ...], float]:
        (found,) = [r for k, r in results.items() if k[0] == "suptrace-overview" and k[1] == title]
        return {tuple(r["metric"].get(x, "") for x in labels): float(r["value"][1]) for r in found}

    # What the scenario did, as the overview shows it.
    restarts = series("Restarts by supervisor / child", "suptrace_supervisor", "suptrace_child_id")
    assert set(restarts) == {
        ("cockroaches", "cockroaches"),
        ("dodos", "dodos"),
        ("temple", "oracle"),
        ("world_sup", "cockroaches_sup"),
    }
    breaches = series("Intensity breaches", "suptrace_supervisor")
    assert breaches[("cockroaches",)] > 0
    mailboxes = series("Largest mailboxes (top $topk processes)", "suptrace_process_name")
    assert mailboxes[("hoarder",)] == 6
    assert set(series("Call timeouts", "messaging_destination_name")) == {("oracle",)}
    exits = series("Process exits by reason", "suptrace_exit_reason")
    assert {"killed", "RuntimeError", "shutdown"} <= {k[0] for k in exits}
