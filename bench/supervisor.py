"""Supervisor benchmarks: restart latency, sustained restart rate, big trees.

    python bench/supervisor.py [--quick] [--json FILE] [--profile] [--only PART ...]

Prints a table per part and PASS/MISS against each target; exits 1 when a
target is missed. The full run takes about four minutes, --quick about one.

1. **crash -> restarted child running.** A one_for_one supervisor (intensity
   10**9 per second) has one permanent child. ``t0 = time.perf_counter()`` is
   taken right before the crash; the restarted child's *first line* takes
   ``t1 = time.perf_counter()``. ``t1 - t0`` covers the exit signal, the child's
   death (links, events, reports), the supervisor waking on its ``ExitMsg``, the
   restart bookkeeping, the spawn and the loop scheduling the new task. The
   start function is a plain function returning ``spawn_link(child, ...)``, so
   no start-up handshake is measured. Two crash styles:

   * ``exit`` (the target row): the driver process calls
     ``suptrace.exit(pid, "boom")``. Chosen because the crash moment is exactly
     that call and nothing else runs between ``t0`` and the crash (a death by
     signal: no crash report, but child_terminated and progress reports);
   * ``raise``: the driver sends a message and the child raises on it; ``t0`` is
     taken by the child right before its ``raise`` (the message hop is not
     counted). This is the crash-by-its-own-hand path, which also builds a crash
     report with the process's flight recorder.

   Each is compared with raw asyncio doing the same job (a supervisor task that
   the child task's done-callback wakes, and that recreates the task; crash by
   ``task.cancel()`` or by the child raising), and with this machine's noise
   floor: a pure-Python busy loop as long as the suptrace median, timed the same
   number of times. Samples during which a garbage collection ran are counted.

2. **sustained restarts/s.** The child raises ``RuntimeError`` at its first line,
   so the supervisor restarts it back to back. The rate is measured over N
   restarts after a warm-up, with RSS (``/proc/self/statm``) sampled every N/100
   restarts. Memory "grows" when the mean of the last 20% of samples exceeds the
   mean of the first 20% by more than the allowance printed with it (2% or a
   fixed floor). ``tracemalloc`` slows allocation about fourfold, so the Python
   heap trend comes from a separate, shorter pass with tracemalloc on, sampling
   the live heap after a full ``gc.collect()`` (its top allocation sites by
   growth are listed when it grows, or with --profile).

3. **a supervisor with 10,000 workers** (GenServer children, then plain
   ``spawn_link`` children): time to start it (until every child's code ran),
   time to shut it down (its parent sends ``exit(sup, "shutdown")``, as OTP
   does), and a check that the children stopped in exactly reverse start order
   (each child appends its index to a list when it starts and when it stops; a
   GenServer traps exits so its ``terminate`` runs).

Nodes are built with ``log_reports=False`` and otherwise default options
(Reports service attached, history 1000; flight recorder and system monitor as
the node defaults them) unless a row says otherwise. ``bare`` means reports,
flight recorder and system monitor all off. When a target is missed (or with
--profile) the script runs cProfile and lists where suptrace spends the time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import inspect
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import suptrace
from suptrace import (
    SHUTDOWN,
    ChildSpec,
    Down,
    GenServer,
    Node,
    Pid,
    Supervisor,
    receive,
    self_pid,
    send,
    spawn_link,
    trap_exit,
)

perf_counter = time.perf_counter

LATENCY_P99_TARGET_US = 200.0
RESTARTS_PER_S_TARGET = 10_000.0

HIGH_INTENSITY = 10**9
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: The directory holding the imported ``suptrace`` package (paths in profiles are shown from here).
PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(suptrace.__file__)))

#: Node options of each configuration (options this Node does not know are dropped).
CONFIGS: dict[str, dict[str, Any]] = {
    "reports kept, log off": {"log_reports": False},
    "reports=False": {"reports": False},
    "bare": {"reports": False, "flight_recorder": 0, "system_monitor": False},
    "reports + loguru (null sink)": {"log_reports": True},
}


def node_options(config: str) -> dict[str, Any]:
    known = inspect.signature(Node.__init__).parameters
    return {k: v for k, v in CONFIGS[config].items() if k in known}


# -- helpers -------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n * q / 100)
    return sorted_values[int(rank) - 1]


def summarize_us(samples: list[float], gc_hits: list[bool] | None = None) -> dict[str, Any]:
    s = sorted(samples)
    out: dict[str, Any] = {
        "n": len(s),
        "p50_us": percentile(s, 50) * 1e6,
        "p90_us": percentile(s, 90) * 1e6,
        "p99_us": percentile(s, 99) * 1e6,
        "max_us": s[-1] * 1e6,
        "mean_us": sum(s) / len(s) * 1e6,
    }
    if gc_hits is not None:
        clean = sorted(x for x, hit in zip(samples, gc_hits, strict=True) if not hit)
        out["gc_hit_samples"] = len(s) - len(clean)
        out["p99_without_gc_us"] = percentile(clean, 99) * 1e6
    return out


class GcMeter:
    """Counts garbage collections and the time they take (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        self.count = 0
        self.by_generation = [0, 0, 0]
        self.seconds = 0.0
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t = perf_counter()
        else:
            self.seconds += perf_counter() - self._t
            self.count += 1
            self.by_generation[info["generation"]] += 1

    def __enter__(self) -> GcMeter:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self)

    def as_dict(self) -> dict[str, Any]:
        return {"collections": self.by_generation, "seconds": self.seconds}


def watchdog(
    progress: Callable[[], int], pending: Callable[[], asyncio.Future[Any] | None], what: str
) -> asyncio.Task[None]:
    """Fail the pending future when ``progress()`` stops moving for 10 s.

    A runtime that stops restarting the child would otherwise hang the benchmark.
    """
    stall = 10

    async def watch() -> None:
        last, quiet = progress(), 0
        while True:
            await asyncio.sleep(1.0)
            now = progress()
            if now != last:
                last, quiet = now, 0
                continue
            quiet += 1
            if quiet >= stall:
                fut = pending()
                if fut is not None and not fut.done():
                    fut.set_exception(
                        RuntimeError(f"{what}: no progress for {stall} s (stuck at {now})")
                    )
                return

    return asyncio.get_running_loop().create_task(watch())


def run_in_node(main: Callable[..., Awaitable[Any]], *args: Any, **node_opts: Any) -> Any:
    """A fresh event loop and node per measurement; ``main`` runs as the root process."""

    async def root() -> Any:
        async with Node("bench-supervisor", **node_opts) as node:
            return await node.run_root(main, *args)

    return asyncio.run(root())


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# -- 1. crash -> restarted child running ---------------------------------------------------


class _Victim:
    """Shared between the driver and the current incarnation of the child."""

    __slots__ = ("crash_at", "pid", "restarts", "started")

    def __init__(self) -> None:
        self.pid: Pid | None = None
        self.started: asyncio.Future[float] | None = None
        self.crash_at = 0.0
        self.restarts = 0


async def _victim_waits(v: _Victim) -> None:
    t = perf_counter()  # "running": the child's code executes for the first time
    v.pid = self_pid()
    v.restarts += 1
    fut = v.started
    if fut is not None and not fut.done():
        fut.set_result(t)
    await receive()  # until an exit signal kills it


async def _victim_raises(v: _Victim) -> None:
    t = perf_counter()
    v.pid = self_pid()
    v.restarts += 1
    fut = v.started
    if fut is not None and not fut.done():
        fut.set_result(t)
    await receive()
    v.crash_at = perf_counter()
    raise RuntimeError("boom")


def _start_victim(fn: Callable[[_Victim], Awaitable[None]], v: _Victim) -> Pid:
    return spawn_link(fn, v)


async def suptrace_latency(
    mode: str, n: int, warmup: int, meter: GcMeter | None = None
) -> tuple[list[float], list[bool]]:
    loop = asyncio.get_running_loop()
    v = _Victim()
    v.started = loop.create_future()
    fn = _victim_waits if mode == "exit" else _victim_raises
    spec = ChildSpec(id="victim", start=(_start_victim, (fn, v)), shutdown="brutal_kill")
    await Supervisor.start_link([spec], intensity=HIGH_INTENSITY, period=1)
    dog = watchdog(lambda: v.restarts, lambda: v.started, "restart latency")
    await v.started
    meter = meter or GcMeter()
    samples: list[float] = []
    hits: list[bool] = []
    for i in range(warmup + n):
        fut = v.started = loop.create_future()
        pid = v.pid
        assert pid is not None
        collections = meter.count
        if mode == "exit":
            t0 = perf_counter()
            suptrace.exit(pid, "boom")
            t1 = await fut
        else:
            send(pid, "crash")
            t1 = await fut
            t0 = v.crash_at
        if i >= warmup:
            samples.append(t1 - t0)
            hits.append(meter.count != collections)
    dog.cancel()
    return samples, hits


async def raw_latency(mode: str, n: int, warmup: int) -> list[float]:
    """The asyncio equivalent: a supervisor task woken by the child's done-callback."""
    loop = asyncio.get_running_loop()

    class St:
        started: asyncio.Future[float] | None = None
        poke: asyncio.Future[None] | None = None
        task: asyncio.Task[None] | None = None
        crash_at = 0.0

    st = St()

    async def child() -> None:
        t = perf_counter()
        poke = st.poke = loop.create_future()
        fut = st.started
        if fut is not None and not fut.done():
            fut.set_result(t)
        await poke
        st.crash_at = perf_counter()
        raise RuntimeError("boom")

    async def supervisor() -> None:
        while True:
            task = loop.create_task(child())
            st.task = task
            died: asyncio.Future[None] = loop.create_future()
            task.add_done_callback(lambda _t, d=died: d.done() or d.set_result(None))
            await died
            if not task.cancelled():
                task.exception()  # retrieved, as a supervisor would to log it

    st.started = loop.create_future()
    sup = loop.create_task(supervisor())
    await st.started
    samples: list[float] = []
    for i in range(warmup + n):
        fut = st.started = loop.create_future()
        if mode == "exit":
            assert st.task is not None
            t0 = perf_counter()
            st.task.cancel()
            t1 = await fut
        else:
            assert st.poke is not None
            st.poke.set_result(None)
            t1 = await fut
            t0 = st.crash_at
        if i >= warmup:
            samples.append(t1 - t0)
    sup.cancel()
    assert st.task is not None
    st.task.cancel()
    await asyncio.gather(sup, st.task, return_exceptions=True)
    return samples


def _spin(k: int) -> int:
    s = 0
    for i in range(k):
        s += i
    return s


def noise_floor(target_s: float, n: int) -> dict[str, Any]:
    """Time a pure-Python loop as long as ``target_s``, ``n`` times: the machine's own tail."""
    k = 64
    while True:
        t0 = perf_counter()
        for _ in range(20):
            _spin(k)
        took = (perf_counter() - t0) / 20
        if took >= target_s / 2 or k > 10**7:
            break
        k *= 2
    k = max(1, int(k * target_s / took))
    for _ in range(2):  # refine on the median, as the target is a median
        runs = []
        for _ in range(301):
            t0 = perf_counter()
            _spin(k)
            runs.append(perf_counter() - t0)
        k = max(1, int(k * target_s / sorted(runs)[150]))
    samples = []
    for _ in range(n):
        t0 = perf_counter()
        _spin(k)
        samples.append(perf_counter() - t0)
    return summarize_us(samples)


def bench_latency(n: int, warmup: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for mode in ("exit", "raise"):
        for config in ("reports kept, log off", "reports=False", "bare"):
            gc.collect()
            with GcMeter() as meter:
                samples, hits = run_in_node(
                    suptrace_latency, mode, n, warmup, meter, **node_options(config)
                )
            key = f"suptrace {mode}" + ("" if config.startswith("reports kept") else f", {config}")
            rows[key] = summarize_us(samples, hits) | {"mode": mode, "gc": meter.as_dict()}

        async def raw(mode: str = mode) -> list[float]:
            return await raw_latency(mode, n, warmup)

        gc.collect()
        rows[f"asyncio {mode}"] = summarize_us(asyncio.run(raw())) | {"mode": mode}
    floor = noise_floor(rows["suptrace exit"]["p50_us"] / 1e6, n)
    rows["noise floor (busy loop, same p50)"] = floor | {"mode": "exit"}
    return rows


# -- 2. sustained restarts/s ---------------------------------------------------------------


class _Crasher:
    __slots__ = (
        "count",
        "cpu_begin",
        "cpu_end",
        "done",
        "every",
        "samples",
        "snapshots",
        "t_begin",
        "t_end",
        "target",
        "tm",
        "warmup",
    )

    def __init__(self, warmup: int, n: int, samples: int, tm: bool) -> None:
        self.count = 0
        self.warmup = warmup
        self.target = warmup + n
        self.every = max(1, n // samples)
        self.samples: list[tuple[int, float, int, int]] = []
        self.t_begin = self.t_end = 0.0
        self.cpu_begin = self.cpu_end = 0.0
        self.tm = tm
        self.snapshots: list[tracemalloc.Snapshot] = []
        self.done: asyncio.Future[None] | None = None

    def begin(self) -> None:
        self.t_begin = perf_counter()
        self.cpu_begin = time.process_time()

    def end(self) -> None:
        self.t_end = perf_counter()
        self.cpu_end = time.process_time()

    def sample(self, edge: bool) -> None:
        traced = -1
        if self.tm:  # the live heap: what a full collection leaves
            gc.collect()
            traced = tracemalloc.get_traced_memory()[0]
            if edge:
                self.snapshots.append(tracemalloc.take_snapshot())
        self.samples.append((self.count - self.warmup, perf_counter(), traced, rss_bytes()))


async def _crash_at_once(c: _Crasher) -> None:
    c.count += 1
    count = c.count
    edge = count == c.warmup or count == c.target
    if count >= c.warmup and (edge or (count - c.warmup) % c.every == 0):
        c.sample(edge)
        if count == c.warmup:
            c.begin()
    if count == c.target:
        c.end()
        assert c.done is not None
        c.done.set_result(None)
        await receive()  # stay up: the run is over
        return
    raise RuntimeError("boom")


def _start_crasher(c: _Crasher) -> Pid:
    return spawn_link(_crash_at_once, c)


async def suptrace_restarts(c: _Crasher) -> _Crasher:
    c.done = asyncio.get_running_loop().create_future()
    spec = ChildSpec(id="crasher", start=(_start_crasher, (c,)), shutdown="brutal_kill")
    await Supervisor.start_link([spec], intensity=HIGH_INTENSITY, period=1)
    dog = watchdog(lambda: c.count, lambda: c.done, "sustained restarts")
    await c.done
    dog.cancel()
    return c


async def raw_restarts(c: _Crasher) -> _Crasher:
    """A supervisor task restarting a task that raises at once, via its done-callback."""
    loop = asyncio.get_running_loop()
    c.done = loop.create_future()
    forever: asyncio.Future[None] = loop.create_future()

    async def child() -> None:
        c.count += 1
        count = c.count
        if count == c.warmup:
            c.begin()
        elif count == c.target:
            c.end()
            assert c.done is not None
            c.done.set_result(None)
            await forever
        raise RuntimeError("boom")

    async def supervisor() -> None:
        while True:
            task = loop.create_task(child())
            died: asyncio.Future[None] = loop.create_future()
            task.add_done_callback(lambda _t, d=died: d.done() or d.set_result(None))
            await died
            if not task.cancelled():
                task.exception()

    sup = loop.create_task(supervisor())
    await c.done
    sup.cancel()
    forever.cancel()
    await asyncio.gather(sup, return_exceptions=True)
    return c


def memory_trend(
    samples: list[tuple[int, float, int, int]], col: int, floor: int
) -> dict[str, Any]:
    """Compare the first and last 20% of the samples of column ``col``."""
    values = [(s[0], s[col]) for s in samples if s[col] >= 0]
    k = max(1, len(values) // 5)
    first, last = values[:k], values[-k:]
    mean_first = sum(v for _, v in first) / k
    mean_last = sum(v for _, v in last) / k
    span = (sum(r for r, _ in last) - sum(r for r, _ in first)) / k
    delta = mean_last - mean_first
    allowance = max(floor, 0.02 * mean_first)
    return {
        "samples": len(values),
        "first20_mean_bytes": mean_first,
        "last20_mean_bytes": mean_last,
        "delta_bytes": delta,
        "bytes_per_restart": delta / span if span else 0.0,
        "allowance_bytes": allowance,
        "grows": delta > allowance,
        "min_bytes": min(v for _, v in values),
        "max_bytes": max(v for _, v in values),
    }


def _top_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> list[dict[str, Any]]:
    stats = after.compare_to(before, "lineno")
    return [
        {
            "where": f"{_short_path(s.traceback[0].filename)}:{s.traceback[0].lineno}",
            "size_diff_bytes": s.size_diff,
            "count_diff": s.count_diff,
        }
        for s in stats[:12]
    ]


def _short_path(path: str) -> str:
    if path.startswith(PKG_ROOT):
        return os.path.relpath(path, PKG_ROOT)
    if "/lib/python" in path:
        return "stdlib:" + path.split("/lib/python", 1)[1].split("/", 1)[1]
    return path


def run_restarts(
    n: int, warmup: int, tm: bool = False, raw: bool = False, **node_opts: Any
) -> dict[str, Any]:
    c = _Crasher(warmup, n, 100, tm)
    if tm:
        tracemalloc.start()
    try:
        gc.collect()
        with GcMeter() as meter:
            if raw:
                asyncio.run(raw_restarts(c))
            else:
                run_in_node(suptrace_restarts, c, **node_opts)
    finally:
        if tm:
            tracemalloc.stop()
    elapsed = c.t_end - c.t_begin
    out: dict[str, Any] = {
        "restarts": n,
        "seconds": elapsed,
        "per_s": n / elapsed,
        "us_per_restart": elapsed / n * 1e6,
        "cpu_us_per_restart": (c.cpu_end - c.cpu_begin) / n * 1e6,
        "gc": meter.as_dict(),
    }
    if c.samples:
        if tm:  # RSS is inflated by tracemalloc's own tables here: not judged
            out["tracemalloc"] = memory_trend(c.samples, 2, 1 << 20)
            if len(c.snapshots) == 2:
                out["tracemalloc_top_growth"] = _top_growth(*c.snapshots)
        else:
            out["rss"] = memory_trend(c.samples, 3, 4 << 20)
        out["samples"] = [
            {"restarts": r, "t": t - c.t_begin, "tracemalloc": m, "rss": rss}
            for r, t, m, rss in c.samples
        ]
    return out


def _with_null_loguru(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Reports formatted and handed to loguru, whose only sink discards the text."""
    from loguru import logger

    logger.remove()
    sink = logger.add(lambda _message: None, level="DEBUG")
    try:
        return fn()
    finally:
        logger.remove(sink)
        logger.add(sys.stderr)


def bench_restarts(n: int, n_tm: int, n_side: int, warmup: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for config in ("reports kept, log off", "reports=False"):
        rows[f"suptrace, {config}"] = run_restarts(n, warmup, **node_options(config))
    rows["suptrace, bare"] = run_restarts(n_side, warmup, **node_options("bare"))
    rows["suptrace, reports kept, log off, tracemalloc on"] = run_restarts(
        n_tm, warmup, tm=True, **node_options("reports kept, log off")
    )
    rows["suptrace, reports + loguru (null sink)"] = _with_null_loguru(
        lambda: run_restarts(n_side, warmup, **node_options("reports + loguru (null sink)"))
    )
    rows["asyncio, raw supervisor task"] = run_restarts(n_side, warmup, raw=True)
    return rows


# -- 3. a supervisor with 10,000 children --------------------------------------------------


class _Order:
    __slots__ = ("all_started", "n", "started", "stopped")

    def __init__(self, n: int) -> None:
        self.n = n
        self.started: list[int] = []
        self.stopped: list[int] = []
        self.all_started: asyncio.Future[None] | None = None

    def on_start(self, idx: int) -> None:
        self.started.append(idx)
        if len(self.started) == self.n and self.all_started is not None:
            self.all_started.set_result(None)


class _Worker(GenServer):
    """A GenServer that traps exits, so its ``terminate`` runs at shutdown (as in OTP)."""

    async def init(self, idx: int, order: _Order) -> None:
        trap_exit(True)
        self.idx = idx
        self.order = order
        order.on_start(idx)

    async def terminate(self, reason: Any) -> None:
        self.order.stopped.append(self.idx)


async def _plain_worker(idx: int, order: _Order) -> None:
    order.on_start(idx)
    try:
        await receive()
    finally:  # the supervisor's "shutdown" signal cancels the receive
        order.stopped.append(idx)


def _start_plain(idx: int, order: _Order) -> Pid:
    return spawn_link(_plain_worker, idx, order)


async def big_tree(kind: str, n: int) -> dict[str, Any]:
    order = _Order(n)
    order.all_started = asyncio.get_running_loop().create_future()
    if kind == "gen_server":
        specs = [ChildSpec(id=i, start=(_Worker.start_link, (i, order))) for i in range(n)]
    else:
        specs = [ChildSpec(id=i, start=(_start_plain, (i, order))) for i in range(n)]
    trap_exit(True)  # the supervisor's "shutdown" exit must not take the driver down
    t0 = perf_counter()
    sup = await Supervisor.start_link(specs, intensity=1, period=5)
    t1 = perf_counter()
    await asyncio.wait_for(order.all_started, 120)
    t2 = perf_counter()
    ref = suptrace.monitor(sup)
    t3 = perf_counter()
    suptrace.exit(sup, SHUTDOWN)
    down = await receive(lambda m: type(m) is Down and m.ref == ref, timeout=120)
    t4 = perf_counter()
    return {
        "children": n,
        "start_link_s": t1 - t0,
        "start_s": t2 - t0,
        "shutdown_s": t4 - t3,
        "start_per_child_us": (t2 - t0) / n * 1e6,
        "shutdown_per_child_us": (t4 - t3) / n * 1e6,
        "sup_exit_reason": down.reason,
        "started_in_order": order.started == list(range(n)),
        "stopped_in_reverse_order": order.stopped == list(range(n - 1, -1, -1)),
        "stopped_count": len(order.stopped),
    }


def bench_tree(n: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    run_in_node(big_tree, "gen_server", min(n, 1000), **node_options("reports kept, log off"))
    for kind in ("gen_server", "spawn_link"):
        for config in ("reports kept, log off", "reports=False"):
            gc.collect()
            rows[f"{kind}, {config}"] = run_in_node(big_tree, kind, n, **node_options(config))
    return rows


# -- profiling -----------------------------------------------------------------------------


def profile(label: str, fn: Callable[[], Any], top: int = 15) -> dict[str, Any]:
    """cProfile ``fn`` and list the costliest functions (all code, then suptrace's own)."""
    gc.collect()
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    rows = []
    for (path, line, func), (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        where = _short_path(path)
        rows.append(
            {
                "function": f"{where}:{line}({func})",
                "ncalls": ncalls,
                "tottime_s": tottime,
                "tottime_pct": 100.0 * tottime / total if total else 0.0,
                "cumtime_s": cumtime,
                "suptrace": where.startswith("suptrace" + os.sep),
            }
        )
    by_tot = sorted(rows, key=lambda r: r["tottime_s"], reverse=True)
    own = [r for r in by_tot if r["suptrace"]]
    own_share = sum(r["tottime_s"] for r in own) / total * 100 if total else 0.0
    by_cum = sorted(own, key=lambda r: r["cumtime_s"], reverse=True)
    print(
        f"\n--- cProfile: {label} (self time {total:.2f}s under the profiler; "
        f"suptrace's own code {own_share:.0f}% of it) ---"
    )
    print("  top by self time, all code:")
    _print_prof(by_tot[:top])
    print("  top suptrace functions by self time:")
    _print_prof(own[:top])
    print("  top suptrace functions by cumulative time:")
    _print_prof(by_cum[:10])
    return {
        "label": label,
        "total_s": total,
        "suptrace_share_pct": own_share,
        "top_all": by_tot[:top],
        "top_suptrace": own[:top],
        "top_suptrace_cum": by_cum[:10],
    }


def _print_prof(rows: list[dict[str, Any]]) -> None:
    print(f"    {'self s':>7} {'self%':>6} {'cum s':>7} {'calls':>9}  function")
    for r in rows:
        print(
            f"    {r['tottime_s']:7.3f} {r['tottime_pct']:5.1f}% {r['cumtime_s']:7.3f} "
            f"{r['ncalls']:9d}  {r['function']}"
        )


# -- report --------------------------------------------------------------------------------


def print_latency(rows: dict[str, Any]) -> list[tuple[str, bool]]:
    print(
        "\n1. crash -> restarted child running (one_for_one, 1 child; t0 right before the "
        "crash, t1 = the new child's first line)"
    )
    print(
        f"   {'variant':<34} {'n':>6} {'p50 µs':>7} {'p90 µs':>7} {'p99 µs':>7} "
        f"{'max µs':>8} {'p50/asyncio':>11} {'p99/asyncio':>11} {'GC-hit':>6} "
        f"{'p99 no-GC':>9}"
    )
    for key, r in rows.items():
        base = rows[f"asyncio {r['mode']}"]
        hits = str(r["gc_hit_samples"]) if "gc_hit_samples" in r else "-"
        clean = f"{r['p99_without_gc_us']:9.1f}" if "p99_without_gc_us" in r else f"{'-':>9}"
        if key.startswith("noise"):
            ratios = f"{'-':>11} {'-':>11}"
        else:
            ratios = f"{r['p50_us'] / base['p50_us']:10.2f}x {r['p99_us'] / base['p99_us']:10.2f}x"
        print(
            f"   {key:<34} {r['n']:>6} {r['p50_us']:7.1f} {r['p90_us']:7.1f} "
            f"{r['p99_us']:7.1f} {r['max_us']:8.1f} {ratios} {hits:>6} {clean}"
        )
    print(
        "   GC-hit: samples during which a garbage collection ran. noise floor: a pure-Python "
        "loop as long as the 'suptrace exit' median, timed alone -- its p99 is what this "
        "machine adds to any step that long"
    )
    gcs = rows["suptrace exit"]["gc"]
    print(
        f"   GC during 'suptrace exit': collections per generation {gcs['collections']}, "
        f"{gcs['seconds'] * 1e3:.1f} ms in total"
    )
    checks = []
    for key in ("suptrace exit", "suptrace raise"):
        ok = rows[key]["p99_us"] <= LATENCY_P99_TARGET_US
        checks.append(
            (
                f"restart latency p99 <= {LATENCY_P99_TARGET_US:.0f} µs ({key}): "
                f"{rows[key]['p99_us']:.0f} µs",
                ok,
            )
        )
    return checks


def _mib(b: float) -> str:
    return f"{b / 2**20:7.2f}"


def print_restarts(rows: dict[str, Any]) -> list[tuple[str, bool]]:
    print(
        "\n2. sustained restarts (one_for_one, intensity 10**9 per 1 s, child raises at its "
        "first line)"
    )
    print(
        f"   {'variant':<48} {'restarts':>9} {'seconds':>8} {'restarts/s':>10} "
        f"{'µs each':>8} {'CPU µs':>7} {'GC share':>8}"
    )
    for key, r in rows.items():
        share = r["gc"]["seconds"] / r["seconds"] * 100 if r["seconds"] else 0.0
        print(
            f"   {key:<48} {r['restarts']:>9} {r['seconds']:8.2f} {r['per_s']:10.0f} "
            f"{r['us_per_restart']:8.1f} {r['cpu_us_per_restart']:7.1f} {share:7.1f}%"
        )
    print(
        "   (µs each: wall time per restart; CPU µs: this process's CPU time per restart, "
        "which other load on the machine inflates less)"
    )
    print("   memory: mean of the first vs the last 20% of samples (MiB)")
    print(
        f"   {'variant':<48} {'measure':<11} {'first':>7} {'last':>7} {'delta':>7} "
        f"{'B/restart':>9} {'allowed':>7}  trend"
    )
    checks = []
    for key, r in rows.items():
        for col in ("rss", "tracemalloc"):
            m = r.get(col)
            if m is None:
                continue
            word = "GROWS" if m["grows"] else "flat"
            print(
                f"   {key:<48} {col:<11} {_mib(m['first20_mean_bytes'])} "
                f"{_mib(m['last20_mean_bytes'])} {_mib(m['delta_bytes'])} "
                f"{m['bytes_per_restart']:9.2f} {_mib(m['allowance_bytes'])}  {word}"
            )
            if (
                key.startswith("suptrace, reports kept, log off")
                or key == "suptrace, reports=False"
            ):
                checks.append(
                    (f"no memory growth, {col} ({key}, {r['restarts']} restarts)", not m["grows"])
                )
    for key in ("suptrace, reports=False", "suptrace, reports kept, log off"):
        r = rows[key]
        checks.insert(
            0,
            (
                f"restarts/s >= {RESTARTS_PER_S_TARGET:.0f} ({key}): "
                f"{r['per_s']:.0f}/s over {r['restarts']}",
                r["per_s"] >= RESTARTS_PER_S_TARGET,
            ),
        )
    kept = rows["suptrace, reports kept, log off"]["us_per_restart"]
    bare_reports = rows["suptrace, reports=False"]["us_per_restart"]
    bare = rows["suptrace, bare"]["us_per_restart"]
    logged = rows["suptrace, reports + loguru (null sink)"]["us_per_restart"]
    raw = rows["asyncio, raw supervisor task"]["us_per_restart"]
    print(
        f"   per restart: reports kept (log off) {kept:.1f} µs; reports=False {bare_reports:.1f} µs "
        f"(the Reports service costs {kept - bare_reports:.1f} µs, "
        f"{(kept - bare_reports) / kept * 100:.0f}%); bare {bare:.1f} µs; "
        f"loguru formatting on {logged:.1f} µs (+{logged - kept:.1f} µs over log off); "
        f"raw asyncio {raw:.1f} µs"
    )
    return checks


def print_tree(rows: dict[str, Any]) -> list[tuple[str, bool]]:
    print(
        "\n3. one supervisor, many workers: start all, then exit(sup, 'shutdown') from its parent"
    )
    print(
        f"   {'variant':<34} {'children':>8} {'start s':>8} {'µs/child':>8} "
        f"{'shutdown s':>10} {'µs/child':>8}  order checked"
    )
    checks = []
    for key, r in rows.items():
        ok = r["started_in_order"] and r["stopped_in_reverse_order"]
        print(
            f"   {key:<34} {r['children']:>8} {r['start_s']:8.3f} "
            f"{r['start_per_child_us']:8.1f} {r['shutdown_s']:10.3f} "
            f"{r['shutdown_per_child_us']:8.1f}  "
            f"{'stopped in reverse start order' if ok else 'WRONG ORDER'} "
            f"({r['stopped_count']} stopped; supervisor exited {r['sup_exit_reason']})"
        )
        checks.append((f"shutdown in reverse start order ({key})", ok))
    return checks


def _revision() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", PKG_ROOT, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", PKG_ROOT, "status", "--porcelain", "--", "suptrace"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"not a git checkout: {PKG_ROOT}"
    return head + (" + uncommitted changes in suptrace/" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs (100,000 restarts)")
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    ap.add_argument("--profile", action="store_true", help="profile even when targets pass")
    ap.add_argument(
        "--only", nargs="+", choices=("latency", "restarts", "tree"), help="run only these parts"
    )
    args = ap.parse_args(argv)
    parts = set(args.only or ("latency", "restarts", "tree"))
    quick = args.quick
    lat_n, lat_warm = (5_000, 1_000) if quick else (20_000, 2_000)
    rs_n = 100_000 if quick else 1_000_000
    rs_tm = 30_000 if quick else 200_000
    rs_side = 30_000 if quick else 100_000
    rs_warm = 5_000 if quick else 20_000
    tree_n = 10_000

    revision = _revision()
    load = os.getloadavg()
    print(
        f"suptrace {suptrace.__version__} ({revision}) supervisor benchmarks, "
        f"{'quick' if quick else 'full'} run: Python {platform.python_version()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs (load average {load[0]:.2f} at start), "
        f"gc enabled, default event loop"
    )
    result: dict[str, Any] = {
        "revision": revision,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_start": load,
        "quick": quick,
        "command": " ".join(["python", *sys.argv]),
        "node_configs": {k: node_options(k) for k in CONFIGS},
    }
    checks: list[tuple[str, bool]] = []
    if "latency" in parts:
        result["latency"] = bench_latency(lat_n, lat_warm)
        checks += print_latency(result["latency"])
    if "restarts" in parts:
        result["restarts"] = bench_restarts(rs_n, rs_tm, rs_side, rs_warm)
        checks += print_restarts(result["restarts"])
    if "tree" in parts:
        result["tree"] = bench_tree(tree_n)
        checks += print_tree(result["tree"])

    print("\ntargets:")
    for text, ok in checks:
        print(f"   {verdict(ok)}  {text}")
    result["checks"] = [{"check": t, "pass": ok} for t, ok in checks]
    result["loadavg_end"] = os.getloadavg()
    print(
        f"   (load average {result['loadavg_end'][0]:.2f} at the end: other work on this "
        "machine shows up in the tails)"
    )
    missed = [t for t, ok in checks if not ok]

    profiles = []
    if "latency" in parts and (args.profile or any("latency" in t for t in missed)):
        profiles.append(
            profile(
                "crash -> restart (exit), reports kept, log off",
                lambda: run_in_node(
                    suptrace_latency,
                    "exit",
                    lat_n // 2,
                    500,
                    **node_options("reports kept, log off"),
                ),
            )
        )
    if "restarts" in parts and (args.profile or any("restarts/s" in t for t in missed)):
        profiles.append(
            profile(
                "sustained restarts, reports kept, log off",
                lambda: run_restarts(rs_side // 2, 1_000, **node_options("reports kept, log off")),
            )
        )
    if "restarts" in parts:
        tm_row = result["restarts"]["suptrace, reports kept, log off, tracemalloc on"]
        if args.profile or any("memory" in t for t in missed):
            print(
                "\n--- tracemalloc: allocation sites that grew most during the tracemalloc pass ---"
            )
            for s in tm_row.get("tracemalloc_top_growth", []):
                print(
                    f"   {s['size_diff_bytes']:+10d} B {s['count_diff']:+7d} blocks  {s['where']}"
                )
    if profiles:
        result["profiles"] = profiles

    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=repr)
        print(f"\nfigures written to {args.json}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
