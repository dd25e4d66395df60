"""The pinned metrics (SPEC §7), exported over OTLP to a real receiver, with exact values."""

from __future__ import annotations

from typing import Any

import pytest
from otlp_receivers import (
    GrpcReceiver,
    HttpReceiver,
    call_chain,
    dodos,
    metric_points,
    metric_total,
)

import suptrace
from suptrace.node.parts import current_parts
from suptrace.observers.otel.metrics import DURATION_BUCKETS, METRIC_NAMES


async def run_node(main: Any, *args: Any, **opts: Any) -> Any:
    opts.setdefault("log_reports", False)
    opts.setdefault("control", False)
    async with suptrace.Node("otel-metrics", **opts) as node:
        return await node.run_root(main, *args)


@pytest.mark.parametrize("intensity", [1, 3])
async def test_dodos_counts_restarts_and_one_breach_exactly(
    grpc_receiver: GrpcReceiver, intensity: int
) -> None:
    await run_node(dodos, intensity)
    dump = grpc_receiver.dump()
    restarts = "suptrace.process.restarts"
    assert metric_total(dump, restarts) == intensity
    assert (
        metric_total(
            dump,
            restarts,
            **{
                "suptrace.supervisor": "dodos",
                "suptrace.child.id": "dodo",
                "suptrace.exit.reason": "RuntimeError",
            },
        )
        == intensity
    )
    breaches = "suptrace.supervisor.intensity_breaches"
    assert metric_total(dump, breaches) == 1
    assert (
        metric_total(
            dump, breaches, **{"suptrace.supervisor": "dodos", "suptrace.child.id": "dodo"}
        )
        == 1
    )
    exits = "suptrace.process.exits"
    assert (
        metric_total(
            dump, exits, **{"suptrace.process.name": "dodo", "suptrace.exit.reason": "RuntimeError"}
        )
        == intensity + 1
    )
    assert (
        metric_total(
            dump, exits, **{"suptrace.process.name": "dodos", "suptrace.exit.reason": "shutdown"}
        )
        == 1
    )
    # Sends: one "lunch" cast, intensity + 1 "meteor" casts, one call.
    sent = "suptrace.messages.sent"
    assert (
        metric_total(
            dump, sent, **{"messaging.destination.name": "dodo", "messaging.operation.name": "cast"}
        )
        == intensity + 2
    )
    assert (
        metric_total(
            dump, sent, **{"messaging.destination.name": "dodo", "messaging.operation.name": "call"}
        )
        == 1
    )
    # Handling times: every cast and the call, failures tagged with their error class.
    durations = metric_points(dump, "suptrace.message.duration")
    dodo_casts = [
        p
        for p in durations
        if p["attributes"].get("messaging.destination.name") == "dodo"
        and p["attributes"].get("messaging.operation.name") == "handle_cast"
    ]
    assert sum(p["count"] for p in dodo_casts) == intensity + 2
    assert (
        sum(p["count"] for p in dodo_casts if p["attributes"].get("error.type") == "RuntimeError")
        == intensity + 1
    )
    # No attribute is ever a pid.
    for name in METRIC_NAMES:
        for p in metric_points(dump, name):
            assert not any("<0." in str(v) for v in p["attributes"].values()), (name, p)


@pytest.mark.parametrize("traces", ["failures", "all", "off"])
async def test_call_metrics_and_histogram_buckets(http_receiver: HttpReceiver, traces: str) -> None:
    """Exact in every trace mode: the durations are batched, never sampled."""
    await run_node(call_chain, traces=traces)
    dump = http_receiver.dump()
    entry = dump.metrics["suptrace.call.duration"]
    assert entry["unit"] == "s" and entry["type"] == "histogram"
    calls = {
        p["attributes"]["messaging.destination.name"]: p
        for p in metric_points(dump, "suptrace.call.duration")
        if "error.type" not in p["attributes"]
    }
    # a: hello; b: hello (from a) and sync; c: hello (from b), sync, sync (from b).
    assert calls["a"]["count"] == 1
    assert calls["b"]["count"] == 2
    assert calls["c"]["count"] == 3
    assert calls["a"]["bounds"] == list(DURATION_BUCKETS)
    failed = [
        p for p in metric_points(dump, "suptrace.call.duration") if "error.type" in p["attributes"]
    ]
    assert sum(p["count"] for p in failed) == 3  # main -> a, a -> b, b -> c all got CallExit
    assert {p["attributes"]["error.type"] for p in failed} == {"RuntimeError", "CallExit"}
    handled = metric_points(dump, "suptrace.message.duration")
    assert dump.metrics["suptrace.message.duration"]["unit"] == "s"
    assert all(p["bounds"] == list(DURATION_BUCKETS) for p in handled)
    # Every handling once: a, b, c each hello, the note cast and crash; b a sync call,
    # c two (main's and b's).
    by_dest: dict[str, int] = {}
    for p in handled:
        name = p["attributes"]["messaging.destination.name"]
        by_dest[name] = by_dest.get(name, 0) + p["count"]
    assert {k: by_dest.get(k) for k in "abc"} == {"a": 3, "b": 4, "c": 5}
    assert metric_total(dump, "suptrace.call.timeouts") == 0


async def test_call_timeouts_are_counted(grpc_receiver: GrpcReceiver) -> None:
    class Slow(suptrace.GenServer):
        async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
            return suptrace.NOREPLY  # never answers

    async def main() -> None:
        await Slow.start_link(name="slow")
        for _ in range(2):
            with pytest.raises(suptrace.CallTimeout):
                await suptrace.call("slow", "ping", timeout=0.01)

    await run_node(main)
    dump = grpc_receiver.dump()
    assert (
        metric_total(dump, "suptrace.call.timeouts", **{"messaging.destination.name": "slow"}) == 2
    )
    timed_out = [
        p
        for p in metric_points(dump, "suptrace.call.duration")
        if p["attributes"].get("error.type") == "timeout"
    ]
    assert sum(p["count"] for p in timed_out) == 2
    (span, _) = [s for s in dump.spans if s.name == "call slow"]
    assert span.failed and "timeout" in span.status_message.lower()


async def test_live_process_count_and_mailbox_gauges(grpc_receiver: GrpcReceiver) -> None:
    """The gauges are observed at collection time: collect while the processes live."""

    async def main() -> None:
        gate = suptrace.self_pid()

        async def idle() -> None:
            suptrace.send(gate, "up")
            await suptrace.receive(lambda m: m == "never")

        for i in range(3):
            suptrace.spawn(idle, name=f"idle{i}")
        for _ in range(3):
            await suptrace.receive(lambda m: m == "up")
        for _ in range(4):
            suptrace.send("idle0", "queued")
        _telemetry().setup.meter_provider.force_flush()  # one collection, right now

    await run_node(main)
    # main and the three idle processes were alive (control=False: no control server).
    assert 4 in _all_points(grpc_receiver, "suptrace.processes")
    assert 4 in _all_points(grpc_receiver, "suptrace.mailbox.size", name="idle0")
    assert 0 in _all_points(grpc_receiver, "suptrace.mailbox.size", name="idle1")


def _telemetry() -> Any:

    return current_parts("test").telemetry


def _all_points(receiver: GrpcReceiver, metric: str, name: str | None = None) -> list[Any]:
    """Every value a gauge was observed with, across all exports (not just the latest)."""
    values = []
    with receiver.cond:
        requests = list(receiver.requests)
    for request in requests:
        for rm in getattr(request, "resource_metrics", []):
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name != metric:
                        continue
                    for p in m.gauge.data_points:
                        attrs = {kv.key: kv.value.string_value for kv in p.attributes}
                        if name is None or attrs.get("suptrace.process.name") == name:
                            values.append(p.as_int)
    return values


def test_bulk_recorded_durations_fill_the_buckets_record_would() -> None:
    """Durations are recorded in bulk at collection; the bucket counts, sum, min and max are
    those of one SDK ``record`` per value, values on a bucket bound included."""
    from bisect import bisect_left

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from suptrace.observers.otel.metrics import Metrics

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = Metrics(provider.get_meter("test"), provider)
    bounds = list(DURATION_BUCKETS)
    values = [*bounds, *(b / 2 for b in bounds), bounds[-1] * 3, 0.0] * 3
    for v in values:
        metrics.record_handling("w", "handle_cast", None, v)
    data = reader.get_metrics_data()
    points = [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "suptrace.message.duration"
        for p in m.data.data_points
    ]
    assert len(points) == 1
    expected = [0] * (len(bounds) + 1)
    for v in values:
        expected[bisect_left(bounds, v)] += 1
    point = points[0]
    assert list(point.bucket_counts) == expected
    assert point.count == len(values)
    assert point.min == 0.0 and point.max == bounds[-1] * 3
    assert point.sum == pytest.approx(sum(values))
    provider.shutdown()
