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

This module holds the process record and its exit rules (`Process`). The other
concepts live in rooms of their own: `suptrace.core.mailbox` (posting and taking
messages), `suptrace.core.recorder` (the flight recorder), `suptrace.core.spawn`,
`suptrace.core.links` (links, monitors, exit signals) and
`suptrace.core.registry` (names). The package's public names are listed in
`suptrace`.
"""

from __future__ import annotations

import asyncio
import traceback
from asyncio import InvalidStateError
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import Any

from suptrace.core.events import TraceEvent
from suptrace.core.links import (
    WatchCallback,
)
from suptrace.core.mailbox import Envelope, extract
from suptrace.core.recorder import clock, record, recorded
from suptrace.core.runtime import Runtime, Tombstone, maybe_process
from suptrace.core.saferepr import safe_repr
from suptrace.core.terms import (
    KILL,
    KILLED,
    NORMAL,
    Down,
    ExitMsg,
    Pid,
    Ref,
    is_normal_exit,
    shown,
)
from suptrace.core.terms import is_atom as _atom

_new = object.__new__


class _DownDraft:
    """A `Down` while death fills it in: the same slots, so it is filled at plain
    attribute speed (a frozen dataclass's fields can only be set through their
    descriptors, each a call), then becomes the `Down` by taking its class."""

    __slots__ = Down.__slots__


_draft = _DownDraft()
_draft.__class__ = Down  # type: ignore[assignment]  # at import: a layout change fails here, not at a death
del _draft

__all__ = ["Process", "format_reason", "DEATH_CODES"]


class Process:
    """The runtime's record of one process. Users hold `Pid` values, not these."""

    __slots__ = (
        "__weakref__",
        "ancestors",
        "behaviour",
        "child_ancestors",
        "inbound",
        "initial_call",
        "instrument_state",
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

    # Spawn is the one maker of these records and sets every field itself, in
    # `suptrace.core.spawn` (no __init__: its frame would cost every spawn).
    pid: Pid
    runtime: Runtime
    name: str | None
    task: asyncio.Task[None] | None
    mailbox: deque[Any] | None
    #: The future a waiting `receive` (or server loop) sleeps on.
    waiter: asyncio.Future[Any] | None
    links: set[Pid] | None
    #: Monitors this process holds: ref -> target pid.
    monitors: dict[Ref, Pid] | None
    #: Who monitors this process: ref (or a pending call) -> watching process or callback.
    monitored_by: dict[Any, Process | WatchCallback] | None
    trap: bool
    #: "init", "running", "waiting", "exiting", "exited".
    status: str
    initial_call: str
    parent: Pid | None
    #: The parent's name (or pid) then its own ancestors, as OTP's $ancestors: one
    #: tuple the siblings share, made at the parent's first spawn.
    ancestors: tuple[Pid | str, ...]
    #: The ancestors this process's children get (made at its first spawn;
    #: `register` and `unregister` drop it, as they change the first of them).
    child_ancestors: tuple[Pid | str, ...] | None
    messages_in: int
    messages_out: int
    #: The exit reason once the process is dead.
    reason: Any
    #: The reason an exit signal decided, while the task unwinds.
    pending_exit: Any
    #: Process-level trace handlers (tuple) or None.
    tracers: tuple[Callable[[Any], None], ...] | None
    #: Flight recorder (a bounded deque of recent events) or None.
    recorder: deque[Any] | None
    result: Any
    started_at: float
    #: The behaviour object (GenServer, Supervisor) running in this process.
    behaviour: Any
    #: System processes (the control server...) are never traced by "all".
    system: bool
    #: What the process's own code said about why it is exiting (goes on the tombstone).
    notes: list[str] | None
    #: The context that came with the message being handled (instrumented nodes only).
    inbound: Any
    #: What the installed instrument keeps on the process (the OpenTelemetry bridge:
    #: its handling in progress and recent ones), None until the instrument sets it.
    instrument_state: Any

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
        flight recorder then reuses it instead of reading the clock again).
        `suptrace.core.mailbox.post` holds an inline copy of the common case (a
        live receiver with a mailbox and a recorder): keep both alike."""
        if self.reason is not None or self.pending_exit is not None:
            rt = self.runtime
            if "dead_letter" in rt.watch:
                rt.emit(maybe_process(), "dead_letter", {"to": self.pid, "msg": shown(msg)})
            return
        mb = self.mailbox
        if mb is None:
            mb = self.mailbox = deque()
        rt = self.runtime
        instrument = rt.instrument
        if instrument is None:
            mb.append(msg)
        else:
            ctx = instrument.capture(self, msg, sender)  # None: no context, no envelope
            mb.append(msg if ctx is None else Envelope(msg, ctx))  # instrument's context
        self.messages_in += 1
        rec = self.recorder
        if rec is not None:
            rec.append((ts or clock(), "receive", sender, msg))
        elif rt.recorder_size:
            record(self, "receive", sender, msg)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            try:  # noqa: SIM105 (no context manager on the hot path)
                waiter.set_result(None)
            except InvalidStateError:  # cancelled: the process is being killed
                pass
        if self.tracers or "receive" in rt.watch:
            rt.emit(self, "receive", {"from": sender, "msg": shown(msg)})

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
            record(self, "exit_signal", sender, (reason, action))
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

    # -- taking messages out (the one copy lives in suptrace.core.mailbox) ---------------

    extract = extract

    # -- flight recorder (suptrace.core.recorder) -----------------------------------------

    record = record
    recorded = recorded

    def recent_events(self) -> list[TraceEvent]:
        """The flight recorder's content as events, oldest first."""
        return list(recorded(self))

    # -- death --------------------------------------------------------------------------

    def finish(self, reason: Any) -> None:
        """Record the death and notify links, monitors and the registry."""
        if self.reason is not None:
            return
        self.reason = reason
        self.status = "exited"
        rt = self.runtime
        pid = self.pid
        rt.procs.pop(pid.number, None)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.cancel()
        name = self.name
        if name is not None and rt.names.get(name) is self:
            del rt.names[name]
        escaped: BaseException | None = None
        if (
            rt.death_watched
            or rt.death_hooks
            or self.tracers
            or (reason is not NORMAL and "crash" in rt.watch)
        ):  # somebody listens: _announce's own checks, the call only then
            try:
                self._announce(reason)
            except Exception as exc:  # an observer must never stop a death half-way
                rt.handler_failed("observer", self._announce, exc, "exit")
            except BaseException as exc:  # Exit, SystemExit...: after the death is complete
                rt.handler_failed("observer", self._announce, exc, "exit")
                escaped = exc
        if name is not None:
            stone = Tombstone(name, pid, reason, clock(), self.initial_call)
            if self.recorder is not None:
                stone.last_events = recorded(self)
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
            for peer in links:
                # A try per peer (free until something raises): a failure costs nobody else.
                try:
                    pproc = peer._proc
                    if pproc is not None:
                        if pproc.links is not None:
                            pproc.links.discard(pid)
                        pproc.signal_exit(pid, reason, True)
                except Exception as exc:  # instrumentation or tracing of one peer failed
                    rt.handler_failed("observer", rt.instrument or rt.emit, exc, "exit_signal")
        watchers = self.monitored_by
        if watchers:
            self.monitored_by = None
            watcher: Any  # a Process, or a callback (the runtime's own monitors)
            for ref, watcher in watchers.items():
                try:
                    if type(watcher) is Process:
                        if watcher.monitors is not None:
                            watcher.monitors.pop(ref, None)
                        if watcher.reason is None:
                            if watcher.tracers or "down" in rt.watch:
                                rt.emit(watcher, "down", {"target": pid, "ref": ref, "reason": reason})
                            down: Any = _DownDraft()  # make_down(ref, pid, reason)
                            down.ref = ref
                            down.pid = pid
                            down.reason = reason
                            down.__class__ = Down
                            watcher.deliver(down, pid)
                    else:
                        watcher(ref, pid, reason)
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
            and reason is not NORMAL  # the common exit, without a call
            and not is_normal_exit(reason)
        ):
            # Died by its own hand with an abnormal reason: what a crash report is made of.
            data = self._exit_data(reason)
            data["last_events"] = recorded(self)
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


#: The code of a death's own steps (`Process.finish` and the observers it tells): call
#: tracing counts the calls made from them as the runtime's, not the application's.
DEATH_CODES = (Process.finish.__code__, Process._announce.__code__)
