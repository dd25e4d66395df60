"""What a GenServer finds in its mailbox besides casts and plain messages, and
how it answers: `CallRequest` (which is also the `Caller` ``handle_call`` gets),
`SystemRequest` (``get_state``, ``statistics``, ``terminate``), `reply`.

A pending request is also what the node's deadlines keep for its timeout (its
`future` and `timeout`, see `suptrace.core.timers.Pending`) and the watcher that
fails its caller when the server dies first.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from suptrace.core.errors import CallExit
from suptrace.core.process import Process
from suptrace.core.runtime import maybe_process
from suptrace.core.terms import Pid, Ref

__all__ = ["NOREPLY", "Caller", "CallRequest", "SystemRequest", "reply", "reply_from"]


class _NoReply:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOREPLY"


#: Return from ``handle_call`` to answer later with `reply`.
NOREPLY: Final = _NoReply()


class Caller:
    """Who is waiting for a reply: pass it to `reply` (OTP's ``From``).

    ``pid`` is the calling process (None for a plain task), ``dest`` the pid or
    name it called, ``request`` what it asked and ``timeout`` how long it waits.
    ``future`` is what it waits on and ``started`` when it called (0.0 unless an
    event will want the reply's duration): answer with `reply`, not through them.
    """

    __slots__ = ("_ref", "dest", "future", "pid", "request", "started", "timeout")

    _ref: Ref

    def __init__(
        self,
        pid: Pid | None,
        future: asyncio.Future[Any],
        dest: Any = None,
        request: Any = None,
        timeout: float | None = None,
    ) -> None:
        self.pid = pid
        self.future = future
        self.started = 0.0
        self.dest = dest
        self.request = request
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Caller({self.pid}, {self.ref})"

    @property
    def ref(self) -> Ref:
        """The call's reference (made on first use: most calls never need one)."""
        try:
            return self._ref
        except AttributeError:  # the slot is unset until then
            ref = self._ref = Ref()
            return ref

    @property
    def waiting(self) -> bool:
        """False once the caller got its reply, timed out or died."""
        return not self.future.done()

    def __call__(self, _ref: Any, _pid: Pid, reason: Any) -> None:
        # The server died: this object is registered as its death watcher.
        if not self.future.done():
            self.future.set_exception(CallExit(reason, self.dest, self.request, self.timeout))


class CallRequest(Caller):
    """A call request in the server's mailbox; it is also the `Caller` that
    ``handle_call`` gets (one object per call instead of two). Internal: what
    tracing and instrumentation see of a `call`."""

    __slots__ = ()

    @property
    def caller(self) -> Caller:
        return self

    def __repr__(self) -> str:
        return f"call({self.request!r}, from={self.pid})"


class SystemRequest(Caller):
    """A system request (``get_state``, ``statistics``, ``terminate``) in the
    server's mailbox, as OTP's ``sys`` messages. Internal, like `CallRequest`: it
    is also the watcher that answers the requester when the server dies."""

    __slots__ = ("arg", "op")

    def __init__(
        self,
        op: str,
        arg: Any,
        future: asyncio.Future[Any],
        pid: Pid | None = None,
        dest: Any = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(pid, future, dest, op, timeout)
        self.op = op
        self.arg = arg

    def __call__(self, _ref: Any, _pid: Pid, reason: Any) -> None:
        # The server died before answering: for "terminate" that is the answer.
        if self.op == "terminate":
            if not self.future.done():
                self.future.set_result(reason)
            return
        super().__call__(_ref, _pid, reason)

    def __repr__(self) -> str:
        return f"system({self.op})"


def reply(caller: Caller, value: Any) -> None:
    """Answer a call. Dropped if the caller already timed out or died."""
    reply_from(maybe_process(), caller, value)


def reply_from(proc: Process | None, caller: Caller, value: Any) -> None:
    """`reply` from ``proc`` (None: from outside any process), known by the caller:
    counted in its ``messages_out`` and seen by tracing as its ``reply`` event."""
    fut = caller.future
    if fut.done():
        return
    fut.set_result(value)
    if proc is not None:
        proc.messages_out += 1
        if proc.tracers or "reply" in proc.runtime.watch:
            _reply_event(proc, caller, value)


def _reply_event(proc: Process, caller: Caller, value: Any) -> None:
    started = caller.started
    proc.runtime.emit(
        proc,
        "reply",
        {
            "to": caller.pid,
            "reply": value,
            "ref": caller.ref,
            "duration": time.perf_counter() - started if started else None,
        },
    )
