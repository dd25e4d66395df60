"""Profile the suptrace side of one core workload (and, for contrast, its asyncio baseline).

    python bench/hotpath.py spawn            # cProfile, top functions by own time
    python bench/hotpath.py call --n 50000
    python bench/hotpath.py send --bare      # node without recorder/monitor/reports
    python bench/hotpath.py spawn --pyinstrument   # if pyinstrument is installed
    python bench/hotpath.py spawn --baseline       # profile the plain-asyncio version
    python bench/hotpath.py cast-send              # the sender's side of a cast alone
    python bench/hotpath.py system                 # get_state round trips (system requests)

The workload functions are the ones bench/core.py times, so the profile explains
the figures it prints. Profiling inflates Python-level call costs, so read the
output for where time goes, not for absolute speed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import suptrace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import core  # bench/core.py, next to this file


async def _with_server(run: Callable[[Any], Callable[[int], Awaitable[float]]], n: int) -> None:
    pid = await core.Echo.start()
    try:
        await run(pid)(n)
    finally:
        await suptrace.stop(pid)


def _call(pid: Any) -> Callable[[int], Awaitable[float]]:
    async def go(n: int) -> float:
        call = suptrace.call
        for i in range(n):
            await call(pid, i)
        return 0.0

    return go


def _cast(pid: Any) -> Callable[[int], Awaitable[float]]:
    async def go(n: int) -> float:
        await suptrace.call(pid, ("expect", n, suptrace.self_pid()))
        cast = suptrace.cast
        for i in range(n):
            cast(pid, i)
        await suptrace.receive()
        return 0.0

    return go


def _cast_send(n: int) -> Awaitable[float]:
    """The sender's side of ``n`` casts (post, the request, delivery): the server
    only runs once they are all queued (when it is stopped)."""

    async def go() -> float:
        pid = await core.Echo.start()
        try:
            cast = suptrace.cast
            for i in range(n):
                cast(pid, i)
        finally:
            await suptrace.stop(pid)
        return 0.0

    return go()


def _system(pid: Any) -> Callable[[int], Awaitable[float]]:
    async def go(n: int) -> float:
        get_state = suptrace.get_state
        for _ in range(n):
            await get_state(pid)
        return 0.0

    return go


WORKLOADS: dict[
    str, tuple[Callable[[int], Awaitable[Any]], Callable[[int], Awaitable[Any]], int]
] = {
    "spawn": (core.suptrace_spawn_monitor, core.asyncio_spawn, 20_000),
    "send": (core.suptrace_send, core.asyncio_send, 200_000),
    "call": (lambda n: _with_server(_call, n), core.asyncio_call, 20_000),
    "cast": (lambda n: _with_server(_cast, n), core.asyncio_send, 200_000),
    "cast-send": (_cast_send, core.asyncio_send, 200_000),
    "system": (lambda n: _with_server(_system, n), core.asyncio_call, 20_000),
}


async def profiled(args: argparse.Namespace) -> str:
    suptrace_fn, asyncio_fn, default_n = WORKLOADS[args.workload]
    fn = asyncio_fn if args.baseline else suptrace_fn
    n = args.n or default_n
    await fn(max(1, n // 5))  # warm-up, unprofiled
    if args.pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled", interval=0.001)
        profiler.start()
        await fn(n)
        profiler.stop()
        return str(profiler.output_text(unicode=False, color=False, show_all=False))
    prof = cProfile.Profile()
    prof.enable()
    await fn(n)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(args.top)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--n", type=int, help="operations to profile")
    parser.add_argument("--top", type=int, default=25, help="functions to list")
    parser.add_argument("--bare", action="store_true", help="node without its default observers")
    parser.add_argument("--baseline", action="store_true", help="profile the asyncio version")
    parser.add_argument("--pyinstrument", action="store_true", help="use pyinstrument")
    args = parser.parse_args()
    opts = core.BARE_NODE if args.bare else {}
    print(suptrace.run(profiled, args, **opts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
