"""The dbg analogue: trace what a process does, safely.

A `Tracer` hangs a callback on the processes it traces (or on the node for
``"all"``). The callback runs inside the traced process's step, so it only
filters, counts and appends to a bounded buffer; the user's handler runs later
from a loop callback, outside any process (in an empty context, so whatever
the handler does is not attributed to a traced process). A traced process
therefore never waits for a handler, and a flood of events is cut by
explicit, named limits:

=============  ========  ======================================================
limit          default   what happens when reached
=============  ========  ======================================================
``max_events`` 1000      the tracer stops (reason ``"max_events"``)
``duration``   60 s      the tracer stops (reason ``"duration"``)
``rate``       1000/s    once a second's quota is taken the tracer unhooks itself
                         until the second ends: the events in between are never
                         built (the traced code pays nothing for them); each pause
                         is counted in ``stats()["rate_pauses"]``
``buffer``     10000     events that find the buffer full are dropped, counted
``term_limit`` 200       characters of a term shown in a line (cut with ``…``)
=============  ========  ======================================================

The handler gets events in batches, at most ``Tracer.FLUSH`` seconds (5 ms)
after they happened: one loop callback per batch rather than per event, which
is what keeps tracing a busy server affordable. Delivery is sliced: one loop
callback hands over events for at most ``Tracer.SLICE`` seconds (2 ms), then
yields to the loop and goes on in the next iteration, so a slow handler never
holds the loop; it costs drops on a full buffer (counted), not stalls. `stop`
hands over what is still buffered at once when that fits in
``Tracer.FINAL_SLICE`` (10 ms), else in slices too; ``await tracer.wait()``
returns (and ``on_stop`` runs) once everything is delivered.

A tracer never traces itself: events caused while its own handler runs (a
handler that sends a message to a traced process, say) are not fed back to
it; they are counted in ``stats()["suppressed"]``. When ``max_events`` is
reached the tracer unhooks itself at once, inside the step that produced the
last event, so a process in a tight loop stops paying for tracing right away.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final
from weakref import WeakKeyDictionary

from suptrace.core.errors import NoProc
from suptrace.core.events import KINDS, TraceEvent
from suptrace.core.process import Process
from suptrace.core.registry import noproc_error
from suptrace.core.runtime import Runtime, current_runtime, process_of
from suptrace.core.terms import Pid
from suptrace.observers.format import format_event

__all__ = ["Tracer", "trace", "FLAGS"]

_SUPERVISION: Final = frozenset(
    {
        "restart",
        "start_error",
        "intensity",
        "not_restarted",
        "child_terminated",
        "shutdown_error",
    }
)

#: dbg-style flags and the event kinds each one selects.
FLAGS: Final[dict[str, frozenset[str]]] = {
    # A call is a message sent (dbg shows gen_server:call as a send), and so is its reply.
    "send": frozenset({"send", "dead_letter", "call", "reply", "call_timeout"}),
    "receive": frozenset({"receive"}),
    "procs": frozenset(
        {
            "spawn",
            "spawned",
            "exit",
            "link",
            "unlink",
            "getting_linked",
            "register",
            "unregister",
            "exit_signal",
        }
    )
    | _SUPERVISION,
    "monitors": frozenset({"monitor", "demonitor", "down"}),
    "calls": frozenset({"call", "reply", "call_timeout"}),
    "supervisor": _SUPERVISION | {"progress"},
    "call_trace": frozenset({"call_trace"}),
    "system": frozenset({"long_schedule", "large_mailbox"}),
    "all": KINDS,
}

EventHandler = Callable[[TraceEvent], None]


def _kinds_for(flags: Iterable[str] | str) -> frozenset[str]:
    if isinstance(flags, str):
        flags = [flags]
    kinds: set[str] = set()
    for flag in flags:
        if flag in FLAGS:
            kinds |= FLAGS[flag]
        elif flag in KINDS:
            kinds.add(flag)
        else:
            raise ValueError(
                f"unknown trace flag {flag!r}; flags are {', '.join(FLAGS)} or any event kind"
            )
    return frozenset(kinds)


def _print_line(event: TraceEvent) -> None:
    print(format_event(event), flush=True)


#: The tracers running on each runtime (what `running_tracers` answers).
_RUNNING: WeakKeyDictionary[Runtime, set[Tracer]] = WeakKeyDictionary()


def running_tracers(rt: Runtime) -> list[Tracer]:
    """The trace sessions running on ``rt`` now (in no particular order)."""
    return list(_RUNNING.get(rt, ()))


class Tracer:
    """One trace session. Create it with `trace`; end it with `stop`.

    ``stats()`` tells what happened (events delivered, dropped, why it stopped);
    ``await tracer.wait()`` returns once it stopped.
    """

    #: How long an event may wait in the buffer before the handler runs (seconds).
    FLUSH = 0.005
    #: The longest one delivery callback hands events to the handler (seconds).
    SLICE = 0.002
    #: The same for the delivery `stop` makes of what is still buffered.
    FINAL_SLICE = 0.010

    def __init__(
        self,
        runtime: Runtime,
        target: Pid | str,
        flags: Iterable[str] | str = ("send", "receive", "procs"),
        *,
        max_events: int | None = 1000,
        duration: float | None = 60.0,
        rate: float | None = 1000.0,
        buffer: int = 10_000,
        handler: EventHandler | None = None,
        follow_name: bool = True,
        set_on_spawn: bool = False,
        term_limit: int = 200,
        on_stop: Callable[[Tracer], None] | None = None,
    ) -> None:
        for label, value in (("max_events", max_events), ("rate", rate), ("duration", duration)):
            if value is not None and (isinstance(value, bool) or value <= 0):
                raise ValueError(f"trace(): {label} must be > 0 or None, got {value!r}")
        if buffer <= 0:
            raise ValueError(f"trace(): buffer must be > 0, got {buffer!r}")
        self.runtime = runtime
        self.target = target
        self.kinds = _kinds_for(flags)
        self.max_events = max_events
        self.duration = duration
        self.rate = rate
        self.buffer_size = buffer
        self.handler: EventHandler = handler or _print_line
        self.follow_name = follow_name
        self.set_on_spawn = set_on_spawn
        self.term_limit = term_limit
        self.on_stop = on_stop
        self.started = _wall()
        self.accepted = 0
        self.delivered = 0
        self.dropped_rate = 0
        self.dropped_buffer = 0
        self.handler_errors = 0
        #: Times the rate quota was used up and the tracer unhooked until the next second.
        self.rate_pauses = 0
        #: The longest single delivery callback so far (seconds).
        self.longest_slice = 0.0
        #: Delivery callbacks that ran out of their time slice and yielded to the loop.
        self.slices_yielded = 0
        #: Events raised while this tracer's own handler ran (never traced).
        self.suppressed = 0
        self.stop_reason: str | None = None
        self._buffer: deque[TraceEvent] = deque()
        self._procs: dict[Pid, Process] = {}
        self._undo: list[Callable[[], None]] = []
        self._drain_handle: asyncio.TimerHandle | None = None
        self._window_start = 0.0
        self._window_count = 0
        #: Over the rate quota: hooks removed until ``_resume`` (events are not built).
        self._paused = False
        self._resume_handle: asyncio.TimerHandle | None = None
        self._completed = False
        self._global_undo: Callable[[], None] | None = None
        self._done: asyncio.Future[str] = runtime.loop.create_future()
        self._callback = self._on_event
        self._all = target == "all"
        self._full = False
        #: A limit reached inside a traced step; the stop itself runs from the loop.
        self._limit: str | None = None
        self._in_handler = 0
        #: The pid that held the traced name last (to say what a restart replaced).
        self._holder: Pid | None = None
        # Loop callbacks (the handler, the limits) run in an empty context: not
        # as the traced process that happened to schedule them.
        self._context = contextvars.Context()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Tracer:
        rt = self.runtime
        target = self.target
        if target == "all":
            self._hook_global()
        elif target == "new":
            pass
        elif isinstance(target, str):
            proc = rt.names.get(target)
            if proc is not None and proc.alive:
                self._holder = proc.pid
                self._attach(proc)
            elif not self.follow_name:
                raise noproc_error(rt, target)
            if self.follow_name:
                self._undo.append(rt.add_event_handler(self._on_register, ("register",)))
        elif type(target) is Pid:
            proc = process_of(target)  # a parsed or unpickled pid too
            if proc is None or not proc.alive:
                raise noproc_error(rt, target)
            self._attach(proc)
        else:
            raise TypeError(f"trace() target must be a Pid, a name, 'all' or 'new', got {target!r}")
        if target == "new" or self.set_on_spawn:
            hook = self._on_spawn
            rt.spawn_hooks = (*rt.spawn_hooks, hook)

            def unhook() -> None:
                rt.spawn_hooks = tuple(h for h in rt.spawn_hooks if h is not hook)

            self._undo.append(unhook)
        if self.duration is not None:
            handle = rt.loop.call_later(self.duration, self.stop, "duration", context=self._context)
            self._undo.append(handle.cancel)
        _RUNNING.setdefault(rt, set()).add(self)
        return self

    def add_cleanup(self, *undos: Callable[[], None]) -> None:
        """Run ``undos`` when the trace stops (in reverse order, after its own hooks
        are removed): how other event sources (call tracing) take theirs down with it."""
        self._undo.extend(undos)

    def stop(self, reason: str = "stopped") -> None:
        """End the trace: remove every trace hook from the node, deliver what is buffered
        (in slices when it is long: ``await wait()`` returns once it all is)."""
        if self.stop_reason is not None:
            return
        self.stop_reason = self._limit or reason
        self._disarm()
        tracers = _RUNNING.get(self.runtime)
        if tracers is not None:
            tracers.discard(self)
        # Deliver what is buffered now, outside whatever process called stop(); what
        # does not fit in FINAL_SLICE goes on from the loop (waiters and on_stop after it).
        contextvars.Context().run(self._drain)

    def _hook_global(self) -> None:
        self._global_undo = self.runtime.add_event_handler(self._on_global, self.kinds)

    def _unhook_global(self) -> None:
        undo, self._global_undo = self._global_undo, None
        if undo is not None:
            undo()

    def _pause(self) -> None:
        """The second's quota is used up: unhook until it ends, so nothing is built."""
        self._paused = True
        self.rate_pauses += 1
        self._unhook_global()
        callback = self._callback
        for proc in self._procs.values():
            if proc.tracers:
                rest = tuple(t for t in proc.tracers if t is not callback)
                proc.tracers = rest or None
        delay = max(self._window_start + 1.0 - _monotonic(), 0.0)
        self._resume_handle = self.runtime.loop.call_later(
            delay, self._resume, context=self._context
        )

    def _resume(self) -> None:
        self._resume_handle = None
        if not self._paused or self.stop_reason is not None:
            return
        self._paused = False
        self._window_start = _monotonic()
        self._window_count = 0
        if self._all:
            self._hook_global()
        for pid, proc in list(self._procs.items()):
            if proc.reason is not None:  # died while we were not looking
                self._procs.pop(pid, None)
            else:
                proc.tracers = (*(proc.tracers or ()), self._callback)
        if (
            not self._procs
            and self.target not in ("new", "all")
            and (type(self.target) is Pid or not self.follow_name)
        ):
            self.stop("target_exited")

    def _disarm(self) -> None:
        """Remove every hook this tracer put on the node (safe to call twice)."""
        for proc in list(self._procs.values()):
            self._detach(proc)
        self._paused = False
        if self._resume_handle is not None:
            self._resume_handle.cancel()
            self._resume_handle = None
        self._unhook_global()
        undo_all, self._undo = self._undo, []
        for undo in reversed(undo_all):
            try:
                undo()
            except Exception as exc:  # one failing undo must not leave the others in place
                self.runtime.loop.call_exception_handler(
                    {"message": f"suptrace: tracer cleanup {undo!r} failed", "exception": exc}
                )

    async def wait(self) -> str:
        """Wait until the tracer stops; returns why."""
        return await asyncio.shield(self._done)

    @property
    def active(self) -> bool:
        return self.stop_reason is None

    @property
    def dropped(self) -> int:
        return self.dropped_rate + self.dropped_buffer

    def stats(self) -> dict[str, Any]:
        return {
            "target": str(self.target),
            "kinds": sorted(self.kinds),
            "accepted": self.accepted,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "dropped_rate": self.dropped_rate,
            "dropped_buffer": self.dropped_buffer,
            "handler_errors": self.handler_errors,
            "rate_pauses": self.rate_pauses,
            "longest_slice": self.longest_slice,
            "slices_yielded": self.slices_yielded,
            "suppressed": self.suppressed,
            "traced_pids": sorted(self._procs),
            "stop_reason": self.stop_reason,
            "elapsed": _wall() - self.started,
        }

    def summary(self) -> str:
        s = self.stats()
        text = f"trace of {s['target']} ended ({s['stop_reason']}): {s['delivered']} events"
        if s["dropped"]:
            text += (
                f", {s['dropped']} dropped ({s['dropped_rate']} over the rate limit, "
                f"{s['dropped_buffer']} on a full buffer)"
            )
        if s["rate_pauses"]:
            text += (
                f"; the rate limit paused the trace {s['rate_pauses']} time(s) "
                "(events during a pause were not recorded)"
            )
        return text

    # -- attaching -----------------------------------------------------------------------

    def _attach(self, proc: Process) -> None:
        if proc.pid in self._procs:
            return
        self._procs[proc.pid] = proc
        if not self._paused:  # else _resume hooks it
            proc.tracers = (*(proc.tracers or ()), self._callback)

    def _detach(self, proc: Process) -> None:
        self._procs.pop(proc.pid, None)
        if proc.tracers:
            rest = tuple(t for t in proc.tracers if t is not self._callback)
            proc.tracers = rest or None

    def traces(self, proc: Process | None) -> bool:
        """True if events of ``proc`` reach this tracer."""
        if proc is None or self.stop_reason is not None:
            return False
        if self._all:
            return not proc.system
        return proc.pid in self._procs

    def _on_spawn(self, child: Process, parent: Process | None) -> None:
        if child.system:
            return
        if self.target == "new" or (
            self.set_on_spawn and parent is not None and parent.pid in self._procs
        ):
            self._attach(child)

    def _on_register(self, event: TraceEvent) -> None:
        if event.data.get("name") != self.target or event.pid is None:
            return
        proc = process_of(event.pid)
        if proc is None or proc.pid in self._procs:
            return
        previous = self._holder
        if previous is not None:
            gone = self._procs.get(previous)
            if gone is not None:  # the name moved while its old holder still lives
                self._detach(gone)
        self._holder = proc.pid
        was = f" (was {previous})" if previous is not None else ""
        self.accept(
            TraceEvent(
                _wall(),
                proc.pid,
                str(self.target),
                "trace",
                {
                    "note": f"--- {self.target} is now {proc.pid}{was} ---",
                    "name": self.target,
                    "pid": proc.pid,
                    "old_pid": previous,
                },
            ),
            force=True,
        )
        self._attach(proc)

    # -- the hot side: runs inside the traced process's step ------------------------------

    def _on_global(self, event: TraceEvent) -> None:
        pid = event.pid
        proc = process_of(pid) if pid is not None else None
        if proc is not None and proc.system:
            return
        self.accept(event)

    def _on_event(self, event: TraceEvent) -> None:
        kind = event.kind
        if kind in self.kinds:
            self.accept(event)
        if kind == "exit" and event.pid is not None:
            proc = self._procs.get(event.pid)
            if proc is not None:
                self._detach(proc)
                if (
                    not self._procs
                    and self.target not in ("new", "all")
                    and (type(self.target) is Pid or not self.follow_name)
                ):
                    self.runtime.loop.call_soon(self.stop, "target_exited", context=self._context)

    def accept(self, event: TraceEvent, force: bool = False) -> None:
        """Take one event into this trace, within its limits (count, rate, buffer);
        ``force`` skips the rate limit. How other event sources (call tracing) feed
        a tracer."""
        if self._full or self.stop_reason is not None:
            return
        if self._in_handler:
            # Caused by our own handler: tracing it would feed the tracer to itself.
            self.suppressed += 1
            return
        if not force and self.rate is not None:
            now = _monotonic()
            if now - self._window_start >= 1.0:
                self._window_start = now
                self._window_count = 0
            if self._window_count >= self.rate:
                # Only reached when another subscriber made the event anyway (or
                # right at the cap): unhook so the next ones are not even built.
                self.dropped_rate += 1
                if not self._paused:
                    self._pause()
                return
            self._window_count += 1
            if self._window_count >= self.rate:
                self._pause()
        if len(self._buffer) >= self.buffer_size:
            self.dropped_buffer += 1
            return
        self._buffer.append(event)
        self.accepted += 1
        if self._drain_handle is None:
            self._drain_handle = self.runtime.loop.call_later(
                self.FLUSH, self._drain, context=self._context
            )
        if self.max_events is not None and self.accepted >= self.max_events:
            # Take nothing more, and unhook now: a process in a tight loop would
            # otherwise keep building events for us until it next awaits. The
            # rest of the stop (handler, waiters) runs from the loop.
            self._full = True
            self._limit = "max_events"
            self._disarm()
            self.runtime.loop.call_soon(self.stop, "max_events", context=self._context)

    # -- the cold side: a loop callback --------------------------------------------------

    def _drain(self) -> None:
        if self._drain_handle is not None:
            self._drain_handle.cancel()  # when called by stop() before the flush
            self._drain_handle = None
        buf = self._buffer
        handler = self.handler
        final = self.stop_reason is not None
        start = _perf()
        deadline = start + (self.FINAL_SLICE if final else self.SLICE)
        self._in_handler += 1
        try:
            while buf:
                try:
                    while buf:
                        handler(buf.popleft())
                        self.delivered += 1
                        if buf and _perf() >= deadline:
                            self._yield()
                            return
                except Exception as exc:  # a broken handler costs its event, not the loop
                    self.handler_errors += 1
                    self.runtime.handler_failed("trace handler", handler, exc, "trace")
                    if buf and _perf() >= deadline:
                        self._yield()
                        return
        finally:
            self._in_handler -= 1
            took = _perf() - start
            if took > self.longest_slice:
                self.longest_slice = took
        if final:
            self._complete()

    def _yield(self) -> None:
        """Out of time: the rest of the buffer goes in the loop's next iteration."""
        self.slices_yielded += 1
        self._drain_handle = self.runtime.loop.call_later(0, self._drain, context=self._context)

    def _complete(self) -> None:
        """Everything is delivered after a stop: wake the waiters, call ``on_stop``."""
        if self._completed:
            return
        self._completed = True
        if not self._done.done():
            self._done.set_result(self.stop_reason or "stopped")
        if self.on_stop is not None:
            self.on_stop(self)


#: Clocks bound once: a call trace of ``time:*`` never sees the tracer's own use.
_wall = time.time
_monotonic = time.monotonic
_perf = time.perf_counter


def trace(
    target: Pid | str,
    flags: Iterable[str] | str = ("send", "receive", "procs"),
    *,
    max_events: int | None = 1000,
    duration: float | None = 60.0,
    rate: float | None = 1000.0,
    buffer: int = 10_000,
    handler: EventHandler | None = None,
    follow_name: bool = True,
    set_on_spawn: bool = False,
    term_limit: int = 200,
) -> Tracer:
    """Trace a process (pid or registered name), ``"all"`` or ``"new"`` processes.

    ``flags`` select what is seen: ``send``, ``receive``, ``procs`` (spawn,
    exit, links, registration, restarts), ``monitors``, ``calls``,
    ``supervisor``, ``call_trace``, ``system`` or ``all`` (or event kinds).
    Each event goes to ``handler(event)`` (default: print a dbg-style line),
    called later from the event loop, outside any process; what the handler
    itself causes is never traced by this tracer. A traced name is followed
    across restarts (a ``trace`` event notes each new pid) unless
    ``follow_name=False``, which makes a missing name an error (`NoProc`, with
    the name's tombstone story). A pid trace ends (``"target_exited"``) when
    its process exits. ``set_on_spawn=True`` also traces the processes a traced
    process spawns (dbg's ``sos``). The limits ``max_events``, ``duration``,
    ``rate`` and ``buffer`` are described in this module's docstring; None
    turns one off. ``stats()`` says what was delivered and dropped.

    >>> import suptrace
    >>> lines = []
    >>> async def main():
    ...     async def echo():
    ...         while True:
    ...             msg = await suptrace.receive()
    ...             if msg == "stop":
    ...                 return
    ...     pid = suptrace.spawn(echo, name="echo")
    ...     t = suptrace.trace("echo", ["receive"], handler=lambda e: lines.append(e.data["msg"]))
    ...     ref = suptrace.monitor(pid)
    ...     for m in ["a", "b", "stop"]:
    ...         suptrace.send("echo", m)
    ...     await suptrace.receive(lambda m: isinstance(m, suptrace.Down))
    ...     t.stop()
    ...     return t.stats()["delivered"]
    >>> suptrace.run(main)
    3
    >>> lines
    ['a', 'b', 'stop']
    """
    rt = current_runtime("trace()")
    tracer = Tracer(
        rt,
        target,
        flags,
        max_events=max_events,
        duration=duration,
        rate=rate,
        buffer=buffer,
        handler=handler,
        follow_name=follow_name,
        set_on_spawn=set_on_spawn,
        term_limit=term_limit,
    )
    try:
        return tracer.start()
    except (NoProc, TypeError):
        tracer.stop("failed")
        raise
