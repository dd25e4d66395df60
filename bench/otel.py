"""What the OpenTelemetry bridge costs: per message, per trace mode, against a real receiver.

Run from the repository root::

    python bench/otel.py               # every section, full size
    python bench/otel.py --quick       # a smoke run
    python bench/otel.py --section failures --section paced
    python bench/otel.py --json out.json

Three sections:

``failures``
    ``traces="failures"`` (default sampling) against telemetry off on the cast+call
    workload (batches of 20 casts and one call) for ``--seconds``, with one injected
    crash a second. The spans go over OTLP gRPC to a receiver in another process
    (``tests/otlp_receivers.py``). Prints the throughput ratio (target >= 0.8x) and
    how many of the injected failures arrived as a complete trace (the crashing
    handling, its exit and the cast that caused it: target all of them), and the CPU
    time a message costs in each (the loop's thread alone, and the whole process with
    the export threads). Then the same against a traces-only receiver (what Jaeger and
    Tempo answer for metrics), whose refusal turns the metrics' hot-path tallies off.
``paced``
    ``traces="all"`` at a paced 2,000 and 20,000 messages/s, same workload and
    receiver: the rate achieved and the spans exported / produced (target at 2,000:
    nothing lost).
``permsg``
    the per-message table below; its target: the always-off and no-export
    configurations at >= 0.95x the rate of ``no SDK``.

The per-message section runs two workloads, each timed around the messages only
(server start-up is outside):

* **cast** -- N casts to a GenServer whose ``handle_cast`` does nothing, then one
  call to know they were all handled;
* **call** -- N sequential calls to a GenServer that answers with the request.

Configurations, each a fresh node per sample (all without reports, system
monitor or control socket, so only telemetry differs):

=============  =====================================================================
``off``        ``telemetry="off"``: no bridge at all
``no SDK``     the bridge over the API alone (``telemetry="global"``, no SDK installed)
``always-off`` an SDK ``TracerProvider`` whose sampler is always-off
``no export``  an SDK ``TracerProvider`` with ``traces="off"`` (no span, no export)
``full``       every message a span: SDK, ``BatchSpanProcessor``, an exporter that
               discards (queue large enough that nothing is dropped)
``full+m``     ``full`` plus an SDK ``MeterProvider`` (the pinned metrics), for reference
``bare``       the same spans created with the SDK in a plain loop, no suptrace:
               cast = one CONSUMER span with a link; call = a CLIENT span and its
               SERVER child; same names, kinds and attributes
``bare in      the same spans made by hand inside the GenServer callback of a node
node``         with telemetry off (reference: span creation amid the runtime's work)
=============  =====================================================================

Targets (printed with PASS/MISS): ``always-off`` and ``no export`` run at >= 0.95x
the rate of ``no SDK``; the telemetry overhead of ``full`` per message (``full`` minus
``no SDK``) is <= 1.3x the ``bare`` cost of the same spans. The ``bare in node``
row separates the bridge's own work from what the SDK costs when its code runs
interleaved with the event loop rather than in a tight loop: for calls about 1.2x
pinned to one CPU (caches, branch prediction) and about 2x unpinned, for the reason
below.

The ``thread sleeps/1k msgs`` column counts how often the batch processor's export
thread went to sleep during the timed region (its voluntary context switches, from
``/proc``; the median sample). It shows what doubles the span cost inside a node.
asyncio's loop releases the GIL in ``epoll_wait`` on every iteration. Once the
export thread has been woken to export a batch it waits for the GIL, and every
release wakes it; but the loop thread, back from a zero-timeout ``epoll_wait``
within a microsecond, takes the GIL again before the export thread on the other CPU
gets to it, and the export thread sleeps again. Its request to have the GIL dropped
comes only when one of its 5 ms waits runs out, and each release by the loop wakes
it early and starts a new one, so it seldom forces a switch either: hundreds to
thousands of futile wake-ups per 1,000 messages, each a futex wake-up paid by the
loop thread and a context switch in the export thread. A plain loop never releases
the GIL, so there the export thread gets it at the 5 ms switch interval in one go
(about 10 sleeps per 1,000 messages). It is CPython's GIL hand-off meeting the SDK's
export thread in any asyncio program, not something the bridge does: the spans made
by hand in a callback (``bare in node``) pay it too.

``--one-cpu`` pins the whole process (and so the export thread) to one CPU: a woken
export thread then cannot run until the loop thread yields the CPU, which removes
most of those round trips. Both figures are worth printing: the unpinned one is what
an application sees on this kind of machine, the pinned one isolates the bridge and
the SDK from that effect.

Times are CPU seconds of the whole process (``time.process_time``: every thread,
so the batch processor's work counts) unless ``--wall`` is given: on a shared
machine CPU time does not count the moments another process had the core.
Each figure is the best of the repeats (the configurations take turns inside a
repeat, the order rotating, with ``gc.collect()`` before each sample); the
median is shown too. On a busy machine run it twice: the ratios are what matter.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

import suptrace
import suptrace.core.runtime
from suptrace.node.parts import current_parts
from suptrace.observers.otel.spans import brief

#: CPU time of the whole process (all threads): steadier than wall time on a shared
#: machine, and it still counts the exporter thread's work. ``--wall`` switches.
clock: Callable[[], float] = time.process_time

#: Voluntary context switches of the threads other than the main one, over the timed
#: region of the last sample (see `thread_switches`).
last_switches = 0


def thread_switches() -> dict[str, int]:
    """Voluntary context switches so far of each of this process's threads other than
    the main one (here, the batch processor's export thread), by thread id. Each is one
    time that thread went to sleep; Linux only (empty elsewhere)."""
    main = str(os.getpid())
    counts: dict[str, int] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return counts
    for tid in tids:
        if tid == main:
            continue
        try:
            with open(f"/proc/self/task/{tid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("voluntary_ctxt_switches"):
                        counts[tid] = int(line.split()[1])
                        break
        except OSError:  # the thread ended meanwhile
            continue
    return counts


def switches_since(before: dict[str, int]) -> int:
    """Switches made since `thread_switches()` returned ``before``, summed per thread:
    a thread that ended meanwhile drops out instead of making the sum negative, and one
    that started counts from zero."""
    after = thread_switches()
    return sum(max(0, n - before.get(tid, 0)) for tid, n in after.items())


def timed(t0: float, w0: dict[str, int]) -> float:
    """End a timed region begun at clock ``t0`` with ``w0`` = `thread_switches()`."""
    elapsed = clock() - t0
    global last_switches
    last_switches = switches_since(w0)
    return elapsed


class Discard(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class DiscardMetrics(MetricExporter):
    def export(
        self, metrics_data: Any, timeout_millis: float = 10_000, **kw: Any
    ) -> MetricExportResult:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kw: Any) -> None:
        pass


def tracer_provider(n: int, sampler: Any = ALWAYS_ON) -> TracerProvider:
    tp = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    if sampler is not ALWAYS_OFF:
        tp.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=max(2048, 2 * n)))
    return tp


def meter_provider() -> MeterProvider:
    reader = PeriodicExportingMetricReader(DiscardMetrics(), export_interval_millis=3_600_000)
    return MeterProvider(metric_readers=[reader], shutdown_on_exit=False)


class Sink(suptrace.GenServer):
    async def handle_cast(self, msg: Any) -> None:
        pass

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        return request


async def cast_workload(n: int) -> float:
    pid = await Sink.start_link(name="sink")
    cast, call = suptrace.cast, suptrace.call
    w0 = thread_switches()
    t0 = clock()
    for i in range(n):
        cast(pid, i)
    await call(pid, "done", timeout=None)
    return timed(t0, w0)


async def call_workload(n: int) -> float:
    pid = await Sink.start_link(name="sink")
    call = suptrace.call
    w0 = thread_switches()
    t0 = clock()
    for i in range(n):
        await call(pid, i, timeout=None)
    return timed(t0, w0)


WORKLOADS = {"cast": cast_workload, "call": call_workload}
QUIET = {"log_reports": False, "reports": False, "system_monitor": False, "control": False}


def run_node(workload: str, n: int, config: str) -> float:
    opts: dict[str, Any] = dict(QUIET)
    providers: list[Any] = []
    if config == "off":
        opts["telemetry"] = "off"
    elif config == "no SDK":
        opts["telemetry"] = "global"
    elif config == "always-off":
        opts["tracer_provider"] = tracer_provider(n, ALWAYS_OFF)
    elif config == "no export":
        opts["tracer_provider"] = tracer_provider(n)
        opts["traces"] = "off"
    elif config in ("full", "full+m"):
        opts["tracer_provider"] = tracer_provider(n)
        opts["traces"] = "all"
        if config == "full+m":
            opts["meter_provider"] = meter_provider()
    providers = [p for k, p in opts.items() if k.endswith("_provider")]
    try:
        return float(suptrace.run(WORKLOADS[workload], n, **opts))
    finally:
        for p in providers:
            p.shutdown()


class Spans:
    """The spans the bridge makes for one message, made by hand with the SDK."""

    def __init__(self, n: int) -> None:
        self.provider = tracer_provider(n)
        self.tracer = self.provider.get_tracer("suptrace", suptrace.__version__)
        self.empty = Context()
        self.link = self.tracer.start_span("lifetime main").get_span_context()

    def cast(self, i: int) -> None:
        span = self.tracer.start_span(
            "process sink", self.empty, trace.SpanKind.CONSUMER, links=(trace.Link(self.link),)
        )
        if span.is_recording():
            span.set_attributes(
                {
                    "messaging.system": "suptrace",
                    "messaging.operation.type": "process",
                    "messaging.operation.name": "handle_cast",
                    "messaging.destination.name": "sink",
                    "suptrace.process.pid": "<0.2.0>",
                    "suptrace.message": brief(i),
                }
            )
        span.end()

    def call(self, i: int) -> None:
        tracer = self.tracer
        c = tracer.start_span(
            "call sink", self.empty, trace.SpanKind.CLIENT, links=(trace.Link(self.link),)
        )
        if c.is_recording():
            c.set_attributes(
                {
                    "messaging.system": "suptrace",
                    "messaging.operation.type": "send",
                    "messaging.operation.name": "call",
                    "messaging.destination.name": "sink",
                    "suptrace.destination.pid": "<0.2.0>",
                    "suptrace.caller.pid": "<0.1.0>",
                    "suptrace.caller.name": "main",
                    "suptrace.message": brief(i),
                }
            )
        s = tracer.start_span(
            "process sink", trace.set_span_in_context(c, self.empty), trace.SpanKind.SERVER
        )
        if s.is_recording():
            s.set_attributes(
                {
                    "messaging.system": "suptrace",
                    "messaging.operation.type": "process",
                    "messaging.operation.name": "handle_call",
                    "messaging.destination.name": "sink",
                    "suptrace.process.pid": "<0.2.0>",
                    "messaging.message.id": "#Ref<0.1>",
                    "suptrace.caller.pid": "<0.1.0>",
                    "suptrace.message": brief(i),
                }
            )
        s.end()
        c.end()


def bare(workload: str, n: int) -> float:
    """The same spans with the SDK in a plain loop (no suptrace, no context juggling)."""
    spans = Spans(n)
    make = spans.cast if workload == "cast" else spans.call
    w0 = thread_switches()
    t0 = clock()
    for i in range(n):
        make(i)
    elapsed = timed(t0, w0)
    spans.provider.shutdown()
    return elapsed


class HandMade(suptrace.GenServer):
    """A server that makes the bridge's spans itself, on a node without telemetry."""

    async def init(self, spans: Spans) -> None:
        self.spans = spans

    async def handle_cast(self, msg: Any) -> None:
        self.spans.cast(msg)

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        if request != "done":
            self.spans.call(request)
        return request


def bare_in_node(workload: str, n: int) -> float:
    """The same spans made by hand inside a GenServer callback (telemetry off): what
    creating them costs amid the runtime's own work, without the bridge."""
    spans = Spans(n)

    async def go() -> float:
        pid = await HandMade.start_link(spans)
        w0 = thread_switches()
        t0 = clock()
        if workload == "cast":
            for i in range(n):
                suptrace.cast(pid, i)
            await suptrace.call(pid, "done", timeout=None)
        else:
            for i in range(n):
                await suptrace.call(pid, i, timeout=None)
        return timed(t0, w0)

    try:
        return float(suptrace.run(go, telemetry="off", **QUIET))
    finally:
        spans.provider.shutdown()


CONFIGS = (
    "off",
    "no SDK",
    "always-off",
    "no export",
    "full",
    "full+m",
    "bare",
    "bare in node",
)


def sample(workload: str, n: int, config: str) -> tuple[float, int]:
    """One timed sample: (seconds, export-thread context switches)."""
    global last_switches
    last_switches = 0
    gc.collect()
    if config == "bare":
        seconds = bare(workload, n)
    elif config == "bare in node":
        seconds = bare_in_node(workload, n)
    else:
        seconds = run_node(workload, n, config)
    return seconds, last_switches


Results = dict[str, dict[str, list[float]]]


def measure(
    n: int, repeats: int, log: Callable[[str], None], only: list[str] | None = None
) -> tuple[Results, Results]:
    """Samples in seconds, and the export thread's context switches of each sample."""
    workloads = only or list(WORKLOADS)
    results: Results = {w: {c: [] for c in CONFIGS} for w in workloads}
    switches: Results = {w: {c: [] for c in CONFIGS} for w in workloads}
    for workload in workloads:
        for config in CONFIGS:  # warm-up (imports, caches)
            sample(workload, max(1, n // 10), config)
        for r in range(repeats):
            order = CONFIGS[r % len(CONFIGS) :] + CONFIGS[: r % len(CONFIGS)]
            for config in order:
                seconds, count = sample(workload, n, config)
                results[workload][config].append(seconds)
                switches[workload][config].append(count)
            log(f"{workload}: repeat {r + 1}/{repeats} done")
    return results, switches


def report(results: Results, switches: Results, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n, "workloads": {}}
    lines = [
        f"suptrace {suptrace.__version__}, python {sys.version.split()[0]}, {n} messages a sample, "
        f"{'wall' if clock is time.perf_counter else 'CPU'} time"
        f"{', process pinned to one CPU' if len(os.sched_getaffinity(0)) == 1 else ''}",
        "",
        f"{'workload':8} {'config':11} {'best µs/msg':>12} {'median':>9} {'msgs/s':>10}"
        f" {'thread sleeps/1k msgs':>22}",
    ]
    verdicts = []
    for workload, by_config in results.items():
        per: dict[str, float] = {}
        for config in CONFIGS:
            samples = by_config[config]
            best = min(samples) / n * 1e6
            median = statistics.median(samples) / n * 1e6
            per[config] = best
            sleeps = statistics.median(switches[workload][config]) / n * 1000
            lines.append(
                f"{workload:8} {config:11} {best:12.2f} {median:9.2f} {1e6 / best:10.0f}"
                f" {sleeps:22.1f}"
            )
        off_ratio = per["no SDK"] / per["always-off"]
        none_ratio = per["no SDK"] / per["no export"]
        overhead = per["full"] - per["no SDK"]
        span_ratio = overhead / per["bare"]
        metrics_cost = per["full+m"] - per["full"]
        lines.append(
            f"{'':8} always-off rate / no-SDK rate = {off_ratio:.2f}x (target >= 0.95) "
            f"{'PASS' if off_ratio >= 0.95 else 'MISS'}"
        )
        lines.append(
            f"{'':8} no-export rate / no-SDK rate = {none_ratio:.2f}x (target >= 0.95) "
            f"{'PASS' if none_ratio >= 0.95 else 'MISS'}"
        )
        lines.append(
            f"{'':8} full overhead {overhead:.2f} µs/msg = {span_ratio:.2f}x the bare spans "
            f"({per['bare']:.2f} µs/msg) (target <= 1.30) {'PASS' if span_ratio <= 1.3 else 'MISS'}"
        )
        in_node = per["bare in node"] - per["off"]
        glue_ratio = overhead / in_node
        lines.append(
            f"{'':8} reference: the same spans made by hand in a callback cost {in_node:.2f} µs/msg "
            f"over off; full's overhead is {glue_ratio:.2f}x that (the bridge's own share)"
        )
        lines.append(f"{'':8} metrics add {metrics_cost:.2f} µs/msg on top of full (reference)")
        lines.append("")
        verdicts.append(off_ratio >= 0.95 and none_ratio >= 0.95 and span_ratio <= 1.3)
        out["workloads"][workload] = {
            "best_us_per_msg": per,
            "always_off_vs_no_sdk": off_ratio,
            "no_export_vs_no_sdk": none_ratio,
            "full_overhead_vs_bare": span_ratio,
            "full_overhead_vs_bare_in_node": glue_ratio,
            "samples_s": by_config,
            "thread_switches": switches[workload],
        }
    print("\n".join(lines))
    out["pass"] = all(verdicts)
    return out


# -- the trace modes against a receiver in another process ------------------------------------

TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")


def receiver_main() -> None:
    """``--receiver``: an OTLP gRPC receiver; prints its endpoint, then on a line on stdin
    waits until the exports stop and prints what it got as JSON."""
    sys.path.insert(0, TESTS)
    from otlp_receivers import GrpcReceiver

    receiver = GrpcReceiver(traces_only="--traces-only" in sys.argv)
    print(receiver.endpoint, flush=True)
    sys.stdin.readline()
    last = -1
    while True:  # quiet for half a second: the node has flushed
        with receiver.cond:
            count = len(receiver.requests)
        if count == last:
            break
        last = count
        time.sleep(0.5)
    with receiver.cond:
        requests = list(receiver.requests)
    spans = 0
    failed: list[tuple[str, str]] = []
    names: dict[str, list[str]] = {}
    for request in requests:
        for rs in getattr(request, "resource_spans", ()):
            for ss in rs.scope_spans:
                for span in ss.spans:
                    spans += 1
                    trace_id = span.trace_id.hex()
                    if span.status.code == 2:
                        failed.append((trace_id, span.name))
                    if span.name.endswith("crasher"):
                        names.setdefault(trace_id, []).append(span.name)
    json.dump({"spans": spans, "failed": failed, "crash_traces": names}, sys.stdout)
    sys.stdout.flush()
    receiver.close()


class Receiver:
    """The receiver subprocess (see `receiver_main`)."""

    def __init__(self, traces_only: bool = False) -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--receiver"]
            + (["--traces-only"] if traces_only else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()

    def report(self) -> dict[str, Any]:
        out, _ = self.proc.communicate("report\n", timeout=120)
        result: dict[str, Any] = json.loads(out)
        return result


class Crasher(suptrace.GenServer):
    """Crashes on every cast, noting the trace id its handling ran in."""

    async def init(self, injected: list[str]) -> None:
        self.injected = injected

    async def handle_cast(self, msg: Any) -> None:
        sc = trace.get_current_span().get_span_context()
        self.injected.append(f"{sc.trace_id:032x}")
        raise RuntimeError("injected failure")


async def mixed_workload(seconds: float, rate: float | None, injected: list[str]) -> dict[str, Any]:
    """Batches of 20 casts and one call to a sink for ``seconds`` (paced at ``rate``
    messages/s when given), with one crash injected a second into a supervised crasher."""
    from suptrace import ChildSpec, Supervisor

    produced = _Produced()
    telemetry = current_parts("bench").telemetry
    if telemetry is not None and telemetry.setup.tracer_provider is not None:
        telemetry.setup.tracer_provider.add_span_processor(produced)
    pid = await Sink.start_link(name="sink")
    spec = ChildSpec(id="crasher", start=(Crasher.start_link, (injected,), {"name": "crasher"}))
    await Supervisor.start_link([spec], name="crash_sup", intensity=1000, period=1)
    cast, call = suptrace.cast, suptrace.call
    perf = time.perf_counter
    t0 = perf()
    cpu0, main0 = time.process_time(), time.thread_time()
    end = t0 + seconds
    next_crash = t0 + 1.0
    messages = batches = 0
    crashes = 0
    while True:
        now = perf()
        if now >= end:
            break
        if now >= next_crash:
            next_crash += 1.0
            cast("crasher", "boom")
            crashes += 1
        for i in range(20):
            cast(pid, i)
        await call(pid, batches, timeout=None)
        messages += 21
        batches += 1
        if rate is not None:
            ahead = t0 + messages / rate - perf()
            if ahead > 0:
                await asyncio.sleep(ahead)
    elapsed = perf() - t0
    main_cpu, cpu = time.thread_time() - main0, time.process_time() - cpu0
    return {
        "main_cpu": main_cpu,
        "cpu": cpu,
        "messages": messages,
        "batches": batches,
        "seconds": elapsed,
        "crashes": crashes,
        "produced": produced,
    }


class _Produced(SpanProcessor):
    """Counts the spans the node ends (what the exporter is given, dropped or not)."""

    def __init__(self) -> None:
        self.count = 0

    def on_end(self, span: Any) -> None:
        self.count += 1


def run_mixed(
    seconds: float,
    traces: str | None,
    endpoint: str | None,
    rate: float | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One node running `mixed_workload`: telemetry off (``traces`` None) or over OTLP."""
    saved = dict(os.environ)
    opts: dict[str, Any] = dict(QUIET)
    if traces is None:
        opts["telemetry"] = "off"
    else:
        os.environ.update(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint or "",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_SERVICE_NAME": "bench-otel",
                **(env or {}),
            }
        )
        opts["traces"] = traces
    injected: list[str] = []
    try:
        out = dict(suptrace.run(mixed_workload, seconds, rate, injected, **opts))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out["injected"] = injected
    return out


def failures_section(seconds: float, log: Callable[[str], None]) -> dict[str, Any]:
    log("failures: telemetry off")
    off = run_mixed(seconds, None, None)
    receiver = Receiver()
    log(f"failures: traces='failures' to {receiver.endpoint}")
    on = run_mixed(seconds, "failures", receiver.endpoint)
    got = receiver.report()
    jaeger = Receiver(traces_only=True)
    log(f"failures: traces='failures' to a traces-only backend at {jaeger.endpoint}")
    # The first metrics export is refused after one interval (60 s by default): a
    # 1-second interval shows the steady state within the run.
    on_jaeger = run_mixed(
        seconds, "failures", jaeger.endpoint, env={"OTEL_METRIC_EXPORT_INTERVAL": "1000"}
    )
    got_jaeger = jaeger.report()
    rate_off = off["messages"] / off["seconds"]
    rate_on = on["messages"] / on["seconds"]
    ratio = rate_on / rate_off
    rate_jaeger = on_jaeger["messages"] / on_jaeger["seconds"]

    def delivered(run: dict[str, Any], report: dict[str, Any]) -> int:
        traces = report["crash_traces"]
        return sum(
            1
            for tid in run["injected"]
            if {"process crasher", "exit crasher"} <= set(traces.get(tid, ()))
        )

    complete = delivered(on, got)
    complete_jaeger = delivered(on_jaeger, got_jaeger)
    injected = len(on["injected"])
    print(
        f"failures mode, cast+call (20 casts + 1 call a batch), one crash a second, "
        f"{seconds:.0f} s each, wall time\n"
        f"  telemetry off       {rate_off:10.0f} msgs/s\n"
        f"  traces='failures'   {rate_on:10.0f} msgs/s   = {ratio:.2f}x (target >= 0.80) "
        f"{'PASS' if ratio >= 0.8 else 'MISS'}\n"
        f"  CPU per message: off {off['cpu'] / off['messages'] * 1e6:.2f} µs; failures "
        f"{on['main_cpu'] / on['messages'] * 1e6:.2f} µs in the loop's thread, "
        f"{on['cpu'] / on['messages'] * 1e6:.2f} µs with the export threads\n"
        f"  failure traces delivered complete: {complete}/{injected} "
        f"{'PASS' if complete == injected and injected else 'MISS'}; "
        f"{got['spans']} spans exported in all ({len(got['failed'])} with ERROR status)\n"
        f"  traces-only backend (metrics refused after the first second, as Jaeger or Tempo "
        f"refuse them): "
        f"{rate_jaeger:.0f} msgs/s = {rate_jaeger / rate_off:.2f}x; failure traces "
        f"delivered {complete_jaeger}/{len(on_jaeger['injected'])}\n"
    )
    return {
        "off_msgs_per_s": rate_off,
        "failures_msgs_per_s": rate_on,
        "ratio": ratio,
        "injected": injected,
        "delivered": complete,
        "spans": got["spans"],
        "off_cpu_us_per_msg": off["cpu"] / off["messages"] * 1e6,
        "failures_main_cpu_us_per_msg": on["main_cpu"] / on["messages"] * 1e6,
        "failures_cpu_us_per_msg": on["cpu"] / on["messages"] * 1e6,
        "traces_only_msgs_per_s": rate_jaeger,
        "traces_only_ratio": rate_jaeger / rate_off,
        "traces_only_delivered": complete_jaeger,
        "traces_only_injected": len(on_jaeger["injected"]),
        "pass": ratio >= 0.8 and complete == injected and injected > 0,
    }


def paced_section(seconds: float, rates: list[float], log: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    lines = [f"all mode, paced cast+call, {seconds:.0f} s a rate, receiver in another process"]
    for rate in rates:
        receiver = Receiver()
        log(f"paced: {rate:.0f} msgs/s")
        run = run_mixed(seconds, "all", receiver.endpoint, rate)
        got = receiver.report()
        # Counted once the node has shut down: its last spans are the exits of shutdown.
        produced = run["produced"].count
        achieved = run["messages"] / run["seconds"]
        share = got["spans"] / produced if produced else 0.0
        line = (
            f"  asked {rate:8.0f} msgs/s  achieved {achieved:8.0f}  exported/produced "
            f"{got['spans']}/{produced} = {share:.3f}"
        )
        whole = None
        if rate <= 2_000:  # the target: at this rate a healthy receiver gets every span
            whole = produced > 0 and got["spans"] == produced
            line += f"  (target: nothing dropped) {'PASS' if whole else 'MISS'}"
        lines.append(line)
        out[str(int(rate))] = {
            "achieved": achieved,
            "exported": got["spans"],
            "produced": produced,
            "nothing_dropped": whole,
        }
    print("\n".join(lines) + "\n")
    return out


def main() -> None:
    if "--receiver" in sys.argv:
        receiver_main()
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="messages a per-message sample")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a mode run")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--wall", action="store_true", help="time per-message samples with the wall clock"
    )
    parser.add_argument(
        "--section",
        action="append",
        choices=["permsg", "failures", "paced"],
        help="run only this section (repeatable; default: all)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(WORKLOADS),
        help="per-message section: run only this workload (repeatable)",
    )
    parser.add_argument(
        "--one-cpu",
        action="store_true",
        help="pin the process and its threads to one CPU (see above)",
    )
    args = parser.parse_args()
    n, repeats = (2_000, 3) if args.quick else (args.n, args.repeats)
    seconds = 2.0 if args.quick and args.seconds == 10.0 else args.seconds
    sections = args.section or ["failures", "paced", "permsg"]
    if args.one_cpu:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[0]})
        print(f"pinned to CPU {cpus[0]}", file=sys.stderr)
    global clock
    if args.wall:
        clock = time.perf_counter

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    out: dict[str, Any] = {}
    if "failures" in sections:
        out["failures"] = failures_section(seconds, log)
    if "paced" in sections:
        out["paced"] = paced_section(seconds, [2_000.0, 20_000.0], log)
    if "permsg" in sections:
        results, switches = measure(n, repeats, log, args.only)
        out.update(report(results, switches, n))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
