"""A node whose workers use the clocks and len() all the time, for the tests that
trace those functions live and kill workers with hostile exit reasons.

    python deaths_node.py --name NAME

Tree::

    app.sup (one_for_one, intensity 50 in 3600s)
    ├── app.ticker.a   worker: calls time.time(), time.monotonic() and len() in a loop;
    ├── app.ticker.b       crashes on "crash", exits with a hostile reason on ("die", KIND)
    └── app.driver     runs the commands below (so they come from a process)

Every report is printed on stdout as ``report TYPE CONTEXT NAME-OR-ID``.

Commands (each answered on stdout with ``done <command>`` once carried out):

    crash X        app.ticker.X crashes and its supervisor has handled it (restart done)
    hostile KIND   app.ticker.a exits with the hostile reason KIND (restart done), and
                   an unsupervised process registered as gone.KIND exits with it too
    quit           stop the node (also on EOF)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import suptrace
from suptrace import ChildSpec, Supervisor


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ refuses")


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ refuses")


def hostile(kind: str) -> BaseException:
    """The exception a worker dies of, for each hostile reason of the tests."""
    if kind == "str":
        return BadStr("never shown")
    if kind == "repr":
        return suptrace.Exit(BadRepr())
    if kind == "bigint":
        return suptrace.Exit(10**5000)
    if kind == "huge":
        return ValueError("m" * 100_000_000)
    if kind == "selfref":
        loop: list[Any] = []
        loop.append(loop)
        return suptrace.Exit(loop)
    raise SystemExit(f"unknown hostile reason {kind!r}")


async def ticker() -> None:
    ticks: list[float] = []
    while True:
        try:
            msg = await suptrace.receive(timeout=0.005)
        except TimeoutError:
            ticks.append(time.time() - time.monotonic())
            if len(ticks) > 100:
                ticks.clear()
            continue
        if msg == "crash":
            raise RuntimeError("ticker was told to crash")
        if isinstance(msg, tuple) and msg[0] == "die":
            raise hostile(msg[1])


async def doomed(kind: str) -> None:
    raise hostile(kind)


async def _restart(name: str, action: Any) -> None:
    pid = suptrace.whereis(name)
    assert pid is not None, f"{name} is not running"
    ref = suptrace.monitor(pid)
    suptrace.send(pid, action)
    await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)
    # Asking the supervisor waits until it has handled the exit (the restart is done).
    await suptrace.which_children("app.sup")


async def driver() -> None:
    while True:
        cmd, arg, reply_to = await suptrace.receive()
        if cmd == "crash":
            await _restart(f"app.ticker.{arg}", "crash")
        elif cmd == "hostile":
            await _restart("app.ticker.a", ("die", arg))
            _, ref = suptrace.spawn_monitor(doomed, arg, name=f"gone.{arg}")
            await suptrace.receive(lambda m, r=ref: isinstance(m, suptrace.Down) and m.ref == r)
        reply_to.set_result(None)


async def start(fn: Any, name: str) -> suptrace.Pid:
    return suptrace.spawn_link(fn, name=name)


def _print_report(report: Any) -> None:
    context = getattr(report, "context", "-")
    who = getattr(report, "name", None) or (getattr(report, "offender", None) or {}).get("id")
    print(f"report {type(report).__name__} {context} {who}", flush=True)


async def main() -> None:
    suptrace.add_report_handler(_print_report)
    children = [
        ChildSpec(id="a", start=(start, (ticker, "app.ticker.a"))),
        ChildSpec(id="b", start=(start, (ticker, "app.ticker.b"))),
        ChildSpec(id="driver", start=(start, (driver, "app.driver"))),
    ]
    await Supervisor.start_link(children, intensity=50, period=3600, name="app.sup")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True}), flush=True)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        cmd, _, arg = line.partition(" ")
        done = loop.create_future()
        suptrace.send("app.driver", (cmd, arg, done))
        await done
        print(f"done {line}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    opts = parser.parse_args()
    suptrace.run(main, node=opts.name, log_reports=True, system_monitor=False)
