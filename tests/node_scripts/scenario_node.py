"""A node for the control and CLI tests, driven line by line on stdin.

    python scenario_node.py --name NAME [--allow-write] [--tcp HOST:PORT --cookie-file F
                            [--certfile C --keyfile K]] [--max-clients N]

Tree::

    app.sup (one_for_one, intensity 5 in 3600s: a restart stays in its window all test long)
    ├── app.echo    worker: takes messages, crashes on "crash"
    ├── app.store   GenServer keeping a counter
    ├── app.pool    supervisor, *transient*, intensity 1 in 5s
    │   ├── app.worker.a
    │   └── app.worker.b
    └── app.driver  worker that runs the commands below (so they come from a process)

Commands (each answered on stdout with ``done <command>`` once carried out):

    send N          app.driver sends N messages ("job", i) to app.echo
    crash           app.echo crashes (and is restarted under the same name)
    breach          app.worker.a crashes twice: app.pool gives up, is not restarted
    flood N         app.driver sends N messages to app.echo as fast as it can
    quit            stop the node (also on EOF or SIGTERM)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

import suptrace
from suptrace import ChildSpec, GenServer, Supervisor


class Store(GenServer):
    async def init(self) -> None:
        self.count = 0
        self.secret_note = "state of app.store"

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        self.count += 1
        return self.count


async def echo() -> None:
    while True:
        msg = await suptrace.receive()
        if msg == "crash":
            raise RuntimeError("echo was told to crash")


async def worker() -> None:
    while True:
        msg = await suptrace.receive()
        if msg == "crash":
            raise RuntimeError("worker was told to crash")


async def driver() -> None:
    while True:
        cmd, arg, reply_to = await suptrace.receive()
        if cmd in ("send", "flood"):
            for i in range(arg):
                suptrace.send("app.echo", ("job", i))
        elif cmd == "crash":
            ref = suptrace.monitor("app.echo")
            suptrace.send("app.echo", "crash")
            await suptrace.receive(lambda m, r=ref: isinstance(m, suptrace.Down) and m.ref == r)
        elif cmd == "breach":
            ref = suptrace.monitor("app.pool")
            for _ in range(2):
                # Asking the pool (not whereis) waits until it has handled the last crash.
                kids = await suptrace.which_children("app.pool")
                pid = next(c.pid for c in kids if c.id == "a")
                wref = suptrace.monitor(pid)
                suptrace.send(pid, "crash")
                await suptrace.receive(
                    lambda m, r=wref: isinstance(m, suptrace.Down) and m.ref == r
                )
            await suptrace.receive(lambda m, r=ref: isinstance(m, suptrace.Down) and m.ref == r)
        reply_to.set_result(None)


async def start(fn: Any, name: str) -> suptrace.Pid:
    return suptrace.spawn_link(fn, name=name)


def children() -> list[ChildSpec]:
    pool = [
        ChildSpec(id="a", start=(start, (worker, "app.worker.a"))),
        ChildSpec(id="b", start=(start, (worker, "app.worker.b"))),
    ]
    return [
        ChildSpec(id="echo", start=(start, (echo, "app.echo"))),
        ChildSpec(id="store", start=(Store.start_link, (), {"name": "app.store"})),
        ChildSpec(
            id="pool",
            start=(
                Supervisor.start_link,
                (pool,),
                {"intensity": 1, "period": 5, "name": "app.pool"},
            ),
            restart="transient",
            type="supervisor",
        ),
        ChildSpec(id="driver", start=(start, (driver, "app.driver"))),
    ]


async def main() -> None:
    await Supervisor.start_link(children(), intensity=5, period=3600, name="app.sup")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": suptrace.whereis("app.sup") is not None}), flush=True)
    while not stop.is_set():
        read = asyncio.ensure_future(reader.readline())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([read, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not read.done():
            read.cancel()
            break
        line = read.result().decode().strip()
        if not line or line == "quit":
            break
        cmd, _, arg = line.partition(" ")
        done = loop.create_future()
        suptrace.send("app.driver", (cmd, int(arg or 0), done))
        await done
        print(f"done {line}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--allow-write", action="store_true")
    parser.add_argument("--tcp")
    parser.add_argument("--cookie-file")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--max-clients", type=int)
    parser.add_argument("--high-water", type=int)
    parser.add_argument("--control-json", help="more control options, as a JSON object")
    opts = parser.parse_args()
    control: dict[str, Any] = {"allow_write": opts.allow_write}
    for key in ("tcp", "cookie_file", "certfile", "keyfile", "max_clients", "high_water"):
        value = getattr(opts, key)
        if value is not None:
            control[key] = value
    control.update(json.loads(opts.control_json or "{}"))
    suptrace.run(main, node=opts.name, log_reports=False, control=control, system_monitor=False)
