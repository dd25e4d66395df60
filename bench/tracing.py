"""What tracing costs a call round trip.

    python bench/tracing.py            # full run: 20,000 calls per sample, best of 7
    python bench/tracing.py --quick    # smoke run, a few seconds
    python bench/tracing.py --calls 50000 --repeats 9

Variants, each a `suptrace.call` round trip to a GenServer that answers with
the request, issued from the root process one after another:

* (a) no tracer at all;
* (b) a tracer on an unrelated process (default flags): tracing one process
  must cost the others nothing;
* (c) a tracer on the benchmarked server (default flags: send, receive, procs)
  with a handler that discards the events, and no limits, so it stays on for
  the whole sample; (c+) the same with every flag (also ``call``/``reply``),
  for information;
* (d) the flight recorder: (a) runs with it on (``Node(flight_recorder=16)``,
  the default); (d) is the same with ``flight_recorder=0``; the ratio shown is
  on / off.

Clock: each sample is timed with ``time.thread_time()`` (CPU time of the
loop's thread) around the timed calls only. The benchmark is single-threaded
and never waits for I/O, so uncontended CPU time equals wall time; on a shared
machine, CPU time is not inflated by other processes taking the core away, which
is what makes the ratios repeatable there. The wall-clock rate is shown too.

Fairness: every sample runs in a fresh node built with
``Node(log_reports=False, system_monitor=False, telemetry=False, control=False)``
so that logging, the system monitor's heartbeat, the OpenTelemetry bridge and
the control socket do not take part; only the flight recorder setting changes
between (a) and (d). The variants take turns (repeat 1 runs a, b, c..., repeat
2 starts with b...), ``gc.collect()`` runs before every sample, each sample
warms up untimed first, and the table shows the best and the median sample;
ratios use the best.

Targets: (b) and (d) >= 0.95x of (a); (c) >= 0.5x of (a).

A second table, (e): a trace of ``"all"`` with every flag at a rate limit of
10,000 events/s, on a message-heavy workload (4 producers each streaming
messages to its own consumer, every message a ``send`` and a ``receive``
event), with a handler that formats each event as the CLI does. It prints the
message rate traced vs untraced (target >= 0.5x), the tracer's longest
delivery callback (``stats()["longest_slice"]``, target <= 20 ms) and the
worst lag a 1 ms probe task saw on the loop while the trace ran. The quota is
per second: a sample shorter than a few seconds pays a whole second's quota
in less time, so the quick run (100,000 messages) overstates the cost; the
full run (2,000,000 messages) spans several seconds per sample.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import suptrace
from suptrace.observers.format import format_event


class Echo(suptrace.GenServer):
    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        return request


async def _idle() -> None:
    while True:
        await suptrace.receive()


def _discard(event: suptrace.TraceEvent) -> None:
    pass


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    recorder: int
    trace: str | None  # None, "other" or "server"
    flags: tuple[str, ...] = ("send", "receive", "procs")


VARIANTS = [
    Variant("a", "(a) no tracer", 16, None),
    Variant("b", "(b) tracer on an unrelated process", 16, "other"),
    Variant("c", "(c) tracer on the server, discarding", 16, "server"),
    Variant("c+", "(c+) same, every flag", 16, "server", ("all",)),
    Variant("d", "(d) flight recorder off", 0, None),
]

#: key -> (minimum ratio vs (a), how the ratio is computed)
TARGETS: dict[str, float] = {"b": 0.95, "c": 0.5, "d": 0.95}


@dataclass
class Sample:
    cpu_rate: float  # calls per CPU second of the loop thread
    wall_rate: float  # calls per wall-clock second
    stats: dict[str, Any]


async def _sample(variant: Variant, calls: int, warmup: int) -> Sample:
    async def main() -> Sample:
        server = await Echo.start()
        tracer = None
        if variant.trace is not None:
            target = server if variant.trace == "server" else suptrace.spawn(_idle)
            tracer = suptrace.trace(
                target,
                variant.flags,
                handler=_discard,
                max_events=None,
                duration=None,
                rate=None,
            )
        call = suptrace.call
        for i in range(warmup):
            await call(server, i)
        wall, cpu = time.perf_counter(), time.thread_time()
        for i in range(calls):
            await call(server, i)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        stats: dict[str, Any] = {}
        if tracer is not None:
            tracer.stop()
            stats = tracer.stats()
        await suptrace.stop(server)
        return Sample(calls / cpu, calls / wall, stats)

    async with suptrace.Node(
        "bench-tracing",
        log_reports=False,
        system_monitor=False,
        telemetry=False,
        control=False,
        flight_recorder=variant.recorder,
    ) as node:
        return await node.run_root(main)


def _run_sample(variant: Variant, calls: int) -> Sample:
    gc.collect()
    return asyncio.run(_sample(variant, calls, max(100, calls // 10)))


def _commit() -> str:
    source = os.path.dirname(os.path.dirname(os.path.abspath(suptrace.__file__)))
    try:
        out = subprocess.run(
            ["git", "-C", source, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return f"{source} at {out or 'an unknown commit'}"


def run(calls: int, repeats: int, progress: Callable[[str], None]) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {v.key: [] for v in VARIANTS}
    for rep in range(repeats):
        order = VARIANTS[rep % len(VARIANTS) :] + VARIANTS[: rep % len(VARIANTS)]
        for variant in order:
            sample = _run_sample(variant, calls)
            samples[variant.key].append(sample)
            if variant.key == "c" and sample.stats.get("delivered", 0) < calls:
                raise SystemExit(f"(c) did not trace every call: {sample.stats}")
        progress(f"repeat {rep + 1}/{repeats} done")
    return samples


def report(samples: dict[str, list[Sample]]) -> tuple[str, bool]:
    best = {key: max(s.cpu_rate for s in values) for key, values in samples.items()}
    median = {key: statistics.median(s.cpu_rate for s in values) for key, values in samples.items()}
    wall = {key: max(s.wall_rate for s in values) for key, values in samples.items()}
    base = best["a"]
    rows = [
        f"{'variant':40} {'best calls/cpu-s':>16} {'median':>9} {'best wall':>10}"
        f" {'vs (a)':>7}  target",
        "-" * 100,
    ]
    ok = True

    def row(label: str, key: str, ratio: float, target: float | None) -> None:
        nonlocal ok
        verdict = ""
        if target is not None:
            passed = ratio >= target
            ok &= passed
            verdict = f">= {target:.2f}x {'PASS' if passed else 'MISS'}"
        rows.append(
            f"{label:40} {best[key]:>16,.0f} {median[key]:>9,.0f} {wall[key]:>10,.0f}"
            f" {ratio:>6.2f}x  {verdict}"
        )

    for v in VARIANTS:
        if v.key != "d":
            row(v.label, v.key, best[v.key] / base, TARGETS.get(v.key))
    # (d): the recorder's cost is (a), which has it on, against the same run with it off.
    row("(d) flight recorder off (0)", "d", best["d"] / base, None)
    ratio = base / best["d"]
    passed = ratio >= TARGETS["d"]
    ok &= passed
    rows.append(
        f"{'(d) recorder on (16) / off (0)':40} {'':>16} {'':>9} {'':>10}"
        f" {ratio:>6.2f}x  >= {TARGETS['d']:.2f}x {'PASS' if passed else 'MISS'}"
    )
    return "\n".join(rows), ok


# -- (e) a rate-limited trace of "all" on a message-heavy workload -----------------------------

FLOOD_RATE = 10_000
FLOOD_TARGET_RATIO = 0.5
FLOOD_TARGET_STALL = 0.020


@dataclass
class FloodSample:
    cpu_rate: float  # messages per CPU second of the loop thread
    longest_slice: float  # the tracer's longest delivery callback (s)
    worst_lag: float  # the worst lateness of a 1 ms probe timer (s)
    stats: dict[str, Any]


def _format_and_discard(event: suptrace.TraceEvent) -> None:
    format_event(event)  # what `suptrace attach` pays per event


async def _consumer(n: int) -> None:
    for _ in range(n):
        await suptrace.receive()


async def _producer(dest: suptrace.Pid, n: int) -> None:
    for i in range(n):
        suptrace.send(dest, i)
        if i % 64 == 63:
            await asyncio.sleep(0)


async def _flood(traced: bool, messages: int) -> FloodSample:
    async def main() -> FloodSample:
        loop = asyncio.get_running_loop()
        lag = 0.0
        stop_probe = False

        async def probe() -> None:
            nonlocal lag
            while not stop_probe:
                start = loop.time()
                await asyncio.sleep(0.001)
                lag = max(lag, loop.time() - start - 0.001)

        probe_task = loop.create_task(probe())
        tracer = None
        if traced:
            tracer = suptrace.trace(
                "all",
                ["all"],
                rate=FLOOD_RATE,
                max_events=None,
                duration=None,
                handler=_format_and_discard,
            )
        pairs = 4
        per = messages // pairs
        consumers = [suptrace.spawn_monitor(_consumer, per) for _ in range(pairs)]
        cpu = time.thread_time()
        for pid, _ in consumers:
            suptrace.spawn(_producer, pid, per)
        for _ in consumers:
            await suptrace.receive(lambda m: isinstance(m, suptrace.Down))
        cpu = time.thread_time() - cpu
        stop_probe = True
        await probe_task
        stats: dict[str, Any] = {}
        longest = 0.0
        if tracer is not None:
            tracer.stop()
            stats = tracer.stats()
            longest = stats["longest_slice"]
        return FloodSample(per * pairs / cpu, longest, lag, stats)

    async with suptrace.Node(
        "bench-tracing-flood",
        log_reports=False,
        system_monitor=False,
        telemetry=False,
        control=False,
    ) as node:
        return await node.run_root(main)


def run_flood(messages: int, repeats: int) -> tuple[str, bool]:
    plain: list[FloodSample] = []
    traced: list[FloodSample] = []
    for rep in range(repeats):
        for flag in (rep % 2 == 0, rep % 2 == 1):
            gc.collect()
            (traced if flag else plain).append(asyncio.run(_flood(flag, messages)))
    base = max(s.cpu_rate for s in plain)
    best = max(s.cpu_rate for s in traced)
    ratio = best / base
    stall = max(s.longest_slice for s in traced)
    lag_plain = max(s.worst_lag for s in plain)
    lag_traced = max(s.worst_lag for s in traced)
    ok_ratio = ratio >= FLOOD_TARGET_RATIO
    ok_stall = stall <= FLOOD_TARGET_STALL
    accepted = max(s.stats.get("accepted", 0) for s in traced)
    pauses = max(s.stats.get("rate_pauses", 0) for s in traced)
    rows = [
        f"(e) trace of 'all' at {FLOOD_RATE:,} events/s, {messages:,} messages per sample, "
        f"best of {repeats}",
        "-" * 100,
        f"{'untraced':40} {base:>16,.0f} msgs/cpu-s   probe lag worst {lag_plain * 1e3:.1f} ms",
        f"{'traced (all, rate 10k/s, formatting)':40} {best:>16,.0f} msgs/cpu-s   "
        f"probe lag worst {lag_traced * 1e3:.1f} ms",
        f"{'ratio traced / untraced':40} {ratio:>15.2f}x  >= {FLOOD_TARGET_RATIO:.2f}x "
        f"{'PASS' if ok_ratio else 'MISS'}",
        f"{'longest trace-delivery callback':40} {stall * 1e3:>14.2f}ms  <= "
        f"{FLOOD_TARGET_STALL * 1e3:.0f} ms {'PASS' if ok_stall else 'MISS'}",
        f"{'events accepted / rate pauses (max)':40} {accepted:>16,} / {pauses}",
    ]
    return "\n".join(rows), ok_ratio and ok_stall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer calls and repeats")
    parser.add_argument("--calls", type=int, help="calls per sample (default 20000; quick 5000)")
    parser.add_argument("--repeats", type=int, help="samples per variant (default 7; quick 3)")
    parser.add_argument(
        "--messages", type=int, help="messages per (e) sample (default 2000000; quick 100000)"
    )
    parser.add_argument(
        "--only", choices=("calls", "flood"), help="run only the call table or only (e)"
    )
    args = parser.parse_args(argv)
    messages = args.messages or (100_000 if args.quick else 2_000_000)
    calls = args.calls or (5_000 if args.quick else 20_000)
    repeats = args.repeats or (3 if args.quick else 7)

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    print(f"suptrace {suptrace.__version__} from {_commit()}")
    print(
        f"python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} cpus; "
        f"{calls:,} calls per sample, best of {repeats}"
    )
    print(
        "nodes: Node(log_reports=False, system_monitor=False, telemetry=False, control=False), "
        "flight recorder 16 unless noted"
    )
    ok = True
    if args.only != "flood":
        samples = run(calls, repeats, progress)
        table, ok = report(samples)
        print()
        print(table)
    if args.only != "calls":
        flood_table, flood_ok = run_flood(messages, repeats)
        ok &= flood_ok
        print()
        print(flood_table)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
