"""A GenServer's client side: `call`, and the system requests `stop`,
`get_state` and `statistics` (OTP's ``gen_server:call`` and ``sys``). A `cast`
is a message in the cast form: `suptrace.core.mailbox.cast`.

Each is posted like any message (`suptrace.core.mailbox.post`): counted,
recorded and traced as the caller's send and the server's receive.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from suptrace.behaviours.requests import CallRequest, SystemRequest
from suptrace.core.errors import CallError, CallExit, CallTimeout, NoProc
from suptrace.core.mailbox import post
from suptrace.core.process import Process
from suptrace.core.registry import noproc_error, resolve
from suptrace.core.runtime import current_process_var, maybe_process, maybe_runtime, running_task
from suptrace.core.terms import NORMAL, Pid
from suptrace.core.timers import EXPIRED, PRECISE_BELOW, expire

__all__ = ["call", "stop", "get_state", "statistics"]

_new = object.__new__
#: current_process_var.get, bound once (a bound method is built at each attribute call).
_get_process = current_process_var.get


async def call(dest: Pid | str, request: Any, timeout: float | None = 5.0) -> Any:
    """Send ``request`` to a GenServer and wait for its reply.

    ``timeout`` is in seconds (None waits forever). Raises `CallTimeout`,
    `NoProc` (no such process) or `CallExit` (the server died first). Callable
    from a process or from a plain task inside a node.

    >>> import suptrace
    >>> class Counter(suptrace.GenServer):
    ...     async def init(self, n):
    ...         self.n = n
    ...     async def handle_call(self, request, caller):
    ...         self.n += request
    ...         return self.n
    >>> async def main():
    ...     await Counter.start_link(10, name="counter")
    ...     return await suptrace.call("counter", 5)
    >>> suptrace.run(main)
    15
    """
    me = _get_process()
    try:
        proc = resolve(dest, "call", request, timeout)  # None for a dead pid
    except NoProc as unknown:  # an unregistered name
        raise _refused(me, dest, request, unknown) from None
    if proc is None or proc.reason is not None or proc.pending_exit is not None:
        rt = me.runtime if me is not None else None
        raise _refused(me, dest, request, noproc_error(rt, dest, request, timeout))
    if proc is me:
        if me.task is running_task(me.runtime.loop):
            itself = CallError(
                "calling_self", dest, request, timeout, "a process cannot call itself"
            )
            raise _refused(me, dest, request, itself)
        me = None  # a task the server created calls it: a plain task, not the server
    rt = proc.runtime
    fut: asyncio.Future[Any] = rt.new_future()
    # CallRequest(...) without its __init__ frame: one of these per call.
    caller = _new(CallRequest)
    caller.future = fut
    caller.started = 0.0
    caller.dest = dest
    caller.request = request
    caller.timeout = timeout
    caller.pid = None if me is None else me.pid
    if proc.tracers or "reply" in rt.watch:
        caller.started = time.perf_counter()
    watchers = proc.monitored_by
    if watchers is None:
        proc.monitored_by = {caller: caller}
    else:
        watchers[caller] = caller
    instrument = rt.instrument
    token = post(me, proc, proc.pid, caller, request)
    handle = None
    if timeout is not None:
        if timeout < PRECISE_BELOW:
            handle = rt.loop.call_later(timeout, expire, fut)
        else:
            # rt.deadlines.add(timeout, fut), inline: the pending call is the entry.
            deadlines = rt.deadlines
            young = deadlines.young
            if not young:
                deadlines.start_sweep()
            young.append(caller)
    try:
        result = await fut
    except BaseException as e:
        if token is not None:
            instrument.call_end(token, e)  # type: ignore[union-attr]
        raise
    finally:
        if handle is not None:
            handle.cancel()
        watchers = proc.monitored_by
        if watchers is not None:
            watchers.pop(caller, None)
    if result is EXPIRED:
        if me is not None and (me.tracers or "call_timeout" in rt.watch):
            rt.emit(me, "call_timeout", {"to": proc.pid, "request": request, "timeout": timeout})
        error = CallTimeout("timeout", dest, request, timeout)
        if token is not None:
            instrument.call_end(token, error)  # type: ignore[union-attr]
        raise error
    if token is not None:
        instrument.call_end(token, None)  # type: ignore[union-attr]
    return result


def _refused(me: Process | None, dest: Any, request: Any, error: CallError) -> CallError:
    """``error``, after the installed instrument saw the call fail before it was sent."""
    rt = me.runtime if me is not None else maybe_runtime()
    instrument = rt.instrument if rt is not None else None
    if instrument is not None:
        instrument.call_refused(me, dest, request, error)
    return error


async def _system(dest: Pid | str, op: str, arg: Any, timeout: float | None) -> Any:
    proc = resolve(dest, op, op, timeout)
    if proc is None or not proc.alive:
        me = maybe_process()
        raise noproc_error(me.runtime if me is not None else None, dest, op, timeout)
    fut: asyncio.Future[Any] = proc.runtime.loop.create_future()
    # Sent like any message (post): counted, recorded and traced as the caller's
    # send and the server's receive, as a dbg user sees OTP's sys messages.
    me = _get_process()
    request = SystemRequest(op, arg, fut, None if me is None else me.pid, dest, timeout)
    watchers = proc.monitored_by
    if watchers is None:
        proc.monitored_by = {request: request}
    else:
        watchers[request] = request  # answers the request if the server dies first
    post(me, proc, dest, request)
    handle = None if timeout is None else proc.runtime.deadlines.add(timeout, fut)
    try:
        result = await fut
    finally:
        if handle is not None:
            handle.cancel()
        watchers = proc.monitored_by
        if watchers is not None:
            watchers.pop(request, None)
    if result is EXPIRED:
        raise CallTimeout("timeout", dest, op, timeout)
    return result


async def stop(dest: Pid | str, reason: Any = NORMAL, timeout: float | None = 5.0) -> None:
    """Stop a GenServer: it runs ``terminate(reason)`` and exits with ``reason``.

    Returns once it is dead. Raises `NoProc` if it is not running, `CallTimeout`
    if it did not stop in time, `CallExit` if it exited with another reason.
    """
    got = await _system(dest, "terminate", reason, timeout)
    if got != reason:
        raise CallExit(got, dest, "stop", timeout)


async def get_state(dest: Pid | str, timeout: float | None = 5.0) -> Any:
    """The server's state (``sys:get_state``): by default its public attributes."""
    return await _system(dest, "get_state", None, timeout)


async def statistics(dest: Pid | str, timeout: float | None = 5.0) -> dict[str, Any]:
    """Debug statistics (``sys:statistics``): counts of messages and handled requests."""
    result: dict[str, Any] = await _system(dest, "statistics", None, timeout)
    return result
