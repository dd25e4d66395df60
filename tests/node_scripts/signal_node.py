"""A node that stops on a signal: three servers under a supervisor print when
they start and when their ``terminate`` runs, so a test can check the order.

Usage: signal_node.py NAME [--slow-terminate] [--embedded] [--uvloop]
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import suptrace


class Named(suptrace.GenServer):
    async def init(self, label: str, slow: bool) -> None:
        self.label = label
        self.slow = slow
        suptrace.trap_exit(True)  # so the node's shutdown signal runs terminate
        print(f"started {label}", flush=True)

    async def terminate(self, reason: Any) -> None:
        print(f"terminate {self.label} {reason}", flush=True)
        if self.slow:
            await asyncio.Event().wait()  # never ends: only a second signal helps


async def start_named(label: str, slow: bool) -> suptrace.Pid:
    pid: suptrace.Pid = await Named.start_link(label, slow, name=label)
    return pid


async def main(slow: bool) -> None:
    specs = [
        suptrace.ChildSpec(id=label, start=(start_named, (label, slow and label == "third")))
        for label in ("first", "second", "third")
    ]
    await suptrace.Supervisor.start_link(specs, name="sup")
    print("ready", flush=True)
    await suptrace.receive()  # until the node is stopped


async def embedded(name: str) -> None:
    async with suptrace.Node(name, handle_signals=True, shutdown_timeout=30.0):
        pid = suptrace.spawn(main, False)
        await asyncio.Event().wait()
        print(pid)


if __name__ == "__main__":
    name = sys.argv[1]
    if "--uvloop" in sys.argv:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if "--embedded" in sys.argv:
        asyncio.run(embedded(name))
    else:
        suptrace.run(main, "--slow-terminate" in sys.argv, node=name, shutdown_timeout=30.0)
    print("after run", flush=True)  # never reached: run() raises on a signal
