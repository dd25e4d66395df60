"""Helpers for the tracing tests (imported by the test modules; see conftest.py).

* `EventLog` is a handler (for `trace` or `add_event_handler`) that keeps every
  event and lets a test wait for one: a future completed from the handler, no
  sleeping.
* `Echo` and `Silent` are GenServers: one answers with the request, the other
  never answers (the CopyCat repository, stuck on a slow query).
* `traced_procs` lists the processes that still carry a trace hook.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import suptrace
from suptrace import NOREPLY, Caller, GenServer, TraceEvent
from suptrace.core.runtime import Runtime, current_runtime

#: How long a test waits for an event before failing.
WAIT = 2.0


class EventLog:
    """Collects events in arrival order; ``await log.wait_for(...)`` one of them."""

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []
        self._waiters: list[tuple[Callable[[TraceEvent], bool], asyncio.Future[TraceEvent]]] = []

    def __call__(self, event: TraceEvent) -> None:
        self.events.append(event)
        for entry in list(self._waiters):
            match, fut = entry
            if match(event):
                self._waiters.remove(entry)
                if not fut.done():
                    fut.set_result(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of(self, *kinds: str) -> list[TraceEvent]:
        return [e for e in self.events if e.kind in kinds]

    async def wait_for(
        self, match: Callable[[TraceEvent], bool] | str, timeout: float = WAIT
    ) -> TraceEvent:
        """The first event (already seen or still to come) for which ``match`` is true;
        a string matches that event kind."""
        if isinstance(match, str):
            kind = match

            def match(e: TraceEvent) -> bool:
                return e.kind == kind

        for event in self.events:
            if match(event):
                return event
        fut: asyncio.Future[TraceEvent] = asyncio.get_running_loop().create_future()
        self._waiters.append((match, fut))
        return await asyncio.wait_for(fut, timeout)


class Echo(GenServer):
    """Answers every call with its request."""

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        return request

    async def handle_cast(self, msg: Any) -> None:
        pass


class Silent(GenServer):
    """Never answers a call (the caller times out)."""

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        return NOREPLY


async def sink() -> None:
    """A process that takes every message and drops it."""
    receive = suptrace.receive
    while True:
        await receive()


def traced_procs(rt: Runtime | None = None) -> list[Any]:
    """Live processes that still carry a trace hook."""
    rt = rt or current_runtime()
    return [p for p in rt.procs.values() if p.tracers]


def hook_state(rt: Runtime | None = None) -> tuple[Any, ...]:
    """What tracing may add to a node: global hooks, the watched kinds, spawn hooks."""
    rt = rt or current_runtime()
    return (rt.hooks, rt.watch, rt.spawn_hooks)


def subsequence(wanted: Iterable[Any], seen: Iterable[Any]) -> bool:
    """True if ``wanted`` appears in ``seen`` in order (not necessarily adjacent)."""
    it = iter(seen)
    return all(any(w == s for s in it) for w in wanted)
