"""Per-node runtime state: the process table, the name registry, tombstones and
the event hooks. One `Runtime` per node; `current_runtime()` finds it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from suptrace.core.errors import NodeError
from suptrace.core.events import KINDS, TraceEvent
from suptrace.core.saferepr import exception_str, reason_text, safe_str
from suptrace.core.terms import Pid
from suptrace.core.timers import Deadlines

if TYPE_CHECKING:
    from suptrace.core.process import Process

__all__ = [
    "Runtime",
    "Instrument",
    "InlineRecording",
    "SERIES_LIMIT",
    "Tombstone",
    "EventHandler",
    "current_runtime",
    "current_process",
    "maybe_runtime",
    "maybe_process",
    "not_the_process",
    "process_of",
]

EventHandler = Callable[[TraceEvent], None]

#: The runtime's own clock, bound once: a live call trace of ``time:time``
#: patches the module attribute and must never see (or recurse into) the runtime.
_wall = time.time
_strftime = time.strftime
_localtime = time.localtime


class Instrument(Protocol):
    """Per-message instrumentation, called on the hot path only when installed.

    ``capture`` runs in the sender when a message is enqueued (with the receiving
    process, the message and the sender's pid); its result comes back as ``ctx``
    when the receiver takes the message. A GenServer calls
    ``handle_begin``/``handle_end`` around each callback (``kind`` ``"call"``,
    ``"cast"`` or ``"info"``, and ``"init"`` with no message around its ``init``),
    and `call` calls ``call_begin``/``call_end`` around the whole request, or
    ``call_refused`` when it fails before sending it.
    """

    def capture(self, dest: Process, msg: Any, sender: Pid | None) -> Any: ...

    def handle_begin(self, proc: Process, kind: str, msg: Any, ctx: Any) -> Any: ...

    def handle_end(self, token: Any, error: BaseException | None) -> None: ...

    def call_begin(self, proc: Process | None, server: Process, request: Any) -> Any: ...

    def call_end(self, token: Any, error: BaseException | None) -> None: ...

    def call_refused(self, proc: Process | None, dest: Any, request: Any, error: BaseException) -> None:
        """A `call` from ``proc`` that failed before its request was sent: nobody
        lives behind ``dest`` (`NoProc`), or a server called itself."""


#: Durations an `InlineRecording` holds in one series before its instrument must
#: take them (the GenServer loop then hands the handling to ``finish`` instead).
SERIES_LIMIT = 65536


class InlineRecording(Protocol):
    """What an instrument keeps on a process (`Process.instrument_state`) when it lets
    the GenServer loop record that process's casts and plain messages itself, without
    a ``handle_begin``/``handle_end`` call per message (OpenTelemetry's "failures"
    mode: its `Current` span).

    For each such message the loop builds the token ``([t0, t1, None, msg, None,
    None], self, t0, process, label, kind)``, appends it to ``ring``, adds one to
    ``count``, sets it as ``span`` while the handler runs, and hands it to ``sample``
    in the ``ratio`` share. After a healthy handling it appends the duration to the
    series ``keys[kind]`` holds for ``label``, or calls ``finish`` when it cannot.
    ``sample`` and ``finish`` must never raise: they run in the process they watch.
    """

    inline: bool
    ring: deque[Any]
    count: int
    span: Any
    ratio: float
    keys: dict[str, tuple[str, Any]]
    sample: Callable[[tuple[Any, ...]], None]
    finish: Callable[[tuple[Any, ...]], None]


#: The process whose code is running now (set in each process task's context).
current_process_var: contextvars.ContextVar[Process | None] = contextvars.ContextVar(
    "suptrace_process", default=None
)
#: The node a plain (non-process) task belongs to.
_current_runtime: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "suptrace_runtime", default=None
)
#: Fallback for callbacks and tasks created outside the node's context.
_runtime_by_loop: dict[asyncio.AbstractEventLoop, Runtime] = {}


def _task_of_loop_slow(loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any] | None:
    return asyncio.current_task(loop)


#: The task running now on a loop. asyncio keeps a ``{loop: task}`` dict that its
#: tasks update at each step: reading it is a dict lookup, several times cheaper
#: than `asyncio.current_task()`. Versions without that dict get the function.
running_task: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None]
try:
    from asyncio.tasks import _current_tasks as _tasks_by_loop  # type: ignore[attr-defined]

    running_task = _tasks_by_loop.get
except ImportError:  # pragma: no cover - interpreters without the dict
    running_task = _task_of_loop_slow


@dataclass
class Tombstone:
    """What is left of a registered process after it died."""

    name: str
    pid: Pid
    reason: Any
    ts: float
    initial_call: str
    last_events: Sequence[TraceEvent] = field(default_factory=list)
    #: Filled in by supervisors: why the process was not restarted, cause of its exit.
    notes: list[str] = field(default_factory=list)

    def story(self) -> str:
        """One sentence: what happened to this name."""
        when = _strftime("%H:%M:%S", _localtime(self.ts))
        text = f"{self.name} is gone: {self.pid} exited {self.reason_text()} at {when}"
        if self.notes:
            text += " " + safe_str("; ".join(self.notes), 1000)
        return text

    def reason_text(self, limit: int = 1000) -> str:
        """The exit reason as bounded text (never raises, whatever the reason is)."""
        reason = self.reason
        if isinstance(reason, BaseException):
            return f"{type(reason).__name__}({exception_str(reason, limit)})"
        return reason_text(reason, limit)


def handler_name(fn: Any) -> str:
    """``module.qualname`` of a handler (bounded, never raises)."""
    name = getattr(fn, "__qualname__", None) if not isinstance(fn, type) else None
    try:
        module = getattr(fn, "__module__", None)
    except Exception:
        module = None
    if isinstance(name, str):
        return safe_str(f"{module}.{name}" if isinstance(module, str) else name, 200)
    return safe_str(fn, 200)


_SPAWN_KINDS = frozenset({"spawn", "monitor", "spawned", "register"})
_DEATH_KINDS = frozenset({"exit", "unregister"})


class Runtime:
    """The process table and registry of one node."""

    #: How many tombstones a node keeps (oldest dropped first).
    MAX_TOMBSTONES = 1000

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.loop = loop
        #: The live processes by pid number (an int hashes in C; a `Pid` would run its
        #: Python ``__hash__`` at each spawn and death). Look a pid up with `process`.
        self.procs: dict[int, Process] = {}
        self.names: dict[str, Process] = {}
        self.tombstones: OrderedDict[str, Tombstone] = OrderedDict()
        #: Global event handlers as ``(fn, kinds or None)``; empty when nobody listens.
        self.hooks: tuple[tuple[EventHandler, frozenset[str] | None], ...] = ()
        #: The kinds some global hook wants: the hot path's one check.
        self.watch: frozenset[str] = frozenset()
        #: Whether a hook wants one of the events a spawn emits (``spawn``, ``monitor``,
        #: ``spawned``, ``register``): spawn's one check when nobody does.
        self.spawn_watched = False
        #: Whether a hook wants ``exit`` or ``unregister`` (what every death may emit).
        self.death_watched = False
        #: Observer failures (event, report, trace and death handlers), all counted here.
        self.hook_errors = 0
        #: Failures per handler: the first one of each handler is logged, the rest counted.
        self.handler_failures: dict[Any, int] = {}
        self.started_at = time.time()
        self.closing = False
        #: The numbers of this node's pids, in order of spawn (``<0.N.0>``).
        self.pid_numbers = itertools.count(1)
        #: Tells this node's pids from another node's (or another run's) once unpickled,
        #: as the creation number in an Erlang pid does.
        self.creation = os.urandom(8).hex()
        #: The pid exit signals and messages are sent "from" outside any process.
        self.outside_pid = Pid(0)
        #: Called with each new process right after it is created (tracing "new").
        self.spawn_hooks: tuple[Callable[[Process, Process | None], None], ...] = ()
        #: Called with a process right before its death is announced (flight recorder).
        self.death_hooks: tuple[Callable[[Process, Any], None], ...] = ()
        #: Message/handling instrumentation (the OpenTelemetry bridge) or None.
        self.instrument: Instrument | None = None
        #: Flight recorder: how many recent events each process keeps (0: off).
        self.recorder_size = 16
        #: Timeouts of calls and receives.
        self.deadlines = Deadlines(loop)
        base = asyncio.BaseEventLoop
        kind = type(loop)
        #: True for an asyncio loop that keeps asyncio's own ``get_task_factory``:
        #: the hot path then reads its ``_task_factory`` without a method call.
        self.plain_loop = kind.get_task_factory is base.get_task_factory
        #: ``loop.create_future()``: for asyncio's own loops a C-level partial of
        #: `asyncio.Future` (what that method returns, without its Python frame).
        self.new_future: Callable[[], asyncio.Future[Any]] = (
            functools.partial(asyncio.Future, loop=loop)
            if kind.create_future is base.create_future
            else loop.create_future
        )
        #: `new_future` for code known to run in a task of this node's loop (a process
        #: waiting in `receive`): asyncio's `Future()` takes the running loop, which
        #: costs less than passing it by keyword.
        self.running_future: Callable[[], asyncio.Future[Any]] = (
            asyncio.Future if kind.create_future is base.create_future else loop.create_future
        )

    # -- pids -------------------------------------------------------------------------

    def process(self, pid: Pid) -> Process | None:
        """The live-or-dying process of this node that ``pid`` names, or None: a pid
        of another node (unpickled from elsewhere, or parsed as ``<1.42.0>``), or one
        with a serial this node never gives, names none."""
        proc = pid._proc
        if proc is not None:
            return proc if proc.runtime is self else None
        home = getattr(pid, "_home", None)
        if pid.serial or (home is not None and home != self.creation):
            return None
        return self.procs.get(pid.number)

    # -- activation -------------------------------------------------------------------

    def activate(self) -> contextvars.Token[Runtime | None]:
        _runtime_by_loop[self.loop] = self
        return _current_runtime.set(self)

    def deactivate(self, token: contextvars.Token[Runtime | None]) -> None:
        if _runtime_by_loop.get(self.loop) is self:
            del _runtime_by_loop[self.loop]
        try:
            _current_runtime.reset(token)
        except ValueError:  # reset from another context: just clear it
            _current_runtime.set(None)

    # -- events -----------------------------------------------------------------------

    def add_event_handler(
        self, fn: EventHandler, kinds: Iterable[str] | None = None
    ) -> Callable[[], None]:
        wanted: frozenset[str] | None = None
        if kinds is not None:
            wanted = frozenset([kinds] if isinstance(kinds, str) else kinds)
            unknown = wanted - KINDS
            if unknown:
                raise ValueError(
                    f"unknown event kind(s) {sorted(unknown)}; known kinds: {sorted(KINDS)}"
                )
        entry = (fn, wanted)
        self.hooks = (*self.hooks, entry)
        self._rewatch()

        def remove() -> None:
            self.hooks = tuple(h for h in self.hooks if h is not entry)
            self._rewatch()

        return remove

    def _rewatch(self) -> None:
        kinds: set[str] = set()
        for _, wanted in self.hooks:
            kinds |= KINDS if wanted is None else wanted
        self.watch = frozenset(kinds)
        self.spawn_watched = not _SPAWN_KINDS.isdisjoint(kinds)
        self.death_watched = not _DEATH_KINDS.isdisjoint(kinds)

    def emit(self, proc: Process | None, kind: str, data: dict[str, Any]) -> None:
        """Build one event and hand it to every interested handler.

        Callers check ``runtime.hooks or proc.tracers`` first, so nothing is
        built when nobody listens. A failing handler never harms the caller.
        """
        if proc is not None:
            event = TraceEvent(_wall(), proc.pid, proc.name, kind, data)
            tracers = proc.tracers
        else:
            event = TraceEvent(_wall(), None, None, kind, data)
            tracers = None
        if self.hooks:
            self._dispatch(self.hooks, event, kind)
        if tracers:
            self._dispatch_all(tracers, event)

    def _dispatch(
        self,
        handlers: tuple[tuple[EventHandler, frozenset[str] | None], ...],
        event: TraceEvent,
        kind: str,
    ) -> None:
        # One try around the loop (free until something raises); after a failure the
        # loop resumes with the next handler, so one broken observer costs nobody else.
        i = 0
        count = len(handlers)
        while i < count:
            try:
                while i < count:
                    fn, kinds = handlers[i]
                    i += 1
                    if kinds is None or kind in kinds:
                        fn(event)
            except Exception as exc:  # an observer must never break the runtime
                self.handler_failed("event handler", handlers[i - 1][0], exc, kind)

    def _dispatch_all(self, handlers: Sequence[EventHandler], event: TraceEvent) -> None:
        i = 0
        count = len(handlers)
        while i < count:
            try:
                while i < count:
                    fn = handlers[i]
                    i += 1
                    fn(event)
            except Exception as exc:
                self.handler_failed("trace handler", handlers[i - 1], exc, event.kind)

    def handler_failed(self, what: str, fn: Any, exc: BaseException, context: str = "") -> None:
        """Count an observer's failure; log the first one of each handler as a WARNING.

        The handler stays subscribed (the rule of the hook API): a handler that
        fails on one odd event keeps serving the others. Its later failures are
        counted in ``hook_errors`` and ``handler_failures``, not logged again.
        """
        self.hook_errors += 1
        try:
            key: Any = fn
            hash(key)
        except Exception:
            key = id(fn)
        seen = self.handler_failures.get(key, 0)
        if len(self.handler_failures) < 10_000 or seen:
            self.handler_failures[key] = seen + 1
        if seen:
            return
        try:
            from loguru import logger

            on = f" on a {context!r} event" if context else ""
            if what == "observer":  # the runtime's own telling of an event failed
                logger.opt(exception=exc).warning(
                    "suptrace: telling the observers{} failed in {}: {}; the process's exit "
                    "was still fully processed (later failures are counted in hook_errors, "
                    "not logged again)",
                    on,
                    handler_name(fn),
                    safe_str(exc, 500),
                )
                return
            logger.opt(exception=exc).warning(
                "suptrace {} {} raised {}{}; the event was still fully processed and the "
                "handler stays subscribed (its later failures are counted in "
                "hook_errors, not logged again): fix the handler or unsubscribe it",
                what,
                handler_name(fn),
                safe_str(exc, 500),
                on,
            )
        except Exception:
            pass

    # -- tombstones -------------------------------------------------------------------

    def bury(self, stone: Tombstone) -> None:
        self.tombstones.pop(stone.name, None)
        self.tombstones[stone.name] = stone
        while len(self.tombstones) > self.MAX_TOMBSTONES:
            self.tombstones.popitem(last=False)


def maybe_process() -> Process | None:
    """The current process, or None outside any process.

    A task that a process created with plain asyncio inherits the process in
    its context but is not that process: it gets None here.
    """
    proc = current_process_var.get()
    if proc is not None and proc.task is not running_task(proc.runtime.loop):
        return None
    return proc


def current_process(what: str = "this function") -> Process:
    """The current process; raises `NodeError` outside one (and in a task that a
    process created with plain asyncio: a task is not a process)."""
    proc = current_process_var.get()
    if proc is None:
        raise NodeError(
            f"{what} must be called from inside a suptrace process "
            "(a function started with spawn(), or main under suptrace.run())"
        )
    if proc.task is not running_task(proc.runtime.loop):
        raise not_the_process(proc, what)
    return proc


def not_the_process(proc: Process, what: str) -> NodeError:
    """The error for process-only operations in a task a process created."""
    task = asyncio.current_task()
    where = f"task {task.get_name()!r}" if task is not None else "a callback"
    who = f"{proc.pid} ({proc.name})" if proc.name else str(proc.pid)
    return NodeError(
        f"{what} was called from {where}, which process {who} created with plain asyncio "
        "(create_task, TaskGroup, gather, a server's connection handler; on Python 3.11 "
        "also asyncio.wait_for and shield, which run their awaitable in a task): a task is "
        "not a process and has neither its pid nor its mailbox. Pass the pid in "
        "(pid = suptrace.self_pid() before creating the task) and send to it, use "
        "receive(timeout=...) and call(..., timeout=...) rather than asyncio.wait_for, or "
        "make the concurrent work a process of its own with suptrace.spawn_link(fn, ...)"
    )


def maybe_runtime() -> Runtime | None:
    """The current node's runtime, or None outside any node."""
    proc = current_process_var.get()
    if proc is not None:
        return proc.runtime
    rt = _current_runtime.get()
    if rt is not None:
        return rt
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return _runtime_by_loop.get(loop)


def current_runtime(what: str = "this function") -> Runtime:
    """The current node's runtime; raises `NodeError` outside a running node."""
    rt = maybe_runtime()
    if rt is None or (rt.closing and rt.loop.is_closed()):
        raise NodeError(
            f"{what} needs a running suptrace node: use suptrace.run(main) or "
            "`async with suptrace.Node(): ...` around the code that calls it"
        )
    return rt


def process_of(pid: Pid) -> Process | None:
    """The live-or-dying process of this node that ``pid`` names, or None.

    The runtime's own pids carry their process; a pid that carries none (parsed
    from text, unpickled, or of a dead process) is looked up in the current
    node's process table. A pid of another node finds nothing: it is a dead pid,
    as in OTP.
    """
    proc = pid._proc
    if proc is not None:
        return proc
    rt = maybe_runtime()
    if rt is None:
        return None
    return rt.process(pid)
