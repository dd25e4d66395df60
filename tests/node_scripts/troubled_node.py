"""A node with the troubles ``suptrace doctor`` should find, driven line by line on stdin.

    python troubled_node.py --name NAME [--log-progress] [--crash-report short|full]

Tree::

    app.sup (one_for_one, intensity 100 in 3600s)
    ├── import_sup   supervisor, intensity 20 in 3600s
    │   └── survey   importer.survey: crashes when told to
    ├── feeds_sup    supervisor, intensity 0: gives up at its child's first crash
    │   └── feed     feed.worker: crashes when told to
    ├── db           a GenServer that never answers every third query
    └── poller       queries db with a short timeout

Commands (each answered on stdout with ``done <command>`` once carried out; loguru's
default handler writes the reports to stderr):

    crash N         importer.survey crashes N times (each restart awaited)
    feed N          feed.worker crashes N times: feeds_sup gives up and app.sup restarts it
    poll N          poller makes N calls to db (a third of them time out)
    quit            stop the node (also on EOF)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import suptrace
from suptrace import ChildSpec, GenServer, Supervisor

TIMEOUT = 0.2


class Db(GenServer):
    async def init(self) -> None:
        self.queries = 0

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        self.queries += 1
        if self.queries % 3 == 0:
            return suptrace.NOREPLY  # lost: the caller times out
        return ("rows", request)


async def importer(name: str) -> None:
    while True:
        if await suptrace.receive() == "crash":
            raise RuntimeError(f"{name} file is corrupt")


async def feed() -> None:
    while True:
        if await suptrace.receive() == "crash":
            raise ConnectionError("feed endpoint refused the connection")


async def poller() -> None:
    while True:
        n, done = await suptrace.receive()
        timeouts = 0
        for i in range(n):
            try:
                await suptrace.call("db", ("select", i), timeout=TIMEOUT)
            except suptrace.CallTimeout:
                timeouts += 1
        done.set_result(timeouts)


async def start_importer(name: str) -> suptrace.Pid:
    return suptrace.spawn_link(importer, name, name=f"importer.{name}")


async def start(fn: Any, name: str) -> suptrace.Pid:
    return suptrace.spawn_link(fn, name=name)


def children() -> list[ChildSpec]:
    imports = [ChildSpec(id="survey", start=(start_importer, ("survey",)))]
    feeds = [ChildSpec(id="feed", start=(start, (feed, "feed.worker")))]
    return [
        ChildSpec(
            id="import_sup",
            start=(
                Supervisor.start_link,
                (imports,),
                {"name": "import_sup", "intensity": 20, "period": 3600},
            ),
            type="supervisor",
        ),
        ChildSpec(
            id="feeds_sup",
            start=(Supervisor.start_link, (feeds,), {"name": "feeds_sup", "intensity": 0}),
            type="supervisor",
        ),
        ChildSpec(id="db", start=(Db.start_link, (), {"name": "db"})),
        ChildSpec(id="poller", start=(start, (poller, "poller"))),
    ]


async def crash(name: str, child_id: str, times: int) -> None:
    """Crash the process registered as ``name`` and wait until its supervisor has
    started the child ``child_id`` again (its progress report), ``times`` times."""
    loop = asyncio.get_running_loop()
    for _ in range(times):
        restarted = loop.create_future()

        def on_report(report: Any, fut: asyncio.Future[None] = restarted) -> None:
            if (
                isinstance(report, suptrace.ProgressReport)
                and report.started.get("id") == child_id
                and not fut.done()
            ):
                fut.set_result(None)

        remove = suptrace.add_report_handler(on_report)
        suptrace.send(name, "crash")
        await restarted
        remove()


async def main() -> None:
    await Supervisor.start_link(children(), intensity=100, period=3600, name="app.sup")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        cmd, _, arg = line.partition(" ")
        n = int(arg or 1)
        if cmd == "crash":
            await crash("importer.survey", "survey", n)
        elif cmd == "feed":
            await crash("feed.worker", "feeds_sup", n)
        elif cmd == "poll":
            done = loop.create_future()
            suptrace.send("poller", (n, done))
            print(f"timeouts {await done}", flush=True)
        print(f"done {line}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--log-progress", action="store_true")
    parser.add_argument("--crash-report", default="short")
    opts = parser.parse_args()
    suptrace.run(
        main,
        node=opts.name,
        log_progress=opts.log_progress,
        crash_report=opts.crash_report,
        system_monitor=False,
    )
