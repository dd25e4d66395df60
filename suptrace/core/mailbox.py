"""Messages: posting one (`post`, `send`, `cast`), and taking one out (`receive`, `extract`).

`post` is the one way a message goes from a sender to a mailbox: `send`,
`cast` (a message in a GenServer's cast form), a GenServer's `call` and its
system requests (`get_state`, `statistics`) all pass through it, so each of
them counts in the sender's ``messages_out``, leaves an entry in its flight
recorder and is seen by tracing (``send``/``call`` on the sender, ``receive``
on the receiver, ``dead_letter`` for a message to a dead pid). The receiving
side is `Process.deliver`.

`receive` takes a message out (`extract` for a selective receive): it unwraps
the `Envelope` an installed instrument (the OpenTelemetry bridge) put around it
and shows a queued cast as a `CastRequest`. The GenServer loop takes its
messages the same way, inline.
"""

from __future__ import annotations

from asyncio import InvalidStateError
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Any

from suptrace.core.recorder import clock, record
from suptrace.core.registry import resolve
from suptrace.core.runtime import (
    current_process,
    current_process_var,
    current_runtime,
    maybe_runtime,
    not_the_process,
    process_of,
    running_task,
)
from suptrace.core.terms import CAST, CastRequest, Pid, shown
from suptrace.core.timers import EXPIRED, expire

if TYPE_CHECKING:
    from suptrace.core.process import Process

__all__ = [
    "Envelope",
    "CastRequest",
    "CAST",
    "NOTHING",
    "post",
    "send",
    "cast",
    "receive",
    "extract",
    "shown",
]

#: current_process_var.get, bound once (a bound method is built at each attribute call).
_get_process = current_process_var.get
_new = object.__new__

#: What `extract` returns when no message matched.
NOTHING: Any = object()


class Envelope:
    """A message plus the context captured when it was sent.

    Only used while an instrument (the OpenTelemetry bridge) is installed;
    mailbox consumers see the bare message through `receive` / `extract`.
    """

    __slots__ = ("ctx", "msg")

    def __init__(self, msg: Any, ctx: Any) -> None:
        self.msg = msg
        self.ctx = ctx

    def __repr__(self) -> str:
        return repr(self.msg)


# -- posting ----------------------------------------------------------------------------------


def post(
    me: Process | None,
    proc: Process | None,
    dest: Any,
    msg: Any,
    request: Any = NOTHING,
) -> Any:
    """``me`` (None outside any process) posts ``msg`` to ``proc`` (None: nobody
    lives behind ``dest``, the pid or name the sender used).

    The sender's side of every message, then `Process.deliver`: ``messages_out``,
    the flight-recorder entry ``(ts, "send", dest, msg)``, the ``send`` event, and
    a ``dead_letter`` event when ``proc`` is None. With ``request``, ``msg`` is a
    pending call (it has a ``ref``) carrying that request: the entry and the
    event are a ``call``'s, and the installed instrument's ``call_begin`` runs
    right before the delivery; its token is returned (None otherwise).
    """
    if me is not None:
        me.messages_out += 1
        rt = me.runtime
        rec = me.recorder
        now = 0.0
        if request is NOTHING:
            if rec is not None:
                now = clock()
                rec.append((now, "send", dest, msg))
            elif rt.recorder_size:
                record(me, "send", dest, msg)
            if me.tracers or "send" in rt.watch:
                rt.emit(me, "send", {"to": dest if proc is None else proc.pid, "msg": shown(msg)})
            if proc is None:
                if me.tracers or "dead_letter" in rt.watch:
                    rt.emit(me, "dead_letter", {"to": dest, "msg": shown(msg)})
                return None
            # Process.deliver(msg, me.pid, now), inline for a live receiver with a
            # mailbox and a flight recorder.
            mb = proc.mailbox
            prec = proc.recorder
            if mb is None or prec is None or proc.reason is not None or proc.pending_exit is not None:
                proc.deliver(msg, me.pid, now)
                return None
            instrument = proc.runtime.instrument
            if instrument is None:
                mb.append(msg)
            else:
                ctx = instrument.capture(proc, msg, me.pid)  # None: no context, no envelope
                mb.append(msg if ctx is None else Envelope(msg, ctx))
            proc.messages_in += 1
            prec.append((now or clock(), "receive", me.pid, msg))
            waiter = proc.waiter
            if waiter is not None:
                proc.waiter = None
                try:  # noqa: SIM105 (no context manager on the hot path)
                    waiter.set_result(None)
                except InvalidStateError:  # cancelled: the process is being killed
                    pass
            if proc.tracers or "receive" in proc.runtime.watch:
                proc.runtime.emit(proc, "receive", {"from": me.pid, "msg": shown(msg)})
            return None
        # A call: its server is alive (`call` raised NoProc otherwise).
        if rec is not None:
            now = clock()
            rec.append((now, "call", dest, request))
        elif rt.recorder_size:
            record(me, "call", dest, request)
        if me.tracers or "call" in rt.watch:
            rt.emit(me, "call", {"to": dest, "request": request, "ref": msg.ref})
        instrument = rt.instrument
        token = None if instrument is None else instrument.call_begin(me, proc, request)  # type: ignore[arg-type]
        proc.deliver(msg, me.pid, now)  # type: ignore[union-attr]
        return token
    if proc is None:
        home = maybe_runtime()
        if home is not None and "dead_letter" in home.watch:
            home.emit(None, "dead_letter", {"to": dest, "msg": shown(msg)})
        return None
    token = None
    if request is not NOTHING:
        instrument = proc.runtime.instrument
        if instrument is not None:
            token = instrument.call_begin(None, proc, request)
    proc.deliver(msg, None)
    return token


def send(dest: Pid | str, msg: Any) -> None:
    """Send ``msg`` to a pid or registered name. Never blocks.

    A message to a dead pid is dropped (tracing sees a ``dead_letter``); a
    message to a name nobody holds raises `NoProc`.
    """
    proc = dest._proc if type(dest) is Pid else resolve(dest)
    if proc is None:  # a pid without its handle (parsed, unpickled) or a dead one
        proc = process_of(dest)  # type: ignore[arg-type]
    post(_get_process(), proc, dest, msg)


def cast(dest: Pid | str, msg: Any) -> None:
    """Send ``msg`` as a GenServer cast (its ``handle_cast`` gets it). Never blocks
    and never fails: as OTP's ``gen_server:cast``, a cast to a dead pid or an
    unregistered name is dropped (tracing sees a ``dead_letter``).

    A process that is no GenServer receives it as a `CastRequest`:

    >>> import suptrace
    >>> async def main():
    ...     suptrace.cast(suptrace.self_pid(), "hello")
    ...     return await suptrace.receive()
    >>> suptrace.run(main)
    cast('hello')
    """
    if type(dest) is Pid:
        proc = dest._proc or process_of(dest)
    elif isinstance(dest, str):
        proc = current_runtime("cast()").names.get(dest)
    else:
        raise TypeError(f"cast() needs a Pid or a registered name (str), got {dest!r}")
    if proc is not None and proc.runtime.instrument is not None:
        request: Any = _new(CastRequest)  # instrumentation sees casts as CastRequest objects
        request.msg = msg
    else:
        request = (CAST, msg)  # the mailbox form (see CastRequest)
    # As for send: a task a process created counts (and is traced) as that process.
    post(_get_process(), proc, dest, request)


# -- taking -----------------------------------------------------------------------------------


def extract(proc: Process, match: Callable[[Any], bool], start: int = 0) -> tuple[Any, int]:
    """Remove and return ``proc``'s first message from index ``start`` on that matches.

    Returns ``(message, index)``, or ``(NOTHING, scanned)`` when none does.
    """
    mb = proc.mailbox
    if not mb:
        return NOTHING, start
    index = start
    for item in islice(mb, start, None):
        msg = item.msg if type(item) is Envelope else item
        if type(msg) is tuple and msg and msg[0] is CAST:
            msg = CastRequest(msg[1])
        if match(msg):
            del mb[index]
            if type(item) is Envelope:
                proc.inbound = item.ctx
            return msg, index
        index += 1
    return NOTHING, index


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
    proc = _get_process()
    if proc is None:
        proc = current_process("receive()")  # raises: not inside a process
    loop = proc.runtime.loop
    if proc.task is not running_task(loop):
        raise not_the_process(proc, "receive()")  # a task the process created
    # Few locals: a waiting process keeps this frame, and every local is a word of it.
    scanned = 0
    handle = deadline = woke = None
    while True:
        if proc.mailbox:
            if match is None:
                # The oldest message as its receiver sees it: unwrapped, a cast as a CastRequest.
                found = proc.mailbox.popleft()
                if type(found) is Envelope:
                    proc.inbound = found.ctx
                    return shown(found.msg)
                return CastRequest(found[1]) if type(found) is tuple and found and found[0] is CAST else found
            found, scanned = extract(proc, match, scanned)
            if found is not NOTHING:
                return found
        if woke is EXPIRED:
            raise TimeoutError(f"receive(timeout={timeout}): no matching message in {timeout}s")
        if deadline is None and timeout is not None:
            if timeout <= 0:
                raise TimeoutError(f"receive(timeout={timeout}): no matching message")
            deadline = loop.time() + timeout
        # Inline (no helper coroutine): a waiting process holds one frame less.
        waiter = proc.runtime.running_future()  # this task runs on the node's loop (checked)
        proc.waiter = waiter
        if deadline is not None:
            handle = loop.call_at(deadline, expire, waiter)
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
