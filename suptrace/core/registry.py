"""The name registry, and finding the live process behind a pid or a name.

One name per process, one process per name; a name is released when its
process dies (the death itself is in `suptrace.core.process`). A name whose
process died leaves a `Tombstone`, so "no such process" errors can tell what
became of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suptrace.core.errors import NoProc, RegistrationError
from suptrace.core.runtime import Runtime, current_runtime, process_of
from suptrace.core.saferepr import reason_text
from suptrace.core.terms import NOPROC, Pid

if TYPE_CHECKING:
    from suptrace.core.process import Process

__all__ = [
    "register",
    "unregister",
    "whereis",
    "registered",
    "process_info",
    "is_alive",
    "resolve",
    "noproc_error",
]


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



def check_name(rt: Runtime, name: Any) -> None:
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
    check_name(rt, name)
    proc = pid._proc or process_of(pid) if type(pid) is Pid else None
    if proc is None or not proc.alive:
        raise noproc_error(rt, pid)
    if proc.name is not None:
        raise RegistrationError(f"{pid} is already registered as {proc.name!r}")
    proc.name = name
    proc.child_ancestors = None  # its next children name it by its name, not its pid
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
    proc.child_ancestors = None  # its next children name it by its pid again
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
