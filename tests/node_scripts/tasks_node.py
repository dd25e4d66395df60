"""A node whose loop runs plain asyncio tasks next to its processes, driven on stdin.

    python tasks_node.py --name NAME

Plain tasks it starts (none of them a process)::

    fetcher             awaits an asyncio.Event that is never set
    waiter              awaits the fetcher task
    part-1, part-2      sleep for an hour
    gatherer            awaits asyncio.gather(part-1, part-2)
    twin, twin          two tasks with the same name

and one process, ``tasks.worker``. Commands (each answered with ``done <command>``):

    lose        start a task "doomed" that raises and that nobody keeps or awaits
    handler     set an exception handler of the application's own (after the node started)
    quit        stop the node (also on EOF)

Every report the node makes is printed as a JSON line ``{"report": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import suptrace


async def fetcher(gate: asyncio.Event) -> None:
    await gate.wait()


async def waiter(task: asyncio.Task[None]) -> None:
    await task


async def part() -> None:
    await asyncio.sleep(3600)


async def gatherer(a: asyncio.Task[None], b: asyncio.Task[None]) -> None:
    await asyncio.gather(a, b)


async def doomed() -> None:
    await asyncio.sleep(0)
    raise ValueError("the price feed went away")


async def worker() -> None:
    await suptrace.receive()


def show(report: Any) -> None:
    data: dict[str, Any] = {"type": type(report).__name__}
    if isinstance(report, suptrace.TaskCrashReport):
        data.update(task=report.task, reason=repr(report.reason), text=suptrace.format_report(report))
    print(json.dumps({"report": data}), flush=True)


async def main() -> None:
    suptrace.add_report_handler(show)
    suptrace.spawn(worker, name="tasks.worker")
    gate = asyncio.Event()
    keep: list[asyncio.Task[None]] = []
    fetch = asyncio.create_task(fetcher(gate), name="fetcher")
    keep.append(fetch)
    keep.append(asyncio.create_task(waiter(fetch), name="waiter"))
    a = asyncio.create_task(part(), name="part-1")
    b = asyncio.create_task(part(), name="part-2")
    keep += [a, b, asyncio.create_task(gatherer(a, b), name="gatherer")]
    keep += [asyncio.create_task(part(), name="twin") for _ in range(2)]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True, "loop": type(loop).__module__}), flush=True)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        if line == "lose":
            asyncio.create_task(doomed(), name="doomed")  # noqa: RUF006 - nobody keeps it, nobody awaits it
        if line == "handler":
            loop.set_exception_handler(lambda loop, context: print("app handler", flush=True))
        print(f"done {line}", flush=True)
    for task in keep:
        task.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    opts = parser.parse_args()
    if os.environ.get("SUPTRACE_TEST_LOOP") == "uvloop":  # as tests/conftest.py chooses
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    suptrace.run(main, node=opts.name, log_reports=False, system_monitor=False)
