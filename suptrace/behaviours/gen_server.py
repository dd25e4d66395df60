"""GenServer: a process that serves calls, casts and plain messages one at a time.

State lives on ``self``. ``init`` runs inside the new process before
``start_link`` returns; the callbacks run sequentially, so a slow
``handle_call`` delays everything behind it exactly as in OTP.

This module is the server: starting it and its loop. What it finds in its
mailbox and how it answers are in `suptrace.behaviours.requests`; the client
side (`call`, `stop`, `get_state`, `statistics`) in `suptrace.behaviours.client`.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, ClassVar

from suptrace.behaviours.requests import NOREPLY, Caller, CallRequest, SystemRequest, reply_from
from suptrace.core.errors import CallError, Exit
from suptrace.core.links import death_future, unlink, unwatch, watch
from suptrace.core.mailbox import Envelope, extract
from suptrace.core.process import Process
from suptrace.core.runtime import (
    SERIES_LIMIT,
    InlineRecording,
    current_process,
    current_runtime,
    maybe_process,
)
from suptrace.core.saferepr import safe_repr
from suptrace.core.spawn import start_process
from suptrace.core.terms import CAST, IGNORE, KILL, CastRequest, ExitMsg, Pid
from suptrace.core.timers import EXPIRED, expire

__all__ = ["GenServer", "StartError", "calls_handled", "parent_of"]

_perf = time.perf_counter
_random = random.random


class StartError(Exception):
    """``init`` stopped without an exception (``raise Exit(reason)``), or the start timed out."""

    def __init__(self, reason: Any, server: str) -> None:
        super().__init__(f"{server} failed to start: {safe_repr(reason, 1000)}")
        self.reason = reason


def calls_handled(server: GenServer) -> int:
    """How many calls ``server`` has handled so far (what `statistics` reports as
    ``calls``), read in place: for tools on the node's loop, such as the doctor."""
    return server._calls


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
                    result = await self.handle_call(msg.request, msg)
                    if result is not NOREPLY:
                        reply_from(proc, msg, result)
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
        fut = msg.future
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
