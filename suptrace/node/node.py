"""A node: one runtime plus the observers and services wired around it.

``suptrace.run(main)`` is the usual entry point; ``async with Node(...)``
embeds a node in a loop you already run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar

from suptrace.behaviours.gen_server import parent_of
from suptrace.core.errors import Exit, NodeError
from suptrace.core.links import death_future
from suptrace.core.process import Process
from suptrace.core.runtime import Runtime, process_of
from suptrace.core.spawn import check_task_factory, spawn
from suptrace.core.terms import KILL, NORMAL, SHUTDOWN, Pid
from suptrace.node.control import ControlServer
from suptrace.node.parts import NodeParts, forget_parts, register_parts
from suptrace.node.telemetry import telemetry_service
from suptrace.observers.call_timeouts import CallTimeouts
from suptrace.observers.reports import Reports
from suptrace.observers.sysmon import SystemMonitor
from suptrace.observers.tasks import TaskWatch, unwatch_tasks, watch_tasks
from suptrace.observers.tracer import running_tracers

__all__ = ["Node", "run", "Service"]

#: The signals a node handles when asked to (``run()`` always does).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


_hook_installed = False


def _quiet_interrupt_hook() -> None:
    """Let the `KeyboardInterrupt` of a node stopped by SIGINT end the program
    without a traceback: the node already said in one line what happened. (A
    plain `KeyboardInterrupt`, not a subclass: only that one gets Python's exit
    status for Ctrl-C.)"""
    global _hook_installed
    if _hook_installed:
        return
    _hook_installed = True
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if getattr(value, "_suptrace_stopped", False):
            return
        previous(kind, value, tb)

    sys.excepthook = hook


def _stop_exception(signum: int) -> BaseException:
    """What a node stopped by ``signum`` raises: as Python does for that signal."""
    if signum == signal.SIGINT:
        _quiet_interrupt_hook()
        interrupt = KeyboardInterrupt("the node was stopped in order by SIGINT")
        interrupt._suptrace_stopped = True  # type: ignore[attr-defined]
        return interrupt
    # A default-handled SIGTERM kills the process, which a shell reports as 128 + 15.
    return SystemExit(128 + signum)


T = TypeVar("T")


class Service(Protocol):
    """Something of the application's that a node starts with it (``Node(services=[...])``)
    and closes after its processes; ``start`` is given the node."""

    def start(self, node: Node) -> Awaitable[None] | None: ...

    def close(self) -> Awaitable[None] | None: ...


def _default_name() -> str:
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    script = script.removesuffix(".py") or "python"
    return f"{script}-{os.getpid()}"


class Node:
    """A running suptrace node.

    >>> import asyncio, suptrace
    >>> async def app():
    ...     async with suptrace.Node("embedded") as node:
    ...         async def worker():
    ...             return await suptrace.receive()
    ...         pid = suptrace.spawn(worker, name="worker")
    ...         suptrace.send("worker", "job")
    ...         return node.name, suptrace.whereis("worker") == pid
    >>> asyncio.run(app())
    ('embedded', True)
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        shutdown_timeout: float = 5.0,
        services: list[Service] | None = None,
        control: bool | dict[str, Any] = True,
        reports: bool = True,
        log_reports: bool = True,
        log_progress: bool = False,
        crash_report: str = "short",
        report_history: int = 1000,
        flight_recorder: int = 16,
        system_monitor: bool | dict[str, Any] = True,
        handle_signals: bool = False,
        **options: Any,
    ) -> None:
        """``reports`` keeps SASL-style reports (``log_reports`` also writes them
        through loguru; ``report_history`` bounds how many are kept). As in OTP 21+,
        progress reports are kept but not logged unless ``log_progress=True``;
        ``crash_report`` is how crash reports are logged: ``"short"`` (about ten
        lines) or ``"full"`` (the whole SASL layout; the history keeps it anyway).
        With reports the node also counts, per destination, the calls that time
        out (read by ``suptrace doctor``; nothing is added to a call that answers).
        ``flight_recorder`` is how many recent events each process keeps for
        crash reports, tombstones and ``inspect`` (0 turns it off).
        ``system_monitor`` watches for steps that block the loop and for growing
        mailboxes: True (defaults), False, or a dict of `SystemMonitor` options.
        ``handle_signals`` makes SIGTERM and SIGINT stop the node in order, as
        `run()` does (main thread only); by default an embedded node leaves
        signals to the application."""
        if (
            isinstance(flight_recorder, bool)
            or not isinstance(flight_recorder, int)
            or flight_recorder < 0
        ):
            raise ValueError(f"flight_recorder must be an int >= 0, got {flight_recorder!r}")
        self.flight_recorder = flight_recorder
        self.system_monitor: SystemMonitor | None = None
        if system_monitor:
            opts = system_monitor if isinstance(system_monitor, dict) else {}
            self.system_monitor = SystemMonitor(**opts)
        self.name = name or _default_name()
        self.shutdown_timeout = shutdown_timeout
        self.options = options
        # OpenTelemetry (telemetry=, tracer_provider=, meter_provider=, logger_provider=,
        # prometheus=...): a service that starts first and closes last.
        self.telemetry = telemetry_service(options)
        self.reports: Reports | None = (
            Reports(
                history=report_history,
                log=log_reports,
                log_progress=log_progress,
                crash_report=crash_report,
            )
            if reports
            else None
        )
        #: Calls that timed out, by destination (what ``suptrace doctor`` reads); kept
        #: with the reports, so a node without them listens to no event at all.
        self.call_timeouts: CallTimeouts | None = CallTimeouts() if reports else None
        #: The application's services (the node's own, telemetry and control, start
        #: around them: telemetry first, control last).
        self.services: list[Service] = list(services or [])
        # The control socket `suptrace` commands talk to: True (defaults), False (none),
        # or a dict of `ControlServer` options such as {"allow_write": True, "tcp": ...}.
        self.control: ControlServer | None = None
        if control is True or isinstance(control, dict):
            self.control = ControlServer(**(control if isinstance(control, dict) else {}))
        self._runtime: Runtime | None = None
        self._parts: NodeParts | None = None
        self._tasks: TaskWatch | None = None
        self._started: list[Any] = []
        self._token: Any = None
        if not isinstance(handle_signals, bool):
            raise TypeError(f"handle_signals must be True or False, got {handle_signals!r}")
        self.handle_signals = handle_signals
        #: The signal that stopped the node (None while none came).
        self.stopped_by: int | None = None
        self._host: asyncio.Task[Any] | None = None
        self._exiting = False
        self._old_handlers: dict[int, Any] = {}

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise NodeError(f"node {self.name!r} is not running (use `async with Node(...)`)")
        return self._runtime

    @property
    def parts(self) -> NodeParts:
        """The parts this node gives its own services (see `NodeParts`)."""
        if self._parts is None:
            raise NodeError(f"node {self.name!r} is not running (use `async with Node(...)`)")
        return self._parts

    async def __aenter__(self) -> Node:
        loop = asyncio.get_running_loop()
        if self.handle_signals and threading.current_thread() is not threading.main_thread():
            raise NodeError(
                f"node {self.name!r}: handle_signals=True needs the main thread (Python runs "
                f"signal handlers only there) but this node starts in thread "
                f"{threading.current_thread().name!r}; leave handle_signals off and stop the "
                "node from your own signal handling, or start it in the main thread"
            )
        check_task_factory(loop)  # a factory processes cannot run on is refused here
        self._runtime = Runtime(self.name, loop)
        self._runtime.recorder_size = self.flight_recorder
        self._token = self._runtime.activate()
        if self.reports is not None:
            self.reports.attach(self._runtime)
            # plain tasks' lost exceptions
            self._tasks = watch_tasks(self._runtime, self.reports.publish)
        if self.call_timeouts is not None:
            self.call_timeouts.attach(self._runtime)
        if self.system_monitor is not None:
            self.system_monitor.attach(self._runtime)
        self._parts = parts = NodeParts(
            runtime=self._runtime,
            name=self.name,
            reports=self.reports,
            call_timeouts=self.call_timeouts,
            tasks=self._tasks,
            system_monitor=self.system_monitor,
            telemetry=self.telemetry,
            control=self.control,
        )
        register_parts(parts)
        self._started = []
        try:
            if self.telemetry is not None:
                await self.telemetry.start(parts.runtime, parts.name, parts.reports)
                self._started.append(self.telemetry)
            for service in self.services:
                result = service.start(self)
                if result is not None:
                    await result
                self._started.append(service)
            if self.control is not None:
                await self.control.start(parts)
                self._started.append(self.control)
        except BaseException:
            await self._close_services()
            unwatch_tasks(self._tasks)
            forget_parts(self._runtime)
            self._runtime.deactivate(self._token)
            raise
        if self.handle_signals:
            self._host = asyncio.current_task()
            for signum in STOP_SIGNALS:
                self._old_handlers[signum] = signal.signal(signum, self._on_signal)
        return self

    # -- signals ------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: Any) -> None:
        """The Python-level handler (main thread): the first signal asks the loop to
        stop the node in order, a second one ends the program at once."""
        name = signal.Signals(signum).name
        if self.stopped_by is not None:
            os.write(2, f"suptrace: {name} again: node {self.name!r} stops at once\n".encode())
            if self.control is not None:
                self.control.remove_files()  # (quick and local: no stale socket left behind)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.stopped_by = signum
        os.write(
            2,
            f"suptrace: {name}: stopping node {self.name!r} in order "
            f"(send {name} again to stop at once)\n".encode(),
        )
        self.runtime.loop.call_soon_threadsafe(self._stop_host)

    def _stop_host(self) -> None:
        host = self._host
        if not self._exiting and host is not None and not host.done():
            host.cancel()  # the `async with` body ends; __aexit__ stops the node in order

    def _restore_signals(self) -> None:
        for signum, previous in self._old_handlers.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._old_handlers.clear()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exiting = True
        if self.stopped_by is not None and exc_type is asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the cancellation was ours: the shutdown must not see it
        try:
            await self.shutdown()
        finally:
            for tracer in running_tracers(self.runtime):
                tracer.stop("node_stopped")
            await self._close_services()
            if self.system_monitor is not None:
                self.system_monitor.detach()
            unwatch_tasks(self._tasks)
            self._tasks = None
            forget_parts(self.runtime)
            if self.reports is not None:
                self.reports.detach()
            if self.call_timeouts is not None:
                self.call_timeouts.detach()
            self.runtime.closing = True
            self.runtime.deactivate(self._token)
            self._restore_signals()
        if self.stopped_by is not None:
            raise _stop_exception(self.stopped_by) from None

    async def _close_services(self) -> None:
        started, self._started = self._started, []
        for service in reversed(started):
            try:
                result = service.close()
                if result is not None:
                    await result
            except Exception as exc:  # one failing service must not keep others open
                asyncio.get_running_loop().call_exception_handler(
                    {"message": f"suptrace: closing {service!r} failed", "exception": exc}
                )

    async def shutdown(self) -> None:
        """Stop every process: top-level ones in reverse start order (each takes
        its subtree down), then whatever is left. Each gets ``shutdown`` and is
        killed after ``shutdown_timeout`` seconds."""
        rt = self.runtime
        procs = list(rt.procs.values())
        # A server started unlinked is top-level too: it is its own parent.
        top = [
            p
            for p in procs
            if p.parent is None or process_of(p.parent) is None or parent_of(p) == p.pid
        ]
        for proc in reversed(top):
            await self._stop_one(proc)
        for proc in reversed(list(rt.procs.values())):
            await self._stop_one(proc)

    async def _stop_one(self, proc: Process) -> None:
        if proc.reason is not None:
            return
        done = death_future(proc)
        # The node stops a process on behalf of its parent (gone by now, or it would
        # have taken its child down): a trapping GenServer sees its parent's exit and
        # runs terminate, as under OTP's application master.
        rt = self.runtime
        parent = parent_of(proc) or proc.parent  # an unlinked server is its own parent
        proc.signal_exit(parent if parent is not None else rt.outside_pid, SHUTDOWN, True)
        try:
            await asyncio.wait_for(asyncio.shield(done), self.shutdown_timeout)
        except TimeoutError:
            proc.signal_exit(self.runtime.outside_pid, KILL, False)
            await done

    async def run_root(self, main: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``main(*args)`` as the root process and return its result.

        A crash re-raises the exception; any other abnormal exit raises `Exit`.
        """
        pid = spawn(main, *args)
        proc = process_of(pid)
        assert proc is not None
        done = death_future(proc)
        reason = await done
        if isinstance(reason, str) and reason == NORMAL:
            result: T = proc.result
            return result
        if isinstance(reason, BaseException):
            raise reason
        raise Exit(reason)

    def pid_of(self, name: str) -> Pid | None:
        proc = self.runtime.names.get(name)
        return proc.pid if proc is not None else None


def run(main: Callable[..., Awaitable[T]], *args: Any, node: str | None = None, **opts: Any) -> T:
    """Start a node, run ``await main(*args)`` as its root process, shut the
    node down cleanly and return main's result.

    SIGTERM and SIGINT (Ctrl-C) stop the node in order: every process in reverse
    start order (GenServers run ``terminate``), telemetry flushed, control files
    removed; one line on stderr says so. Then SIGINT raises `KeyboardInterrupt`
    (uncaught, it ends the program without a traceback and with Python's exit
    status for Ctrl-C: killed by SIGINT, 130 in a shell) and SIGTERM raises
    ``SystemExit(143)``: the program exits with
    status 143, what a shell reports for a process that SIGTERM killed. A second
    signal during that shutdown ends the program at once. Pass
    ``handle_signals=False`` to leave signals alone (run() outside the main
    thread does so by default: signals only reach the main thread).

    >>> import suptrace
    >>> async def main(x):
    ...     return x * 2
    >>> suptrace.run(main, 21)
    42
    """

    # Signals reach only the main thread: run() elsewhere leaves them alone.
    opts.setdefault("handle_signals", threading.current_thread() is threading.main_thread())
    stopped: list[int] = []

    async def _root() -> T | None:
        n = Node(node, **opts)
        try:
            async with n:
                return await n.run_root(main, *args)
        except (KeyboardInterrupt, SystemExit):
            if n.stopped_by is None:
                raise
            stopped.append(n.stopped_by)  # raised below, outside the event loop
            return None

    result = asyncio.run(_root())
    if stopped:
        raise _stop_exception(stopped[0])
    return result  # type: ignore[return-value]
