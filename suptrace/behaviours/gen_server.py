"""GenServer: a process that serves calls, casts and plain messages one at a time.

State lives on ``self``. ``init`` runs inside the new process before
``start_link`` returns; the callbacks run sequentially, so a slow
``handle_call`` delays everything behind it exactly as in OTP.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, ClassVar, Final

from suptrace.core.errors import CallError, CallExit, CallTimeout, Exit, NoProc
from suptrace.core.links import death_future, unlink, unwatch, watch
from suptrace.core.mailbox import Envelope, extract, post
from suptrace.core.process import Process
from suptrace.core.registry import noproc_error, resolve
from suptrace.core.runtime import (
    SERIES_LIMIT,
    InlineRecording,
    current_process,
    current_process_var,
    current_runtime,
    maybe_process,
    maybe_runtime,
    running_task,
)
from suptrace.core.saferepr import safe_repr
from suptrace.core.spawn import start_process
from suptrace.core.terms import CAST, IGNORE, KILL, NORMAL, CastRequest, ExitMsg, Pid, Ref
from suptrace.core.timers import EXPIRED, PRECISE_BELOW, expire

__all__ = [
    "GenServer",
    "Caller",
    "NOREPLY",
    "StartError",
    "call",
    "cast",
    "reply",
    "stop",
    "calls_handled",
    "get_state",
    "statistics",
    "CallRequest",
    "CastRequest",
    "SystemRequest",
]


class _NoReply:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOREPLY"


#: Return from ``handle_call`` to answer later with `reply`.
NOREPLY: Final = _NoReply()


class StartError(Exception):
    """``init`` stopped without an exception (``raise Exit(reason)``), or the start timed out."""

    def __init__(self, reason: Any, server: str) -> None:
        super().__init__(f"{server} failed to start: {safe_repr(reason, 1000)}")
        self.reason = reason


class Caller:
    """Who is waiting for a reply: pass it to `reply` (OTP's ``From``)."""

    __slots__ = ("_dest", "_future", "_ref", "_request", "_started", "_timeout", "pid")

    def __init__(
        self,
        pid: Pid | None,
        future: asyncio.Future[Any],
        dest: Any = None,
        request: Any = None,
        timeout: float | None = None,
    ) -> None:
        self.pid = pid
        self._future = future
        self._started = 0.0  # set by `call` when a reply event will want the duration
        self._ref: Ref | None = None
        self._dest = dest
        self._request = request
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"Caller({self.pid}, {self.ref})"

    @property
    def ref(self) -> Ref:
        """The call's reference (made on first use: most calls never need one)."""
        if self._ref is None:
            self._ref = Ref()
        return self._ref

    @property
    def waiting(self) -> bool:
        """False once the caller got its reply, timed out or died."""
        return not self._future.done()

    def __call__(self, _ref: Any, _pid: Pid, reason: Any) -> None:
        # The server died: this object is registered as its death watcher.
        if not self._future.done():
            self._future.set_exception(CallExit(reason, self._dest, self._request, self._timeout))


_new = object.__new__
#: current_process_var.get, bound once (a bound method is built at each attribute call).
_get_process = current_process_var.get
_perf = time.perf_counter
_random = random.random


class CallRequest(Caller):
    """A call request in the server's mailbox; it is also the `Caller` that
    ``handle_call`` gets (one object per call instead of two). Internal: what
    tracing and instrumentation see of a `call`."""

    __slots__ = ()

    @property
    def request(self) -> Any:
        return self._request

    @property
    def caller(self) -> Caller:
        return self

    def __repr__(self) -> str:
        return f"call({self._request!r}, from={self.pid})"


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
            if not self._future.done():
                self._future.set_result(reason)
            return
        super().__call__(_ref, _pid, reason)

    def __repr__(self) -> str:
        return f"system({self.op})"



def reply(caller: Caller, value: Any) -> None:
    """Answer a call. Dropped if the caller already timed out or died."""
    _reply(maybe_process(), caller, value)


def calls_handled(server: GenServer) -> int:
    """How many calls ``server`` has handled so far (what `statistics` reports as
    ``calls``), read in place: for tools on the node's loop, such as the doctor."""
    return server._calls


def _reply(proc: Process | None, caller: Caller, value: Any) -> None:
    fut = caller._future
    if fut.done():
        return
    fut.set_result(value)
    if proc is not None:
        proc.messages_out += 1
        if proc.tracers or "reply" in proc.runtime.watch:
            _reply_event(proc, caller, value)


def _reply_event(proc: Process, caller: Caller, value: Any) -> None:
    started = caller._started
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
    if type(dest) is Pid:
        proc = dest._proc or resolve(dest)  # resolve: a parsed or unpickled pid, or a dead one
    else:
        try:
            proc = resolve(dest, "call", request, timeout)
        except NoProc as unknown:  # an unregistered name
            raise _refused(me, dest, request, unknown) from None
    if proc is None or proc.reason is not None or proc.pending_exit is not None:
        rt = me.runtime if me is not None else None
        raise _refused(me, dest, request, noproc_error(rt, dest, request, timeout))
    if proc is me:
        if me.task is running_task(me.runtime.loop):
            itself = CallError("calling_self", dest, request, timeout, "a process cannot call itself")
            raise _refused(me, dest, request, itself)
        me = None  # a task the server created calls it: a plain task, not the server
    rt = proc.runtime
    fut: asyncio.Future[Any] = rt.new_future()
    # CallRequest(...) without its __init__ frame: one of these per call.
    caller = _new(CallRequest)
    caller._future = fut
    caller._started = 0.0
    caller._ref = None
    caller._dest = dest
    caller._request = request
    caller._timeout = timeout
    caller.pid = None if me is None else me.pid
    if proc.tracers or "reply" in rt.watch:
        caller._started = time.perf_counter()
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


def cast(dest: Pid | str, msg: Any) -> None:
    """Send an asynchronous request to a GenServer. Never blocks and never fails:
    as OTP's ``gen_server:cast``, a cast to a dead pid or an unregistered name is
    dropped (tracing sees a ``dead_letter``)."""
    if type(dest) is Pid:
        proc = dest._proc or resolve(dest)
    elif isinstance(dest, str):
        rt = current_runtime("cast()")
        proc = rt.names.get(dest)
    else:
        raise TypeError(f"cast() needs a Pid or a registered name (str), got {dest!r}")
    # As for send: a task a process created counts (and is traced) as that process.
    if proc is not None and proc.runtime.instrument is not None:
        request: Any = _new(CastRequest)  # instrumentation sees casts as CastRequest objects
        request.msg = msg
    else:
        request = (CAST, msg)  # the mailbox form (see CastRequest)
    post(_get_process(), proc, dest, request)


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


class GenServer:
    """Base class for servers. Override the callbacks you need.

    >>> import suptrace
    >>> class Stack(suptrace.GenServer):
    ...     async def init(self, *items):
    ...         self.items = list(items)
    ...     async def handle_call(self, request, caller):
    ...         if request == "pop":
    ...             return self.items.pop()
    ...     async def handle_cast(self, msg):
    ...         self.items.append(msg)
    >>> async def main():
    ...     pid = await Stack.start_link("a")
    ...     suptrace.cast(pid, "b")
    ...     return [await suptrace.call(pid, "pop"), await suptrace.call(pid, "pop")]
    >>> suptrace.run(main)
    ['b', 'a']
    """

    #: Shown by tooling instead of the class name when set.
    label: ClassVar[str | None] = None

    _proc: Process
    _parent: Pid | None

    # -- callbacks ------------------------------------------------------------------

    async def init(self, *args: Any, **kwargs: Any) -> Any:
        """Set up state on ``self``. Return `IGNORE` to start nothing; raise to fail."""
        return None

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        """Answer a `call`: the return value is the reply, or `NOREPLY`."""
        raise NotImplementedError(
            f"{type(self).__name__} got call {request!r} but defines no handle_call"
        )

    async def handle_cast(self, msg: Any) -> None:
        """Handle a `cast`."""
        raise NotImplementedError(
            f"{type(self).__name__} got cast {msg!r} but defines no handle_cast"
        )

    async def handle_info(self, msg: Any) -> None:
        """Handle any other message: plain sends, `ExitMsg`, `Down`. Ignored by default."""

    async def terminate(self, reason: Any) -> None:
        """Called before the server exits (on stop, a crash in a callback, or its
        parent's exit signal while trapping exits). Not called when killed."""

    def format_state(self) -> Any:
        """What `get_state` returns: the public attributes by default."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    # -- starting -------------------------------------------------------------------

    @classmethod
    async def start_link(
        cls, *args: Any, name: str | None = None, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """Start a server linked to the caller; returns its `Pid` once ``init`` returned.

        Returns `IGNORE` if ``init`` did. If ``init`` raises, that exception is
        raised here (and, as in OTP, the link delivers the exit to the caller).
        """
        return await cls._start(args, kwargs, name, timeout, link=True)

    @classmethod
    async def start(
        cls, *args: Any, name: str | None = None, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """Like `start_link` without the link. The server then has no parent but the
        node: a trapping server gets its starter's exit signals in `handle_info`."""
        return await cls._start(args, kwargs, name, timeout, link=False)

    @classmethod
    async def _start(
        cls,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None,
        timeout: float | None,
        link: bool,
    ) -> Any:
        rt = current_runtime(f"{cls.__name__}.start_link()")
        ack: asyncio.Future[Any] = rt.loop.create_future()
        server = cls()
        proc, _ = start_process(
            server._enter,
            (ack, args, kwargs),
            name=name,
            link=link,
            initial_call=f"{cls.__module__}:{cls.__qualname__}.init",
        )
        pid = proc.pid
        proc.behaviour = server
        # The parent, whose exit signal stops a trapping server: its starter when
        # linked. Unlinked (or started by a plain task, which is no process), OTP makes
        # the server its own parent (gen:start/6 with nolink, gen:init_it/7 with
        # `self`): every other exit signal -- its starter's, one sent from outside any
        # process -- is then a plain message, and the node stops it in its own name.
        server._parent = proc.parent if link and proc.parent is not None else pid
        # A child killed before ``_enter`` ever ran cannot ack: its death does.
        wref = watch(proc, lambda _r, _p, reason: _ack(ack, ("error", reason)))
        handle = None if timeout is None else rt.loop.call_later(timeout, expire, ack)
        try:
            answer = await ack
        finally:
            if handle is not None:
                handle.cancel()
            unwatch(proc, wref)
        status, value = ("expired", None) if answer is EXPIRED else answer
        if status == "ok":
            return pid
        me = maybe_process()
        if status == "expired":
            # OTP's proc_lib kill_flush: unlink first, so the kill spares the caller.
            if link and me is not None:
                unlink(pid)
            if proc.alive:
                proc.signal_exit(me.pid if me else rt.outside_pid, KILL, False)
        # OTP >= 26: a trapping caller does not see the failed child's EXIT.
        await _wait_dead(proc)
        if me is not None and link and me.trap:
            extract(me, lambda m: type(m) is ExitMsg and m.pid == pid)
        if status == "ignore":
            return IGNORE
        if status == "expired":
            raise StartError("timeout", cls.__name__)
        if isinstance(value, BaseException) and not isinstance(value, Exit):
            raise value
        raise StartError(value, cls.__name__)

    async def _init(
        self, ack: asyncio.Future[Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> bool:
        """Run ``init`` and answer the starter; False when the server must not serve."""
        proc = current_process()
        self._proc = proc
        self._calls = 0
        self._casts = 0
        self._infos = 0
        # The installed instrument sees init as a callback of its own kind: the
        # children init starts are spawned inside its span.
        instrument = proc.runtime.instrument
        token = None if instrument is None else instrument.handle_begin(proc, "init", None, None)
        try:
            result = await self.init(*args, **kwargs)
        except BaseException as e:
            if token is not None:
                instrument.handle_end(token, e)  # type: ignore[union-attr]
            if isinstance(e, Exit):
                _ack(ack, ("error", e.reason))
            elif isinstance(e, asyncio.CancelledError):
                _ack(ack, ("error", proc.pending_exit))
            elif isinstance(e, Exception):
                _ack(ack, ("error", e))
            raise
        if token is not None:
            instrument.handle_end(token, None)  # type: ignore[union-attr]
        if result is IGNORE:
            _ack(ack, ("ignore", None))
            return False
        if ack.done():  # start timed out: the starter gave up on us
            raise Exit(KILL)
        ack.set_result(("ok", None))
        return True

    async def _enter(
        self, ack: asyncio.Future[Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        # The process's coroutine: init, then the server loop right here (not in a
        # coroutine of its own: every message would resume one more frame).
        if not await self._init(ack, args, kwargs):
            return
        proc = self._proc
        parent = self._parent
        failure: BaseException | None = None
        rt = proc.runtime
        new_future = rt.running_future  # this is the server's own task, on the node's loop
        while True:
            mb = proc.mailbox
            if not mb:
                # Inline receive(): one future per wait, no extra coroutine per message.
                waiter = new_future()
                proc.waiter = waiter
                proc.status = "waiting"
                try:
                    await waiter
                finally:
                    if proc.status == "waiting":
                        proc.status = "running"
                    proc.waiter = None
                continue
            msg = mb.popleft()  # as receive() takes one, inline: one frame less per message
            kind = type(msg)
            if kind is Envelope:
                proc.inbound = msg.ctx
                msg = msg.msg
                kind = type(msg)
            if kind is tuple and msg and msg[0] is CAST:
                kind = _Cast  # a cast in its mailbox form: handled without a CastRequest
                msg = msg[1]
            elif kind is not CastRequest and kind is not CallRequest:
                if kind is ExitMsg and msg.pid == parent and proc.trap:
                    reason = msg.reason  # the parent is shutting us down
                    break
                if kind is SystemRequest and msg.op == "terminate":
                    reason = msg.arg
                    break
            instrument = rt.instrument
            token = raw = None
            if instrument is not None and kind is not SystemRequest:
                state: InlineRecording | None = proc.instrument_state
                if (
                    (kind is CastRequest or kind not in _KIND_NAMES)
                    and state is not None
                    and state.inline
                    and proc.inbound is None
                ):
                    # A cast or plain message with no context, on a node whose instrument
                    # lets the loop record it (OpenTelemetry's "failures" mode): its raw
                    # record, as the instrument's ``handle_begin`` would make it (see
                    # `suptrace.observers.otel.tail.Current`), without the call.
                    t0 = _perf()
                    raw = (
                        [t0, 0.0, None, msg, None, None],
                        state,
                        t0,
                        proc,
                        proc.name or proc.initial_call,
                        "info" if kind is not CastRequest else "cast",
                    )
                    state.ring.append(raw)
                    state.count += 1
                    state.span = raw
                    if state.ratio and _random() < state.ratio:
                        state.sample(raw)
                    token = raw
                else:
                    token = instrument.handle_begin(
                        proc, _KIND_NAMES.get(kind, "info"), msg, proc.inbound
                    )
                    proc.inbound = None
            try:
                if kind is _Cast:
                    self._casts += 1
                    await self.handle_cast(msg)
                elif kind is CastRequest:
                    self._casts += 1
                    await self.handle_cast(msg.msg)
                elif kind is CallRequest:
                    self._calls += 1
                    result = await self.handle_call(msg._request, msg)
                    if result is not NOREPLY:
                        _reply(proc, msg, result)
                elif kind is SystemRequest:
                    self._handle_system(msg)
                else:
                    self._infos += 1
                    await self.handle_info(msg)
            except Exit as e:
                if token is not None:
                    instrument.handle_end(token, e)  # type: ignore[union-attr]
                reason = e.reason
                break
            except BaseException as e:
                if token is not None:
                    instrument.handle_end(token, e)  # type: ignore[union-attr]
                if not isinstance(e, Exception):
                    raise
                reason = failure = e
                break
            if raw is not None:
                # Its healthy end, as ``handle_end`` would record it: the end time and
                # the duration, into the series the instrument keeps for this kind; the
                # instrument ends it itself when its span was made meanwhile, or when
                # there is no series or it is full.
                cell, state = raw[0], raw[1]
                t1 = cell[1] = _perf()
                state.span = None
                proc.inbound = None  # a receive inside the handler may have left one
                slot = state.keys.get(raw[5])
                if (
                    cell[2] is None
                    and slot is not None
                    and slot[0] is raw[4]
                    and len(slot[1]) < SERIES_LIMIT
                ):
                    slot[1].append(t1 - t0)
                else:
                    state.finish(raw)
            elif token is not None:
                instrument.handle_end(token, None)  # type: ignore[union-attr]
        await self.terminate(reason)
        if failure is not None:
            raise failure
        raise Exit(reason)

    def _handle_system(self, msg: SystemRequest) -> None:
        fut = msg._future
        if msg.op == "get_state":
            value: Any = self.format_state()
        elif msg.op == "statistics":
            proc = self._proc
            value = {
                "start_time": proc.started_at,
                "current_time": time.time(),
                "messages_in": proc.messages_in,
                "messages_out": proc.messages_out,
                "calls": self._calls,
                "casts": self._casts,
                "infos": self._infos,
                "message_queue_len": len(proc.mailbox) if proc.mailbox else 0,
            }
        else:
            value = CallError("unknown_system_message", self._proc.pid, msg.op)
        if fut is not None and not fut.done():
            fut.set_result(value)


class _Cast:
    """The kind the server loop gives a cast taken in its mailbox form ``(CAST, msg)``."""


_KIND_NAMES: dict[type, str] = {CallRequest: "call", CastRequest: "cast", _Cast: "cast"}


def parent_of(proc: Process) -> Pid | None:
    """The pid whose exit signal a GenServer in ``proc`` takes as its parent's (its
    own, for a server started unlinked or outside any process, as OTP's nolink
    start); None when ``proc`` runs no GenServer. The node stops a server in its name."""
    server = proc.behaviour
    return server._parent if isinstance(server, GenServer) else None


def _ack(ack: asyncio.Future[Any], value: tuple[str, Any]) -> None:
    if not ack.done():
        ack.set_result(value)


async def _wait_dead(proc: Process) -> None:
    if proc.reason is None:
        await death_future(proc)
