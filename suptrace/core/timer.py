"""Timers: `send_after` and `cancel_timer`, as OTP's ``erlang:send_after/3`` and
``erlang:cancel_timer/1``.

A timer is one loop timer plus one small object: no task, no extra process.
A timer set inside a process dies with it (the process holds it the way a
pending `call` is held: as an internal monitor, so its death cancels the loop
timer); a timer set outside any process lives until it fires or the node stops.
When it fires, the message is sent as if by the process that set the timer:
counted, recorded and traced as that process's ``send``. A name is resolved
then; if nobody holds it, the message is dropped (a ``dead_letter`` for
tracing), where `send` would raise, as OTP drops a timer message to a name
that is not registered.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from typing import Any

from suptrace.core.mailbox import post
from suptrace.core.process import Process
from suptrace.core.runtime import Runtime, current_runtime, maybe_process
from suptrace.core.terms import Pid, ref_counter

__all__ = ["TimerRef", "send_after", "cancel_timer"]

#: The context timer callbacks run in: empty (a fired timer is nobody's code), and
#: shared, so that arming a timer does not copy the caller's context.
_EMPTY = contextvars.Context()


class TimerRef:
    """The handle `send_after` returns; give it to `cancel_timer`. Prints like
    ``#TimerRef<0.42>``."""

    __slots__ = ("_dest", "_handle", "_msg", "_owner", "_runtime", "number")

    _dest: Pid | str
    _msg: Any
    _owner: Process | None
    _runtime: Runtime
    _handle: asyncio.TimerHandle | None
    number: int

    def __repr__(self) -> str:
        return f"#TimerRef<0.{self.number}>"

    def __call__(self, _ref: Any, _pid: Pid, _reason: Any) -> None:
        """The owner died: the timer dies with it (the owner's watchers call this)."""
        self._owner = None
        handle = self._handle
        if handle is not None:
            self._handle = None
            handle.cancel()


def _check_delay(delay: Any) -> float:
    if isinstance(delay, bool) or not isinstance(delay, (int, float)):
        raise TypeError(f"send_after(): delay must be a number of seconds, got {delay!r}")
    if not math.isfinite(delay) or delay < 0:
        raise ValueError(
            f"send_after(): delay must be a finite number of seconds >= 0, got {delay!r}"
        )
    return float(delay)


def send_after(delay: float, dest: Pid | str, msg: Any) -> TimerRef:
    """Send ``msg`` to ``dest`` (a pid, or a name resolved when the timer fires)
    after ``delay`` seconds; returns a `TimerRef` for `cancel_timer`.

    Set inside a process, the timer dies with that process; set outside one
    (a plain task, a callback), it lives until it fires or the node stops. The
    fired message is traced as a ``send`` by the process that set the timer. A
    name nobody holds when the timer fires drops the message (a
    ``dead_letter`` for tracing), as in OTP.

    >>> import suptrace
    >>> async def main():
    ...     me = suptrace.self_pid()
    ...     suptrace.send_after(0.01, me, "tick")
    ...     never = suptrace.send_after(60, me, "never")
    ...     left = suptrace.cancel_timer(never)
    ...     return await suptrace.receive(timeout=5), 59 < left <= 60
    >>> suptrace.run(main)
    ('tick', True)
    """
    seconds = _check_delay(delay)
    if type(dest) is not Pid and not isinstance(dest, str):
        raise TypeError(f"send_after() needs a Pid or a registered name (str) as dest, got {dest!r}")
    owner = maybe_process()
    rt = owner.runtime if owner is not None else current_runtime("send_after()")
    timer = TimerRef.__new__(TimerRef)
    timer.number = next(ref_counter)
    timer._dest = dest
    timer._msg = msg
    timer._owner = owner
    timer._runtime = rt
    timer._handle = rt.loop.call_later(seconds, _fire, timer, context=_EMPTY)
    if owner is not None:
        watchers = owner.monitored_by
        if watchers is None:
            owner.monitored_by = {timer: timer}
        else:
            watchers[timer] = timer
    return timer


def _fire(timer: TimerRef) -> None:
    timer._handle = None
    owner = timer._owner
    rt = timer._runtime
    dest = timer._dest
    msg = timer._msg
    if owner is not None:
        timer._owner = None
        if owner.monitored_by is not None:
            owner.monitored_by.pop(timer, None)
    if rt.closing:
        return
    proc = dest._proc if type(dest) is Pid else rt.names.get(dest)  # type: ignore[arg-type]
    if proc is None and type(dest) is Pid:  # a pid without its handle: parsed or unpickled
        proc = rt.process(dest)
    # Posted as if by the process that set the timer (counted, recorded, traced as
    # its send) while it lives; by nobody once it is gone.
    post(owner if owner is not None and owner.reason is None else None, proc, dest, msg)


def cancel_timer(ref: TimerRef) -> float | None:
    """Cancel a timer set by `send_after`; returns the seconds that were left,
    or None if it already fired or was cancelled (OTP's ``false``).

    Anything that is not a `TimerRef` raises `TypeError`; a timer of another
    node (or an event loop other than the running one) raises `ValueError`.

    >>> import suptrace
    >>> async def main():
    ...     ref = suptrace.send_after(30, suptrace.self_pid(), "late")
    ...     first, again = suptrace.cancel_timer(ref), suptrace.cancel_timer(ref)
    ...     return 29 < first <= 30, again
    >>> suptrace.run(main)
    (True, None)
    """
    if type(ref) is not TimerRef:
        raise TypeError(f"cancel_timer() needs the TimerRef that send_after() returned, got {ref!r}")
    rt = ref._runtime
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not rt.loop:
        raise ValueError(
            f"cancel_timer(): {ref!r} belongs to node {rt.name!r}, whose event loop is not "
            "the one running here; cancel it from inside that node"
        )
    handle = ref._handle
    if handle is None:
        return None
    ref._handle = None
    handle.cancel()
    owner = ref._owner
    if owner is not None:
        ref._owner = None
        if owner.monitored_by is not None:
            owner.monitored_by.pop(ref, None)
    return max(0.0, handle.when() - rt.loop.time())
