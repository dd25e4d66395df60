"""Deadlines for calls, cheap for the common case.

Almost every `call` is answered long before its timeout, so giving each one a
loop timer (a heap push, a cancel and a lazy heap pop) is most of its cost, and
even reading the clock for it is measurable. Here a new deadline is only
appended to a list (the pending call itself, which knows its future and its
timeout): no clock read, no allocation. A sweep ``SWEEP`` seconds after the
first of them drops the ones whose future is done and gives the survivors a
deadline of *sweep time + timeout* in a heap, whose earliest entry gets the one
real loop timer. A deadline therefore never fires early and at most ``SWEEP``
late (5 ms on a timeout of at least ``PRECISE_BELOW``, 100 ms; the default call
timeout is 5 s). Shorter timeouts get a loop timer of their own, exact.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Any, Protocol

__all__ = ["EXPIRED", "PRECISE_BELOW", "SWEEP", "Deadlines", "Pending", "expire"]


class _Expired:
    __slots__ = ()

    def __repr__(self) -> str:
        return "EXPIRED"


#: The result a deadline sets on a future that was still pending.
EXPIRED: Any = _Expired()

#: Seconds from the first young deadline to the sweep that files it.
SWEEP = 0.005
#: Timeouts shorter than this get an exact loop timer of their own.
PRECISE_BELOW = 0.1


class Pending(Protocol):
    """What the young list holds: a future and its timeout (a pending call is one)."""

    future: asyncio.Future[Any]
    timeout: float | None


class _Entry:
    __slots__ = ("future", "timeout")

    def __init__(self, future: asyncio.Future[Any], timeout: float) -> None:
        self.future = future
        self.timeout: float | None = timeout


def expire(fut: asyncio.Future[Any]) -> None:
    """Set `EXPIRED` on ``fut`` unless it is done: the one timeout of calls and receives."""
    if not fut.done():
        fut.set_result(EXPIRED)


class Deadlines:
    """Set `EXPIRED` on futures still pending at their deadline.

    The hot path (`call`) appends to `young` itself and calls `start_sweep` when
    the list was empty; everything else uses `add`.
    """

    #: Compact the heap when it holds this many entries and most are done.
    COMPACT_AT = 1024

    __slots__ = ("_clock", "_heap", "_heap_timer", "_heap_when", "_seq", "_sweeper", "loop", "young")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: Deadlines not yet filed: appended to by `call`, emptied by each sweep.
        self.young: list[Pending] = []
        self._heap: list[tuple[float, int, asyncio.Future[Any]]] = []
        self._seq = itertools.count()
        self._sweeper: asyncio.TimerHandle | None = None
        self._heap_timer: asyncio.TimerHandle | None = None
        self._heap_when = 0.0
        #: The loop's clock: `time.monotonic` itself when the loop's ``time()`` is
        #: asyncio's own (one C call instead of a Python method around it).
        self._clock: Any = (
            time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        )

    def add(self, timeout: float, fut: asyncio.Future[Any]) -> asyncio.TimerHandle | None:
        """Expire ``fut`` after ``timeout`` seconds. Returns a handle to cancel
        only for short timeouts; otherwise a done future is simply forgotten."""
        if timeout < PRECISE_BELOW:
            return self.loop.call_later(timeout, expire, fut)
        if not self.young:
            self.start_sweep()
        self.young.append(_Entry(fut, timeout))
        return None

    def start_sweep(self) -> None:
        """Arm the sweep that files the young deadlines (call it when `young` was empty)."""
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(SWEEP, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._clock()
        heap = self._heap
        young, self.young = self.young, []
        seq = self._seq
        for entry in young:
            fut = entry.future
            if not fut.done():
                heapq.heappush(heap, (now + entry.timeout, next(seq), fut))
        self._expire_due(now)

    def _on_heap_timer(self) -> None:
        self._heap_timer = None
        self._expire_due(self._clock())

    def _expire_due(self, now: float) -> None:
        heap = self._heap
        while heap and (heap[0][2].done() or heap[0][0] <= now + 1e-6):
            _, _, fut = heapq.heappop(heap)
            if not fut.done():
                fut.set_result(EXPIRED)
        if len(heap) >= self.COMPACT_AT:
            live = [entry for entry in heap if not entry[2].done()]
            if len(live) * 2 < len(heap):
                heapq.heapify(live)
                self._heap = heap = live
        if heap:
            when = heap[0][0]
            timer = self._heap_timer
            if timer is not None:
                if self._heap_when <= when:
                    return  # already armed early enough
                timer.cancel()
            self._heap_when = when
            self._heap_timer = self.loop.call_at(when, self._on_heap_timer)
        elif self._heap_timer is not None:
            self._heap_timer.cancel()
            self._heap_timer = None
