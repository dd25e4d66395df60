"""Plain asyncio tasks in a node: listed, inspected, and reported when they die unseen.

A node's loop runs more than processes: connection handlers, helpers made with
``asyncio.create_task``, a ``TaskGroup``'s children. This module shows them the way
``python -m asyncio ps`` does (name, coroutine, the frames where each awaits, what it
awaits and who awaits it), for ``suptrace ps --all`` and ``suptrace inspect TASK``.

It also gives a plain task that ends with an exception nobody retrieves a crash report
(`TaskCrashReport`). asyncio signals that case through the loop's exception handler
("Task exception was never retrieved") when the task object is destroyed; under CPython
that is the moment the last reference goes, which for a task nobody keeps (the usual
fire-and-forget ``create_task``, or one kept in a set with a ``discard`` done-callback)
is right after it ends, so the report comes at once. A task still referenced (a
variable, a list, a reference cycle through its traceback) is reported when that
reference goes, exactly when asyncio itself would say it.

The node installs its handler at start and keeps the application's: a handler set
before the node starts gets every context as before (the task ones too, after the
report); with no handler set, the report replaces asyncio's own log line. A handler the
application sets *after* the node started replaces the node's (asyncio keeps one): the
node then reports nothing more (``ps --all`` says so) and, at stop, leaves the
application's handler in place. To keep both, set yours first, or chain to
``loop.get_exception_handler()`` from yours.

Where a task was created is known when asyncio's debug mode records it
(``PYTHONASYNCIODEBUG=1``, ``asyncio.run(..., debug=True)`` or ``loop.set_debug(True)``):
it costs a stack walk per task and future, so the node does not turn it on by itself.
Nothing here touches the process hot path: the listing runs only when asked, and the
handler only when asyncio calls it.
"""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from suptrace.core.runtime import Runtime
from suptrace.observers.format import short

__all__ = [
    "TaskCrashReport",
    "TaskWatch",
    "unwatch_tasks",
    "watch_tasks",
    "find_tasks",
    "format_task_crash",
    "plain_tasks",
    "task_info",
    "task_row",
]

#: The message asyncio gives the loop's exception handler for a task destroyed with an
#: exception nobody retrieved (3.11 to 3.14).
NEVER_RETRIEVED = "Task exception was never retrieved"

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_ASYNCIO_DIR = os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep


@dataclass(frozen=True)
class TaskCrashReport:
    """A plain asyncio task (not a process) ended with an exception nobody retrieved.

    ``created_at`` is where it was created (innermost frame last), known when asyncio's
    debug mode is on; empty otherwise.

    >>> import asyncio, suptrace
    >>> async def main():
    ...     got = asyncio.get_running_loop().create_future()
    ...     def on_report(report):
    ...         if isinstance(report, suptrace.TaskCrashReport) and not got.done():
    ...             got.set_result(report)
    ...     suptrace.add_report_handler(on_report)
    ...     async def feed():
    ...         raise ValueError("feed lost")
    ...     asyncio.create_task(feed(), name="feed")  # nobody keeps or awaits it
    ...     report = await got
    ...     return report.task, report.reason
    >>> suptrace.run(main, log_reports=False, control=False)
    ('feed', ValueError('feed lost'))
    """

    task: str
    coroutine: str
    reason: BaseException
    ts: float = field(default_factory=time.time)
    created_at: tuple[str, ...] = ()


def _sasl_time(ts: float) -> str:
    t = time.localtime(ts)
    return time.strftime("%d-%b-%Y::%H:%M:%S", t) + f".{int((ts % 1) * 1e6):06d}"


def format_task_crash(report: TaskCrashReport) -> str:
    """The crash report of a plain task, in the layout of a process's crash report."""
    lines = [
        f"=CRASH REPORT==== {_sasl_time(report.ts)} ===",
        "  crasher (a plain asyncio task, not a process):",
        f"    task: {report.task}",
        f"    coroutine: {report.coroutine}",
        f"    error: {short(report.reason, 4000)}",
    ]
    tb = report.reason.__traceback__
    if tb is not None:
        lines.append("      traceback (most recent call last):")
        for f in traceback.extract_tb(tb)[-8:]:
            lines.append(f"        {f.filename}:{f.lineno} in {f.name}")
            if f.line:
                lines.append(f"          {f.line}")
    if report.created_at:
        lines.append("    created at (innermost last):")
        lines.extend(f"      {frame}" for frame in report.created_at)
    else:
        lines.append(
            "    created at: not recorded (asyncio debug mode records it: PYTHONASYNCIODEBUG=1)"
        )
    lines.append(
        "    retrieved: never (nothing awaited the task or asked for its result or exception)"
    )
    return "\n".join(lines)


# -- what a task is doing ---------------------------------------------------------------------


def _frame_text(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_qualname}"


def _coro_name(task: asyncio.Task[Any]) -> str:
    coro: Any = task.get_coro()
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    if code is not None:
        return str(code.co_qualname)
    return getattr(coro, "__qualname__", None) or type(coro).__name__


def _own(task: asyncio.Task[Any]) -> bool:
    """A task suptrace itself runs (its control connections, the root of ``run()``)."""
    coro: Any = task.get_coro()
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    return code is not None and str(code.co_filename).startswith(_PACKAGE_DIR)


def awaiting_frames(task: asyncio.Task[Any], limit: int = 20) -> list[str]:
    """Where ``task`` awaits now, outermost first: the chain of coroutines it is suspended in."""
    if task.done():
        return []
    frames: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append(_frame_text(frame))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames[-limit:]


def _waiter(task: asyncio.Task[Any]) -> Any:
    # The future the task is suspended on (the same private attribute asyncio's own
    # Task repr reads; present on the C and the pure-Python task).
    return getattr(task, "_fut_waiter", None)


def _futures_of(fut: Any) -> list[Any]:
    """The futures ``fut`` stands for: itself, or a gather's children."""
    children = getattr(fut, "_children", None)
    return list(children) if isinstance(children, list) else [fut]


def _describe_future(fut: Any, procs: dict[int, str]) -> str:
    if isinstance(fut, asyncio.Task):
        proc = procs.get(id(fut))
        return f"process {proc}" if proc else f"task {fut.get_name()!r}"
    children = getattr(fut, "_children", None)
    if isinstance(children, list):
        parts = [_describe_future(c, procs) for c in children[:8]]
        more = f", +{len(children) - 8}" if len(children) > 8 else ""
        return f"gather of {len(children)}: {', '.join(parts)}{more}"
    return "a future" if not fut.done() else "a finished future"


def _process_tasks(rt: Runtime) -> dict[int, str]:
    out: dict[int, str] = {}
    for proc in list(rt.procs.values()):
        task = proc.task
        if task is not None:
            out[id(task)] = f"{proc.pid}" + (f" {proc.name}" if proc.name else "")
    return out


def plain_tasks(rt: Runtime) -> list[asyncio.Task[Any]]:
    """The tasks of the node's loop that are not processes, oldest name first."""
    procs = _process_tasks(rt)
    tasks = [t for t in asyncio.all_tasks(rt.loop) if id(t) not in procs]
    tasks.sort(key=lambda t: (_own(t), t.get_name()))
    return tasks


def _created_at(task: asyncio.Task[Any]) -> list[str]:
    source = getattr(task, "_source_traceback", None)  # asyncio debug mode only
    if not source:
        return []
    frames = [f for f in source if not f.filename.startswith(_ASYNCIO_DIR)]
    return [f"{f.filename}:{f.lineno} in {f.name}" for f in frames[-6:]]


def _state(task: asyncio.Task[Any]) -> str:
    # Never task.exception(): asking marks the exception retrieved, and the listing must
    # not keep a crash from being reported. (``all_tasks`` lists unfinished tasks only.)
    if task.done():
        return "cancelled" if task.cancelled() else "done"
    cancelling = getattr(task, "cancelling", None)
    return "cancelling" if cancelling is not None and cancelling() else "pending"


def _awaited_by(rt: Runtime, procs: dict[int, str]) -> dict[int, list[str]]:
    """For each future some task of the loop waits on: who waits (a task or a process)."""
    by: dict[int, list[str]] = {}
    for waiter in asyncio.all_tasks(rt.loop):
        fut = _waiter(waiter)
        if fut is None:
            continue
        who = procs.get(id(waiter))
        label = f"process {who}" if who else f"task {waiter.get_name()!r}"
        for f in _futures_of(fut):
            by.setdefault(id(f), []).append(label)
    return by


def task_row(
    task: asyncio.Task[Any],
    procs: dict[int, str],
    awaited_by: dict[int, list[str]],
    limit: int = 20,
) -> dict[str, Any]:
    """One plain task as JSON-ready data (what ``ps --all`` lists)."""
    fut = _waiter(task)
    return {
        "task": task.get_name(),
        "id": hex(id(task)),
        "coroutine": _coro_name(task),
        "state": _state(task),
        "suptrace": _own(task),
        "awaiting_at": awaiting_frames(task, limit),
        "awaiting": _describe_future(fut, procs) if fut is not None else None,
        "awaited_by": awaited_by.get(id(task), []),
        "created_at": _created_at(task),
    }


def task_rows(rt: Runtime) -> list[dict[str, Any]]:
    procs = _process_tasks(rt)
    by = _awaited_by(rt, procs)
    return [task_row(t, procs, by) for t in plain_tasks(rt)]


def find_tasks(rt: Runtime, target: str) -> list[asyncio.Task[Any]]:
    """The plain tasks named ``target`` (or whose id, as ``ps --all --json`` shows it, it is)."""
    return [t for t in plain_tasks(rt) if target in (t.get_name(), hex(id(t)))]


def task_info(rt: Runtime, task: asyncio.Task[Any]) -> dict[str, Any]:
    """Everything about one plain task (what ``inspect TASK`` shows)."""
    procs = _process_tasks(rt)
    row = task_row(task, procs, _awaited_by(rt, procs), limit=50)
    row["kind"] = "task"
    return row


# -- the exception handler ------------------------------------------------------------------

Handler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


class TaskWatch:
    """The node's loop exception handler: a crash report for every plain task destroyed with
    an exception nobody retrieved, every context still reaching the handler that was there
    before (or asyncio's default one)."""

    def __init__(self, publish: Callable[[TaskCrashReport], None]) -> None:
        self.publish = publish
        self.loop: asyncio.AbstractEventLoop | None = None
        self.previous: Handler | None = None
        self.reported = 0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.previous = loop.get_exception_handler()
        loop.set_exception_handler(self.handle)

    def uninstall(self) -> None:
        loop, self.loop = self.loop, None
        # Only when it is still ours: a handler the application set since stays.
        if loop is not None and loop.get_exception_handler() == self.handle:
            loop.set_exception_handler(self.previous)

    @property
    def active(self) -> bool:
        """Whether the loop still calls this handler (an application may have replaced it)."""
        return self.loop is not None and self.loop.get_exception_handler() == self.handle

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        task = context.get("future")
        exc = context.get("exception")
        reported = False
        if (
            context.get("message") == NEVER_RETRIEVED
            and isinstance(task, asyncio.Task)
            and isinstance(exc, BaseException)
        ):
            report = TaskCrashReport(
                task=task.get_name(),
                coroutine=_coro_name(task),
                reason=exc,
                created_at=tuple(
                    f"{f.filename}:{f.lineno} in {f.name}"
                    for f in (context.get("source_traceback") or ())
                    if not f.filename.startswith(_ASYNCIO_DIR)
                )[-6:],
            )
            self.reported += 1
            reported = True
            # asyncio calls this from the task's finaliser, wherever the last reference
            # went (even inside another task's step): publish from the loop instead.
            try:
                loop.call_soon_threadsafe(self.publish, report)
            except RuntimeError:  # the loop is closed: publish now
                self.publish(report)
        if self.previous is not None:
            self.previous(loop, context)
        elif not reported:
            loop.default_exception_handler(context)


def watch_tasks(rt: Runtime, publish: Callable[[TaskCrashReport], None]) -> TaskWatch:
    """Install a task watch on the runtime's loop (the node keeps it, and gives it
    back to `unwatch_tasks` when it stops)."""
    watch = TaskWatch(publish)
    watch.install(rt.loop)
    return watch


def unwatch_tasks(watch: TaskWatch | None) -> None:
    """Remove a task watch, giving the loop back the handler it had."""
    if watch is not None:
        watch.uninstall()
