"""The system monitor (Erlang's ``erlang:system_monitor``): who held the loop, whose mailbox grows.

* ``long_schedule``: a process step kept the event loop busy longer than
  ``long_schedule`` seconds (blocking code in an ``async def``). A heartbeat on
  the loop measures the gap; a watchdog thread samples the loop thread's stack
  *while* it is blocked, so the event names the process and the line it was
  stuck on.
* ``large_mailbox``: a process's mailbox passed ``large_mailbox`` messages (said
  once until it drains below half of that).

Both are events (kinds ``long_schedule`` and ``large_mailbox``) for tracers and
hooks, and WARNING lines through loguru.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from typing import Any

from suptrace.core.process import Process
from suptrace.core.runtime import Runtime
from suptrace.core.spawn import process_in_stack

__all__ = ["SystemMonitor"]


class SystemMonitor:
    """Watches one node's loop. Attach with `attach`, stop with `detach`."""

    def __init__(
        self,
        long_schedule: float | None = 0.1,
        large_mailbox: int | None = 10_000,
        interval: float = 0.02,
        scan_every: float = 0.5,
        log: bool = True,
    ) -> None:
        if long_schedule is not None and long_schedule <= 0:
            raise ValueError(f"long_schedule must be > 0 seconds or None, got {long_schedule!r}")
        if large_mailbox is not None and large_mailbox <= 0:
            raise ValueError(f"large_mailbox must be > 0 or None, got {large_mailbox!r}")
        self.long_schedule = long_schedule
        self.large_mailbox = large_mailbox
        self.interval = interval
        self.scan_every = scan_every
        self.log = log
        self.long_schedules = 0
        self.large_mailboxes = 0
        self._rt: Runtime | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._beat = 0.0
        self._last_scan = 0.0
        self._flagged: set[Any] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop_thread = 0
        # Written by the watchdog thread, read on the loop.
        self._sample: tuple[float, Process | None, list[str]] | None = None

    # -- service ----------------------------------------------------------------------

    def attach(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._last_scan = self._beat
        self._handle = runtime.loop.call_later(self.interval, self._heartbeat)
        if self.long_schedule is not None:
            self._thread = threading.Thread(
                target=self._watchdog, name="suptrace-sysmon", daemon=True
            )
            self._thread.start()

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    # -- loop side --------------------------------------------------------------------

    def _heartbeat(self) -> None:
        rt = self._rt
        if rt is None:
            return
        now = time.monotonic()
        gap = now - self._beat - self.interval
        if self.long_schedule is not None and gap > self.long_schedule:
            sample, self._sample = self._sample, None
            if sample is not None and sample[0] == self._beat:
                proc, stack = sample[1], sample[2]
            else:  # no sample, or one taken during an earlier, shorter stall
                proc, stack = None, []
            self._report_long(rt, gap, proc, stack)
        self._beat = now
        if self.large_mailbox is not None and now - self._last_scan >= self.scan_every:
            self._last_scan = now
            self._scan(rt)
        self._handle = rt.loop.call_later(self.interval, self._heartbeat)

    def _report_long(
        self, rt: Runtime, duration: float, proc: Process | None, stack: list[str]
    ) -> None:
        self.long_schedules += 1
        data = {"duration": duration, "stack": stack}
        if proc is not None and ("long_schedule" in rt.watch or proc.tracers):
            rt.emit(proc, "long_schedule", data)
        elif proc is None and "long_schedule" in rt.watch:
            rt.emit(None, "long_schedule", data)
        if self.log:
            from loguru import logger

            who = (
                f"{proc.pid} {proc.name or proc.initial_call}"
                if proc
                else "code outside any process"
            )
            where = f"\n    at {stack[-1]}" if stack else ""
            logger.warning(
                "long schedule: {} held the event loop for {:.3f}s without awaiting{}",
                who,
                duration,
                where,
            )

    def _scan(self, rt: Runtime) -> None:
        limit = self.large_mailbox
        assert limit is not None
        flagged = self._flagged
        for proc in list(rt.procs.values()):
            size = len(proc.mailbox) if proc.mailbox else 0
            if size > limit:
                if proc.pid in flagged:
                    continue
                flagged.add(proc.pid)
                self.large_mailboxes += 1
                if "large_mailbox" in rt.watch or proc.tracers:
                    rt.emit(proc, "large_mailbox", {"size": size, "limit": limit})
                if self.log:
                    from loguru import logger

                    logger.warning(
                        "large mailbox: {} {} holds {} messages (limit {})",
                        proc.pid,
                        proc.name or proc.initial_call,
                        size,
                        limit,
                    )
            elif proc.pid in flagged and size < limit // 2:
                flagged.discard(proc.pid)
        flagged.intersection_update([pid for pid in flagged if pid.number in rt.procs])

    # -- watchdog thread ----------------------------------------------------------------

    def _watchdog(self) -> None:
        threshold = self.long_schedule
        assert threshold is not None
        period = min(self.interval, threshold / 2)
        sampled_for = 0.0
        while not self._stop.wait(period):
            beat = self._beat
            if time.monotonic() - beat > threshold and sampled_for != beat:
                frame = sys._current_frames().get(self._loop_thread)
                if frame is None:
                    continue
                proc = process_in_stack(frame)
                stack = [
                    f"{f.filename}:{f.lineno} in {f.name}"
                    for f in traceback.extract_stack(frame, limit=12)
                ]
                self._sample = (beat, proc, stack)
                sampled_for = beat
