"""A node: one runtime plus the observers and services wired around it.

``suptrace.run(main)`` is the usual entry point; ``async with Node(...)``
embeds a node in a loop you already run.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar

from suptrace.core.errors import Exit, NodeError
from suptrace.core.process import Process, spawn, watch
from suptrace.core.runtime import Runtime
from suptrace.core.terms import KILL, NORMAL, SHUTDOWN, Pid, Ref
from suptrace.node.control import ControlServer
from suptrace.observers.reports import Reports
from suptrace.observers.sysmon import SystemMonitor
from suptrace.observers.tasks import unwatch_tasks, watch_tasks

__all__ = ["Node", "run", "Service"]

T = TypeVar("T")


class Service(Protocol):
    """Something a node starts with it and stops after its processes (reports, control, telemetry)."""

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
        report_history: int = 1000,
        flight_recorder: int = 16,
        system_monitor: bool | dict[str, Any] = True,
        **options: Any,
    ) -> None:
        """``reports`` keeps SASL-style reports (``log_reports`` also writes them
        through loguru; ``report_history`` bounds how many are kept).
        ``flight_recorder`` is how many recent events each process keeps for
        crash reports, tombstones and ``inspect`` (0 turns it off).
        ``system_monitor`` watches for steps that block the loop and for growing
        mailboxes: True (defaults), False, or a dict of `SystemMonitor` options."""
        if isinstance(flight_recorder, bool) or not isinstance(flight_recorder, int) or flight_recorder < 0:
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
        from suptrace.observers.otel import telemetry_service

        self.telemetry = telemetry_service(options)
        self.reports: Reports | None = (
            Reports(history=report_history, log=log_reports) if reports else None
        )
        self.services: list[Service] = list(services or [])
        if self.telemetry is not None:
            self.services.insert(0, self.telemetry)
        # The control socket `suptrace` commands talk to: True (defaults), False (none),
        # or a dict of `ControlServer` options such as {"allow_write": True, "tcp": ...}.
        self.control: ControlServer | None = None
        if control is True or isinstance(control, dict):
            self.control = ControlServer(**(control if isinstance(control, dict) else {}))
            self.services.append(self.control)
        self._runtime: Runtime | None = None
        self._token: Any = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise NodeError(f"node {self.name!r} is not running (use `async with Node(...)`)")
        return self._runtime

    async def __aenter__(self) -> Node:
        loop = asyncio.get_running_loop()
        self._runtime = Runtime(self.name, loop)
        self._runtime.recorder_size = self.flight_recorder
        self._token = self._runtime.activate()
        if self.reports is not None:
            self.reports.attach(self._runtime)
            watch_tasks(self._runtime, self.reports.publish)  # plain tasks' lost exceptions
        if self.system_monitor is not None:
            self.system_monitor.attach(self._runtime)
        started: list[Service] = []
        try:
            for service in self.services:
                result = service.start(self)
                if result is not None:
                    await result
                started.append(service)
        except BaseException:
            self.services = started
            await self._close_services()
            unwatch_tasks(self._runtime)
            self._runtime.deactivate(self._token)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.shutdown()
        finally:
            for tracer in list(self.runtime.services.get("tracers", ())):
                tracer.stop("node_stopped")
            await self._close_services()
            if self.system_monitor is not None:
                self.system_monitor.detach()
            unwatch_tasks(self.runtime)
            if self.reports is not None:
                self.reports.detach()
            self.runtime.closing = True
            self.runtime.deactivate(self._token)

    async def _close_services(self) -> None:
        for service in reversed(self.services):
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
        top = [p for p in procs if p.parent is None or p.parent._proc is None]
        for proc in reversed(top):
            await self._stop_one(proc)
        for proc in reversed(list(rt.procs.values())):
            await self._stop_one(proc)

    async def _stop_one(self, proc: Process) -> None:
        if proc.reason is not None:
            return
        done = _death_future(proc)
        # The node stops a process on behalf of its parent (gone by now, or it would
        # have taken its child down): a trapping GenServer sees its parent's exit and
        # runs terminate, as under OTP's application master.
        rt = self.runtime
        proc.signal_exit(proc.parent if proc.parent is not None else rt.outside_pid, SHUTDOWN, True)
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
        proc = pid._proc
        assert proc is not None
        done = _death_future(proc)
        reason = await done
        if reason == NORMAL:
            result: T = proc.result
            return result
        if isinstance(reason, BaseException):
            raise reason
        raise Exit(reason)

    def pid_of(self, name: str) -> Pid | None:
        proc = self.runtime.names.get(name)
        return proc.pid if proc is not None else None


def _death_future(proc: Process) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = proc.runtime.loop.create_future()
    if proc.reason is not None:
        fut.set_result(proc.reason)
        return fut

    def died(_ref: Ref, _pid: Pid, reason: Any) -> None:
        if not fut.done():
            fut.set_result(reason)

    watch(proc, died)
    return fut


def run(main: Callable[..., Awaitable[T]], *args: Any, node: str | None = None, **opts: Any) -> T:
    """Start a node, run ``await main(*args)`` as its root process, shut the
    node down cleanly and return main's result.

    >>> import suptrace
    >>> async def main(x):
    ...     return x * 2
    >>> suptrace.run(main, 21)
    42
    """

    async def _root() -> T:
        async with Node(node, **opts) as n:
            return await n.run_root(main, *args)

    return asyncio.run(_root())
