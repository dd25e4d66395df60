"""Links, monitors, exit signals and exit trapping between processes.

A link is symmetric: when either process dies the other gets an exit signal.
A monitor is one-way: the watcher gets a `Down` message. `watch` is the
runtime's own monitor, for code that is not a process (a pending `call`, the
node waiting for a death): a callback instead of a message. How a process
reacts to an exit signal (OTP's rules) is `Process.signal_exit`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from suptrace.core.errors import Exit
from suptrace.core.mailbox import NOTHING, extract
from suptrace.core.registry import noproc_error, resolve
from suptrace.core.runtime import current_process, current_runtime, maybe_process, process_of
from suptrace.core.terms import KILL, KILLED, NOPROC, Down, ExitMsg, Pid, Ref
from suptrace.core.terms import is_atom as _atom

if TYPE_CHECKING:
    from suptrace.core.process import Process

__all__ = [
    "link",
    "unlink",
    "monitor",
    "demonitor",
    "exit",
    "trap_exit",
    "watch",
    "unwatch",
    "death_future",
    "WatchCallback",
]

#: A callback watcher: called as ``fn(ref, pid, reason)`` when the target dies.
WatchCallback = Callable[[Ref, Pid, Any], None]



def add_link(a: Process, b: Process) -> None:
    if b.links is None:  # b has no link yet (a process just spawned): nothing to look up
        b.links = {a.pid}
    elif a.pid in b.links:  # linked already (a link is held by both sides)
        return
    else:
        b.links.add(a.pid)
    if a.links is None:
        a.links = {b.pid}
    else:
        a.links.add(b.pid)
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
    add_link(me, target)


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
        while extract(me, lambda m: type(m) is Down and m.ref == ref)[0] is not NOTHING:
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
    """Remove a `watch` (nothing happens if it already fired)."""
    mb = proc.monitored_by
    if mb:
        mb.pop(ref, None)


def death_future(proc: Process) -> asyncio.Future[Any]:
    """A future that gets ``proc``'s exit reason when it dies (at once if it is dead).

    For code that waits for a death without being a process (no `Down` message):
    the node stopping a process, a starter waiting for a failed server's end.
    """
    fut: asyncio.Future[Any] = proc.runtime.loop.create_future()
    if proc.reason is not None:
        fut.set_result(proc.reason)
        return fut

    def died(_ref: Ref, _pid: Pid, reason: Any) -> None:
        if not fut.done():
            fut.set_result(reason)

    watch(proc, died)
    return fut


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
