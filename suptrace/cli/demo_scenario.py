"""The built-in demo: a small service with the hazards suptrace exists to show.

::

    demo.sup               one_for_one, intensity 3 in 5s
    ├── demo.store         a key-value GenServer
    ├── demo.imports       a *transient* supervisor (intensity 2 in 5s)
    │   ├── demo.importer.survey      fails once the scenario turns failures on
    │   └── demo.importer.invitation
    ├── demo.mailer        handles mail slower than it arrives: its mailbox grows
    ├── demo.newsletter    the producer that floods demo.mailer
    └── demo.reporter      stuck forever in a call demo.store never answers

When the failures start, ``demo.importer.survey`` crashes three times within
its supervisor's window, ``demo.imports`` gives up and exits ``shutdown`` --
a normal exit -- so ``demo.sup``, seeing a transient child end normally, does
not restart it: the whole import subtree is silently gone (the Copy Cat
incident). suptrace reports it as ``not_restarted``.

The scenario is data plus a few process bodies, so the seed examples can
replace it later.
"""

from __future__ import annotations

import asyncio
from typing import Any

import suptrace
from suptrace import NOREPLY, Caller, ChildSpec, GenServer, Supervisor

__all__ = ["Scenario", "start"]

#: Seconds between two steps of the workers (slow enough to watch).
TICK = 0.2


class Scenario:
    """Switches the demo's failures on (from the node's loop)."""

    def __init__(self, crash_delay: float = 0.2) -> None:
        self.failing = asyncio.Event()
        self.crash_delay = crash_delay


class Store(GenServer):
    """Keeps the last value of each key. ``("flush",)`` never gets an answer: a bug."""

    async def init(self) -> None:
        self.data: dict[str, Any] = {}
        self.flushes_waiting = 0

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request[0] == "put":
            self.data[request[1]] = request[2]
            return "ok"
        if request[0] == "get":
            return self.data.get(request[1])
        if request[0] == "flush":
            self.flushes_waiting += 1
            return NOREPLY  # ...and nobody ever replies: the caller waits forever
        raise ValueError(f"unknown request {request!r}")


async def importer(scenario: Scenario, source: str) -> None:
    batch = 0
    while True:
        if source == "survey" and scenario.failing.is_set():
            await asyncio.sleep(scenario.crash_delay)
            raise ConnectionError(f"murmur did not answer the {source} query (timeout)")
        batch += 1
        await suptrace.call("demo.store", ("put", source, batch))
        await asyncio.sleep(TICK)


async def start_importer(scenario: Scenario, source: str) -> suptrace.Pid:
    return suptrace.spawn_link(importer, scenario, source, name=f"demo.importer.{source}")


async def mailer() -> None:
    while True:
        await suptrace.receive()
        await asyncio.sleep(TICK)  # one mail per tick...


async def newsletter() -> None:
    while True:
        for n in range(3):  # ...three new ones per tick
            suptrace.send("demo.mailer", ("mail", n))
        await asyncio.sleep(TICK)


async def reporter() -> None:
    await suptrace.call("demo.store", ("flush",), timeout=None)


async def start_worker(fn: Any, name: str) -> suptrace.Pid:
    return suptrace.spawn_link(fn, name=name)


def children(scenario: Scenario) -> list[ChildSpec]:
    """The demo's tree, as specs (``suptrace doctor`` can check them without running)."""
    importers = [
        ChildSpec(id=source, start=(start_importer, (scenario, source)))
        for source in ("survey", "invitation")
    ]
    return [
        ChildSpec(id="store", start=(Store.start_link, (), {"name": "demo.store"})),
        ChildSpec(
            id="imports",
            start=(
                Supervisor.start_link,
                (importers,),
                {"strategy": "one_for_one", "intensity": 2, "period": 5, "name": "demo.imports"},
            ),
            restart="transient",
            type="supervisor",
        ),
        ChildSpec(id="mailer", start=(start_worker, (mailer, "demo.mailer"))),
        ChildSpec(id="newsletter", start=(start_worker, (newsletter, "demo.newsletter"))),
        ChildSpec(id="reporter", start=(start_worker, (reporter, "demo.reporter"))),
    ]


def spec() -> dict[str, Any]:
    """``suptrace doctor suptrace.cli.demo_scenario:spec`` checks the demo statically."""
    return {
        "children": children(Scenario()),
        "strategy": "one_for_one",
        "intensity": 3,
        "period": 5,
        "name": "demo.sup",
    }


async def start(scenario: Scenario) -> suptrace.Pid:
    """Start the demo tree under ``demo.sup``, linked to the caller."""
    pid: suptrace.Pid = await Supervisor.start_link(
        children(scenario), strategy="one_for_one", intensity=3, period=5, name="demo.sup"
    )
    return pid
