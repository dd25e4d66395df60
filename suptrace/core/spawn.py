"""Starting processes: `spawn` and its linked and monitored forms, and the task
each process runs (`_process_main`: run the function, then die by OTP's rules).

The process starts on the next event-loop iteration, after the caller has its
pid (and a link or monitor on it). Behaviours start their processes through
`start_process`, which names every option.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from types import CodeType, FrameType
from typing import Any

from suptrace.core.errors import Exit, NodeError
from suptrace.core.links import add_link
from suptrace.core.process import Process
from suptrace.core.recorder import clock as _clock
from suptrace.core.registry import check_name
from suptrace.core.runtime import (
    current_process,
    current_process_var,
    current_runtime,
    running_task,
)
from suptrace.core.terms import KILLED, NORMAL, Pid, Ref, ref_counter

__all__ = [
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "self_pid",
    "start_process",
    "process_in_stack",
    "check_task_factory",
    "MAIN_CODE",
]

_Task = asyncio.Task
_new = object.__new__
_get_process = current_process_var.get
_set_process = current_process_var.set



async def _process_main(proc: Process, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
    _set_process(proc)  # current_process_var.set(proc)
    if proc.task is None:  # a task factory that ran this first step inside create_task()
        proc.task = running_task(proc.runtime.loop)
    if proc.pending_exit is not None:  # killed before it ever ran
        proc.finish(proc.pending_exit)
        proc.task = None  # break the cycle process -> task -> context -> process
        return
    proc.status = "running"
    try:
        # A call without arguments skips unpacking the empty tuple.
        proc.result = await (fn(*args) if args else fn())
    except Exit as e:
        reason: Any = e.reason
        reraise: BaseException | None = None
    except asyncio.CancelledError:
        reason = KILLED
        reraise = None
    except Exception as e:
        reason = e
        reraise = None
    except BaseException as e:  # KeyboardInterrupt, SystemExit: die, then let it through
        reason = reraise = e
    else:  # returned: exits normal, unless an exit signal came while it unwound
        reason = proc.pending_exit
        proc.finish(NORMAL if reason is None else reason)
        proc.task = None  # break the cycle process -> task -> context -> process
        return
    if proc.pending_exit is not None:
        reason = proc.pending_exit
    proc.finish(reason)
    proc.task = None
    # An exception's traceback holds this frame, whose locals would hold the
    # exception again: clear them so a dead process is freed by reference
    # counting, not left for the cyclic garbage collector.
    reason = proc = None  # type: ignore[assignment]
    if reraise is not None:
        raise reraise


def _initial_call(fn: Callable[..., Any]) -> str:
    target = getattr(fn, "func", fn)  # functools.partial
    module = getattr(target, "__module__", None) or "?"
    qual = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)
    return f"{module}:{qual}"


#: Initial-call text of functions already known to be spawnable, by code object
#: (one per definition site, so the cache is bounded by the program's size).
_SPAWNABLE: dict[CodeType, str] = {}


def _spawn_info(fn: Any) -> str:
    """Check that ``fn`` can be spawned; return its initial-call text (cached)."""
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if code is not None:
        text = _SPAWNABLE.get(code)
        if text is not None:
            return text
    _check_spawnable(fn)
    text = _initial_call(fn)
    if code is not None and code.co_flags & inspect.CO_COROUTINE:
        _SPAWNABLE[code] = text
    return text


def _check_spawnable(fn: Any) -> None:
    if inspect.iscoroutine(fn):  # before `callable`: a coroutine object is not callable
        raise TypeError(
            f"spawn() got a coroutine object {fn!r}; pass the async function and its "
            "arguments instead: spawn(fn, arg1, arg2)"
        )
    if not callable(fn):
        raise TypeError(f"spawn() needs an async function, got {fn!r} (not callable)")
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__):
        return  # an async function, or an instance whose __call__ is async
    raise TypeError(
        f"spawn() needs an `async def` function, got {_initial_call(fn)} which is not "
        "a coroutine function; define it with `async def`"
    )


#: Task factories already probed: whether each runs a new task's first step at once.
#: Probed task factories by id(), each kept alive beside its verdict (a factory may
#: be unhashable: a dataclass instance with ``__call__``, say).
_EAGER: dict[int, tuple[Any, bool]] = {}


def _runs_eagerly(factory: Any, loop: asyncio.AbstractEventLoop) -> bool:
    """True for a task factory that starts a task inside ``create_task`` (3.12's
    `asyncio.eager_task_factory` and those made by `asyncio.create_eager_task_factory`).

    Processes do not go through such a factory: spawn() promises that the new
    process starts on the next loop iteration, after the caller has its pid (and
    a link or monitor on it). Each factory is probed once, with a task that
    does nothing (cancelled unstarted when the factory is not eager). A factory
    that fails the probe is refused with a `NodeError` that says why.
    """
    known = _EAGER.get(id(factory))
    if known is not None and known[0] is factory:
        return known[1]
    ran: list[bool] = []

    async def probe() -> None:
        ran.append(True)

    coro = probe()
    try:
        task = factory(loop, coro)
    except Exception as exc:
        coro.close()
        raise NodeError(
            f"the event loop's task factory {factory!r} failed when given a task "
            f"({type(exc).__name__}: {exc}); suptrace starts each process as a task, so "
            "the loop needs a task factory that works (or none: loop.set_task_factory(None))"
        ) from exc
    eager = bool(ran)
    if not eager and isinstance(task, asyncio.Future) and not task.done():
        task.cancel()  # never started: its coroutine is closed, nothing runs
    _EAGER[id(factory)] = (factory, eager)
    return eager


def check_task_factory(loop: asyncio.AbstractEventLoop) -> None:
    """Refuse, at node start, a task factory processes cannot run on (see `_runs_eagerly`)."""
    factory = loop.get_task_factory()
    if factory is not None:
        _runs_eagerly(factory, loop)


def spawn(
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    name: str | None = None,
    link: bool = False,
    trap_exit: bool = False,
) -> Pid:
    """Start ``await fn(*args)`` as a new process and return its pid at once.

    The process starts on the next event-loop iteration. ``name`` registers it
    atomically; ``link=True`` links it to the caller before it can run.

    >>> import suptrace
    >>> async def main():
    ...     async def echo(parent):
    ...         suptrace.send(parent, ("echo", await suptrace.receive()))
    ...     pid = suptrace.spawn(echo, suptrace.self_pid())
    ...     suptrace.send(pid, "hi")
    ...     return await suptrace.receive()
    >>> suptrace.run(main)
    ('echo', 'hi')
    """
    return _spawn(fn, args, name, link, trap_exit, False)[0]


def _spawn(
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    name: str | None,
    link: bool,
    trap: bool,
    monitor: bool,
    system: bool = False,
    initial_call: str | None = None,
) -> tuple[Pid, Ref | None]:
    parent = _get_process()  # current_process_var.get()
    if parent is None:
        if monitor:
            current_process("spawn_monitor()")  # raises: there is nobody to monitor from
        rt = current_runtime("spawn()")
        loop = rt.loop
        running = None
    else:
        rt = parent.runtime  # also the node of a task the process created
        loop = rt.loop
        running = running_task(loop)
        if parent.task is not running:
            parent = None  # a task the process created with plain asyncio is not the process
            if monitor:
                current_process("spawn_monitor()")  # raises: there is nobody to monitor from
        elif parent.reason is not None and (link or monitor):
            raise NodeError("a dead process cannot spawn linked or monitored processes")
    if rt.closing:
        raise NodeError(f"node {rt.name!r} is shutting down: no new processes can start")
    try:  # _spawn_info(fn), its cache hit inline (a bound method forwards __code__)
        text = _SPAWNABLE[fn.__code__]
    except (AttributeError, KeyError):
        text = _spawn_info(fn)
    if name is not None:
        check_name(rt, name)
    factory = loop._task_factory if rt.plain_loop else loop.get_task_factory()  # type: ignore[attr-defined]
    if factory is not None and _runs_eagerly(factory, loop):  # may refuse the factory
        factory = None  # passed by: a process starts on the next iteration, never inside spawn()
    # The record, every field of `Process` set here (no __init__ frame per spawn).
    proc = _new(Process)
    proc.pid = pid = _new(Pid)  # Pid(number), without its __init__ frame
    pid.number = number = next(rt.pid_numbers)
    pid.serial = 0
    pid._proc = proc
    pid._hash = number  # as Pid.__init__ computes it for serial 0
    pid._home = rt.creation  # dead, it still names no process of a later node
    proc.runtime = rt
    proc.name = name
    proc.task = None
    proc.mailbox = None
    proc.waiter = None
    proc.links = None
    proc.monitors = None
    proc.monitored_by = None
    proc.trap = trap
    proc.status = "init"
    proc.initial_call = initial_call or text
    if parent is None:
        proc.parent = None
        proc.ancestors = ()
    else:
        proc.parent = parent.pid
        kin = parent.child_ancestors
        if kin is None:
            kin = parent.child_ancestors = (parent.name or parent.pid,) + parent.ancestors  # noqa: RUF005
        proc.ancestors = kin
    proc.child_ancestors = None
    proc.messages_in = 0
    proc.messages_out = 0
    proc.reason = None
    proc.pending_exit = None
    proc.tracers = None
    proc.recorder = None
    proc.result = None
    proc.started_at = _clock()
    proc.behaviour = None
    proc.system = system
    proc.notes = None
    proc.inbound = None
    proc.instrument_state = None
    rt.procs[number] = proc
    if name is not None:
        rt.names[name] = proc
        rt.tombstones.pop(name, None)  # as in register(): the name lives again
    loud = rt.spawn_watched  # whether anybody may want this spawn's events
    ref = None
    if parent is not None:
        if loud or parent.tracers:
            if parent.tracers or "spawn" in rt.watch:
                rt.emit(parent, "spawn", {"child": pid, "initial_call": proc.initial_call, "link": link})
            loud = True
        if link:
            add_link(parent, proc)
        if monitor:
            ref = _new(Ref)  # new_ref(), inline
            ref.number = n = next(ref_counter)
            ref.__hash__ = n.conjugate  # type: ignore[method-assign]
            # _add_monitor(parent, proc, ref), inline: every spawn_monitor passes here
            if parent.monitors is None:
                parent.monitors = {ref: pid}
            else:
                parent.monitors[ref] = pid
            proc.monitored_by = {ref: parent}
            if loud and (parent.tracers or "monitor" in rt.watch):
                rt.emit(parent, "monitor", {"target": pid, "ref": ref})
    if rt.spawn_hooks:
        loud = True  # a hook may attach tracers to the new process
        for hook in rt.spawn_hooks:
            hook(proc, parent)
    # Without a task factory (or with an eager one, passed by): what loop.create_task()
    # does, minus its checks and naming (a process is named by its pid and initial call).
    # When a task of the node's loop runs now, the loop is the running one: the task
    # takes it without the keyword, whose parsing costs more than that lookup.
    if factory is not None:
        proc.task = loop.create_task(_process_main(proc, fn, args))
    elif running is not None:
        proc.task = _Task(_process_main(proc, fn, args))
    else:
        proc.task = _Task(_process_main(proc, fn, args), loop=loop)
    if loud:
        if proc.tracers or "spawned" in rt.watch:
            rt.emit(proc, "spawned", {"parent": proc.parent, "initial_call": proc.initial_call})
        if name is not None and (proc.tracers or "register" in rt.watch):
            rt.emit(proc, "register", {"name": name})
    return pid, ref


def spawn_link(
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    name: str | None = None,
    trap_exit: bool = False,
) -> Pid:
    """Spawn and link to the caller in one step (no window where the child is unlinked).

    Called from a plain task (not a process) there is nobody to link to and it
    behaves like `spawn`.
    """
    return _spawn(fn, args, name, True, trap_exit, False)[0]


def spawn_monitor(
    fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None
) -> tuple[Pid, Ref]:
    """Spawn and monitor in one step; returns ``(pid, ref)``.

    >>> import suptrace
    >>> async def main():
    ...     async def work():
    ...         return 42
    ...     pid, ref = suptrace.spawn_monitor(work)
    ...     down = await suptrace.receive(lambda m: isinstance(m, suptrace.Down))
    ...     return down.ref == ref, down.reason
    >>> suptrace.run(main)
    (True, 'normal')
    """
    return _spawn(fn, args, name, False, False, True)  # type: ignore[return-value]


def start_process(
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...] = (),
    *,
    name: str | None = None,
    link: bool = False,
    trap_exit: bool = False,
    monitor: bool = False,
    system: bool = False,
    initial_call: str | None = None,
) -> tuple[Process, Ref | None]:
    """Spawn ``await fn(*args)`` with every option named; returns the new
    `Process` record and the monitor's ref (None unless ``monitor=True``).

    The internal form of `spawn` for behaviours and node services: ``system``
    marks a process that tracing "all" leaves out, ``initial_call`` replaces
    the text tooling shows for it (a GenServer shows its class's ``init``).
    """
    pid, ref = _spawn(fn, args, name, link, trap_exit, monitor, system, initial_call)
    proc = pid._proc
    assert proc is not None  # just created: it cannot have died yet
    return proc, ref


def process_in_stack(frame: FrameType | None) -> Process | None:
    """The process whose task runs the stack ending at ``frame``, or None.

    For samplers that look at the event loop's thread from another thread (the
    system monitor), where no context variable tells whose code runs: the stack
    of a process's step starts with its `_process_main` frame.
    """
    while frame is not None:
        if frame.f_code is MAIN_CODE:
            proc = frame.f_locals.get("proc")
            return proc if type(proc) is Process else None
        frame = frame.f_back
    return None


def self_pid() -> Pid:
    """The pid of the calling process."""
    return current_process("self_pid()").pid


#: The code of every process task's outermost frame (samplers and call tracing tell
#: the runtime's frames from the application's by it).
MAIN_CODE = _process_main.__code__
