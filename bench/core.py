"""Core micro-benchmarks: suptrace's hot paths against plain asyncio and peer libraries.

Run from the repository root::

    python bench/core.py            # full run (about two minutes on 2 cores)
    python bench/core.py --quick    # smaller counts, fewer repeats (a smoke run)
    python bench/core.py --json results.json

Everything runs in one process. The asyncio workloads (suptrace, plain asyncio,
otpylib) share one event loop started by ``suptrace.run``; pykka is driven
synchronously from that loop's thread (nothing else runs meanwhile); triotp
gets its own ``trio.run`` in a worker thread while the asyncio loop idles.

Each figure is the best of N timed repeats (``time.perf_counter``) after one
untimed warm-up, and the implementations of one workload take turns inside
each repeat (the order rotates), so a noisy moment hits them all alike.
See bench/README.md for what each workload means and why it is fair.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import gc
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
import types
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import suptrace
from suptrace import GenServer

perf = time.perf_counter

# -- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    repeats: int
    call_n: int
    peer_call_n: int
    send_n: int
    peer_send_n: int
    spawn_n: int
    batch: int
    batches: int
    mem_n: int
    mem_repeats: int
    timer_n: int = 10_000


FULL = Config(
    repeats=5,
    call_n=20_000,
    peer_call_n=3_000,
    send_n=200_000,
    peer_send_n=20_000,
    spawn_n=20_000,
    batch=1_000,
    batches=20,
    mem_n=100_000,
    mem_repeats=2,
)
QUICK = Config(
    repeats=3,
    call_n=5_000,
    peer_call_n=1_000,
    send_n=50_000,
    peer_send_n=5_000,
    spawn_n=5_000,
    batch=1_000,
    batches=5,
    mem_n=20_000,
    mem_repeats=1,
)

#: Targets: (workload, implementation, comparator implementation, minimum ratio).
SPEED_TARGETS = [
    ("call", "suptrace call()", "asyncio Queue+Future", 0.6),
    ("call", "suptrace call()", "pykka ask", 2.0),
    ("one-way", "suptrace send/receive", "asyncio Queue", 0.4),
    ("one-way", "suptrace cast/handle_cast", "asyncio Queue", 0.5),
    ("spawn", "suptrace spawn_monitor+Down", "asyncio await create_task", 0.6),
]
#: ``--bare``: the node without its default observers (suptrace.Node keyword arguments).
BARE_NODE: dict[str, Any] = {"flight_recorder": 0, "system_monitor": False, "reports": False}

#: Bytes per idle process blocked in receive().
MEMORY_TARGET = 3 * 1024


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- results -------------------------------------------------------------------------------


@dataclass
class Result:
    workload: str
    impl: str
    unit: str  # "ops/s" (higher is better) or "B/proc" (lower is better)
    n: int = 0
    samples: list[float] = field(default_factory=list)
    baseline: str | None = None  # the implementation the ratio is taken against
    skipped: str | None = None
    note: str = ""

    @property
    def best(self) -> float | None:
        if not self.samples:
            return None
        return max(self.samples) if self.unit == "ops/s" else min(self.samples)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


@dataclass
class Impl:
    """One implementation of a workload: ``run(n)`` returns the seconds ``n`` operations took."""

    name: str
    run: Callable[[int], Awaitable[float]]
    n: int
    note: str = ""
    setup: Callable[[], Awaitable[None]] | None = None
    teardown: Callable[[], Awaitable[None]] | None = None


async def measure(
    workload: str, impls: list[Impl], repeats: int, baseline: str, results: list[Result]
) -> None:
    """Warm every implementation up once, then time them in rotating order ``repeats`` times."""
    log(f"[{workload}] warming up")
    rows: dict[str, Result] = {}
    active: list[Impl] = []
    for impl in impls:
        row = Result(workload, impl.name, "ops/s", impl.n, baseline=baseline, note=impl.note)
        rows[impl.name] = row
        try:
            if impl.setup is not None:
                await impl.setup()
            await impl.run(max(1, impl.n // 5))
        except Exception as exc:  # a peer that cannot run is reported and skipped
            row.skipped = f"{type(exc).__name__}: {exc}"
            log(f"[{workload}] {impl.name}: skipped ({row.skipped})")
            continue
        active.append(impl)
    for r in range(repeats):
        shift = r % len(active) if active else 0
        for impl in active[shift:] + active[:shift]:
            row = rows[impl.name]
            gc.collect()  # start each sample with no garbage left by the previous one
            try:
                seconds = await impl.run(impl.n)
            except Exception as exc:
                row.skipped = f"failed in a timed repeat: {type(exc).__name__}: {exc}"
                log(f"[{workload}] {impl.name}: {row.skipped}")
                continue
            row.samples.append(impl.n / seconds)
        log(f"[{workload}] repeat {r + 1}/{repeats} done")
    for impl in active:
        if impl.teardown is not None:
            await impl.teardown()
    results.extend(rows.values())


# -- call round trips ------------------------------------------------------------------------


class Echo(GenServer):
    """Replies with the request; counts casts and says ``"done"`` after ``expect`` of them."""

    async def init(self) -> None:
        self.count = 0
        self.expect = -1
        self.notify: suptrace.Pid | None = None

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        if type(request) is tuple and request[0] == "expect":
            self.count, self.expect, self.notify = 0, request[1], request[2]
            return "ok"
        return request

    async def handle_cast(self, msg: Any) -> None:
        self.count += 1
        if self.count == self.expect and self.notify is not None:
            suptrace.send(self.notify, "done")


Hook = Callable[[], Awaitable[None]]


def _echo_server() -> tuple[dict[str, Any], Hook, Hook]:
    """A shared `Echo` server for a group of samples: the dict that holds its pid,
    a setup that starts it once, and a teardown that stops it."""
    server: dict[str, Any] = {}

    async def setup() -> None:
        if "pid" not in server:
            server["pid"] = await Echo.start()

    async def teardown() -> None:
        pid = server.pop("pid", None)
        if pid is not None:
            await suptrace.stop(pid)

    return server, setup, teardown


def suptrace_call_impls(cfg: Config) -> list[Impl]:
    server, setup, teardown = _echo_server()

    async def run_default(n: int) -> float:
        pid, call = server["pid"], suptrace.call
        t0 = perf()
        for i in range(n):
            await call(pid, i)
        return perf() - t0

    async def run_no_timeout(n: int) -> float:
        pid, call = server["pid"], suptrace.call
        t0 = perf()
        for i in range(n):
            await call(pid, i, timeout=None)
        return perf() - t0

    return [
        Impl("suptrace call()", run_default, cfg.call_n, "GenServer, default timeout=5.0", setup),
        Impl(
            "suptrace call(timeout=None)",
            run_no_timeout,
            cfg.call_n,
            "no deadline",
            setup,
            teardown,
        ),
    ]


async def mailbox_floor_call(n: int) -> float:
    """The floor of suptrace's own call design, in plain asyncio: a server reading a
    deque mailbox (one waiter Future while it is empty) and awaiting an ``async def``
    handler per request, a client ``call`` coroutine that enters the request in the
    server's monitor table, wakes the server and awaits the reply Future, then removes
    the entry. No counters, flight recorder, deadline, events or error fields: what
    suptrace adds beyond this row is that per-call bookkeeping."""
    loop = asyncio.get_running_loop()
    mailbox: collections.deque[tuple[Any, asyncio.Future[Any]]] = collections.deque()
    monitors: dict[Any, Any] = {}
    waiter: list[asyncio.Future[None] | None] = [None]

    async def handle_call(request: Any) -> Any:
        return request

    async def server() -> None:
        while True:
            if not mailbox:
                w = waiter[0] = loop.create_future()
                await w
                continue
            request, fut = mailbox.popleft()
            fut.set_result(await handle_call(request))

    async def call(request: Any) -> Any:
        fut = loop.create_future()
        entry = (request, fut)
        monitors[entry] = entry
        mailbox.append(entry)
        w = waiter[0]
        if w is not None:
            waiter[0] = None
            w.set_result(None)
        try:
            return await fut
        finally:
            monitors.pop(entry, None)

    task = loop.create_task(server())
    await asyncio.sleep(0)
    t0 = perf()
    for i in range(n):
        await call(i)
    seconds = perf() - t0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return seconds


async def asyncio_call(n: int) -> float:
    """A server task reads (request, Future) pairs from a Queue and resolves the Future."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] = asyncio.Queue()

    async def server() -> None:
        while True:
            request, fut = await queue.get()
            fut.set_result(request)

    task = loop.create_task(server())
    await asyncio.sleep(0)
    put, new_future = queue.put_nowait, loop.create_future
    t0 = perf()
    for i in range(n):
        fut = new_future()
        put((i, fut))
        await fut
    seconds = perf() - t0
    task.cancel()
    return seconds


def pykka_impls(cfg: Config) -> tuple[list[Impl], list[Impl]]:
    """pykka ThreadingActor: ``ask`` and a proxy method call (round trips); ``tell`` (one-way)."""
    try:
        import pykka
    except ImportError as exc:
        return _unavailable("pykka", exc, cfg.peer_call_n), _unavailable(
            "pykka", exc, cfg.peer_send_n
        )

    class Counter(pykka.ThreadingActor):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def on_receive(self, message: Any) -> Any:
            if message == "count":
                return self.count
            if type(message) is int:
                self.count += 1
                return None
            return message

        def echo(self, value: Any) -> Any:
            return value

    async def ask(n: int) -> float:
        with _one_cpu():
            ref = Counter.start()
            try:
                t0 = perf()
                for i in range(n):
                    ref.ask(("echo", i))
                return perf() - t0
            finally:
                ref.stop()

    async def proxy(n: int) -> float:
        with _one_cpu():
            ref = Counter.start()
            try:
                echo = ref.proxy().echo
                t0 = perf()
                for i in range(n):
                    echo(i).get()
                return perf() - t0
            finally:
                ref.stop()

    async def tell(n: int) -> float:
        with _one_cpu():
            return _tell(n)

    def _tell(n: int) -> float:
        ref = Counter.start()
        try:
            t0 = perf()
            for i in range(n):
                ref.tell(i)
            got = ref.ask("count")
            seconds = perf() - t0
            assert got == n, (got, n)
            return seconds
        finally:
            ref.stop()

    from importlib.metadata import version as dist_version

    version = dist_version("pykka")
    calls = [
        Impl("pykka ask", ask, cfg.peer_call_n, f"pykka {version} ThreadingActor, one CPU"),
        Impl("pykka proxy", proxy, cfg.peer_call_n, "proxy().echo(i).get(), one CPU"),
    ]
    sends = [Impl("pykka tell", tell, cfg.peer_send_n, "tell x N, then one ask, one CPU")]
    return calls, sends


@contextlib.contextmanager
def _one_cpu() -> Any:
    """Keep this thread, and the actor thread it starts (threads inherit affinity),
    on one CPU while pykka is measured.

    A hand-off between threads on two CPUs needs a cross-CPU wake-up; on a virtual
    machine that can cost ~100 us and made pykka's figure swing between ~8,000 and
    ~60,000 asks/s from run to run here. On one CPU it is consistently at its best.
    """
    getter = getattr(os, "sched_getaffinity", None)
    setter = getattr(os, "sched_setaffinity", None)
    if getter is None or setter is None:
        yield
        return
    previous = getter(0)
    setter(0, {min(previous)})
    try:
        yield
    finally:
        setter(0, previous)


def _unavailable(peer: str, exc: BaseException, n: int) -> list[Impl]:
    reason = f"{type(exc).__name__}: {exc}"

    async def run(_n: int) -> float:
        raise RuntimeError(f"{peer} is not usable here ({reason})")

    return [Impl(peer, run, n)]


# -- otpylib (asyncio backend) ---------------------------------------------------------------

_OTPYLIB: dict[str, Any] = {}


def _otpylib_module() -> Any:
    """Define the otpylib echo/counter gen_server once (its metaclass registers it by name)."""
    if "mod" in _OTPYLIB:
        return _OTPYLIB["mod"]
    from otpylib import process
    from otpylib.gen_server.data import NoReply, Reply
    from otpylib.module import GEN_SERVER, OTPModule

    class BenchEcho(metaclass=OTPModule, behavior=GEN_SERVER, version="1.0.0"):  # type: ignore[misc]
        async def init(self, args: Any) -> Any:
            return {"count": 0, "expect": -1, "notify": None}

        async def handle_call(self, request: Any, from_pid: Any, state: Any) -> Any:
            if type(request) is tuple and request[0] == "expect":
                state = {"count": 0, "expect": request[1], "notify": request[2]}
                return (Reply(payload="ok"), state)
            return (Reply(payload=request), state)

        async def handle_cast(self, request: Any, state: Any) -> Any:
            state["count"] += 1
            if state["count"] == state["expect"]:
                await process.send(state["notify"], "done")
            return (NoReply(), state)

        async def handle_info(self, message: Any, state: Any) -> Any:
            return (NoReply(), state)

        async def terminate(self, reason: Any, state: Any) -> None:
            return None

    _OTPYLIB["mod"] = BenchEcho
    return BenchEcho


async def _otpylib_run(kind: str, n: int) -> float:
    """Start an otpylib runtime on this loop, time ``n`` calls (or casts) from an otpylib
    process to a registered gen_server, then shut the runtime down."""
    from otpylib import gen_server, process
    from otpylib.runtime import reset_runtime, set_runtime
    from otpylib.runtime.backends.asyncio_backend.backend import AsyncIOBackend

    module = _otpylib_module()
    loop = asyncio.get_running_loop()
    backend = AsyncIOBackend()
    set_runtime(backend)
    await backend.initialize()
    done: asyncio.Future[float] = loop.create_future()

    async def client() -> None:
        try:
            # otpylib's call() resolves its target through the name registry only.
            await gen_server.start(module, None, name="bench_echo")
            if kind == "call":
                t0 = perf()
                for i in range(n):
                    await gen_server.call("bench_echo", i)
                seconds = perf() - t0
            else:
                await gen_server.call("bench_echo", ("expect", n, process.self()))
                t0 = perf()
                for i in range(n):
                    await gen_server.cast("bench_echo", i)
                got = await process.receive()
                seconds = perf() - t0
                assert got == "done", got
            done.set_result(seconds)
        except BaseException as exc:
            if not done.done():
                done.set_exception(exc)
            raise

    try:
        await process.spawn(client)
        return await asyncio.wait_for(done, 120)
    finally:
        await backend.shutdown()
        reset_runtime()


def otpylib_impls(cfg: Config) -> tuple[list[Impl], list[Impl]]:
    try:
        from importlib.metadata import version

        import otpylib  # noqa: F401

        ver = version("otpylib")
    except Exception as exc:
        return _unavailable("otpylib", exc, cfg.peer_call_n), _unavailable(
            "otpylib", exc, cfg.peer_send_n
        )

    async def call(n: int) -> float:
        return await _otpylib_run("call", n)

    async def cast(n: int) -> float:
        return await _otpylib_run("cast", n)

    return (
        [Impl("otpylib gen_server.call", call, cfg.peer_call_n, f"otpylib {ver}, asyncio backend")],
        [Impl("otpylib gen_server.cast", cast, cfg.peer_send_n, "cast x N, server sends done")],
    )


# -- triotp (trio) ---------------------------------------------------------------------------


def _triotp_run(kind: str, n: int) -> float:
    """One ``trio.run``: start a triotp gen_server, time ``n`` calls or casts, stop."""
    import trio
    from triotp import gen_server, mailbox

    mod = types.ModuleType("bench_triotp_echo")

    async def init(_arg: Any) -> Any:
        return {"count": 0}

    async def handle_call(message: Any, _caller: Any, state: Any) -> Any:
        if message == "count":
            return (gen_server.Reply(payload=state["count"]), state)
        return (gen_server.Reply(payload=message), state)

    async def handle_cast(_message: Any, state: Any) -> Any:
        state["count"] += 1
        return (gen_server.NoReply(), state)

    mod.init = init  # type: ignore[attr-defined]
    mod.handle_call = handle_call  # type: ignore[attr-defined]
    mod.handle_cast = handle_cast  # type: ignore[attr-defined]
    out: list[float] = []

    async def main() -> None:
        mailbox._init()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gen_server.start, mod, None, "bench_echo")
            await trio.sleep(0.01)  # let the server register its mailbox
            if kind == "call":
                t0 = perf()
                for i in range(n):
                    await gen_server.call("bench_echo", i)
                out.append(perf() - t0)
            else:
                t0 = perf()
                for i in range(n):
                    await gen_server.cast("bench_echo", i)
                # A call queues behind the casts: it answers once all were counted.
                got = await gen_server.call("bench_echo", "count")
                out.append(perf() - t0)
                assert got == n, (got, n)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return out[0]


def triotp_impls(cfg: Config) -> tuple[list[Impl], list[Impl]]:
    try:
        from importlib.metadata import version

        import trio  # noqa: F401
        import triotp  # noqa: F401

        ver = f"triotp {version('triotp')}, trio {version('trio')}"
    except Exception as exc:
        return _unavailable("triotp", exc, cfg.peer_call_n), _unavailable(
            "triotp", exc, cfg.peer_send_n
        )

    async def call(n: int) -> float:
        return await asyncio.get_running_loop().run_in_executor(None, _triotp_run, "call", n)

    async def cast(n: int) -> float:
        return await asyncio.get_running_loop().run_in_executor(None, _triotp_run, "cast", n)

    return (
        [Impl("triotp gen_server.call", call, cfg.peer_call_n, f"{ver}, own trio.run")],
        [Impl("triotp gen_server.cast", cast, cfg.peer_send_n, "cast x N, then one call")],
    )


# -- one-way messages ------------------------------------------------------------------------


async def _sink(parent: suptrace.Pid, n: int) -> None:
    receive = suptrace.receive
    for _ in range(n):
        await receive()
    suptrace.send(parent, "done")


async def suptrace_send(n: int) -> float:
    """One process sends ``n`` messages; the other receives and counts them, then says done."""
    send = suptrace.send
    pid = suptrace.spawn(_sink, suptrace.self_pid(), n)
    await asyncio.sleep(0)  # the sink is now blocked in receive()
    t0 = perf()
    for i in range(n):
        send(pid, i)
    got = await suptrace.receive()
    seconds = perf() - t0
    assert got == "done", got
    return seconds


def suptrace_cast_impl(cfg: Config) -> Impl:
    server, setup, teardown = _echo_server()

    async def run(n: int) -> float:
        pid, cast = server["pid"], suptrace.cast
        await suptrace.call(pid, ("expect", n, suptrace.self_pid()))
        t0 = perf()
        for i in range(n):
            cast(pid, i)
        got = await suptrace.receive()
        seconds = perf() - t0
        assert got == "done", got
        return seconds

    return Impl(
        "suptrace cast/handle_cast", run, cfg.send_n, "GenServer counts casts", setup, teardown
    )


async def asyncio_send(n: int) -> float:
    """put_nowait ``n`` items; a consumer task gets and counts them, then resolves a Future."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    done: asyncio.Future[None] = loop.create_future()

    async def consumer() -> None:
        get = queue.get
        for _ in range(n):
            await get()
        done.set_result(None)

    task = loop.create_task(consumer())
    await asyncio.sleep(0)  # the consumer is now blocked in get()
    put = queue.put_nowait
    t0 = perf()
    for i in range(n):
        put(i)
    await done
    seconds = perf() - t0
    await task
    return seconds


# -- spawn and exit --------------------------------------------------------------------------


async def _noop() -> None:
    return None


async def suptrace_spawn_monitor(n: int) -> float:
    spawn_monitor, receive = suptrace.spawn_monitor, suptrace.receive
    t0 = perf()
    for _ in range(n):
        spawn_monitor(_noop)
        await receive()
    return perf() - t0


async def asyncio_spawn(n: int) -> float:
    create_task = asyncio.get_running_loop().create_task
    t0 = perf()
    for _ in range(n):
        await create_task(_noop())
    return perf() - t0


async def suptrace_spawn_link_trap(n: int) -> float:
    spawn_link, receive = suptrace.spawn_link, suptrace.receive
    previous = suptrace.trap_exit(True)
    try:
        t0 = perf()
        for _ in range(n):
            spawn_link(_noop)
            await receive()
        return perf() - t0
    finally:
        suptrace.trap_exit(previous)


def spawn_batch_impls(cfg: Config) -> list[Impl]:
    k, batches = cfg.batch, cfg.batches

    async def sup_monitor(n: int) -> float:
        spawn_monitor, receive = suptrace.spawn_monitor, suptrace.receive
        t0 = perf()
        for _ in range(n // k):
            for _ in range(k):
                spawn_monitor(_noop)
            for _ in range(k):
                await receive()
        return perf() - t0

    async def raw_gather(n: int) -> float:
        create_task = asyncio.get_running_loop().create_task
        t0 = perf()
        for _ in range(n // k):
            await asyncio.gather(*[create_task(_noop()) for _ in range(k)])
        return perf() - t0

    async def sup_fire(n: int) -> float:
        spawn, spawn_monitor, receive = suptrace.spawn, suptrace.spawn_monitor, suptrace.receive
        t0 = perf()
        for _ in range(n // k):
            for _ in range(k - 1):
                spawn(_noop)
            # Processes start in spawn order: the last one's Down means all have exited.
            spawn_monitor(_noop)
            await receive()
        return perf() - t0

    async def raw_fire(n: int) -> float:
        create_task = asyncio.get_running_loop().create_task
        keep: set[asyncio.Task[None]] = set()
        t0 = perf()
        for _ in range(n // k):
            for _ in range(k - 1):
                task = create_task(_noop())
                keep.add(task)  # the documented way to keep a fire-and-forget task alive
                task.add_done_callback(keep.discard)
            await create_task(_noop())
        return perf() - t0

    n = k * batches
    return [
        Impl("asyncio gather(create_task x K)", raw_gather, n, f"K={k}"),
        Impl("suptrace spawn_monitor x K, K Downs", sup_monitor, n, f"K={k}"),
        Impl("asyncio create_task x K, await last", raw_fire, n, f"K={k}, set+done callback"),
        Impl("suptrace spawn x K, monitor last", sup_fire, n, f"K={k}"),
    ]


# -- timers ----------------------------------------------------------------------------------


async def suptrace_timer_arm_cancel(n: int) -> float:
    """Arm a timer owned by the process and cancel it, ``n`` times."""
    send_after, cancel_timer, me = suptrace.send_after, suptrace.cancel_timer, suptrace.self_pid()
    t0 = perf()
    for _ in range(n):
        cancel_timer(send_after(60.0, me, "never"))
    return perf() - t0


async def asyncio_timer_arm_cancel(n: int) -> float:
    """``loop.call_later`` and ``handle.cancel()``, ``n`` times."""
    call_later = asyncio.get_running_loop().call_later
    put = asyncio.Queue().put_nowait
    t0 = perf()
    for _ in range(n):
        call_later(60.0, put, "never").cancel()
    return perf() - t0


async def suptrace_timer_fire(n: int) -> float:
    """Arm ``n`` zero-delay timers to self, then receive the ``n`` messages."""
    send_after, receive, me = suptrace.send_after, suptrace.receive, suptrace.self_pid()
    t0 = perf()
    for i in range(n):
        send_after(0.0, me, i)
    for _ in range(n):
        await receive()
    return perf() - t0


async def asyncio_timer_fire(n: int) -> float:
    """``call_later(0, queue.put_nowait, i)`` ``n`` times, then ``get`` the ``n`` items."""
    call_later = asyncio.get_running_loop().call_later
    queue: asyncio.Queue[Any] = asyncio.Queue()
    put, get = queue.put_nowait, queue.get
    t0 = perf()
    for i in range(n):
        call_later(0.0, put, i)
    for _ in range(n):
        await get()
    return perf() - t0


async def _process_with_timer() -> None:
    suptrace.send_after(3600.0, suptrace.self_pid(), "late")
    await suptrace.receive(lambda m: m == "stop")


def timer_impls(cfg: Config) -> tuple[list[Impl], list[Impl]]:
    n = cfg.timer_n
    arm = [
        Impl("asyncio call_later+cancel", asyncio_timer_arm_cancel, n, "one loop timer"),
        Impl("suptrace send_after+cancel_timer", suptrace_timer_arm_cancel, n, "owned by the process"),
    ]
    fire = [
        Impl("asyncio call_later(0) -> Queue", asyncio_timer_fire, n, "arm N, get N"),
        Impl("suptrace send_after(0) -> receive", suptrace_timer_fire, n, "arm N, receive N"),
    ]
    return arm, fire


async def suptrace_timed_processes(n: int) -> float:
    """Bytes per process for ``n`` processes each blocked in ``receive()`` with a
    pending ``send_after`` timer (tracemalloc); they then exit and their timers die."""
    pids: list[Any] = [None] * n
    spawn = suptrace.spawn
    _trim()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        pids[i] = spawn(_process_with_timer)
    for _ in range(3):
        await asyncio.sleep(0)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    info = suptrace.process_info(pids[-1]) or {}
    assert info.get("status") == "waiting", info.get("status")
    for pid in pids:
        suptrace.send(pid, "stop")
    last = pids[-1]
    del pids
    await _settle(lambda: not suptrace.is_alive(last), "the timed processes' exit")
    return (after - before) / n


async def measure_timers(cfg: Config, results: list[Result]) -> None:
    arm, fire = timer_impls(cfg)
    await measure("timers arm+cancel", arm, cfg.repeats, arm[0].name, results)
    await measure("timers fire", fire, cfg.repeats, fire[0].name, results)
    n = cfg.timer_n
    idle = Result("timers memory", "suptrace receive() (tracemalloc)", "B/proc", n)
    timed = Result(
        "timers memory",
        "... plus a pending send_after",
        "B/proc",
        n,
        baseline=idle.impl,
        note="the difference is what a timer costs",
    )
    idle.baseline = idle.impl
    log(f"[timers memory] {n} processes, with and without a pending timer")
    await suptrace_idle(n, False)  # warm-up: grow the shared containers first
    for _ in range(cfg.mem_repeats):
        idle.samples.append(await suptrace_idle(n, True))
        timed.samples.append(await suptrace_timed_processes(n))
    results.extend([idle, timed])


# -- memory ----------------------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _trim() -> None:
    """Collect garbage and hand free heap pages back to the OS, so RSS deltas start clean."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


async def _idle_process() -> None:
    await suptrace.receive()


async def _idle_task(fut: asyncio.Future[None]) -> None:
    await fut


async def _settle(ready: Callable[[], bool], what: str) -> None:
    for _ in range(100):
        await asyncio.sleep(0)
        if ready():
            return
    raise RuntimeError(f"{what} did not happen within 100 loop iterations")


async def suptrace_idle(n: int, traced: bool) -> float:
    """Bytes per process for ``n`` processes blocked in ``receive()``."""
    pids: list[Any] = [None] * n  # allocated before measuring: not part of the figure
    spawn = suptrace.spawn
    _trim()
    if traced:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = _rss()
    for i in range(n):
        pids[i] = spawn(_idle_process)
    for _ in range(3):  # one loop iteration starts them all; two more for good measure
        await asyncio.sleep(0)
    after = tracemalloc.get_traced_memory()[0] if traced else _rss()
    if traced:
        tracemalloc.stop()
    info = suptrace.process_info(pids[-1]) or {}
    assert info.get("status") == "waiting", info.get("status")
    for pid in pids:
        suptrace.send(pid, "stop")
    last = pids[-1]
    del pids
    await _settle(lambda: not suptrace.is_alive(last), "the idle processes' exit")
    return (after - before) / n


async def asyncio_idle(n: int, traced: bool) -> float:
    """Bytes per task for ``n`` plain tasks blocked on their own Future."""
    loop = asyncio.get_running_loop()
    futs: list[Any] = [None] * n
    tasks: list[Any] = [None] * n
    _trim()
    if traced:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = _rss()
    for i in range(n):
        fut = futs[i] = loop.create_future()
        tasks[i] = loop.create_task(_idle_task(fut))
    for _ in range(3):
        await asyncio.sleep(0)
    after = tracemalloc.get_traced_memory()[0] if traced else _rss()
    if traced:
        tracemalloc.stop()
    state = inspect.getcoroutinestate(tasks[-1].get_coro())
    assert state == inspect.CORO_SUSPENDED, state
    for fut in futs:
        fut.set_result(None)
    await asyncio.gather(*tasks)
    del futs, tasks
    return (after - before) / n


async def _rss_probe(who: str, n: int, bare: bool) -> float:
    """RSS per idle process/task, measured in a fresh interpreter (a clean heap).

    In this process, memory freed by earlier workloads sits in the allocator's free
    pools and would be reused, so an RSS delta here reads low by an arbitrary amount.
    """
    cmd = [sys.executable, os.path.abspath(__file__), "--rss-probe", who, "--probe-n", str(n)]
    if bare:
        cmd.append("--bare")
    child = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"RSS probe failed: {err.decode(errors='replace')[-500:]}")
    return float(out.decode().split()[-1])


async def measure_memory(cfg: Config, results: list[Result], bare: bool) -> None:
    n = cfg.mem_n
    rows = {
        ("asyncio", True): Result("memory", "asyncio task on a Future (tracemalloc)", "B/proc", n),
        ("suptrace", True): Result("memory", "suptrace receive() (tracemalloc)", "B/proc", n),
        ("asyncio", False): Result(
            "memory", "asyncio task on a Future (RSS)", "B/proc", n, note="fresh interpreter"
        ),
        ("suptrace", False): Result(
            "memory", "suptrace receive() (RSS)", "B/proc", n, note="fresh interpreter"
        ),
    }
    for who in ("asyncio", "suptrace"):
        for traced in (True, False):
            rows[(who, traced)].baseline = rows[("asyncio", traced)].impl
    # One untraced pass each first: the containers both sides share (asyncio's task
    # registry, the allocator's arenas) are then already grown, so neither pays for
    # that growth just because it happened to go first.
    log(f"[memory] warming up ({n} idle processes and tasks)")
    await asyncio_idle(n, False)
    await suptrace_idle(n, False)
    for r in range(cfg.mem_repeats):
        order = [("asyncio", asyncio_idle), ("suptrace", suptrace_idle)]
        if r % 2:
            order.reverse()
        for who, fn in order:
            log(f"[memory] {who}: {n} idle, tracemalloc")
            rows[(who, True)].samples.append(await fn(n, True))
        for who, _ in order:
            log(f"[memory] {who}: {n} idle, RSS in a fresh interpreter")
            try:
                rows[(who, False)].samples.append(await _rss_probe(who, n, bare))
            except (OSError, RuntimeError, ValueError) as exc:
                rows[(who, False)].skipped = f"{type(exc).__name__}: {exc}"
                log(f"[memory] {who}: RSS probe skipped ({rows[(who, False)].skipped})")
    results.extend(rows.values())


# -- driver ----------------------------------------------------------------------------------


async def bench_main(cfg: Config, only: set[str] | None, bare: bool) -> list[Result]:
    results: list[Result] = []

    def wanted(name: str) -> bool:
        return only is None or name in only

    if wanted("call"):
        pykka_calls, _ = pykka_impls(cfg)
        otpy_calls, _ = otpylib_impls(cfg)
        trio_calls, _ = triotp_impls(cfg)
        impls = [
            Impl(
                "asyncio Queue+Future",
                asyncio_call,
                cfg.call_n,
                "server task, client awaits Future",
            ),
            Impl(
                "asyncio mailbox floor",
                mailbox_floor_call,
                cfg.call_n,
                "suptrace's call design, no bookkeeping",
            ),
            *suptrace_call_impls(cfg),
            *pykka_calls,
            *otpy_calls,
            *trio_calls,
        ]
        await measure("call", impls, cfg.repeats, "asyncio Queue+Future", results)
    if wanted("one-way"):
        _, pykka_sends = pykka_impls(cfg)
        _, otpy_sends = otpylib_impls(cfg)
        _, trio_sends = triotp_impls(cfg)
        impls = [
            Impl("asyncio Queue", asyncio_send, cfg.send_n, "put_nowait x N / get x N"),
            Impl("suptrace send/receive", suptrace_send, cfg.send_n, "process -> process"),
            suptrace_cast_impl(cfg),
            *pykka_sends,
            *otpy_sends,
            *trio_sends,
        ]
        await measure("one-way", impls, cfg.repeats, "asyncio Queue", results)
    if wanted("spawn"):
        impls = [
            Impl("asyncio await create_task", asyncio_spawn, cfg.spawn_n, "one at a time"),
            Impl(
                "suptrace spawn_monitor+Down", suptrace_spawn_monitor, cfg.spawn_n, "one at a time"
            ),
            Impl(
                "suptrace spawn_link+ExitMsg",
                suptrace_spawn_link_trap,
                cfg.spawn_n,
                "trap_exit(True)",
            ),
        ]
        await measure("spawn", impls, cfg.repeats, "asyncio await create_task", results)
        batch = spawn_batch_impls(cfg)
        await measure("spawn batch", batch[:2], cfg.repeats, batch[0].name, results)
        await measure("spawn fire+forget", batch[2:], cfg.repeats, batch[2].name, results)
    if wanted("memory"):
        await measure_memory(cfg, results, bare)
    if wanted("timers"):
        await measure_timers(cfg, results)
    return results


def _by(results: list[Result], workload: str, impl: str) -> Result | None:
    for row in results:
        if row.workload == workload and row.impl == impl:
            return row
    return None


def ratio(results: list[Result], row: Result, other: str | None) -> float | None:
    if other is None:
        return None
    base = _by(results, row.workload, other)
    if base is None or base.best is None or row.best is None:
        return None
    return row.best / base.best


def check_targets(results: list[Result]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for workload, impl, other, minimum in SPEED_TARGETS:
        row = _by(results, workload, impl)
        if row is None:
            continue
        got = ratio(results, row, other)
        checks.append(
            {
                "target": f"{impl} >= {minimum:g}x {other}",
                "measured": None if got is None else round(got, 3),
                "status": "n/a" if got is None else ("PASS" if got >= minimum else "MISS"),
            }
        )
    for how in ("tracemalloc", "RSS"):
        row = _by(results, "memory", f"suptrace receive() ({how})")
        if row is None or row.best is None:
            continue
        checks.append(
            {
                "target": f"idle process <= {MEMORY_TARGET} B ({how})",
                "measured": round(row.best),
                "status": "PASS" if row.best <= MEMORY_TARGET else "MISS",
            }
        )
    return checks


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "B/proc":
        return f"{value:,.0f} B"
    return f"{value:,.0f}/s"


def print_report(results: list[Result], checks: list[dict[str, Any]], env: dict[str, Any]) -> None:
    print()
    print(
        f"suptrace {env['suptrace']} from {env['source']} ({env['commit']}), "
        f"Python {env['python']}, "
        f"{env['cpus']} CPUs, {env['mode']} run, best of {env['repeats']}, "
        f"node options: {env['node_options']}"
    )
    print(
        f"1-minute load average: {env['load_before']} at the start, {env['load_after']} at "
        "the end (the run itself adds about 1; more means other work shared the CPUs)"
    )
    header = (
        f"{'workload':<18} {'implementation':<40} {'best':>14} {'median':>14} {'vs base':>8}  note"
    )
    print(header)
    print("-" * len(header))
    for row in results:
        if row.skipped and not row.samples:
            print(
                f"{row.workload:<18} {row.impl:<40} {'skipped':>14} {'':>14} {'':>8}  {row.skipped}"
            )
            continue
        r = ratio(results, row, row.baseline) if row.baseline != row.impl else None
        rtext = "base" if row.baseline == row.impl else ("-" if r is None else f"{r:.2f}x")
        print(
            f"{row.workload:<18} {row.impl:<40} {_fmt(row.best, row.unit):>14} "
            f"{_fmt(row.median, row.unit):>14} {rtext:>8}  {row.note}"
        )
    print()
    print("targets")
    for check in checks:
        measured = check["measured"]
        text = (
            "-"
            if measured is None
            else (f"{measured}" if "B" in check["target"] else f"{measured:.2f}x")
        )
        print(f"  {check['status']:<5} {check['target']:<70} measured {text}")


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def environment(cfg: Config, quick: bool) -> dict[str, Any]:
    # Where suptrace was imported from (PYTHONPATH can point at another checkout).
    source = os.path.dirname(os.path.dirname(os.path.abspath(suptrace.__file__)))
    try:
        commit = (
            subprocess.run(
                ["git", "-C", source, "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
            or "not a git checkout"
        )
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {
        "suptrace": suptrace.__version__,
        "source": source,
        "commit": commit,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "mode": "quick" if quick else "full",
        "repeats": cfg.repeats,
        "config": asdict(cfg),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "load_before": _load(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, 3 repeats")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--repeats", type=int, help="timed repeats per implementation")
    parser.add_argument(
        "--only",
        action="append",
        choices=["call", "one-way", "spawn", "memory", "timers"],
        help="run only this workload (repeatable)",
    )
    parser.add_argument(
        "--bare",
        action="store_true",
        help="run the node without its flight recorder, system monitor and reports "
        "(to see what those defaults cost)",
    )
    parser.add_argument("--rss-probe", choices=["asyncio", "suptrace"], help=argparse.SUPPRESS)
    parser.add_argument("--probe-n", type=int, default=100_000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    node_opts = BARE_NODE if args.bare else {}
    if args.rss_probe:
        probe = suptrace_idle if args.rss_probe == "suptrace" else asyncio_idle
        print(suptrace.run(probe, args.probe_n, False, **node_opts))
        return 0
    cfg = QUICK if args.quick else FULL
    if args.repeats:
        cfg = Config(**{**asdict(cfg), "repeats": args.repeats})
    env = environment(cfg, args.quick)
    env["node_options"] = node_opts or "defaults"
    only = set(args.only) if args.only else None
    results = suptrace.run(bench_main, cfg, only, args.bare, **node_opts)
    env["load_after"] = _load()
    checks = check_targets(results)
    print_report(results, checks, env)
    if args.json:
        payload = {
            "environment": env,
            "results": [
                {
                    **asdict(row),
                    "best": row.best,
                    "median": row.median,
                    "ratio_vs_base": ratio(results, row, row.baseline),
                }
                for row in results
            ],
            "targets": checks,
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2, default=str)
        log(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
