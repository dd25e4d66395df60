"""What watching a node with ``suptrace top`` costs it: the node's call rate with a
``top`` client attached against the same node with none.

A node in a subprocess runs a steady workload (clients calling a GenServer in a
loop) among a few hundred idle processes, so that each ``top`` answer has real
rows to build. The bench measures the workload's rate in windows: with no
client, with a client asking ``top`` every second (what ``suptrace top`` does),
and every 0.2 s (its shortest ``--interval``), interleaved so drift hits all
alike. It prints each rate and the ratio to the unwatched rate.

    .venv/bin/python bench/top.py            # 5 rounds of 3 s windows
    .venv/bin/python bench/top.py --quick    # 2 rounds of 1 s windows
    .venv/bin/python bench/top.py --json top.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

NODE = r"""
import asyncio, sys
import suptrace
from suptrace import GenServer

calls = 0

class Echo(GenServer):
    async def handle_call(self, request, caller):
        return request

async def client():
    global calls
    while True:
        await suptrace.call("bench.echo", "ping")
        calls += 1

async def idle():
    await suptrace.receive()

async def main(clients, idlers):
    await Echo.start_link(name="bench.echo")
    for i in range(idlers):
        suptrace.spawn(idle, name=f"bench.idle.{i}")
    for _ in range(clients):
        suptrace.spawn(client)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            return
        seconds = float(line)
        before, t0 = calls, loop.time()
        await asyncio.sleep(seconds)  # the measuring window
        print(f"{(calls - before) / (loop.time() - t0):.1f}", flush=True)

suptrace.run(main, int(sys.argv[1]), int(sys.argv[2]), node="bench-top",
             log_reports=False, system_monitor=False, control=True)
"""


class Watcher:
    """A ``top`` client in a thread: one ``top`` request every ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        from suptrace.cli.client import Target

        self.interval = interval
        self.client = Target(node="bench-top").open()
        self.requests = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.client.request("top", {"limit": 2000, "reports": 5})
            self.requests += 1
            self.stop.wait(self.interval)  # pacing the requests, as the view does

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds of 1 s windows")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--window", type=float, default=None, help="seconds per measurement")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--idle", type=int, default=300, help="idle processes shown in top's rows")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    window = args.window or (1.0 if args.quick else 3.0)

    run_dir = Path(tempfile.mkdtemp(prefix="suptrace-bench-top-"))
    os.chmod(run_dir, 0o700)
    os.environ["SUPTRACE_RUNTIME_DIR"] = str(run_dir)
    node = subprocess.Popen(
        [sys.executable, "-c", NODE, str(args.clients), str(args.idle)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert node.stdin is not None and node.stdout is not None
    try:
        if node.stdout.readline().strip() != "ready":
            raise SystemExit("the bench node did not start")

        def measure() -> float:
            assert node.stdin is not None and node.stdout is not None
            node.stdin.write(f"{window}\n")
            node.stdin.flush()
            return float(node.stdout.readline())

        measure()  # warm-up
        configs: dict[str, float | None] = {"unwatched": None, "top 1s": 1.0, "top 0.2s": 0.2}
        rates: dict[str, list[float]] = {name: [] for name in configs}
        requests: dict[str, int] = {name: 0 for name in configs}
        for _ in range(rounds):
            for name, interval in configs.items():
                watcher = Watcher(interval) if interval is not None else None
                try:
                    rates[name].append(measure())
                finally:
                    if watcher is not None:
                        watcher.close()
                        requests[name] += watcher.requests
        base = statistics.median(rates["unwatched"])
        print(f"workload: {args.clients} clients calling a GenServer, {args.idle} idle processes")
        print(f"{'configuration':<12} {'calls/s (median)':>17} {'ratio':>7} {'top requests':>13}")
        result: dict[str, Any] = {"rounds": rounds, "window": window, "configs": {}}
        for name in configs:
            med = statistics.median(rates[name])
            ratio = med / base if base else float("nan")
            print(f"{name:<12} {med:>17,.0f} {ratio:>7.3f} {requests[name]:>13}")
            result["configs"][name] = {
                "rates": rates[name],
                "median": med,
                "ratio": ratio,
                "requests": requests[name],
            }
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
    finally:
        if node.poll() is None:
            try:
                node.stdin.write("quit\n")
                node.stdin.flush()
            except OSError:
                pass
            try:
                node.wait(10)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait(5)


if __name__ == "__main__":
    main()
