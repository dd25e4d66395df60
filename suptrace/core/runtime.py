"""Per-node runtime state: the process table, the name registry, tombstones and
the event hooks. One `Runtime` per node; `current_runtime()` finds it.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from suptrace.core.errors import NodeError
from suptrace.core.events import KINDS, TraceEvent
from suptrace.core.terms import Pid
from suptrace.core.timers import Deadlines

if TYPE_CHECKING:
    from suptrace.core.process import Process

__all__ = [
    "Runtime",
    "Instrument",
    "Tombstone",
    "EventHandler",
    "current_runtime",
    "current_process",
    "maybe_runtime",
    "maybe_process",
]

EventHandler = Callable[[TraceEvent], None]


class Instrument(Protocol):
    """Per-message instrumentation, called on the hot path only when installed.

    ``capture`` runs in the sender when a message is enqueued (with the receiving
    process, the message and the sender's pid); its result comes back as ``ctx``
    when the receiver takes the message. A GenServer calls
    ``handle_begin``/``handle_end`` around each callback, and `call` calls
    ``call_begin``/``call_end`` around the whole request.
    """

    def capture(self, dest: Process, msg: Any, sender: Pid | None) -> Any: ...

    def handle_begin(self, proc: Process, kind: str, msg: Any, ctx: Any) -> Any: ...

    def handle_end(self, token: Any, error: BaseException | None) -> None: ...

    def call_begin(self, proc: Process | None, server: Process, request: Any) -> Any: ...

    def call_end(self, token: Any, error: BaseException | None) -> None: ...

#: The process whose code is running now (set in each process task's context).
_current_process: contextvars.ContextVar[Process | None] = contextvars.ContextVar(
    "suptrace_process", default=None
)
#: The node a plain (non-process) task belongs to.
_current_runtime: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "suptrace_runtime", default=None
)
#: Fallback for callbacks and tasks created outside the node's context.
_runtime_by_loop: dict[asyncio.AbstractEventLoop, Runtime] = {}


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
        when = time.strftime("%H:%M:%S", time.localtime(self.ts))
        text = f"{self.name} is gone: {self.pid} exited {_reason_text(self.reason)} at {when}"
        if self.notes:
            text += " " + "; ".join(self.notes)
        return text


def _reason_text(reason: Any) -> str:
    if isinstance(reason, str):
        return reason
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}({reason})"
    return repr(reason)


class Runtime:
    """The process table and registry of one node."""

    #: How many tombstones a node keeps (oldest dropped first).
    MAX_TOMBSTONES = 1000

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.loop = loop
        self.procs: dict[Pid, Process] = {}
        self.names: dict[str, Process] = {}
        self.tombstones: OrderedDict[str, Tombstone] = OrderedDict()
        #: Global event handlers as ``(fn, kinds or None)``; empty when nobody listens.
        self.hooks: tuple[tuple[EventHandler, frozenset[str] | None], ...] = ()
        #: The kinds some global hook wants: the hot path's one check.
        self.watch: frozenset[str] = frozenset()
        self.hook_errors = 0
        self.started_at = time.time()
        self.closing = False
        self._numbers = itertools.count(1)
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
        #: Observers and services of the node, by name ("reports", "tracer", ...).
        self.services: dict[str, Any] = {}

    # -- pids -------------------------------------------------------------------------

    def new_pid(self) -> Pid:
        return Pid(next(self._numbers))

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

    def emit(self, proc: Process | None, kind: str, data: dict[str, Any]) -> None:
        """Build one event and hand it to every interested handler.

        Callers check ``runtime.hooks or proc.tracers`` first, so nothing is
        built when nobody listens. A failing handler never harms the caller.
        """
        if proc is not None:
            event = TraceEvent(time.time(), proc.pid, proc.name, kind, data)
            tracers = proc.tracers
        else:
            event = TraceEvent(time.time(), None, None, kind, data)
            tracers = None
        for fn, kinds in self.hooks:
            if kinds is None or kind in kinds:
                self._call_handler(fn, event)
        if tracers:
            for fn in tracers:
                self._call_handler(fn, event)

    def _call_handler(self, fn: EventHandler, event: TraceEvent) -> None:
        try:
            fn(event)
        except Exception as exc:  # a broken observer must not break the runtime
            self.hook_errors += 1
            if self.hook_errors <= 3:
                self.loop.call_exception_handler(
                    {
                        "message": f"suptrace event handler {fn!r} failed on a "
                        f"{event.kind!r} event (error {self.hook_errors}; later errors "
                        "are counted, not shown)",
                        "exception": exc,
                    }
                )

    # -- tombstones -------------------------------------------------------------------

    def bury(self, stone: Tombstone) -> None:
        self.tombstones.pop(stone.name, None)
        self.tombstones[stone.name] = stone
        while len(self.tombstones) > self.MAX_TOMBSTONES:
            self.tombstones.popitem(last=False)


def maybe_process() -> Process | None:
    """The current process, or None outside any process."""
    return _current_process.get()


def current_process(what: str = "this function") -> Process:
    """The current process; raises `NodeError` outside one."""
    proc = _current_process.get()
    if proc is None:
        raise NodeError(
            f"{what} must be called from inside a suptrace process "
            "(a function started with spawn(), or main under suptrace.run())"
        )
    return proc


def maybe_runtime() -> Runtime | None:
    """The current node's runtime, or None outside any node."""
    proc = _current_process.get()
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
