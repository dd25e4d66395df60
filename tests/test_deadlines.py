"""Call deadlines: filed by a sweep, never early, at most one sweep late, nothing kept."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from runtime_support import in_node

import suptrace
from suptrace.core.timers import EXPIRED, PRECISE_BELOW, SWEEP, Deadlines


class Parker(suptrace.GenServer):
    """Answers "ping" at once; parks every other request until told to answer it."""

    async def init(self) -> None:
        self.parked: dict[Any, suptrace.Caller] = {}

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        if request == "ping":
            return "pong"
        if isinstance(request, tuple) and request[0] == "answer":
            parked = self.parked.pop(request[1])
            suptrace.reply(parked, ("answered", request[1]))
            return "ok"
        self.parked[request] = caller
        return suptrace.NOREPLY


def _runtime() -> Any:
    from suptrace.core.runtime import current_runtime

    return current_runtime()


async def test_swept_deadline_is_never_early_and_cleans_up() -> None:
    timeout = PRECISE_BELOW + 0.05  # takes the swept path, not a timer of its own
    async with suptrace.Node("deadlines", log_reports=False):
        pid = await Parker.start(name="parker")
        t0 = time.monotonic()
        with pytest.raises(suptrace.CallTimeout) as info:
            await suptrace.call(pid, "never", timeout=timeout)
        elapsed = time.monotonic() - t0
        assert elapsed >= timeout
        assert info.value.timeout == timeout and info.value.request == "never"
        proc = pid._proc
        assert proc is not None and not proc.monitored_by  # the caller is no longer a watcher
        deadlines = _runtime().deadlines
        assert deadlines.young == [] and deadlines._heap == []
        assert await suptrace.call(pid, "ping") == "pong"  # the server is unaffected


async def test_answered_calls_leave_nothing_behind() -> None:
    async with suptrace.Node("deadlines", log_reports=False):
        pid = await Parker.start()
        for _ in range(500):
            assert await suptrace.call(pid, "ping", timeout=5.0) == "pong"
        deadlines = _runtime().deadlines
        sweeper = deadlines._sweeper
        if sweeper is not None:  # run the pending sweep now rather than wait for it
            sweeper.cancel()
        # A sweep may have filed the call then in flight; this pass drops it, done.
        deadlines._sweep()
        # Every future was done: nothing stays filed, no timer is left armed.
        assert deadlines.young == [] and deadlines._heap == [] and deadlines._heap_timer is None


async def test_a_reply_after_the_sweep_but_before_the_deadline_wins() -> None:
    async def main() -> None:
        pid = await Parker.start()
        me = suptrace.self_pid()

        async def caller() -> None:
            suptrace.send(me, await suptrace.call(pid, "late", timeout=30.0))

        suptrace.spawn(caller)
        # The mailbox is in order: once "ping" is answered, "late" has been parked.
        assert await suptrace.call(pid, "ping", timeout=None) == "pong"
        deadlines = _runtime().deadlines
        assert len(deadlines.young) == 1
        sweeper = deadlines._sweeper
        assert sweeper is not None
        sweeper.cancel()
        deadlines._sweep()  # filed into the heap: it outlived one sweep
        assert len(deadlines._heap) == 1 and deadlines._heap_timer is not None
        assert await suptrace.call(pid, ("answer", "late")) == "ok"
        assert await suptrace.receive(timeout=5) == ("answered", "late")
        deadlines._on_heap_timer()  # a later pass drops the done entry
        assert deadlines._heap == [] and deadlines._heap_timer is None

    await in_node(main)


async def test_an_earlier_deadline_rearms_the_heap_timer() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    far: asyncio.Future[Any] = loop.create_future()
    near: asyncio.Future[Any] = loop.create_future()
    assert deadlines.add(60.0, far) is None
    deadlines._sweep()
    far_timer = deadlines._heap_timer
    assert far_timer is not None
    assert deadlines.add(PRECISE_BELOW, near) is None
    t0 = time.monotonic()
    assert await asyncio.wait_for(near, 5) is EXPIRED
    elapsed = time.monotonic() - t0
    assert elapsed >= PRECISE_BELOW
    assert not far.done() and far_timer.cancelled()
    assert deadlines._heap_timer is not None and deadlines._heap_when > loop.time() + 50
    far.cancel()
    deadlines._on_heap_timer()
    assert deadlines._heap == [] and deadlines._heap_timer is None


async def test_short_timeouts_get_a_timer_of_their_own() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    fut: asyncio.Future[Any] = loop.create_future()
    handle = deadlines.add(PRECISE_BELOW / 4, fut)
    assert handle is not None and deadlines.young == []
    assert await asyncio.wait_for(fut, 5) is EXPIRED
    assert SWEEP < PRECISE_BELOW  # a swept deadline is late by a small share of its timeout
