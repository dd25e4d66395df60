"""Deadlines for calls and receives, cheap for the common case.

Almost every `call` is answered long before its timeout, so giving each one a
loop timer (a heap push, a cancel and a lazy heap pop) is most of its cost.
Here a new deadline is only appended to a list; a sweep every ``SWEEP``
seconds drops the ones whose future is done and moves the survivors into a
heap, whose earliest entry gets the one real loop timer. A deadline therefore
fires on time (the heap timer is exact); it merely pays for a heap entry only
once it has outlived one sweep. Timeouts shorter than ``PRECISE_BELOW`` get a
plain loop timer.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

__all__ = ["Deadlines", "EXPIRED"]


class _Expired:
    __slots__ = ()

    def __repr__(self) -> str:
        return "EXPIRED"


#: The result a deadline sets on a future that was still pending.
EXPIRED: Any = _Expired()


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(EXPIRED)


class Deadlines:
    """Set `EXPIRED` on futures still pending at their deadline."""

    SWEEP = 0.005
    PRECISE_BELOW = 0.02
    #: Compact the heap when it holds this many entries and most are done.
    COMPACT_AT = 1024

    __slots__ = ("_handle", "_heap", "_seq", "_when", "_young", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._young: list[tuple[float, asyncio.Future[Any]]] = []
        self._heap: list[tuple[float, int, asyncio.Future[Any]]] = []
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._when = 0.0

    def add(self, timeout: float, fut: asyncio.Future[Any]) -> asyncio.TimerHandle | None:
        """Expire ``fut`` after ``timeout`` seconds. Returns a handle to cancel
        only for short timeouts; otherwise a done future is simply forgotten."""
        loop = self.loop
        if timeout < self.PRECISE_BELOW:
            return loop.call_later(timeout, _expire, fut)
        now = loop.time()
        self._young.append((now + timeout, fut))
        if self._handle is None or self._when > now + self.SWEEP:
            self._arm(now + self.SWEEP)
        return None

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._when = when
        self._handle = self.loop.call_at(when, self._sweep)

    def _sweep(self) -> None:
        self._handle = None
        now = self.loop.time()
        heap = self._heap
        if self._young:
            young, self._young = self._young, []
            for deadline, fut in young:
                if not fut.done():
                    heapq.heappush(heap, (deadline, next(self._seq), fut))
        while heap and (heap[0][2].done() or heap[0][0] <= now + 1e-6):
            _, _, fut = heapq.heappop(heap)
            if not fut.done():
                fut.set_result(EXPIRED)
        if len(heap) >= self.COMPACT_AT:
            live = [entry for entry in heap if not entry[2].done()]
            if len(live) * 2 < len(heap):
                heapq.heapify(live)
                self._heap = heap = live
        if self._young:
            self._arm(now + self.SWEEP)
        elif heap:
            self._arm(heap[0][0])
