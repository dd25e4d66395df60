"""The CopyCat service, scaled down so an incident takes seconds, not days.

Tree (names as in the post)::

    copycat.sup (one_for_one, 3 restarts in 5 s)
    ├── copycat.murmur.repo     Murmur's database (a fake Mongo)
    ├── copycat.eventhub.repo   Event Hub's database (a fake PostgreSQL)
    ├── copycat.import_sup      one_for_one, 3 in 5 s -- transient (the trap) or permanent (the fix)
    │   ├── importer survey_events
    │   ├── importer invitation_events
    │   ├── importer response_events
    │   ├── importer comment_topic_events
    │   └── importer user_events
    └── copycat.router          the HTTP router with the "baby monitor" endpoint
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

import suptrace
from suptrace import ChildSpec, GenServer, Pid, Supervisor

SOURCES = (
    "survey_events",
    "invitation_events",
    "response_events",
    "comment_topic_events",
    "user_events",
)


@dataclass
class Timing:
    """The incident's clock, scaled from production (5 s query timeout) by 1/25."""

    query_timeout: float = 0.2
    poll_interval: float = 0.05
    #: When, after start, the unindexed update begins to hold the collection lock...
    slow_from: float = 0.3
    #: ...and for how long the database stays that slow.
    slow_for: float = 0.6
    #: How long each query holds the lock while the database is slow.
    lock_hold: float = 0.15


@dataclass
class Stats:
    """What the service did, for the example's summary and its tests."""

    fetched: dict[str, int] = field(default_factory=dict)
    last_fetch: float = 0.0
    fetches_after_recovery: int = 0
    recovered_at: float | None = None


class MurmurRepo(GenServer):
    """Murmur's Mongo: one connection, so one slow query blocks every other one."""

    async def init(self, timing: Timing) -> None:
        self.timing = timing
        self.started = time.monotonic()
        self.events = {source: 0 for source in SOURCES}

    def slow(self) -> bool:
        elapsed = time.monotonic() - self.started
        return self.timing.slow_from <= elapsed < self.timing.slow_from + self.timing.slow_for

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        op, source = request[0], request[1]
        if self.slow():
            # The update without an index scans the collection and holds its lock;
            # every query queued behind it waits (this is the database being slow,
            # the subject of the example).
            await asyncio.sleep(self.timing.lock_hold)
        if op == "find":
            self.events[source] += 1
            return [{"source": source, "seq": self.events[source]}]
        if op == "update_all":
            return len(request[2])
        raise ValueError(f"unknown query {request!r}")


class EventHubRepo(GenServer):
    """Event Hub's PostgreSQL: fast and healthy throughout."""

    async def init(self) -> None:
        self.rows: dict[str, int] = {}

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        _op, source, events = request
        self.rows[source] = self.rows.get(source, 0) + len(events)
        return len(events)


class EventImporter(GenServer):
    """Copies one stream of events from Murmur to Event Hub, forever."""

    async def init(self, source: str, timing: Timing, stats: Stats) -> None:
        self.source = source
        self.timing = timing
        self.stats = stats
        suptrace.send(suptrace.self_pid(), "tick")

    async def handle_info(self, msg: Any) -> None:
        if msg != "tick":
            return
        events = await suptrace.call(
            "copycat.murmur.repo", ("find", self.source), timeout=self.timing.query_timeout
        )
        await suptrace.call("copycat.eventhub.repo", ("insert", self.source, events))
        await suptrace.call(
            "copycat.murmur.repo",
            ("update_all", self.source, events),
            timeout=self.timing.query_timeout,
        )
        stats = self.stats
        stats.fetched[self.source] = stats.fetched.get(self.source, 0) + len(events)
        stats.last_fetch = time.monotonic()
        if stats.recovered_at is not None and stats.last_fetch > stats.recovered_at:
            stats.fetches_after_recovery += 1
        logger.info("Fetched {} {} from Murmur", len(events), self.source)
        me = suptrace.self_pid()
        asyncio.get_running_loop().call_later(self.timing.poll_interval, _tick, me)


def _tick(pid: Pid) -> None:
    suptrace.send(pid, "tick")  # to a dead importer: dropped, as Erlang's send_after


class Router(GenServer):
    """The HTTP router; ``GET /importers`` is the team's "baby monitor"."""

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        method, path = request
        if (method, path) != ("GET", "/importers"):
            return 404, "not found"
        try:
            importers = await suptrace.which_children("copycat.import_sup")
        except suptrace.NoProc as e:
            return 500, f"Internal Server Error: {e}"
        return 200, json.dumps({"running_importers": len(importers)})


async def start_import_sup(timing: Timing, stats: Stats) -> Pid:
    children = [
        ChildSpec(id=source, start=(EventImporter.start_link, (source, timing, stats)))
        for source in SOURCES
    ]
    pid: Pid = await Supervisor.start_link(
        children, strategy="one_for_one", intensity=3, period=5, name="copycat.import_sup"
    )
    return pid


def children(timing: Timing, stats: Stats, fixed: bool) -> list[ChildSpec]:
    """The application's child specs; ``fixed`` makes the import supervisor permanent."""
    return [
        ChildSpec(
            id="murmur.repo",
            start=(MurmurRepo.start_link, (timing,), {"name": "copycat.murmur.repo"}),
        ),
        ChildSpec(
            id="eventhub.repo",
            start=(EventHubRepo.start_link, (), {"name": "copycat.eventhub.repo"}),
        ),
        ChildSpec(
            id="import_sup",
            start=(start_import_sup, (timing, stats)),
            restart="permanent" if fixed else "transient",
            type="supervisor",
        ),
        ChildSpec(id="router", start=(Router.start_link, (), {"name": "copycat.router"})),
    ]


async def start(timing: Timing, stats: Stats, fixed: bool = False) -> Pid:
    pid: Pid = await Supervisor.start_link(
        children(timing, stats, fixed),
        strategy="one_for_one",
        intensity=3,
        period=5,
        name="copycat.sup",
    )
    return pid


async def baby_monitor() -> tuple[int, str]:
    """``GET /importers``: how many importers run under the import supervisor."""
    result: tuple[int, str] = await suptrace.call("copycat.router", ("GET", "/importers"))
    return result


#: For ``suptrace doctor examples.copycat.service:SPEC`` (checked without running it).
SPEC = children(Timing(), Stats(), fixed=False)
