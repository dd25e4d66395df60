"""Helpers for the supervisor tests (imported by the test modules; see conftest.py).

* `in_node` runs a test body as the root process of a fresh, quiet node.
* `ReportLog` collects every report in emission order and lets a test wait for
  one (an `asyncio.Future` completed from the report handler: no sleeping).
* `ExitLog` records the order in which processes died (the ``exit`` event).
* `Lab` builds child specs whose start function and child behaviour the test
  steers: succeed, fail, return IGNORE or a non-Pid, or stop at a gate until
  the test decides the outcome of that start attempt.

A child started by a `Lab` runs `lab_child`: it obeys ``("stop", reason)``
(exits by its own hand), ``("unlink", reply_to)`` and ignores anything else.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import suptrace
from suptrace import (
    IGNORE,
    ChildSpec,
    CrashReport,
    Down,
    Exit,
    ExitMsg,
    Pid,
    ProgressReport,
    SupervisorReport,
    TraceEvent,
)

T = TypeVar("T")

#: Upper bound for one test body: a hang fails fast.
TEST_DEADLINE = 5.0

#: A report as the tests compare it: (supervisor, context, child id, reason) for
#: supervisor reports, (supervisor, "progress", child id) for progress reports and
#: ("crash", name or pid, reason) for crash reports. Exception reasons become repr().
Summary = tuple[Any, ...]

Report = SupervisorReport | ProgressReport | CrashReport


async def in_node(main: Callable[..., Awaitable[T]], *args: Any, **node_opts: Any) -> T:
    """Run ``main(*args)`` as the root process of a new node; return its result."""
    node_opts.setdefault("shutdown_timeout", 1.0)
    node_opts.setdefault("log_reports", False)
    async with asyncio.timeout(TEST_DEADLINE), suptrace.Node("suptest", **node_opts) as node:
        return await node.run_root(main, *args)


class _Anything:
    """Equal to any value: a wildcard inside expected report summaries."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Anything()


def _reason(reason: Any) -> Any:
    return repr(reason) if isinstance(reason, BaseException) else reason


def summarize(report: Report) -> Summary:
    if isinstance(report, SupervisorReport):
        return (
            report.supervisor,
            report.context,
            report.offender.get("id"),
            _reason(report.reason),
        )
    if isinstance(report, ProgressReport):
        return (report.supervisor, "progress", report.started.get("id"))
    return ("crash", report.name or report.pid, _reason(report.reason))


class ReportLog:
    """Every report of the node, in emission order, from the moment it is created."""

    def __init__(self) -> None:
        self.reports: list[Report] = []
        self._waiters: list[tuple[Callable[[Report], bool], int, asyncio.Future[Report]]] = []
        self.stop = suptrace.add_report_handler(self._on_report)

    def _on_report(self, report: Report) -> None:
        self.reports.append(report)
        for entry in list(self._waiters):
            match, count, fut = entry
            if not fut.done() and self._nth(match, count) is not None:
                fut.set_result(self._nth(match, count))  # type: ignore[arg-type]
                self._waiters.remove(entry)

    def _nth(self, match: Callable[[Report], bool], count: int) -> Report | None:
        seen = 0
        for report in self.reports:
            if match(report):
                seen += 1
                if seen == count:
                    return report
        return None

    async def wait(
        self, match: Callable[[Report], bool], count: int = 1, timeout: float = 2.0
    ) -> Report:
        """The ``count``-th report (since this log started) for which ``match`` is true."""
        found = self._nth(match, count)
        if found is not None:
            return found
        fut: asyncio.Future[Report] = asyncio.get_running_loop().create_future()
        self._waiters.append((match, count, fut))
        async with asyncio.timeout(timeout):
            return await fut

    async def wait_progress(self, child_id: Any, count: int = 1) -> ProgressReport:
        """The ``count``-th progress report for ``child_id`` (a start or restart)."""
        report = await self.wait(
            lambda r: isinstance(r, ProgressReport) and r.started.get("id") == child_id, count
        )
        assert isinstance(report, ProgressReport)
        return report

    async def wait_context(self, context: str, count: int = 1) -> SupervisorReport:
        report = await self.wait(
            lambda r: isinstance(r, SupervisorReport) and r.context == context, count
        )
        assert isinstance(report, SupervisorReport)
        return report

    def mark(self) -> int:
        """A position in the log, for `since`."""
        return len(self.reports)

    def since(self, mark: int = 0, crashes: bool = True) -> list[Summary]:
        return [
            summarize(r) for r in self.reports[mark:] if crashes or not isinstance(r, CrashReport)
        ]

    def supervisor_reports(self, mark: int = 0) -> list[SupervisorReport]:
        return [r for r in self.reports[mark:] if isinstance(r, SupervisorReport)]


class ExitLog:
    """The order in which processes died, with their reasons (the ``exit`` event)."""

    def __init__(self) -> None:
        self.events: list[tuple[Pid, Any]] = []
        self.stop = suptrace.add_event_handler(self._on_event, kinds=["exit"])

    def _on_event(self, event: TraceEvent) -> None:
        assert event.pid is not None
        self.events.append((event.pid, event.data["reason"]))

    def order(self, pids: Iterable[Pid]) -> list[Pid]:
        """Those of ``pids`` that died, in the order they died."""
        wanted = set(pids)
        return [pid for pid, _ in self.events if pid in wanted]

    def reason(self, pid: Pid) -> Any:
        for dead, reason in self.events:
            if dead == pid:
                return reason
        raise AssertionError(f"{pid} has not exited")


# -- children the test steers -----------------------------------------------------------


async def lab_child(lab: Lab, cid: Any, body: str, sup: Pid) -> None:
    """A child process. ``body``: "idle" (the default), "trap" (traps exits and
    ignores them: only a kill stops it) or "trap_report" (traps exits and tells
    ``lab.observer`` about each exit signal; exits only on ``("stop", r)``)."""
    if body in ("trap", "trap_report"):
        suptrace.trap_exit(True)
    while True:
        msg = await suptrace.receive()
        if type(msg) is ExitMsg:
            if body == "trap_report" and lab.observer is not None:
                suptrace.send(lab.observer, ("got_exit", suptrace.self_pid(), msg.reason))
            continue
        if isinstance(msg, tuple) and msg and msg[0] == "stop":
            raise Exit(msg[1])
        if isinstance(msg, tuple) and msg and msg[0] == "unlink":
            suptrace.unlink(sup)
            suptrace.send(msg[1], ("unlinked", suptrace.self_pid()))


class Gate:
    """A start attempt held open until the test decides its outcome."""

    def __init__(self, cid: Any, fut: asyncio.Future[Any]) -> None:
        self.cid = cid
        self._fut = fut

    def release(self, outcome: Any = "ok") -> None:
        self._fut.set_result(outcome)


class Lab:
    """Child specs with steerable start functions.

    Outcomes of a start attempt: ``"ok"`` (spawn_link a `lab_child`), ``"ignore"``
    (return IGNORE), ``("exit", r)`` (raise Exit(r)), ``("raise", exc)``,
    ``("return", value)`` (return a non-Pid), ``"gate"`` (wait until the test
    releases the gate with one of the other outcomes). ``script[id]`` is consumed
    first; ``mode[id]`` is the outcome afterwards (default ``"ok"``).
    """

    def __init__(self) -> None:
        self.script: dict[Any, deque[Any]] = defaultdict(deque)
        self.mode: dict[Any, Any] = {}
        self.body: dict[Any, str] = {}
        self.observer: Pid | None = None
        #: (id, pid) of every successful start, in order.
        self.started: list[tuple[Any, Pid]] = []
        #: Every start attempt's id, in order.
        self.attempts: list[Any] = []
        self._gates: asyncio.Queue[Gate] = asyncio.Queue()

    def spec(self, cid: Any, **kw: Any) -> ChildSpec:
        return ChildSpec(id=cid, start=(self.start, (cid,)), **kw)

    def pids(self, cid: Any) -> list[Pid]:
        """Every pid ``cid`` was started as, oldest first."""
        return [pid for c, pid in self.started if c == cid]

    def pid(self, cid: Any) -> Pid:
        """The newest pid of ``cid``."""
        return self.pids(cid)[-1]

    async def start(self, cid: Any) -> Any:
        self.attempts.append(cid)
        outcome = self.script[cid].popleft() if self.script[cid] else self.mode.get(cid, "ok")
        if outcome == "gate":
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._gates.put_nowait(Gate(cid, fut))
            outcome = await fut
        if outcome == "ok":
            sup = suptrace.self_pid()  # start functions run inside the supervisor
            pid = suptrace.spawn_link(lab_child, self, cid, self.body.get(cid, "idle"), sup)
            self.started.append((cid, pid))
            return pid
        if outcome == "ignore":
            return IGNORE
        kind, value = outcome
        if kind == "exit":
            raise Exit(value)
        if kind == "raise":
            raise value
        if kind == "return":
            return value
        raise AssertionError(f"unknown outcome {outcome!r}")

    async def at_gate(self, timeout: float = 2.0) -> Gate:
        """The next start attempt that reached a gate."""
        async with asyncio.timeout(timeout):
            return await self._gates.get()


# -- processes ---------------------------------------------------------------------------


async def wait_dead(pid: Pid, timeout: float = 2.0) -> Any:
    """Monitor ``pid`` and return its exit reason once it is dead."""
    ref = suptrace.monitor(pid)
    msg: Down = await suptrace.receive(lambda m: type(m) is Down and m.ref == ref, timeout=timeout)
    return msg.reason


async def exit_from(pid: Pid, timeout: float = 2.0) -> Any:
    """The reason of the next `ExitMsg` from ``pid`` (the caller traps exits)."""
    msg: ExitMsg = await suptrace.receive(
        lambda m: type(m) is ExitMsg and m.pid == pid, timeout=timeout
    )
    return msg.reason


async def exit_and_wait(pid: Pid, reason: Any) -> Any:
    """Send ``exit(pid, reason)`` and return the reason ``pid`` died with.

    The monitor is set first: a process doomed by a signal is no longer alive,
    so monitoring it afterwards would only give ``noproc``.
    """
    ref = suptrace.monitor(pid)
    suptrace.exit(pid, reason)
    msg: Down = await suptrace.receive(lambda m: type(m) is Down and m.ref == ref, timeout=2.0)
    return msg.reason


async def stop_child_itself(pid: Pid, reason: Any) -> None:
    """Make a `lab_child` exit by its own hand with ``reason``; return once it is dead."""
    ref = suptrace.monitor(pid)
    suptrace.send(pid, ("stop", reason))
    await suptrace.receive(lambda m: type(m) is Down and m.ref == ref, timeout=2.0)


async def calls_then(action: Callable[[], None], *calls: Coroutine[Any, Any, Any]) -> list[Any]:
    """Start ``calls`` (admin calls), then run ``action`` once every call's request
    is in the callee's mailbox; return their results (exceptions as values).

    Each call delivers its request before its first await, and tasks take their
    first step in creation order, so ``action`` (e.g. releasing a start gate)
    runs after all the requests are queued.
    """
    tasks = [asyncio.ensure_future(c) for c in calls]

    async def run_action() -> None:
        action()

    after = asyncio.ensure_future(run_action())
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await after
    return list(results)


def child_pids(children: Iterable[Any]) -> dict[Any, Any]:
    """``{id: pid}`` from a `which_children` result."""
    return {c.id: c.pid for c in children}
