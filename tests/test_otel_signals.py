"""Traces, metrics and logs are exported independently (SPEC §7, second round).

Against real OTLP receivers: a traces-only backend (what Jaeger and Tempo
answer for metrics and logs) gets every span while the two refused signals are
turned off with one log line each; a transient outage of one signal backs that
signal off and nothing else; a full export queue is counted and logged as
overload, never as an outage; ``OTEL_<SIGNAL>_EXPORTER`` and the per-signal
endpoints are honoured; ``suptrace status`` and ``suptrace doctor`` show it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from otlp_receivers import GrpcReceiver, HttpReceiver, otlp_env

import suptrace
from suptrace import ChildSpec, GenServer, Supervisor
from suptrace.node.control.doctor import check_telemetry

PROTOCOLS = ["grpc", "http/protobuf"]


@pytest.fixture(autouse=True)
def every_span(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests load the exporters: every message a span (``traces="all"``), not the
    1% sample of healthy traffic that the default over OTLP exports."""
    monkeypatch.setenv("SUPTRACE_TRACES", "all")


@pytest.fixture
def lines() -> Iterator[list[str]]:
    got: list[str] = []
    sink = logger.add(lambda m: got.append(m.record["message"]), level="INFO", format="{message}")
    yield got
    logger.remove(sink)


def count(lines: list[str], *texts: str) -> int:
    return sum(all(t in line for t in texts) for line in lines)


def about(lines: list[str], receiver: GrpcReceiver | HttpReceiver) -> list[str]:
    """The lines about this test's receiver (a node of an earlier test may still be
    flushing to its own, closed one)."""
    return [line for line in lines if f":{receiver.port}" in line]


def receiver_for(protocol: str, **kw: Any) -> GrpcReceiver | HttpReceiver:
    return GrpcReceiver(**kw) if protocol == "grpc" else HttpReceiver(**kw)


class Echo(GenServer):
    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        return request

    async def handle_cast(self, msg: Any) -> None:
        pass


async def waiting(receiver: GrpcReceiver | HttpReceiver, check: Any, timeout: float = 10) -> bool:
    """Wait (off the event loop) until the receiver's state satisfies ``check``."""
    return await asyncio.to_thread(receiver.wait_for, check, timeout)


def _counter() -> Any:
    from opentelemetry.sdk.trace import SpanProcessor

    class Produced(SpanProcessor):
        """Every span the node's provider ends, by id (what must reach the backend)."""

        def __init__(self) -> None:
            self.ids: set[str] = set()
            self.lock = threading.Lock()

        def on_end(self, span: Any) -> None:
            with self.lock:
                self.ids.add(f"{span.context.span_id:016x}")

    return Produced()


async def reported_tree() -> None:
    """A supervisor and a child: progress reports, i.e. log records."""
    child = ChildSpec(id="echo", start=(Echo.start_link, (), {}))
    await Supervisor.start_link([child], intensity=1, period=5)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_traces_only_backend_gets_every_span_and_turns_the_other_signals_off(
    monkeypatch: pytest.MonkeyPatch, lines: list[str], protocol: str
) -> None:
    receiver = receiver_for(protocol, traces_only=True)
    produced = _counter()
    try:
        with otlp_env(monkeypatch, receiver, protocol):
            monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
            monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
            monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "50")

            async def main() -> None:
                assert node.telemetry is not None and node.telemetry.setup is not None
                node.telemetry.setup.tracer_provider.add_span_processor(produced)
                await Echo.start_link(name="echo")
                await reported_tree()
                for i in range(300):
                    assert await suptrace.call("echo", i) == i
                # Both refusals happened while the node runs.
                assert await waiting(
                    receiver, lambda: min(receiver.unimplemented.values()) > 0
                ), receiver.unimplemented

            async with suptrace.Node("jaeger", control=False, log_reports=False) as node:
                await node.run_root(main)
                telemetry = node.telemetry
            assert telemetry is not None
    finally:
        receiver.close()
    lines = about(lines, receiver)
    signals = telemetry.signals()
    received = {s.span_id for s in receiver.dump().spans}
    assert len(produced.ids) >= 300
    assert produced.ids <= received, f"{len(produced.ids - received)} spans never arrived"
    assert len([s for s in receiver.dump().spans if s.name == "call echo"]) == 300
    traces = signals["traces"]
    assert traces["state"] == "ok" and traces["dropped"] == 0, traces
    assert traces["exported"] == receiver.span_count
    assert traces["exporter"] == ("otlp/grpc" if protocol == "grpc" else "otlp/http")
    status = "gRPC status UNIMPLEMENTED" if protocol == "grpc" else "HTTP 404"
    for signal in ("metrics", "logs"):
        assert signals[signal]["state"] == "refused", signals[signal]
        assert status in signals[signal]["last_error"]
        # One line each, naming the status and the variable that turns the signal off...
        assert count(lines, f"refuses {signal}") == 1, lines
        assert count(lines, f"refuses {signal}", status, f"OTEL_{signal.upper()}_EXPORTER=none")
        # ...and the backend is not asked again (the shutdown flush included).
        assert receiver.unimplemented[signal] == 1
    assert count(lines, "cannot export") == 0, lines
    assert count(lines, "works again") == 0, lines


@pytest.mark.parametrize(
    ("prometheus", "traces"), [(False, "all"), (False, "failures"), (True, "failures")]
)
async def test_refused_metrics_cost_the_hot_path_nothing_unless_prometheus_reads_them(
    monkeypatch: pytest.MonkeyPatch, prometheus: bool, traces: str
) -> None:
    """Once the only destination of the metrics refuses them, sends and handlings stop
    tallying them; a ``/metrics`` endpoint on the same node keeps them going."""
    receiver = GrpcReceiver(traces_only=True)
    try:
        with otlp_env(monkeypatch, receiver, "grpc"):
            monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
            monkeypatch.setenv("SUPTRACE_TRACES", traces)

            async def main() -> tuple[bool, int, int]:
                telemetry = node.telemetry
                assert telemetry is not None and telemetry.setup is not None
                bridge = telemetry.bridge
                assert bridge is not None and bridge.metrics is not None
                tallies = bridge.metrics  # the tallies are cumulative: never drained
                refused = threading.Event()
                telemetry.setup.guards["metrics"].on_refused.append(refused.set)
                pid = await Echo.start_link(name="echo")
                assert await asyncio.to_thread(refused.wait, 10), "metrics never refused"
                # The bridge's own hook ran first and queued its switch on this loop
                # ahead of this coroutine's wake-up: it has happened now.
                before = sum(tallies.sent.values()) + sum(tallies.casts.values())
                for i in range(100):
                    suptrace.cast(pid, i)
                    assert await suptrace.call(pid, i) == i
                after = sum(tallies.sent.values()) + sum(tallies.casts.values())
                if traces == "failures":
                    # The server loop writes the durations of the casts it records itself
                    # where the bridge tells it to: nowhere, without metrics.
                    state = pid._proc.instrument_state  # type: ignore[union-attr]
                    sinks = [series for _, series in state.keys.values()]
                    nowhere = [type(s) is deque and s.maxlen == 0 for s in sinks]
                    assert sinks and set(nowhere) == {bridge.metrics is None}, sinks
                return bridge.metrics is not None, before, after

            async with suptrace.Node(
                "jaeger", control=False, log_reports=False, prometheus=0 if prometheus else None
            ) as node:
                on, before, after = await node.run_root(main)
    finally:
        receiver.close()
    if prometheus:
        assert on and after == before + 200  # 100 casts and 100 calls, still counted
    else:
        assert not on and after == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_transient_outage_backs_off_that_signal_only(
    monkeypatch: pytest.MonkeyPatch, lines: list[str], protocol: str
) -> None:
    receiver = receiver_for(protocol)
    receiver.refuse, receiver.refuse_signals = "unavailable", {"logs"}
    logs_down = threading.Event()
    sink = logger.add(lambda m: logs_down.set(), filter=lambda r: "cannot export logs" in r["message"])
    try:
        with otlp_env(monkeypatch, receiver, protocol):
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
            monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
            monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "20")

            async def main() -> dict[str, Any]:
                assert node.telemetry is not None
                await Echo.start_link(name="echo")
                await reported_tree()
                # The exporter retries within its timeout, then the outage is declared.
                assert await asyncio.to_thread(logs_down.wait, 10)
                # Logs are down: traces keep flowing meanwhile.
                before = receiver.span_count
                while not await waiting(receiver, lambda: receiver.span_count > before, 0.2):
                    await suptrace.call("echo", "while logs are down")
                during = node.telemetry.signals()
                receiver.refuse = None
                # After the backoff, the next batch of logs is a probe and goes through:
                # the receiver has it, and the node has its answer (an export still in
                # flight when the node stops is cut short, and then does not count).
                def recovered() -> bool:
                    assert node.telemetry is not None
                    return receiver.counts["logs"] > 0 and node.telemetry.signals()["logs"]["state"] == "ok"

                while not await waiting(receiver, recovered, 0.2):
                    await reported_tree()
                return during

            async with suptrace.Node("flaky-logs", control=False, log_reports=False) as node:
                during = await node.run_root(main)
                telemetry = node.telemetry
    finally:
        logger.remove(sink)
        receiver.close()
    lines = about(lines, receiver)
    assert during["logs"]["state"] == "backoff", during
    assert telemetry is not None and telemetry.signals()["logs"]["dropped"] > 0
    assert telemetry.signals()["logs"]["state"] == "ok"
    assert during["traces"]["state"] == "ok" and during["traces"]["dropped"] == 0, during
    assert count(lines, "cannot export logs") == 1, lines
    assert count(lines, "logs export to", "works again") == 1, lines
    assert count(lines, "cannot export traces") == count(lines, "cannot export metrics") == 0


@pytest.mark.parametrize(
    ("answer", "state"),
    [("405", "refused"), ("415", "refused"), ("bad_request", "backoff"), ("unavailable", "backoff")],
)
async def test_which_http_answers_turn_a_signal_off(
    monkeypatch: pytest.MonkeyPatch, answer: str, state: str
) -> None:
    """405 and 415 say the backend does not take the signal; 400 and 503 are about this
    batch or this moment, so the signal only backs off."""
    receiver = HttpReceiver()
    receiver.refuse, receiver.refuse_signals = answer, {"traces"}
    told = threading.Event()  # the one line about it (a refusal or an outage)
    sink = logger.add(
        lambda m: told.set(),
        filter=lambda r: f":{receiver.port}" in r["message"]
        and ("refuses traces" in r["message"] or "cannot export traces" in r["message"]),
    )
    try:
        with otlp_env(monkeypatch, receiver, "http/protobuf"):
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
            monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")

            async def main() -> dict[str, Any]:
                assert node.telemetry is not None
                await Echo.start_link(name="echo")
                while not await asyncio.to_thread(told.wait, 0.2):
                    await suptrace.call("echo", "x")
                return node.telemetry.signals()["traces"]

            async with suptrace.Node("answers", control=False, log_reports=False) as node:
                traces = await node.run_root(main)
    finally:
        logger.remove(sink)
        receiver.close()
    assert traces["state"] == state, traces
    assert traces["last_error"].startswith(f"HTTP {receiver_status(answer)}"), traces


async def test_an_http_outage_starts_at_the_first_failed_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The HTTP exporter retries a 503 for up to its timeout (20 s here); the outage is
    declared at the first 503, so what the node makes meanwhile is not queued behind
    the retries (without that, the line would come after ~15 s of retries)."""
    receiver = HttpReceiver()
    receiver.refuse, receiver.refuse_signals = "unavailable", {"traces"}
    told = threading.Event()
    sink = logger.add(
        lambda m: told.set(),
        filter=lambda r: f":{receiver.port}" in r["message"]
        and "cannot export traces" in r["message"],
    )
    try:
        with otlp_env(monkeypatch, receiver, "http/protobuf"):
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "20")
            monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")

            async def main() -> dict[str, Any]:
                assert node.telemetry is not None
                await Echo.start_link(name="echo")
                while not await waiting(receiver, lambda: receiver.refused > 0, 0.2):
                    await suptrace.call("echo", "x")
                assert await asyncio.to_thread(told.wait, 8), "no outage during the retries"
                return node.telemetry.signals()["traces"]

            async with suptrace.Node(
                "retrying", control=False, log_reports=False, telemetry_flush_timeout=0.2
            ) as node:
                traces = await node.run_root(main)
    finally:
        logger.remove(sink)
        receiver.close()
    assert traces["state"] == "backoff" and traces["last_error"].startswith("HTTP 503"), traces


def receiver_status(answer: str) -> int:
    return {"unavailable": 503, "bad_request": 400}.get(answer) or int(answer)


async def test_a_full_queue_is_overload_not_an_outage(
    monkeypatch: pytest.MonkeyPatch, lines: list[str]
) -> None:
    receiver = HttpReceiver()
    receiver.stall = threading.Event()
    try:
        with otlp_env(monkeypatch, receiver, "http/protobuf"):
            monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "64")
            monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "32")
            monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "20")

            async def main() -> None:
                assert receiver.stall is not None
                await Echo.start_link(name="echo")
                # An export is in flight and the collector is slow to answer it...
                while not await waiting(receiver, lambda: receiver.stalled > 0, 0.2):
                    suptrace.cast("echo", "first")
                # ...while the node produces far more than the queue holds.
                for i in range(2000):
                    suptrace.cast("echo", i)
                assert await suptrace.call("echo", "sync") == "sync"
                receiver.stall.set()
                assert await waiting(receiver, lambda: receiver.span_count > 0)

            async with suptrace.Node("busy", control=False, log_reports=False) as node:
                await node.run_root(main)
                telemetry = node.telemetry
    finally:
        if receiver.stall is not None:
            receiver.stall.set()
        receiver.close()
    assert telemetry is not None
    traces = telemetry.signals()["traces"]
    assert traces["overload_dropped"] > 1000, traces
    assert traces["state"] == "ok" and traces["outages"] == 0, traces
    lines = about(lines, receiver)
    (line,) = [x for x in lines if "export queue" in x]
    assert "is full" in line and "overload, not an outage" in line
    assert "spans dropped" in line and any(ch.isdigit() for ch in line)
    assert count(lines, "cannot export") == 0, lines
    assert count(lines, "works again") == 0, lines


async def test_per_signal_endpoints_send_each_signal_to_its_own_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Endpoint, protocol and headers per signal: traces over HTTP to one backend,
    metrics over gRPC to another, each with its own credentials."""
    traces_backend, metrics_backend = HttpReceiver(), GrpcReceiver()
    try:
        with otlp_env(monkeypatch, metrics_backend, "grpc"):
            monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
            monkeypatch.setenv(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{traces_backend.endpoint}/v1/traces"
            )
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=traces-team")
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", metrics_backend.endpoint)
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-tenant=metrics-team")
            monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
            monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")

            async def main() -> None:
                await Echo.start_link(name="echo")
                assert await suptrace.call("echo", 1) == 1

            async with suptrace.Node("split", control=False, log_reports=False) as node:
                await node.run_root(main)
                telemetry = node.telemetry
    finally:
        traces_backend.close()
        metrics_backend.close()
    assert telemetry is not None
    signals = telemetry.signals()
    assert traces_backend.counts["traces"] > 0 and traces_backend.counts["metrics"] == 0
    assert metrics_backend.counts["metrics"] > 0 and metrics_backend.counts["traces"] == 0
    assert str(traces_backend.port) in signals["traces"]["endpoint"]
    assert str(metrics_backend.port) in signals["metrics"]["endpoint"]
    assert signals["traces"]["exporter"] == "otlp/http"
    assert signals["metrics"]["exporter"] == "otlp/grpc"
    assert {h.get("x-tenant") for h in traces_backend.headers["traces"]} == {"traces-team"}
    assert {h.get("x-tenant") for h in metrics_backend.headers["metrics"]} == {"metrics-team"}
    assert signals["logs"] == {**signals["logs"], "exporter": "none", "state": "off"}


@pytest.mark.parametrize("configured", ["otlp endpoint", "console only"])
def test_exporter_variables_choose_console_and_none(tmp_path: Path, configured: str) -> None:
    """OTEL_TRACES_EXPORTER=console prints spans, =none exports nothing; the console
    exporter alone turns telemetry on, with the signals not set off (another process:
    the console exporter writes to the real standard output)."""
    script = tmp_path / "console_node.py"
    script.write_text(
        "import json, sys, suptrace\n"
        "from suptrace import GenServer\n"
        "from suptrace.node.parts import current_parts\n\n"
        "class Echo(GenServer):\n"
        "    async def handle_call(self, request, caller):\n"
        "        return request\n\n"
        "async def main():\n"
        "    await Echo.start_link(name='echo')\n"
        "    await suptrace.call('echo', 'hello')\n"
        "    return current_parts('t').telemetry.signals()\n\n"
        "signals = suptrace.run(main, node='console', control=False, log_reports=False,\n"
        "                       telemetry=sys.argv[1] if len(sys.argv) > 1 else None)\n"
        "print('SIGNALS ' + json.dumps(signals))\n"
    )
    receiver = GrpcReceiver()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SUPTRACE_"))}
    env.update(
        OTEL_TRACES_EXPORTER="console", SUPTRACE_TRACES="all", SUPTRACE_RUNTIME_DIR=str(tmp_path)
    )
    args: list[str] = []
    if configured == "otlp endpoint":
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
        )
        args = ["otlp"]
    try:
        done = subprocess.run(
            [sys.executable, str(script), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        receiver.close()
    assert done.returncode == 0, done.stderr
    assert '"name": "call echo"' in done.stdout  # the console exporter's JSON
    (last,) = [x for x in done.stdout.splitlines() if x.startswith("SIGNALS ")]
    signals = json.loads(last.removeprefix("SIGNALS "))
    assert signals["traces"]["exporter"] == "console" and signals["traces"]["state"] == "ok"
    assert signals["metrics"]["state"] == signals["logs"]["state"] == "off"
    assert receiver.counts == {"traces": 0, "metrics": 0, "logs": 0}
    assert "cannot export" not in done.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("OTEL_LOGS_EXPORTER", "jaeger"), ("OTEL_TRACES_EXPORTER", "otlp,console"),
     ("SUPTRACE_OTEL_GLOBAL", "maybe")],
)
def test_a_bad_exporter_setting_fails_at_node_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv(variable, value)

    async def main() -> None:
        raise AssertionError("the node must not start")

    with pytest.raises(ValueError, match=variable):
        suptrace.run(main, node="bad", control=False, log_reports=False, telemetry="otlp")


# -- the doctor rule, on plain data ----------------------------------------------------------


def health(**kw: Any) -> dict[str, Any]:
    base = {"exporter": "otlp/grpc", "endpoint": "localhost:4317", "state": "ok",
            "exported": 100, "dropped": 0, "overload_dropped": 0, "last_error": None}
    return {**base, **kw}


def test_doctor_says_nothing_about_healthy_or_unused_signals() -> None:
    off = health(exporter="none", endpoint=None, state="off", exported=0)
    assert check_telemetry({"traces": health(), "metrics": off, "logs": health()}) == []
    assert check_telemetry(None) == []


def test_doctor_names_the_variable_for_a_refused_signal() -> None:
    refused = health(state="refused", exported=0, dropped=12,
                     last_error="gRPC status UNIMPLEMENTED: unknown service")
    (found,) = check_telemetry({"traces": health(), "metrics": refused})
    assert found["rule"] == "telemetry_dropped" and found["severity"] == "warning"
    assert found["subject"] == "telemetry metrics"
    assert "UNIMPLEMENTED" in found["message"] and "12 dropped" in found["message"]
    assert "OTEL_METRICS_EXPORTER=none" in found["hint"]
    assert "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" in found["hint"]


def test_doctor_tells_overload_from_an_outage() -> None:
    (overload,) = check_telemetry({"traces": health(dropped=500, overload_dropped=500)})
    assert "full export queue" in overload["message"] and "not an outage" in overload["message"]
    assert "OTEL_BSP_MAX_QUEUE_SIZE" in overload["hint"]
    (outage,) = check_telemetry(
        {"logs": health(state="backoff", dropped=40, last_error="HTTP 503 Service Unavailable")}
    )
    assert "40 logs were dropped" in outage["message"] and "HTTP 503" in outage["message"]
    assert "still unreachable" in outage["message"]
    assert "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT" in outage["hint"]


# -- the command line ------------------------------------------------------------------------


def test_status_and_doctor_show_each_signal_against_a_traces_only_backend(
    tmp_path: Path,
) -> None:
    from node_scripts.harness import NodeProcess, poll

    receiver = GrpcReceiver(traces_only=True)
    node = NodeProcess(
        tmp_path,
        "tempo",
        env_extra={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_METRIC_EXPORT_INTERVAL": "100",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_BLRP_SCHEDULE_DELAY": "50",
        },
    )
    try:
        node.wait_ready()
        node.command("send 20")

        def refused() -> dict[str, Any] | None:
            got = node.cli_json("status")["telemetry"]
            states = (got["metrics"]["state"], got["logs"]["state"])
            return got if states == ("refused", "refused") else None

        signals = poll(refused, what="metrics and logs refused in `suptrace status --json`")
        assert signals["traces"]["state"] == "ok" and signals["traces"]["dropped"] == 0
        assert "UNIMPLEMENTED" in signals["metrics"]["last_error"]
        text = node.cli("status")
        assert text.returncode == 0, text.stderr
        assert "telemetry" in text.stdout and "refused" in text.stdout
        assert "UNIMPLEMENTED" in text.stdout
        found = node.cli("doctor", "--json")
        assert found.returncode == 1, found.stderr  # something was found
        doctor = json.loads(found.stdout)
        rules = {f["subject"]: f for f in doctor["findings"] if f["rule"] == "telemetry_dropped"}
        assert set(rules) == {"telemetry metrics", "telemetry logs"}, doctor["findings"]
        assert "OTEL_LOGS_EXPORTER=none" in rules["telemetry logs"]["hint"]
        # Each signal's counts, the healthy one's too, as status shows them.
        assert doctor["telemetry"]["traces"]["state"] == "ok"
        assert {"exported", "dropped", "last_error"} <= set(doctor["telemetry"]["traces"])
        assert doctor["telemetry"]["metrics"]["state"] == "refused"
        text = node.cli("doctor")
        assert text.returncode == 1, text.stderr
        [traces] = [line for line in text.stdout.splitlines() if line.strip().startswith("traces")]
        assert "ok" in traces and "exported" in traces and "0 dropped" in traces, traces
        assert "UNIMPLEMENTED" in text.stdout
    finally:
        node.stop()
        receiver.close()
    err = node.err.rest()
    assert sum("refuses metrics" in line for line in err) == 1, err
    assert sum("refuses logs" in line for line in err) == 1, err


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_collector_that_keeps_failing_does_not_hold_the_stop(
    monkeypatch: pytest.MonkeyPatch, lines: list[str], protocol: str
) -> None:
    """SIGTERM meets a collector answering UNAVAILABLE / 503 to everything, with a 30 s
    exporter timeout: the SDK's flush would wait for the export retrying inside it, so
    the node stops the exporters when half its flush bound is spent and its stop ends
    within the bound (no "did not finish" line)."""
    receiver = receiver_for(protocol)
    receiver.refuse = "unavailable"
    try:
        with otlp_env(monkeypatch, receiver, protocol):
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")
            monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")

            async def main() -> None:
                await Echo.start_link(name="echo")
                while not await waiting(receiver, lambda: receiver.refused > 0, 0.2):
                    await suptrace.call("echo", "x")
                for i in range(20):  # more spans queued behind the retrying export
                    await suptrace.call("echo", i)

            async with suptrace.Node(
                "failing", control=False, log_reports=False, telemetry_flush_timeout=3.0
            ) as node:
                await node.run_root(main)
    finally:
        receiver.close()
    assert not [line for line in about(lines, receiver) if "did not finish" in line], lines
