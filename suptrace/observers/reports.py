"""SASL's reports, rebuilt from the event stream.

Supervisors and processes only emit events; this observer turns the ones OTP
would log into frozen report dataclasses, keeps a bounded history on the node,
hands each report to subscribers in emission order, and writes SASL's text
layout through loguru (``logger.disable("suptrace")`` silences it).

Levels: supervisor reports and crash reports are ERROR, ``not_restarted`` is
WARNING, progress reports are INFO (DEBUG for children added through the admin
API, as in current OTP).
"""

from __future__ import annotations

import os
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from suptrace.core.events import TraceEvent
from suptrace.core.runtime import Runtime, current_runtime
from suptrace.core.terms import Pid, is_normal_exit
from suptrace.observers.format import format_event, short
from suptrace.observers.tasks import TaskCrashReport, format_task_crash

__all__ = [
    "SupervisorReport",
    "ProgressReport",
    "CrashReport",
    "TaskCrashReport",
    "Report",
    "Reports",
    "add_report_handler",
    "report_history",
    "format_report",
]

#: How much of a reason a report prints before cutting it (with a visible mark).
REASON_LIMIT = 4000

_SUPERVISOR_CONTEXTS = {
    "start_error": "start_error",
    "child_terminated": "child_terminated",
    "shutdown_error": "shutdown_error",
    "intensity": "shutdown",
    "not_restarted": "not_restarted",
}


@dataclass(frozen=True)
class SupervisorReport:
    """A supervisor's account of a child (OTP's ``supervisor_report``).

    ``context`` is ``start_error``, ``child_terminated``, ``shutdown_error``,
    ``shutdown`` (reason ``reached_max_restart_intensity``) or, beyond OTP,
    ``not_restarted`` (with ``cause`` and ``rule`` saying why a subtree vanished).
    """

    supervisor: Any
    context: str
    reason: Any
    offender: dict[str, Any]
    ts: float = field(default_factory=time.time)
    cause: dict[str, Any] | None = None
    rule: str | None = None
    pid: Pid | None = None


@dataclass(frozen=True)
class ProgressReport:
    """A child started (OTP's ``progress`` report)."""

    supervisor: Any
    started: dict[str, Any]
    ts: float = field(default_factory=time.time)
    pid: Pid | None = None


@dataclass(frozen=True)
class CrashReport:
    """A process crashed by its own hand (not by a signal from another)."""

    pid: Pid
    name: str | None
    reason: Any
    ts: float = field(default_factory=time.time)
    initial_call: str = ""
    ancestors: tuple[Any, ...] = ()
    links: tuple[Pid, ...] = ()
    message_queue_len: int = 0
    messages_in: int = 0
    messages_out: int = 0
    #: The last events of the process (its flight recorder), oldest first.
    last_events: Sequence[TraceEvent] = ()


Report = SupervisorReport | ProgressReport | CrashReport | TaskCrashReport
ReportHandler = Callable[[Report], None]


def _sasl_time(ts: float) -> str:
    t = time.localtime(ts)
    return time.strftime("%d-%b-%Y::%H:%M:%S", t) + f".{int((ts % 1) * 1e6):06d}"


def _reason(reason: Any, with_traceback: bool = False) -> str:
    head = short(reason, REASON_LIMIT)
    if not (with_traceback and isinstance(reason, BaseException)) or reason.__traceback__ is None:
        return head
    # The user's frames tell the story; the runtime's own frames are noise.
    frames = [
        f
        for f in traceback.extract_tb(reason.__traceback__)
        if f"{os.sep}suptrace{os.sep}" not in f.filename
    ][-8:]
    lines = [head, "      traceback (most recent call last):"]
    for f in frames:
        lines.append(f"        {f.filename}:{f.lineno} in {f.name}")
        if f.line:
            lines.append(f"          {f.line}")
    return "\n".join(lines)


def _offender(off: dict[str, Any]) -> str:
    parts = []
    for key in ("pid", "id", "start", "restart_type", "shutdown", "child_type", "significant"):
        if key not in off:
            continue
        value = off[key]
        if key == "start" and isinstance(value, tuple) and value:
            fn = value[0]
            owner = getattr(fn, "__self__", None)
            name = getattr(fn, "__qualname__", repr(fn))
            if isinstance(owner, type):
                name = f"{owner.__qualname__}.{getattr(fn, '__name__', name)}"
            args = value[1] if len(value) > 1 else None
            text = (
                f"{name}(...)"
                if args is None
                else f"{name}({', '.join(short(a, 40) for a in args)})"
            )
        elif key in ("restart_type", "child_type") and isinstance(value, str):
            text = value
        else:
            text = short(value, 200)
        parts.append(f"{key}={text}")
    return "[" + ", ".join(parts) + "]"


def format_report(report: Report) -> str:
    """SASL's text layout for one report (multi-line, not truncated to uselessness)."""
    if isinstance(report, SupervisorReport):
        lines = [
            f"=SUPERVISOR REPORT==== {_sasl_time(report.ts)} ===",
            f"    supervisor: {report.supervisor}",
            f"    errorContext: {report.context}",
            f"    reason: {_reason(report.reason)}",
            f"    offender: {_offender(report.offender)}",
        ]
        if report.context == "not_restarted":
            cause = report.cause
            if cause is not None:
                detail = cause.get("detail") or cause.get("text", "")
                lines.append(f"    cause: {cause.get('cause')} ({detail})")
                off = cause.get("offender")
                if off:
                    lines.append(f"    cause offender: {_offender(off)}")
            else:
                lines.append("    cause: unknown (the child exited by itself with a normal reason)")
            lines.append(f"    rule: {report.rule}")
            lines.append(
                f"    consequence: {report.offender.get('id')!r} and everything under it are gone "
                "and nothing will restart them"
            )
        return "\n".join(lines)
    if isinstance(report, ProgressReport):
        return "\n".join(
            [
                f"=PROGRESS REPORT==== {_sasl_time(report.ts)} ===",
                f"    supervisor: {report.supervisor}",
                f"    started: {_offender(report.started)}",
            ]
        )
    if isinstance(report, TaskCrashReport):
        return format_task_crash(report)
    lines = [
        f"=CRASH REPORT==== {_sasl_time(report.ts)} ===",
        "  crasher:",
        f"    pid: {report.pid}",
        f"    registered_name: {report.name or '[]'}",
        f"    initial_call: {report.initial_call}",
        f"    ancestors: [{', '.join(str(a) for a in report.ancestors)}]",
        f"    error: {_reason(report.reason, with_traceback=True)}",
        f"    message_queue_len: {report.message_queue_len}",
        f"    messages: in {report.messages_in}, out {report.messages_out}",
        f"    links: [{', '.join(str(p) for p in report.links)}]",
    ]
    if report.last_events:
        lines.append(f"    last events ({len(report.last_events)}):")
        lines.extend("      " + format_event(e) for e in report.last_events)
    return "\n".join(lines)


class Reports:
    """The node's report service: history, subscribers, loguru output."""

    KINDS = ("crash", "progress", *(_SUPERVISOR_CONTEXTS))

    def __init__(self, history: int = 1000, log: bool = True) -> None:
        self.history: deque[Report] = deque(maxlen=history)
        self.handlers: tuple[ReportHandler, ...] = ()
        self.log = log
        self.handler_errors = 0
        self._unsubscribe: Callable[[], None] | None = None
        self._runtime: Runtime | None = None

    # -- service protocol ----------------------------------------------------------------

    def attach(self, runtime: Runtime) -> None:
        self._runtime = runtime
        runtime.services["reports"] = self
        self._unsubscribe = runtime.add_event_handler(self._on_event, self.KINDS)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # -- subscribers ---------------------------------------------------------------------

    def add_handler(self, fn: ReportHandler) -> Callable[[], None]:
        self.handlers = (*self.handlers, fn)

        def remove() -> None:
            self.handlers = tuple(h for h in self.handlers if h is not fn)

        return remove

    # -- building reports ----------------------------------------------------------------

    def _on_event(self, event: TraceEvent) -> None:
        report = self.build(event)
        if report is not None:
            self.publish(report, api=bool(event.data.get("api")))

    @staticmethod
    def build(event: TraceEvent) -> Report | None:
        d = event.data
        kind = event.kind
        if kind in ("crash", "exit"):
            reason = d.get("reason")
            if d.get("by_signal") or is_normal_exit(reason):
                return None
            assert event.pid is not None
            recorder = d.get("last_events") or ()
            return CrashReport(
                pid=event.pid,
                name=event.name,
                reason=reason,
                ts=event.ts,
                initial_call=d.get("initial_call", ""),
                ancestors=tuple(d.get("ancestors", ())),
                links=tuple(d.get("links", ())),
                message_queue_len=d.get("message_queue_len", 0),
                messages_in=d.get("messages_in", 0),
                messages_out=d.get("messages_out", 0),
                last_events=recorder,
            )
        if kind == "progress":
            return ProgressReport(d["supervisor"], d["started"], event.ts, event.pid)
        context = _SUPERVISOR_CONTEXTS.get(kind)
        if context is None:
            return None
        return SupervisorReport(
            supervisor=d["supervisor"],
            context=context,
            reason=d.get("reason"),
            offender=d.get("offender", {}),
            ts=event.ts,
            cause=d.get("cause"),
            rule=d.get("rule"),
            pid=event.pid,
        )

    def publish(self, report: Report, api: bool = False) -> None:
        self.history.append(report)
        for fn in self.handlers:
            try:
                fn(report)
            except Exception as exc:
                self.handler_errors += 1
                if self.handler_errors <= 3 and self._runtime is not None:
                    self._runtime.loop.call_exception_handler(
                        {"message": f"suptrace report handler {fn!r} failed", "exception": exc}
                    )
        if self.log:
            _log(report, api)


def _log(report: Report, api: bool) -> None:
    from loguru import logger

    if isinstance(report, ProgressReport):
        level = "DEBUG" if api else "INFO"
    elif isinstance(report, SupervisorReport) and report.context == "not_restarted":
        level = "WARNING"
    else:
        level = "ERROR"
    logger.bind(suptrace_report=report).opt(depth=0).log(level, "{}", format_report(report))


def _reports(what: str) -> Reports:
    rt = current_runtime(what)
    service = rt.services.get("reports")
    if not isinstance(service, Reports):
        raise RuntimeError(f"{what}: this node runs without the reports service (reports=False)")
    return service


def add_report_handler(fn: ReportHandler) -> Callable[[], None]:
    """Call ``fn(report)`` for every report of the current node, in emission order.

    Returns a function that unsubscribes. Part of the stable hook API.

    >>> import suptrace
    >>> got = []
    >>> async def main():
    ...     suptrace.add_report_handler(got.append)
    ...     async def crash():
    ...         raise ValueError("bad input")
    ...     pid, ref = suptrace.spawn_monitor(crash)
    ...     await suptrace.receive(lambda m: isinstance(m, suptrace.Down))
    >>> suptrace.run(main, log_reports=False)
    >>> type(got[0]).__name__, got[0].reason
    ('CrashReport', ValueError('bad input'))
    """
    return _reports("add_report_handler()").add_handler(fn)


def report_history() -> list[Report]:
    """The reports the current node kept (bounded), oldest first."""
    return list(_reports("report_history()").history)
