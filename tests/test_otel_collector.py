"""A collector that is down, refusing or coming back never harms the application (SPEC §7)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger
from otlp_receivers import HttpReceiver, call_chain, dodos, free_port, otlp_env

import suptrace
from suptrace.observers.otel.guard import ExportGuard

DOWN = "cannot export"
BACK = "works again"


@pytest.fixture(autouse=True)
def every_span(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests load the exporters: every message a span (``traces="all"``)."""
    monkeypatch.setenv("SUPTRACE_TRACES", "all")


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO", format="{message}")
    yield lines
    logger.remove(sink)


def count(lines: list[str], text: str) -> int:
    return sum(text in line for line in lines)


async def busy(n: int) -> int:
    """Enough spans to fill several export batches, then the dodos and a call chain."""

    class Sink(suptrace.GenServer):
        async def handle_cast(self, msg: Any) -> None:
            pass

        async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
            return request

    await Sink.start_link(name="sink")
    for i in range(n):
        suptrace.cast("sink", i)
    assert await suptrace.call("sink", "done") == "done"
    await dodos(2)
    await call_chain()
    return n


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_unreachable_collector_never_blocks_the_application(
    monkeypatch: pytest.MonkeyPatch, warnings_logged: list[str], protocol: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    monkeypatch.delenv("SUPTRACE_TELEMETRY", raising=False)
    started = time.monotonic()
    async with suptrace.Node(
        "down", control=False, log_reports=False, telemetry_flush_timeout=2.0
    ) as node:
        telemetry = node.telemetry
        assert telemetry is not None
        assert await node.run_root(busy, 3000) == 3000
    elapsed = time.monotonic() - started
    # Bounded: the exporter timeout (1 s) plus the flush bound (2 s), with room for a slow CI.
    assert elapsed < 8.0, elapsed
    assert sum(telemetry.dropped.values()) > 0
    # Each signal has its own health: one outage line for traces, at most one for the others.
    assert count(warnings_logged, f"{DOWN} traces") == 1, warnings_logged
    assert all(count(warnings_logged, f"{DOWN} {s}") <= 1 for s in ("metrics", "logs"))


async def test_refusing_collector_is_logged_once_and_recovery_is_seen(
    monkeypatch: pytest.MonkeyPatch, warnings_logged: list[str]
) -> None:
    receiver = HttpReceiver()
    receiver.refuse = "bad_request"
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
    try:
        with otlp_env(monkeypatch, receiver, "http/protobuf"):

            async def main() -> None:
                class Sink(suptrace.GenServer):
                    async def handle_cast(self, msg: Any) -> None:
                        pass

                await Sink.start_link(name="sink")
                # Refused: the first export fails, the outage is logged, spans are dropped.
                while not await asyncio.to_thread(
                    receiver.wait_for, lambda: receiver.refused > 0, 0.2
                ):
                    suptrace.cast("sink", "while refused")
                for _ in range(500):
                    suptrace.cast("sink", "still refused")
                receiver.refuse = None
                # Back: after the backoff a probe goes through and spans flow again.
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    suptrace.cast("sink", "after")
                    if await asyncio.to_thread(
                        receiver.wait_for, lambda: receiver.counts["traces"] > 0, 0.2
                    ):
                        break
                assert receiver.counts["traces"] > 0

            async with suptrace.Node("flaky", control=False, log_reports=False) as node:
                await node.run_root(main)
    finally:
        receiver.close()
    assert count(warnings_logged, f"{DOWN} traces") == 1, warnings_logged
    assert count(warnings_logged, f"traces {BACK}") == 1, warnings_logged
    assert all(count(warnings_logged, f"{DOWN} {s}") <= 1 for s in ("metrics", "logs"))
    dump = receiver.dump()
    assert any(s.attributes.get("suptrace.message") == "'after'" for s in dump.spans)


async def test_slow_collector_does_not_hold_the_node_at_shutdown(
    monkeypatch: pytest.MonkeyPatch, warnings_logged: list[str]
) -> None:
    receiver = HttpReceiver()
    receiver.stall = threading.Event()
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    try:
        with otlp_env(monkeypatch, receiver, "http/protobuf"):

            async def main() -> None:
                await call_chain()
                # An export is in flight and hangs in the collector.
                assert await asyncio.to_thread(receiver.wait_for, lambda: receiver.stalled > 0)

            started = time.monotonic()
            async with suptrace.Node(
                "slow", control=False, log_reports=False, telemetry_flush_timeout=0.5
            ) as node:
                await node.run_root(main)
            elapsed = time.monotonic() - started
    finally:
        receiver.stall.set()  # let the hung export finish (successfully) in its thread
        receiver.close()
    assert elapsed < 5.0, elapsed
    assert count(warnings_logged, "did not finish within 0.5s") == 1, warnings_logged


def test_guard_counts_drops_logs_each_outage_once_and_recovers(warnings_logged: list[str]) -> None:
    guard = ExportGuard("traces", "test collector", backoff=0.0)

    def fail() -> bool:
        raise ConnectionRefusedError("refused")

    assert guard.run(10, fail) is False
    assert guard.state == "backoff" and guard.dropped == 10
    assert guard.run(3, lambda: False) is False
    assert guard.dropped == 13
    assert count(warnings_logged, DOWN) == 1
    assert "ConnectionRefusedError" in warnings_logged[0]
    assert guard.run(5, lambda: True) is True
    assert guard.state == "ok" and guard.exported == 5
    assert count(warnings_logged, BACK) == 1
    assert "13 spans were dropped" in warnings_logged[-1]
    # A second outage is logged again, once.
    guard.run(1, lambda: False)
    guard.run(1, lambda: False)
    assert count(warnings_logged, DOWN) == 2
    assert guard.outages == 2


def test_guard_backs_off_without_touching_the_exporter() -> None:
    guard = ExportGuard("traces", "slow collector", backoff=60.0)
    calls = 0

    def export() -> bool:
        nonlocal calls
        calls += 1
        return False

    guard.run(1, export)
    for _ in range(100):
        guard.run(1, export)
    assert calls == 1
    assert guard.dropped == 101
