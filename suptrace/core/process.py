"""Processes: an asyncio task with a mailbox, links, monitors and a trap-exit flag.

Exit-signal rules follow OTP (see the README's semantics notes):

* a process that returns exits ``normal``; ``raise Exit(r)`` exits ``r``; an
  uncaught exception exits with the exception instance as the reason;
* when a process dies, every linked process gets an exit signal and every
  monitoring process a `Down` message;
* a signal with reason ``normal`` is ignored by a non-trapping process (unless it
  sent it to itself); ``exit(p, "kill")`` is untrappable and p dies ``killed``;
  any other reason kills a non-trapping process with the same reason and becomes
  an `ExitMsg` for a trapping one.

A process dies at its next ``await``: asyncio cannot interrupt running code.
After ``kill`` the task is cancelled again at every await until it ends, so a
process that swallows `asyncio.CancelledError` still dies.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from itertools import islice
from types import CodeType, FrameType
from typing import Any, overload

from suptrace.core.errors import Exit, NodeError, NoProc, RegistrationError
from suptrace.core.events import TraceEvent
from suptrace.core.runtime import (
    Runtime,
    Tombstone,
    _current_process,
    _running_task,
    current_process,
    current_runtime,
    maybe_process,
    maybe_runtime,
    not_the_process,
    process_of,
)
from suptrace.core.saferepr import reason_text, safe_repr
from suptrace.core.terms import (
    KILL,
    KILLED,
    NOPROC,
    NORMAL,
    Down,
    ExitMsg,
    Pid,
    Ref,
    is_normal_exit,
    make_down,
)

__all__ = [
    "Process",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "self_pid",
    "send",
    "receive",
    "link",
    "unlink",
    "monitor",
    "demonitor",
    "exit",
    "trap_exit",
    "register",
    "unregister",
    "whereis",
    "registered",
    "process_info",
    "is_alive",
    "resolve",
    "watch",
    "unwatch",
]

_TIMEOUT = object()
#: The flight recorder's clock (a module-level name: one lookup less per entry).
_now = time.time
_Task = asyncio.Task
#: What `Process.extract` returns when no message matched.
NOTHING: Any = object()


class Envelope:
    """A message plus the context captured when it was sent.

    Only used while an instrument (the OpenTelemetry bridge) is installed;
    mailbox consumers see the bare message through `Process.take` /
    `Process.extract`.
    """

    __slots__ = ("ctx", "msg")

    def __init__(self, msg: Any, ctx: Any) -> None:
        self.msg = msg
        self.ctx = ctx

    def __repr__(self) -> str:
        return repr(self.msg)

#: A callback watcher: called as ``fn(ref, pid, reason)`` when the target dies.
WatchCallback = Callable[[Ref, Pid, Any], None]


class Process:
    """The runtime's record of one process. Users hold `Pid` values, not these."""

    __slots__ = (
        "__weakref__",
        "ancestors",
        "behaviour",
        "inbound",
        "initial_call",
        "links",
        "mailbox",
        "messages_in",
        "messages_out",
        "monitored_by",
        "monitors",
        "name",
        "notes",
        "parent",
        "pending_exit",
        "pid",
        "reason",
        "recorder",
        "result",
        "runtime",
        "started_at",
        "status",
        "system",
        "task",
        "tracers",
        "trap",
        "waiter",
    )

    def __init__(
        self,
        runtime: Runtime,
        initial_call: str,
        parent: Process | None,
        trap: bool,
    ) -> None:
        self.pid = pid = Pid(next(runtime._numbers))
        pid._proc = self
        self.runtime = runtime
        self.name: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.mailbox: deque[Any] | None = None
        self.waiter: asyncio.Future[Any] | None = None
        self.links: set[Pid] | None = None
        #: Monitors this process holds: ref -> target pid.
        self.monitors: dict[Ref, Pid] | None = None
        #: Who monitors this process: ref -> watching process or callback.
        self.monitored_by: dict[Any, Process | WatchCallback] | None = None  # key: a Ref or a Caller
        self.trap = trap
        self.status = "init"
        self.initial_call = initial_call
        self.parent = parent.pid if parent is not None else None
        if parent is None:
            self.ancestors: tuple[Pid | str, ...] = ()
        else:
            self.ancestors = (parent.name or parent.pid, *parent.ancestors)
        self.messages_in = 0
        self.messages_out = 0
        #: The exit reason once the process is dead.
        self.reason: Any = None
        #: The reason an exit signal decided, while the task unwinds.
        self.pending_exit: Any = None
        #: Process-level trace handlers (tuple) or None.
        self.tracers: tuple[Callable[[Any], None], ...] | None = None
        #: Flight recorder (a bounded deque of recent events) or None.
        self.recorder: deque[Any] | None = None
        self.result: Any = None
        self.started_at = _now()
        #: The behaviour object (GenServer, Supervisor) running in this process.
        self.behaviour: Any = None
        #: System processes (the control server...) are never traced by "all".
        self.system = False
        #: What the process's own code said about why it is exiting (goes on the tombstone).
        self.notes: list[str] | None = None
        #: The context that came with the message being handled (instrumented nodes only).
        self.inbound: Any = None

    def __repr__(self) -> str:
        name = f" {self.name}" if self.name else ""
        return f"<Process {self.pid}{name} {self.status}>"

    @property
    def alive(self) -> bool:
        return self.reason is None and self.pending_exit is None

    # -- delivery -----------------------------------------------------------------------

    def deliver(self, msg: Any, sender: Pid | None, ts: float = 0.0) -> None:
        """Enqueue ``msg`` and wake the process if it waits for one.

        ``ts`` is the sender's clock reading when it already took one (the
        flight recorder then reuses it instead of reading the clock again)."""
        if self.reason is not None or self.pending_exit is not None:
            rt = self.runtime
            if "dead_letter" in rt.watch:
                rt.emit(maybe_process(), "dead_letter", {"to": self.pid, "msg": msg})
            return
        mb = self.mailbox
        if mb is None:
            mb = self.mailbox = deque()
        rt = self.runtime
        instrument = rt.instrument
        if instrument is None:
            mb.append(msg)
        else:
            mb.append(Envelope(msg, instrument.capture(self, msg, sender)))
        self.messages_in += 1
        rec = self.recorder
        if rec is not None:
            rec.append((ts or _now(), "receive", sender, msg))
        elif rt.recorder_size:
            self.record("receive", sender, msg)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self.tracers or "receive" in rt.watch:
            rt.emit(self, "receive", {"from": sender, "msg": msg})

    # -- signals ------------------------------------------------------------------------

    def signal_exit(self, sender: Pid, reason: Any, via_link: bool) -> None:
        """Apply an exit signal from ``sender`` to this process (OTP's rules)."""
        if self.reason is not None:
            return
        if self.pending_exit is not None:
            # Already doomed; but code that swallowed the cancellation still runs,
            # and an untrappable kill must win over the exit it ignored.
            if not via_link and _atom(reason, KILL) and not _atom(self.pending_exit, KILLED):
                self.terminate(KILLED)
            return
        if not via_link and _atom(reason, KILL):
            action = "die"
            reason = KILLED
        elif self.trap:
            action = "trap"
        elif _atom(reason, NORMAL) and sender != self.pid:
            action = "ignore"
        else:
            action = "die"
        rt = self.runtime
        if rt.recorder_size:
            self.record("exit_signal", sender, (reason, action))
        if "exit_signal" in rt.watch or self.tracers:
            rt.emit(self, "exit_signal", {"from": sender, "reason": reason, "action": action})
        if action == "trap":
            self.deliver(ExitMsg(sender, reason), sender)
        elif action == "die":
            self.terminate(reason)

    def terminate(self, reason: Any) -> None:
        """Make this process die with ``reason`` at its next await.

        Only ``killed`` may replace an exit already pending (see `signal_exit`).
        """
        if self.reason is not None:
            return
        if self.pending_exit is not None and (
            not _atom(reason, KILLED) or _atom(self.pending_exit, KILLED)
        ):
            return
        self.pending_exit = reason
        task = self.task
        if self.status == "init" or task is None:
            return  # the task has not started: it will see pending_exit and finish
        self.status = "exiting"
        if task is asyncio.current_task():
            return  # dying from its own code path: the caller raises Exit
        task.cancel()
        if _atom(reason, KILLED) or _atom(reason, KILL):
            self.runtime.loop.call_soon(self._recancel)

    def _recancel(self) -> None:
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            self.runtime.loop.call_soon(self._recancel)

    # -- taking messages out -------------------------------------------------------------

    def take(self) -> Any:
        """Pop the oldest message (the mailbox must not be empty)."""
        item = self.mailbox.popleft()  # type: ignore[union-attr]
        if type(item) is Envelope:
            self.inbound = item.ctx
            return item.msg
        return item

    def extract(self, match: Callable[[Any], bool], start: int = 0) -> tuple[Any, int]:
        """Remove and return the first message from index ``start`` on that matches.

        Returns ``(message, index)``, or ``(NOTHING, scanned)`` when none does.
        """
        mb = self.mailbox
        if not mb:
            return NOTHING, start
        index = start
        for item in islice(mb, start, None):
            msg = item.msg if type(item) is Envelope else item
            if match(msg):
                del mb[index]
                if type(item) is Envelope:
                    self.inbound = item.ctx
                return msg, index
            index += 1
        return NOTHING, index

    # -- flight recorder -----------------------------------------------------------------

    def record(self, kind: str, peer: Any, payload: Any) -> None:
        """Append to the flight recorder (created on first use)."""
        rec = self.recorder
        if rec is None:
            size = self.runtime.recorder_size
            if not size:
                return
            rec = self.recorder = deque(maxlen=size)
        rec.append((_now(), kind, peer, payload))

    def recent_events(self) -> list[TraceEvent]:
        """The flight recorder's content as events, oldest first."""
        return list(self.recorded())

    def recorded(self) -> RecordedEvents:
        """A snapshot of the flight recorder, turned into events only when read."""
        return RecordedEvents(self.pid, self.name, tuple(self.recorder) if self.recorder else ())

    # -- death --------------------------------------------------------------------------

    def finish(self, reason: Any) -> None:
        """Record the death and notify links, monitors and the registry."""
        if self.reason is not None:
            return
        self.reason = reason
        self.status = "exited"
        rt = self.runtime
        pid = self.pid
        rt.procs.pop(pid, None)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.cancel()
        name = self.name
        if name is not None and rt.names.get(name) is self:
            del rt.names[name]
        escaped: BaseException | None = None
        try:
            self._announce(reason)
        except Exception as exc:  # an observer must never stop a death half-way
            rt.handler_failed("observer", self._announce, exc, "exit")
        except BaseException as exc:  # Exit, SystemExit...: after the death is complete
            rt.handler_failed("observer", self._announce, exc, "exit")
            escaped = exc
        if name is not None:
            stone = Tombstone(name, pid, reason, _now(), self.initial_call)
            if self.recorder is not None:
                stone.last_events = self.recorded()
            if self.notes:
                stone.notes.extend(self.notes)
            rt.bury(stone)
        pid._proc = None
        # Monitors this process held: the targets forget about them.
        monitors = self.monitors
        if monitors:
            self.monitors = None
            for ref, target in monitors.items():
                tproc = target._proc
                if tproc is not None and tproc.monitored_by:
                    tproc.monitored_by.pop(ref, None)
        links = self.links
        if links:
            self.links = None
            peers = iter(links)
            while True:  # one try around the loop: after a failure it resumes with the next
                try:
                    for peer in peers:
                        pproc = peer._proc
                        if pproc is not None:
                            if pproc.links is not None:
                                pproc.links.discard(pid)
                            pproc.signal_exit(pid, reason, True)
                    break
                except Exception as exc:  # instrumentation or tracing of one peer failed
                    rt.handler_failed("observer", rt.instrument or rt.emit, exc, "exit_signal")
        watchers = self.monitored_by
        if watchers:
            self.monitored_by = None
            items = iter(watchers.items())
            watcher: Any = None
            while True:
                try:
                    for ref, watcher in items:
                        if type(watcher) is Process:
                            if watcher.monitors is not None:
                                watcher.monitors.pop(ref, None)
                            if watcher.reason is None:
                                if watcher.tracers or "down" in rt.watch:
                                    rt.emit(
                                        watcher,
                                        "down",
                                        {"target": pid, "ref": ref, "reason": reason},
                                    )
                                watcher.deliver(make_down(ref, pid, reason), pid)
                        else:
                            watcher(ref, pid, reason)
                    break
                except Exception as exc:  # a watch callback or instrumentation failed
                    rt.handler_failed("monitor callback", watcher, exc, "down")
        self.mailbox = None
        if escaped is not None and isinstance(escaped, (KeyboardInterrupt, SystemExit)):
            raise escaped

    def _announce(self, reason: Any) -> None:
        """Tell the observers (death hooks, ``unregister``/``exit``/``crash`` events).

        `finish` calls it inside one ``try``: whatever an observer does, the
        death itself (registry, tombstone, links, monitors) is always completed.
        """
        rt = self.runtime
        if rt.death_hooks:
            for hook in rt.death_hooks:
                try:
                    hook(self, reason)
                except Exception as exc:  # an observer must never stop a death
                    rt.handler_failed("death hook", hook, exc, "exit")
        name = self.name
        watch = rt.watch
        tracers = self.tracers
        if name is not None and (tracers or "unregister" in watch):
            rt.emit(self, "unregister", {"name": name, "reason": reason})
        if tracers or "exit" in watch:
            rt.emit(self, "exit", self._exit_data(reason))
        if (
            "crash" in watch
            and self.pending_exit is None
            and not is_normal_exit(reason)
        ):
            # Died by its own hand with an abnormal reason: what a crash report is made of.
            data = self._exit_data(reason)
            data["last_events"] = self.recorded()
            rt.emit(self, "crash", data)

    def _exit_data(self, reason: Any) -> dict[str, Any]:
        return {
            "reason": reason,
            # True when an exit signal, not the process's own code, decided the death
            "by_signal": self.pending_exit is not None,
            "initial_call": self.initial_call,
            "ancestors": self.ancestors,
            "links": tuple(self.links) if self.links else (),
            "message_queue_len": len(self.mailbox) if self.mailbox else 0,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
        }

    # -- introspection ------------------------------------------------------------------

    def stacktrace(self, limit: int = 20) -> list[str]:
        """Where the process is awaiting now, innermost frame last."""
        task = self.task
        if task is None or task.done():
            return []
        # Task.get_stack() stops at the task's own coroutine: a suspended coroutine's
        # frame has no f_back. Follow the await chain down to the innermost frame.
        frames: deque[FrameType] = deque(maxlen=limit)
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is None:
                break
            frames.append(frame)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        return [
            f"{f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_qualname}" for f in frames
        ]

    def info(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "registered_name": self.name,
            "status": self.status,
            "message_queue_len": len(self.mailbox) if self.mailbox else 0,
            "links": sorted(self.links) if self.links else [],
            "monitors": sorted(self.monitors.values()) if self.monitors else [],
            "monitored_by": sorted(
                w.pid for w in (self.monitored_by or {}).values() if type(w) is Process
            ),
            "trap_exit": self.trap,
            "initial_call": self.initial_call,
            "ancestors": list(self.ancestors),
            "parent": self.parent,
            "current_stacktrace": self.stacktrace(),
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "started_at": self.started_at,
            "behaviour": type(self.behaviour).__name__ if self.behaviour is not None else None,
            "system": self.system,
            "last_events": self.recent_events(),
        }


_PEER_KEY = {"receive": "from", "send": "to", "call": "to", "exit_signal": "from"}


class RecordedEvents(Sequence[TraceEvent]):
    """A process's last recorded events (oldest first), immutable.

    The recorder keeps raw tuples; they become `TraceEvent` values on first
    read, so a crash pays for a copy of the ring, not for building events that
    nobody may look at.
    """

    __slots__ = ("_events", "_name", "_pid", "_raw")

    def __init__(self, pid: Pid, name: str | None, raw: tuple[tuple[float, str, Any, Any], ...]) -> None:
        self._pid = pid
        self._name = name
        self._raw = raw
        self._events: tuple[TraceEvent, ...] | None = None

    def _all(self) -> tuple[TraceEvent, ...]:
        events = self._events
        if events is None:
            events = self._events = tuple(
                _recorded_event(self._pid, self._name, entry) for entry in self._raw
            )
        return events

    @overload
    def __getitem__(self, index: int) -> TraceEvent: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[TraceEvent, ...]: ...

    def __getitem__(self, index: int | slice) -> TraceEvent | tuple[TraceEvent, ...]:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._raw)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return self._all() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self._all()))


def _recorded_event(pid: Pid, name: str | None, entry: tuple[float, str, Any, Any]) -> TraceEvent:
    ts, kind, peer, payload = entry
    if kind == "exit_signal":
        reason, action = payload
        data: dict[str, Any] = {"from": peer, "reason": reason, "action": action}
    elif kind == "call":
        data = {"to": peer, "request": payload}
    else:
        data = {_PEER_KEY.get(kind, "peer"): peer, "msg": payload}
    return TraceEvent(ts, pid, name, kind, data)


# -- the process task ----------------------------------------------------------------------


async def _process_main(proc: Process, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
    _current_process.set(proc)
    if proc.task is None:  # a task factory that ran this first step inside create_task()
        proc.task = _running_task(proc.runtime.loop)
    if proc.pending_exit is not None:  # killed before it ever ran
        proc.finish(proc.pending_exit)
        _release(proc)
        return
    proc.status = "running"
    reraise: BaseException | None = None
    try:
        proc.result = await fn(*args)
        reason: Any = NORMAL
    except Exit as e:
        reason = e.reason
    except asyncio.CancelledError:
        reason = KILLED
    except Exception as e:
        reason = e
    except BaseException as e:  # KeyboardInterrupt, SystemExit: die, then let it through
        reason = e
        reraise = e
    if proc.pending_exit is not None:
        reason = proc.pending_exit
    proc.finish(reason)
    _release(proc)
    # An exception's traceback holds this frame, whose locals would hold the
    # exception again: clear them so a dead process is freed by reference
    # counting, not left for the cyclic garbage collector.
    reason = proc = None  # type: ignore[assignment]
    if reraise is not None:
        raise reraise


def _atom(reason: Any, atom: str) -> bool:
    """``reason == atom`` without running a reason's own ``__eq__`` (user data: it may
    raise, or answer with something that is not a bool)."""
    return isinstance(reason, str) and str.__eq__(reason, atom) is True


def _release(proc: Process) -> None:
    """Break the cycle process -> task -> task's context -> process once it is dead."""
    proc.task = None


def _initial_call(fn: Callable[..., Any]) -> str:
    target = getattr(fn, "func", fn)  # functools.partial
    module = getattr(target, "__module__", None) or "?"
    qual = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)
    return f"{module}:{qual}"


#: Initial-call text of functions already known to be spawnable, by code object
#: (one per definition site, so the cache is bounded by the program's size).
_SPAWNABLE: dict[CodeType, str] = {}


def _spawn_info(fn: Any) -> str:
    """Check that ``fn`` can be spawned; return its initial-call text (cached)."""
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if code is not None:
        text = _SPAWNABLE.get(code)
        if text is not None:
            return text
    _check_spawnable(fn)
    text = _initial_call(fn)
    if code is not None and code.co_flags & inspect.CO_COROUTINE:
        _SPAWNABLE[code] = text
    return text


def _check_spawnable(fn: Any) -> None:
    if inspect.iscoroutine(fn):  # before `callable`: a coroutine object is not callable
        raise TypeError(
            f"spawn() got a coroutine object {fn!r}; pass the async function and its "
            "arguments instead: spawn(fn, arg1, arg2)"
        )
    if not callable(fn):
        raise TypeError(f"spawn() needs an async function, got {fn!r} (not callable)")
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__):
        return  # an async function, or an instance whose __call__ is async
    raise TypeError(
        f"spawn() needs an `async def` function, got {_initial_call(fn)} which is not "
        "a coroutine function; define it with `async def`"
    )


#: Task factories already probed: whether each runs a new task's first step at once.
#: Probed task factories by id(), each kept alive beside its verdict (a factory may
#: be unhashable: a dataclass instance with ``__call__``, say).
_EAGER: dict[int, tuple[Any, bool]] = {}


def _runs_eagerly(factory: Any, loop: asyncio.AbstractEventLoop) -> bool:
    """True for a task factory that starts a task inside ``create_task`` (3.12's
    `asyncio.eager_task_factory` and those made by `asyncio.create_eager_task_factory`).

    Processes do not go through such a factory: spawn() promises that the new
    process starts on the next loop iteration, after the caller has its pid (and
    a link or monitor on it). Each factory is probed once, with a task that
    does nothing (cancelled unstarted when the factory is not eager). A factory
    that fails the probe is refused with a `NodeError` that says why.
    """
    known = _EAGER.get(id(factory))
    if known is not None and known[0] is factory:
        return known[1]
    ran: list[bool] = []

    async def probe() -> None:
        ran.append(True)

    coro = probe()
    try:
        task = factory(loop, coro)
    except Exception as exc:
        coro.close()
        raise NodeError(
            f"the event loop's task factory {factory!r} failed when given a task "
            f"({type(exc).__name__}: {exc}); suptrace starts each process as a task, so "
            "the loop needs a task factory that works (or none: loop.set_task_factory(None))"
        ) from exc
    eager = bool(ran)
    if not eager and isinstance(task, asyncio.Future) and not task.done():
        task.cancel()  # never started: its coroutine is closed, nothing runs
    _EAGER[id(factory)] = (factory, eager)
    return eager


def check_task_factory(loop: asyncio.AbstractEventLoop) -> None:
    """Refuse, at node start, a task factory processes cannot run on (see `_runs_eagerly`)."""
    factory = loop.get_task_factory()
    if factory is not None:
        _runs_eagerly(factory, loop)


def spawn(
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    name: str | None = None,
    link: bool = False,
    trap_exit: bool = False,
) -> Pid:
    """Start ``await fn(*args)`` as a new process and return its pid at once.

    The process starts on the next event-loop iteration. ``name`` registers it
    atomically; ``link=True`` links it to the caller before it can run.

    >>> import suptrace
    >>> async def main():
    ...     async def echo(parent):
    ...         suptrace.send(parent, ("echo", await suptrace.receive()))
    ...     pid = suptrace.spawn(echo, suptrace.self_pid())
    ...     suptrace.send(pid, "hi")
    ...     return await suptrace.receive()
    >>> suptrace.run(main)
    ('echo', 'hi')
    """
    return _spawn(fn, args, name, link, trap_exit, False)[0]


def _spawn(
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    name: str | None,
    link: bool,
    trap: bool,
    monitor: bool,
    system: bool = False,
    initial_call: str | None = None,
) -> tuple[Pid, Ref | None]:
    parent = _current_process.get()
    if parent is not None and parent.task is not _running_task(parent.runtime.loop):
        parent = None  # a task the process created with plain asyncio is not the process
    if monitor and parent is None:
        current_process("spawn_monitor()")  # raises: there is nobody to monitor from
    rt = parent.runtime if parent is not None else current_runtime("spawn()")
    if rt.closing:
        raise NodeError(f"node {rt.name!r} is shutting down: no new processes can start")
    text = _spawn_info(fn)
    if (link or monitor) and parent is not None and parent.reason is not None:
        raise NodeError("a dead process cannot spawn linked or monitored processes")
    if name is not None:
        _check_name(rt, name)
    loop = rt.loop
    factory = loop.get_task_factory()
    direct = factory is None or _runs_eagerly(factory, loop)  # may refuse the factory
    proc = Process(rt, initial_call or text, parent, trap)
    pid = proc.pid
    if system:
        proc.system = True
    rt.procs[pid] = proc
    if name is not None:
        proc.name = name
        rt.names[name] = proc
        rt.tombstones.pop(name, None)  # as in register(): the name lives again
    watch = rt.watch
    ref = None
    if parent is not None:
        if parent.tracers or "spawn" in watch:
            rt.emit(parent, "spawn", {"child": pid, "initial_call": proc.initial_call, "link": link})
        if link:
            _add_link(parent, proc)
        if monitor:
            ref = Ref()
            # _add_monitor(parent, proc, ref), inline: every spawn_monitor passes here
            if parent.monitors is None:
                parent.monitors = {ref: pid}
            else:
                parent.monitors[ref] = pid
            proc.monitored_by = {ref: parent}
            if parent.tracers or "monitor" in watch:
                rt.emit(parent, "monitor", {"target": pid, "ref": ref})
    if rt.spawn_hooks:
        for hook in rt.spawn_hooks:
            hook(proc, parent)
    if direct:
        # What loop.create_task() does without a task factory, minus its checks
        # and naming (a process is named by its pid and initial call instead).
        # An eager factory is passed by: a process starts on the next iteration.
        proc.task = _Task(_process_main(proc, fn, args), loop=loop)
    else:
        proc.task = loop.create_task(_process_main(proc, fn, args))
    if proc.tracers or "spawned" in watch:
        rt.emit(proc, "spawned", {"parent": proc.parent, "initial_call": proc.initial_call})
    if name is not None and (proc.tracers or "register" in watch):
        rt.emit(proc, "register", {"name": name})
    return pid, ref


def spawn_link(
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    name: str | None = None,
    trap_exit: bool = False,
) -> Pid:
    """Spawn and link to the caller in one step (no window where the child is unlinked).

    Called from a plain task (not a process) there is nobody to link to and it
    behaves like `spawn`.
    """
    return _spawn(fn, args, name, True, trap_exit, False)[0]


def spawn_monitor(
    fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None
) -> tuple[Pid, Ref]:
    """Spawn and monitor in one step; returns ``(pid, ref)``.

    >>> import suptrace
    >>> async def main():
    ...     async def work():
    ...         return 42
    ...     pid, ref = suptrace.spawn_monitor(work)
    ...     down = await suptrace.receive(lambda m: isinstance(m, suptrace.Down))
    ...     return down.ref == ref, down.reason
    >>> suptrace.run(main)
    (True, 'normal')
    """
    return _spawn(fn, args, name, False, False, True)  # type: ignore[return-value]


def self_pid() -> Pid:
    """The pid of the calling process."""
    return current_process("self_pid()").pid


# -- messages ------------------------------------------------------------------------------


def resolve(
    dest: Pid | str, what: str = "send", request: Any = None, timeout: float | None = None
) -> Process | None:
    """The live process behind a pid or registered name.

    Returns None for a dead pid; raises `NoProc` for an unregistered name
    (carrying ``request`` and ``timeout`` when resolving for a call).
    """
    if type(dest) is Pid:
        return dest._proc or process_of(dest)
    if isinstance(dest, str):
        rt = current_runtime(f"{what}()")
        proc = rt.names.get(dest)
        if proc is None:
            raise noproc_error(rt, dest, request, timeout)
        return proc
    raise TypeError(f"{what}() needs a Pid or a registered name (str), got {dest!r}")


def noproc_error(rt: Runtime | None, dest: Any, request: Any = None, timeout: float | None = None) -> NoProc:
    """A `NoProc` that tells the story of a vanished name when there is one."""
    detail = None
    if rt is not None and isinstance(dest, str):
        stone = rt.tombstones.get(dest)
        holder = rt.names.get(dest)
        if holder is not None and holder.reason is None:
            detail = (
                f"{holder.pid} registered as {dest} is exiting "
                f"({reason_text(holder.pending_exit, 1000)})"
            )
        elif stone is not None:
            detail = stone.story()
        else:
            detail = "no process is registered under this name (see suptrace.registered())"
    elif type(dest) is Pid:
        detail = "the process is not alive"
    return NoProc(NOPROC, dest, request, timeout, detail)


def send(dest: Pid | str, msg: Any) -> None:
    """Send ``msg`` to a pid or registered name. Never blocks.

    A message to a dead pid is dropped (tracing sees a ``dead_letter``); a
    message to a name nobody holds raises `NoProc`.
    """
    proc = dest._proc if type(dest) is Pid else resolve(dest)
    if proc is None:  # a pid without its handle (parsed, unpickled) or a dead one
        proc = process_of(dest)  # type: ignore[arg-type]
    sender = _current_process.get()
    if sender is not None:
        sender.messages_out += 1
        rec = sender.recorder
        now = 0.0
        if rec is not None:
            now = _now()
            rec.append((now, "send", dest, msg))
        elif sender.runtime.recorder_size:
            sender.record("send", dest, msg)
        if "send" in sender.runtime.watch or sender.tracers:
            sender.runtime.emit(sender, "send", {"to": dest if proc is None else proc.pid, "msg": msg})
        if proc is None:
            if "dead_letter" in sender.runtime.watch or sender.tracers:
                sender.runtime.emit(sender, "dead_letter", {"to": dest, "msg": msg})
            return
        proc.deliver(msg, sender.pid, now)
        return
    if proc is None:
        rt = maybe_runtime()
        if rt is not None and "dead_letter" in rt.watch:
            rt.emit(None, "dead_letter", {"to": dest, "msg": msg})
        return
    proc.deliver(msg, None)


async def receive(
    match: Callable[[Any], bool] | None = None, timeout: float | None = None
) -> Any:
    """Take the next message, or the first one for which ``match(msg)`` is true.

    Messages that do not match stay in the mailbox, in order (selective receive).
    With ``timeout`` (seconds) raises `TimeoutError` when nothing matching arrives;
    ``timeout=0`` only looks at what is already there.

    >>> import suptrace
    >>> async def main():
    ...     me = suptrace.self_pid()
    ...     suptrace.send(me, "low")
    ...     suptrace.send(me, ("urgent", 1))
    ...     first = await suptrace.receive(lambda m: isinstance(m, tuple))
    ...     return first, await suptrace.receive(timeout=1)
    >>> suptrace.run(main)
    (('urgent', 1), 'low')
    """
    proc = _current_process.get()
    if proc is None:
        proc = current_process("receive()")  # raises: not inside a process
    loop = proc.runtime.loop
    if proc.task is not _running_task(loop):
        raise not_the_process(proc, "receive()")  # a task the process created
    scanned = 0
    mb = proc.mailbox
    if mb:
        if match is None:
            item = mb.popleft()
            if type(item) is Envelope:
                proc.inbound = item.ctx
                return item.msg
            return item
        found, scanned = proc.extract(match, 0)
        if found is not NOTHING:
            return found
    if timeout is not None and timeout <= 0:
        raise TimeoutError(f"receive(timeout={timeout}): no matching message")
    handle = None
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        waiter = loop.create_future()
        proc.waiter = waiter
        if deadline is not None:
            handle = loop.call_at(deadline, _expire, waiter)
        proc.status = "waiting"
        try:
            woke = await waiter
        finally:
            if proc.status == "waiting":
                proc.status = "running"
            if proc.waiter is waiter:
                proc.waiter = None
            if handle is not None:
                handle.cancel()
        mb = proc.mailbox
        if mb:
            if match is None:
                item = mb.popleft()
                if type(item) is Envelope:
                    proc.inbound = item.ctx
                    return item.msg
                return item
            found, scanned = proc.extract(match, scanned)
            if found is not NOTHING:
                return found
        if woke is _TIMEOUT:
            raise TimeoutError(f"receive(timeout={timeout}): no matching message in {timeout}s")


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_result(_TIMEOUT)


# -- links and monitors -------------------------------------------------------------------


def _add_link(a: Process, b: Process) -> None:
    if a.links is None:
        a.links = set()
    if b.links is None:
        b.links = set()
    if b.pid in a.links:
        return
    a.links.add(b.pid)
    b.links.add(a.pid)
    rt = a.runtime
    if "link" in rt.watch or a.tracers:
        rt.emit(a, "link", {"peer": b.pid})
    if "getting_linked" in rt.watch or b.tracers:
        rt.emit(b, "getting_linked", {"peer": a.pid})


def _add_monitor(watcher: Process, target: Process, ref: Ref) -> None:
    if watcher.monitors is None:
        watcher.monitors = {}
    watcher.monitors[ref] = target.pid
    if target.monitored_by is None:
        target.monitored_by = {}
    target.monitored_by[ref] = watcher
    rt = watcher.runtime
    if "monitor" in rt.watch or watcher.tracers:
        rt.emit(watcher, "monitor", {"target": target.pid, "ref": ref})


def link(pid: Pid) -> None:
    """Link the caller and ``pid``: when either dies the other gets an exit signal.

    Linking to a dead process raises `NoProc`, unless the caller traps exits:
    then ``ExitMsg(pid, "noproc")`` arrives instead. Linking twice, or to
    yourself, does nothing.
    """
    me = current_process("link()")
    if type(pid) is not Pid:
        raise TypeError(f"link() needs a Pid, got {pid!r}")
    if pid == me.pid:
        return
    target = pid._proc or process_of(pid)
    if target is None or not target.alive:
        if me.trap:
            me.deliver(ExitMsg(pid, NOPROC), pid)
            return
        raise noproc_error(me.runtime, pid)
    _add_link(me, target)


def unlink(pid: Pid) -> None:
    """Remove a link. An `ExitMsg` that already arrived stays in the mailbox."""
    me = current_process("unlink()")
    if me.links is None or pid not in me.links:
        return
    me.links.discard(pid)
    target = pid._proc or process_of(pid)
    if target is not None and target.links is not None:
        target.links.discard(me.pid)
    rt = me.runtime
    if "unlink" in rt.watch or me.tracers:
        rt.emit(me, "unlink", {"peer": pid})


def monitor(target: Pid | str) -> Ref:
    """Monitor a process; a `Down` message arrives when it dies.

    A dead pid or an unregistered name gives an immediate ``Down(ref, target,
    "noproc")``. Every call makes an independent monitor.
    """
    me = current_process("monitor()")
    ref = Ref()
    if isinstance(target, str):
        proc = me.runtime.names.get(target)
    elif type(target) is Pid:
        proc = target._proc or process_of(target)
    else:
        raise TypeError(f"monitor() needs a Pid or a registered name, got {target!r}")
    if proc is None or proc.reason is not None:
        me.deliver(Down(ref, target, NOPROC), None)  # type: ignore[arg-type]
        return ref
    # A process that is exiting (signalled, still unwinding) is monitored normally:
    # the Down carries its real exit reason, as OTP reports for a dying process.
    _add_monitor(me, proc, ref)
    return ref


def demonitor(ref: Ref, flush: bool = False) -> None:
    """Remove a monitor; with ``flush=True`` also drop its `Down` if already queued."""
    me = current_process("demonitor()")
    target = me.monitors.pop(ref, None) if me.monitors else None
    if target is not None:
        tproc = target._proc
        if tproc is not None and tproc.monitored_by:
            tproc.monitored_by.pop(ref, None)
        rt = me.runtime
        if "demonitor" in rt.watch or me.tracers:
            rt.emit(me, "demonitor", {"target": target, "ref": ref})
    if flush and me.mailbox:
        while me.extract(lambda m: type(m) is Down and m.ref == ref)[0] is not NOTHING:
            pass


def watch(proc: Process, callback: WatchCallback) -> Ref:
    """Internal monitor: ``callback(ref, pid, reason)`` runs when ``proc`` dies.

    Used by `call` and tooling that are not processes themselves.
    """
    ref = Ref()
    if proc.monitored_by is None:
        proc.monitored_by = {}
    proc.monitored_by[ref] = callback
    return ref


def unwatch(proc: Process, ref: Ref) -> None:
    mb = proc.monitored_by
    if mb:
        mb.pop(ref, None)


# -- exit signals --------------------------------------------------------------------------


def exit(pid: Pid | str, reason: Any) -> None:  # OTP's name, shadowing the builtin
    """Send an exit signal to ``pid`` (OTP's ``exit/2``).

    ``"kill"`` cannot be trapped: the target dies with ``"killed"``. ``"normal"``
    is ignored by a non-trapping target other than the caller. A trapping target
    gets ``ExitMsg(sender, reason)``. A dead target is ignored.
    """
    me = maybe_process()
    rt = me.runtime if me is not None else current_runtime("exit()")
    target = resolve(pid, "exit") if isinstance(pid, str) else (pid._proc or process_of(pid) if type(pid) is Pid else None)
    if type(pid) is not Pid and not isinstance(pid, str):
        raise TypeError(f"exit() needs a Pid or a registered name, got {pid!r}")
    if target is None:
        return
    sender = me.pid if me is not None else rt.outside_pid
    if target is me and me is not None:
        if _atom(reason, KILL):
            raise Exit(KILLED)
        if not me.trap:
            raise Exit(reason)
    target.signal_exit(sender, reason, False)


def trap_exit(flag: bool) -> bool:
    """Turn exit trapping on or off for the caller; returns the previous value."""
    me = current_process("trap_exit()")
    previous = me.trap
    me.trap = bool(flag)
    return previous


# -- registry ------------------------------------------------------------------------------


def _check_name(rt: Runtime, name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise RegistrationError(f"a registered name must be a non-empty str, got {name!r}")
    holder = rt.names.get(name)
    if holder is not None and holder.alive:
        raise RegistrationError(f"name {name!r} is already registered to {holder.pid}")


def register(name: str, pid: Pid) -> None:
    """Register ``name`` for ``pid``. One name per process, one process per name.

    The name is released when the process dies.
    """
    rt = current_runtime("register()")
    _check_name(rt, name)
    proc = pid._proc or process_of(pid) if type(pid) is Pid else None
    if proc is None or not proc.alive:
        raise noproc_error(rt, pid)
    if proc.name is not None:
        raise RegistrationError(f"{pid} is already registered as {proc.name!r}")
    proc.name = name
    rt.names[name] = proc
    rt.tombstones.pop(name, None)
    if "register" in rt.watch or proc.tracers:
        rt.emit(proc, "register", {"name": name})


def unregister(name: str) -> None:
    """Remove a registered name."""
    rt = current_runtime("unregister()")
    proc = rt.names.pop(name, None) if isinstance(name, str) else None
    if proc is None:
        raise RegistrationError(f"name {name!r} is not registered")
    proc.name = None
    if "unregister" in rt.watch or proc.tracers:
        rt.emit(proc, "unregister", {"name": name, "reason": None})


def whereis(name: str) -> Pid | None:
    """The pid registered under ``name``, or None."""
    rt = current_runtime("whereis()")
    proc = rt.names.get(name)
    return proc.pid if proc is not None and proc.alive else None


def registered() -> list[str]:
    """All registered names, sorted."""
    rt = current_runtime("registered()")
    return sorted(n for n, p in rt.names.items() if p.alive)


def process_info(target: Pid | str) -> dict[str, Any] | None:
    """What the runtime knows about a live process, or None if it is not alive.

    Keys include ``pid``, ``registered_name``, ``status`` (``running``,
    ``waiting`` in receive, ``exiting``), ``message_queue_len``, ``links``,
    ``monitors``, ``monitored_by``, ``trap_exit``, ``initial_call``,
    ``ancestors``, ``current_stacktrace`` (where it awaits now),
    ``messages_in`` and ``messages_out``.
    """
    if isinstance(target, str):
        rt = current_runtime("process_info()")
        proc = rt.names.get(target)
    elif type(target) is Pid:
        proc = target._proc or process_of(target)
    else:
        raise TypeError(f"process_info() needs a Pid or a registered name, got {target!r}")
    if proc is None or proc.reason is not None:
        return None
    return proc.info()


def is_alive(pid: Pid) -> bool:
    """True while the process runs (false once an exit signal has doomed it)."""
    proc = pid._proc or process_of(pid)
    return proc is not None and proc.alive


def format_reason(reason: Any) -> str:
    """A readable, one-paragraph form of an exit reason (exceptions with their traceback tail)."""
    if isinstance(reason, BaseException):
        try:
            lines = traceback.format_exception(reason)
        except Exception:  # a message whose __str__ raises: the bounded one-line form
            return safe_repr(reason, 4000)
        text = "".join(lines).rstrip()
        return text if len(text) <= 20_000 else text[:10_000] + " … " + text[-10_000:]
    return safe_repr(reason, 4000)
