"""What a burst of connections to the control socket costs the application.

    python bench/control.py             # 3,000 rapid connect/close on the Unix socket
    python bench/control.py --quick     # smoke run: 300 connections, short windows
    python bench/control.py --target tcp --connections 5000 --json out.json

A node runs a message workload: one process calls an Echo GenServer in a loop
(`suptrace.call`, a round trip through two mailboxes and two loop turns each).
Another OS process (so it has its own interpreter and GIL) then connects to
the node's control socket and closes at once, as fast as it can, N times; with
``--target tcp`` it does so on the node's TCP listener (an unauthenticated
peer), with ``both`` it alternates.

Printed:

* the workload's rate (calls per wall-clock second) in a window without the
  burst, and during the burst (from the attacker's first connect to its last),
  and their ratio -- target >= 0.8x;
* the same per CPU-second of the loop's thread (``time.thread_time()``): the
  share of the loop the burst leaves to the workload, which other processes
  taking a core away (the attacker itself, on a small machine) do not blur;
* the longest loop stall in each window: a plain task sleeps 1 ms again and
  again and records how late it wakes up;
* the burst itself: connections per second, and what the node's control
  server counted (accepted, refused).

Wall-clock figures on a shared machine are noisy: take them on a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import suptrace

ATTACKER = r"""
import socket, sys, time
target, n = sys.argv[1], int(sys.argv[2])
kinds = {"unix": ["unix"], "tcp": ["tcp"], "both": ["unix", "tcp"]}[sys.argv[3]]
path, tcp = sys.argv[4], sys.argv[5]
host, _, port = tcp.rpartition(":")
print("go", flush=True)
start = time.perf_counter()
done = failed = 0
while done < n:
    kind = kinds[done % len(kinds)]
    try:
        if kind == "unix":
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
        else:
            s = socket.create_connection((host, int(port)))
    except OSError:
        failed += 1  # a full backlog: knock again
        continue
    s.close()
    done += 1
print("done", done, failed, time.perf_counter() - start, flush=True)
"""


class Echo(suptrace.GenServer):
    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        return request


class StallMonitor:
    """How late a 1 ms sleep wakes up: the longest time the loop was held."""

    def __init__(self) -> None:
        self.longest = 0.0

    async def run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            self.longest = max(self.longest, time.perf_counter() - start - 0.001)


async def _window(counter: list[int], stall: StallMonitor, seconds: float) -> dict[str, float]:
    stall.longest = 0.0
    c0, t0, cpu0 = counter[0], time.perf_counter(), time.thread_time()
    await asyncio.sleep(seconds)  # measuring over a window of wall time
    return _figures(counter[0] - c0, time.perf_counter() - t0, time.thread_time() - cpu0, stall)


def _figures(calls: int, wall: float, cpu: float, stall: StallMonitor) -> dict[str, float]:
    return {
        "rate": calls / wall,
        "cpu_rate": calls / max(cpu, 1e-9),
        "stall_ms": stall.longest * 1000,
        "seconds": wall,
        "cpu_seconds": cpu,
    }


async def _bench(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        server = await Echo.start()
        counter = [0]

        async def worker() -> None:
            call = suptrace.call
            i = 0
            while True:
                await call(server, i)
                counter[0] += 1
                i += 1

        suptrace.spawn(worker)
        stall = StallMonitor()
        monitor = asyncio.get_running_loop().create_task(stall.run())
        await _window(counter, stall, args.warmup)
        before = await _window(counter, stall, args.window)
        control = node.control
        assert control is not None and control.path is not None
        tcp = f"{control.tcp_address[0]}:{control.tcp_address[1]}" if control.tcp_address else ""
        accepted0, refused0 = control.accepted, control.refused
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            ATTACKER,
            "x",
            str(args.connections),
            args.target,
            str(control.path),
            tcp or "127.0.0.1:0",
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        await proc.stdout.readline()  # "go": the attacker is about to connect
        stall.longest = 0.0
        c0, t0, cpu0 = counter[0], time.perf_counter(), time.thread_time()
        line = (await proc.stdout.readline()).decode().split()
        during = _figures(
            counter[0] - c0, time.perf_counter() - t0, time.thread_time() - cpu0, stall
        )
        await proc.wait()
        after = await _window(counter, stall, args.window)
        monitor.cancel()
        return {
            "before": before,
            "during": during,
            "after": after,
            "connections": int(line[1]),
            "connect_failures": int(line[2]),
            "attacker_seconds": float(line[3]),
            "accepted": control.accepted - accepted0,
            "refused": control.refused - refused0,
        }

    control: dict[str, Any] = {"runtime_dir": str(run_dir)}
    if args.accept_rate:
        control["accept_rate"] = args.accept_rate
    if args.target != "unix":
        control.update(tcp=True, cookie_file=str(run_dir.parent / "cookie"))
    async with suptrace.Node(
        "bench-control", log_reports=False, system_monitor=False, telemetry=False, control=control
    ) as node:
        return await node.run_root(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 connections")
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--target", choices=("unix", "tcp", "both"), default="unix")
    parser.add_argument("--accept-rate", type=float, help="the node's accept_rate option")
    parser.add_argument("--window", type=float, default=2.0, help="seconds of a quiet window")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.connections = min(args.connections, 300)
        args.window = min(args.window, 0.5)
    args.warmup = 0.2 if args.quick else 0.5
    with tempfile.TemporaryDirectory(prefix="st-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        result = asyncio.run(_bench(args, run_dir))
    before, during, after = result["before"], result["during"], result["after"]
    ratio = during["rate"] / before["rate"] if before["rate"] else 0.0
    cpu_ratio = during["cpu_rate"] / before["cpu_rate"] if before["cpu_rate"] else 0.0
    mark = "✓" if ratio >= 0.8 else "✗"
    cpu_mark = "✓" if cpu_ratio >= 0.8 else "✗"
    print(
        f"control socket: {result['connections']:,} rapid connect/close ({args.target}) "
        "against a node running a call loop"
    )
    print(f"python {platform.python_version()} on {platform.machine()}, pid {os.getpid()}")
    print(f"{'':28}{'before':>12}{'during burst':>14}{'after':>12}")
    print(
        f"{'workload (calls/s)':28}{before['rate']:>12,.0f}{during['rate']:>14,.0f}"
        f"{after['rate']:>12,.0f}"
    )
    print(
        f"{'workload (calls/CPU-s)':28}{before['cpu_rate']:>12,.0f}{during['cpu_rate']:>14,.0f}"
        f"{after['cpu_rate']:>12,.0f}"
    )
    print(
        f"{'longest loop stall (ms)':28}{before['stall_ms']:>12.1f}{during['stall_ms']:>14.1f}"
        f"{after['stall_ms']:>12.1f}"
    )
    print(f"rate during the burst: {ratio:.2f}x of before (target >= 0.8x) {mark}")
    print(
        f"per CPU-second of the node's loop: {cpu_ratio:.2f}x of before (target >= 0.8x) "
        f"{cpu_mark}  (the share of the loop the burst left to the workload)"
    )
    print(
        f"burst: {result['connections']:,} connections in {during['seconds']:.2f}s "
        f"({result['connections'] / max(during['seconds'], 1e-9):,.0f}/s, "
        f"{result['connect_failures']:,} connects refused by a full backlog); "
        f"the node accepted {result['accepted']:,}, refused {result['refused']:,}"
    )
    if args.json:
        result["ratio"] = ratio
        result["cpu_ratio"] = cpu_ratio
        result["target"] = args.target
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
