"""The system monitor: who held the event loop, whose mailbox grows.

Tests wait for the monitor's events (an asyncio.Event set from an event
handler); the only sleep is the blocking ``time.sleep`` that is the subject
under test.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import pytest
from runtime_support import in_node, never
from trace_support import EventLog

import suptrace
from suptrace import Pid
from suptrace.observers.sysmon import SystemMonitor

QUIET = {"log": False}


async def blocker() -> None:
    """A process that blocks the loop: sync I/O inside an async function."""
    time.sleep(0.3)  # BLOCKING LINE


async def blocker_that_lives_on() -> None:
    await blocker()
    await never()


def _blocking_line() -> int:
    lines, start = inspect.getsourcelines(blocker)
    return start + next(i for i, text in enumerate(lines) if "# BLOCKING LINE" in text)


async def test_long_schedule_names_the_process_and_the_line() -> None:
    log = EventLog()

    async def main() -> tuple[Pid, Any]:
        suptrace.add_event_handler(log, "long_schedule")
        pid = suptrace.spawn(blocker, name="blocker")
        event = await log.wait_for(lambda e: e.pid == pid, timeout=3)
        return pid, event

    pid, event = await in_node(
        main, system_monitor={"long_schedule": 0.05, "interval": 0.01, **QUIET}
    )
    assert event.kind == "long_schedule" and event.pid == pid and event.name == "blocker"
    assert event.data["duration"] >= 0.2
    last = event.data["stack"][-1]
    assert last.startswith(f"{__file__}:{_blocking_line()} in blocker"), event.data["stack"]
    line = suptrace.format_event(event)
    assert "long_schedule" in line and f"{__file__}:{_blocking_line()}" in line


async def test_long_schedule_reaches_a_tracer_of_that_process() -> None:
    log = EventLog()

    async def main() -> Pid:
        # (A tracer detaches when its process exits; the event is emitted once the
        # loop is free again, so the blocker must still be alive then.)
        pid = suptrace.spawn(blocker_that_lives_on)
        suptrace.trace(pid, ["system"], handler=log)
        await log.wait_for("long_schedule", timeout=3)
        return pid

    pid = await in_node(main, system_monitor={"long_schedule": 0.05, "interval": 0.01, **QUIET})
    assert [(e.kind, e.pid) for e in log.events] == [("long_schedule", pid)]


async def test_large_mailbox_is_reported_once() -> None:
    log = EventLog()
    drain = asyncio.Event()

    async def hoarder(reply_to: Pid) -> None:
        """Lets its mailbox fill until told (through a plain asyncio.Event), then empties it."""
        await drain.wait()
        try:
            while True:
                await suptrace.receive(timeout=0)
        except TimeoutError:
            suptrace.send(reply_to, ("drained", suptrace.self_pid()))
        await never()

    async def fill(pid: Pid, n: int) -> None:
        for i in range(n):
            suptrace.send(pid, i)

    async def main() -> dict[str, int]:
        suptrace.add_event_handler(log, "large_mailbox")
        me = suptrace.self_pid()
        first, second, third = (suptrace.spawn(hoarder, me) for _ in range(3))
        await fill(first, 150)
        event = await log.wait_for(lambda e: e.pid == first)
        assert event.data["size"] >= 101
        # Still over the limit: not said again. A later scan (it flags `second`)
        # has seen `first` again, and stayed silent about it.
        await fill(first, 100)
        await fill(second, 150)
        await log.wait_for(lambda e: e.pid == second)
        counts = {"first_before_drain": len([e for e in log.events if e.pid == first])}
        # Drained below half of the limit, it may be reported again when it refills.
        drain.set()
        await suptrace.receive(lambda m: m == ("drained", first))
        await fill(third, 150)
        await log.wait_for(lambda e: e.pid == third)  # a scan that saw `first` empty
        await fill(first, 150)
        await log.wait_for(lambda e: e.pid == first and e is not event)
        counts["first_total"] = len([e for e in log.events if e.pid == first])
        return counts

    counts = await in_node(
        main,
        system_monitor={"large_mailbox": 100, "scan_every": 0.01, "long_schedule": None, **QUIET},
    )
    assert counts == {"first_before_drain": 1, "first_total": 2}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="long_schedule"):
        SystemMonitor(long_schedule=0)
    with pytest.raises(ValueError, match="large_mailbox"):
        SystemMonitor(large_mailbox=-5)
