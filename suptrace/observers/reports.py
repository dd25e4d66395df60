"""SASL's reports, rebuilt from the event stream.

Supervisors and processes only emit events; this observer turns the ones OTP
would log into frozen report dataclasses, keeps a bounded history on the node,
hands each report to subscribers in emission order, and writes SASL's text
layout through loguru (``logger.disable("suptrace")`` silences it).

Levels: supervisor reports and crash reports are ERROR, ``not_restarted`` is
WARNING. Progress reports are kept and handed to subscribers but, as in OTP 21+,
not logged unless asked (``Node(log_progress=True)``): then at INFO (DEBUG for
children added through the admin API, as in current OTP).

A crash report is logged in its short form (about ten lines: who, the error and
where it was raised, the last few events); ``Node(crash_report="full")`` logs the
full SASL layout, which the history always keeps (``suptrace reports --full``).

The location fields of a log record (``{name}:{function}:{line}`` in loguru's
default format) name what the report is about rather than the logging code:
``suptrace.reports:crash:<0.42.0>``, ``suptrace.reports:supervisor:app.sup``.
The record's name stays under ``suptrace``, so filters on it keep working.
"""

from __future__ import annotations

import os
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from suptrace.core.events import TraceEvent
from suptrace.core.runtime import Runtime, current_runtime
from suptrace.core.saferepr import safe_str
from suptrace.core.terms import Pid, is_normal_exit
from suptrace.observers.format import MARK, format_event, format_ts, short
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
    "start_text",
    "CRASH_REPORT_FORMS",
]

#: Values of ``Node(crash_report=...)``: how crash reports are logged.
CRASH_REPORT_FORMS = ("short", "full")

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


def _callable_name(fn: Any) -> str:
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__qualname__", None)
    if name is None:
        inner = getattr(fn, "func", None)  # functools.partial
        return f"partial({_callable_name(inner)})" if callable(inner) else short(fn, 60)
    if not isinstance(name, str):
        return short(fn, 60)
    if isinstance(owner, type):
        return safe_str(f"{owner.__qualname__}.{getattr(fn, '__name__', name)}", 200)
    return safe_str(name, 200)


def _is_childspec(value: Any) -> bool:
    return (hasattr(value, "start") and hasattr(value, "restart")) or (
        isinstance(value, Mapping) and "start" in value and "id" in value
    )


def _arg_text(value: Any) -> str:
    if isinstance(value, (list, tuple)) and value and all(_is_childspec(v) for v in value):
        return f"{len(value)} child{'ren' if len(value) != 1 else ''}"
    if callable(value) and hasattr(value, "__qualname__") and not isinstance(value, type):
        return _callable_name(value)
    return short(value, 40)


def start_text(start: Any, limit: int = 160) -> str:
    """A child's ``start`` as the call it makes, readable in a report line.

    A list of child specs among the arguments is counted rather than printed,
    functions are named, other arguments shortened; ``name(...)`` when the
    arguments are not kept (a temporary child's, as OTP does).

    >>> from suptrace import ChildSpec, Supervisor
    >>> def start_importer(name): ...
    >>> start_text((start_importer, ("survey",)))
    "start_importer('survey')"
    >>> kids = [ChildSpec(id=n, start=(start_importer, (n,))) for n in ("a", "b")]
    >>> start_text((Supervisor.start_link, (kids,), {"intensity": 5}))
    'Supervisor.start_link(2 children, intensity=5)'
    >>> start_text((start_importer, None))
    'start_importer(...)'
    """
    if not (isinstance(start, tuple) and start and callable(start[0])):
        return short(start, limit)
    name = _callable_name(start[0])
    args = start[1] if len(start) > 1 else ()
    if args is None:
        return f"{name}(...)"
    kwargs = start[2] if len(start) > 2 and isinstance(start[2], Mapping) else {}
    parts = [_arg_text(a) for a in args] if isinstance(args, (list, tuple)) else [short(args, 40)]
    parts.extend(f"{k}={_arg_text(v)}" for k, v in kwargs.items())
    text = ", ".join(parts)
    if len(text) > limit:
        text = text[:limit] + MARK
    return f"{name}({text})"


def _offender(off: dict[str, Any]) -> str:
    parts = []
    for key in ("pid", "id", "start", "restart_type", "shutdown", "child_type", "significant"):
        if key not in off:
            continue
        value = off[key]
        if key == "start":
            text = start_text(value)
        elif key in ("restart_type", "child_type") and isinstance(value, str):
            text = value
        else:
            text = short(value, 200)
        parts.append(f"{key}={text}")
    return "[" + ", ".join(parts) + "]"


def format_report(report: Report, form: str = "full") -> str:
    """SASL's text layout for one report (multi-line, not truncated to uselessness).

    ``form`` is ``"full"`` (every field, the whole traceback and flight recorder),
    ``"short"`` (a crash report in about ten lines; other reports as in full) or
    ``"line"`` (one line: time, kind, who, why).
    """
    if form == "line":
        return report_line(report)
    if form == "short" and isinstance(report, CrashReport):
        return _short_crash(report)
    if isinstance(report, SupervisorReport):
        lines = [
            f"=SUPERVISOR REPORT==== {_sasl_time(report.ts)} ===",
            f"    supervisor: {safe_str(report.supervisor)}",
            f"    errorContext: {report.context}",
            f"    reason: {_reason(report.reason)}",
            f"    offender: {_offender(report.offender)}",
        ]
        if report.context == "not_restarted":
            cause = report.cause
            if cause is not None:
                detail = cause.get("detail") or cause.get("text", "")
                lines.append(f"    cause: {safe_str(cause.get('cause'))} ({safe_str(detail, 1000)})")
                off = cause.get("offender")
                if off:
                    lines.append(f"    cause offender: {_offender(off)}")
            else:
                lines.append("    cause: unknown (the child exited by itself with a normal reason)")
            lines.append(f"    rule: {safe_str(report.rule, 1000)}")
            lines.append(
                f"    consequence: {short(report.offender.get('id'))} and everything under it are gone "
                "and nothing will restart them"
            )
        return "\n".join(lines)
    if isinstance(report, ProgressReport):
        return "\n".join(
            [
                f"=PROGRESS REPORT==== {_sasl_time(report.ts)} ===",
                f"    supervisor: {safe_str(report.supervisor)}",
                f"    started: {_offender(report.started)}",
            ]
        )
    if isinstance(report, TaskCrashReport):
        return format_task_crash(report)
    lines = [
        f"=CRASH REPORT==== {_sasl_time(report.ts)} ===",
        "  crasher:",
        f"    pid: {report.pid}",
        f"    registered_name: {safe_str(report.name or '[]')}",
        f"    initial_call: {safe_str(report.initial_call, 1000)}",
        f"    ancestors: [{', '.join(safe_str(a) for a in report.ancestors[:50])}]",
        f"    error: {_reason(report.reason, with_traceback=True)}",
        f"    message_queue_len: {report.message_queue_len}",
        f"    messages: in {report.messages_in}, out {report.messages_out}",
        f"    links: [{', '.join(safe_str(p) for p in report.links[:200])}]",
    ]
    if report.last_events:
        lines.append(f"    last events ({len(report.last_events)}):")
        lines.extend("      " + format_event(e) for e in report.last_events)
    return "\n".join(lines)


#: How many of the last events a short crash report shows.
SHORT_EVENTS = 3


def _raised_at(reason: Any) -> str | None:
    """``file:line in function: source`` of the innermost frame of the user's code."""
    tb = getattr(reason, "__traceback__", None)
    if not isinstance(reason, BaseException) or tb is None:
        return None
    frames = traceback.extract_tb(tb)
    own = [f for f in frames if f"{os.sep}suptrace{os.sep}" not in f.filename] or frames
    if not own:
        return None
    f = own[-1]
    where = f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}"
    return f"{where}: {f.line}" if f.line else where


def _short_crash(report: CrashReport) -> str:
    who = f"{report.name} {report.pid}" if report.name else str(report.pid)
    lines = [
        f"=CRASH REPORT==== {_sasl_time(report.ts)} ===",
        f"    crasher: {who} running {report.initial_call}",
        f"    error: {short(report.reason, 150)}",
    ]
    at = _raised_at(report.reason)
    if at:
        lines.append(f"      raised at {at if len(at) <= 120 else at[:120] + MARK}")
    if report.ancestors:
        lines.append(f"    ancestors: {', '.join(str(a) for a in report.ancestors)}")
    lines.append(
        f"    messages: in {report.messages_in}, out {report.messages_out}, "
        f"{report.message_queue_len} queued"
    )
    events = list(report.last_events)[-SHORT_EVENTS:]
    if events:
        lines.append(f"    last events ({len(events)} of {len(report.last_events)}):")
        lines.extend("      " + format_event(e, 60) for e in events)
    lines.append("    (full report: suptrace reports --full)")
    return "\n".join(lines)


def report_line(report: Report) -> str:
    """A report in one line: ``HH:MM:SS.micro kind who: why``.

    >>> r = SupervisorReport("app.sup", "child_terminated", ValueError("bad row"),
    ...                      {"id": "survey", "pid": None}, ts=0.0)
    >>> report_line(r).split(" ", 1)[1]
    "child_terminated app.sup/'survey': ValueError('bad row')"
    """
    ts = format_ts(report.ts)
    if isinstance(report, TaskCrashReport):
        text = f"crash task {safe_str(report.task, 120)}: {short(report.reason, 150)}"
    elif isinstance(report, CrashReport):
        who = f"{report.name} {report.pid}" if report.name else str(report.pid)
        text = f"crash {who}: {short(report.reason, 150)}"
    elif isinstance(report, ProgressReport):
        started = report.started
        text = (
            f"progress {report.supervisor}/{short(started.get('id'), 60)} started as "
            f"{started.get('pid')}"
        )
    else:
        off = report.offender
        cause = report.cause or {}
        if report.context == "shutdown":
            text = f"shutdown {report.supervisor}: {short(report.reason, 60)}"
            text += f" (offender {short(off.get('id'), 60)})"
        else:
            text = f"{report.context} {report.supervisor}/{short(off.get('id'), 60)}: "
            text += short(report.reason, 150)
            inner = cause.get("offender") if isinstance(cause, Mapping) else None
            if isinstance(inner, Mapping) and inner.get("id") is not None:
                text += f" ({cause.get('cause')}, offender {short(inner.get('id'), 60)})"
    return f"{ts} {' '.join(text.split())}"


class Reports:
    """The node's report service: history, subscribers, loguru output."""

    KINDS = ("crash", "progress", *(_SUPERVISOR_CONTEXTS))

    def __init__(
        self,
        history: int = 1000,
        log: bool = True,
        log_progress: bool = False,
        crash_report: str = "short",
    ) -> None:
        if crash_report not in CRASH_REPORT_FORMS:
            raise ValueError(
                f"crash_report must be 'short' or 'full', got {crash_report!r} "
                "(short logs about ten lines, full the whole SASL layout)"
            )
        self.history: deque[Report] = deque(maxlen=history)
        self.handlers: tuple[ReportHandler, ...] = ()
        self.log = log
        #: Log progress reports too (OTP 21+ does not by default); they are always kept.
        self.log_progress = log_progress
        #: How crash reports are logged: "short" or "full" (the history keeps the report).
        self.crash_report = crash_report
        self.handler_errors = 0
        self._unsubscribe: Callable[[], None] | None = None
        self._runtime: Runtime | None = None

    # -- service protocol ----------------------------------------------------------------

    def attach(self, runtime: Runtime) -> None:
        self._runtime = runtime
        _ATTACHED[runtime] = self
        self._unsubscribe = runtime.add_event_handler(self._on_event, self.KINDS)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._runtime is not None and _ATTACHED.get(self._runtime) is self:
            del _ATTACHED[self._runtime]

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
        handlers = self.handlers
        i = 0
        count = len(handlers)
        while i < count:  # one try around the loop; a failure resumes with the next one
            try:
                while i < count:
                    fn = handlers[i]
                    i += 1
                    fn(report)
            except Exception as exc:  # a broken subscriber never costs the report
                self.handler_errors += 1
                if self._runtime is not None:
                    self._runtime.handler_failed(
                        "report handler", handlers[i - 1], exc, type(report).__name__
                    )
        if self.log:
            _log(report, api, self.log_progress, self.crash_report)


_report_logger: Any = None


class _Subject(int):
    """A record's ``line``: still an int (0) for sinks that need one (stdlib logging's
    ``%(lineno)d``, JSON), but printed as the report's subject by ``{line}``."""

    label: str

    def __new__(cls, label: str) -> _Subject:
        self = super().__new__(cls, 0)
        self.label = label
        return self

    def __str__(self) -> str:
        return self.label

    def __format__(self, spec: str) -> str:
        return format(self.label, spec) if not spec or spec[-1:] not in "bcdoxXn" else super().__format__(spec)

    def __repr__(self) -> str:
        return self.label


def _locate(record: Any) -> None:
    """Name what the report is about in the record's location fields, instead
    of this module's logging function (loguru's default format prints them)."""
    report = record["extra"].get("suptrace_report")
    if report is None:
        return
    record["name"] = "suptrace.reports"
    if isinstance(report, TaskCrashReport):
        record["function"] = "task_crash"
        record["line"] = _Subject(safe_str(report.task, 200))
    elif isinstance(report, CrashReport):
        record["function"] = "crash"
        record["line"] = _Subject(report.name or str(report.pid))
    else:
        record["function"] = "progress" if isinstance(report, ProgressReport) else "supervisor"
        record["line"] = _Subject(str(report.supervisor))


def _log(report: Report, api: bool, log_progress: bool = False, crash_form: str = "short") -> None:
    global _report_logger
    if isinstance(report, ProgressReport):
        if not log_progress:
            return
        level = "DEBUG" if api else "INFO"
    elif isinstance(report, SupervisorReport) and report.context == "not_restarted":
        level = "WARNING"
    else:
        level = "ERROR"
    if _report_logger is None:
        from loguru import logger

        _report_logger = logger.patch(_locate)
    try:
        text = format_report(report, crash_form if isinstance(report, CrashReport) else "full")
    except Exception as exc:  # formatting is total; this is the last line of defence
        text = f"={type(report).__name__} (layout failed: {safe_str(exc)})= {safe_str(report, 2000)}"
    _report_logger.bind(suptrace_report=report).opt(depth=0).log(level, "{}", text)


#: The reports each runtime's node keeps (set by `Reports.attach`).
_ATTACHED: WeakKeyDictionary[Runtime, Reports] = WeakKeyDictionary()


def _reports(what: str) -> Reports:
    rt = current_runtime(what)
    service = _ATTACHED.get(rt)
    if service is None:
        raise RuntimeError(f"{what}: this node runs without the reports service (reports=False)")
    return service


def add_report_handler(fn: ReportHandler) -> Callable[[], None]:
    """Call ``fn(report)`` for every report of the current node, in emission order.

    Returns a function that unsubscribes. Part of the stable hook API. A handler
    that raises stays subscribed: the report is still kept, logged and given to
    the other handlers, the failure is counted (``Runtime.hook_errors``) and the
    handler's first failure is logged once as a WARNING naming it.

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
