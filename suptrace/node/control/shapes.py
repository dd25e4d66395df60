"""The JSON forms the control plane answers with: trace events, reports,
offenders, tombstones, and the pid and behaviour fields of a process row.

Every form is plain JSON-ready data built from what the runtime and the
observers keep, without asking any process; the same forms go into one-shot
answers (``reports``, ``inspect``, ``tree``) and into streams (``attach``,
``reports --follow``).
"""

from __future__ import annotations

from typing import Any

from suptrace.core.events import TraceEvent
from suptrace.core.process import Process
from suptrace.core.runtime import Tombstone
from suptrace.core.saferepr import safe_str
from suptrace.core.terms import reason_class
from suptrace.observers.format import format_event, short, term_to_json
from suptrace.observers.reports import (
    CrashReport,
    ProgressReport,
    Report,
    SupervisorReport,
    format_report,
    start_text,
)
from suptrace.observers.tasks import TaskCrashReport

__all__ = [
    "REPORT_KINDS",
    "pid_json",
    "as_text",
    "behaviour_label",
    "event_json",
    "report_kind",
    "report_matches",
    "report_json",
    "offender_json",
    "tombstone_json",
]

#: Values accepted by ``reports``' ``kinds`` filter.
REPORT_KINDS = frozenset(
    {
        "crash",
        "progress",
        "supervisor",
        "start_error",
        "child_terminated",
        "shutdown_error",
        "shutdown",
        "not_restarted",
    }
)


# -- fields ---------------------------------------------------------------------------------


def pid_json(pid: Any) -> str | None:
    """A pid field: the pid's text, or None for no pid.

    >>> pid_json(None) is None, pid_json("<0.42.0>")
    (True, '<0.42.0>')
    """
    return None if pid is None else str(pid)


def as_text(value: Any) -> str:
    """A name that may be a registered name or a pid (a report's supervisor) as
    text; never raises.

    >>> as_text("app.sup"), as_text(("app", 1))
    ('app.sup', "('app', 1)")
    """
    return value if isinstance(value, str) else safe_str(value)


def behaviour_label(proc: Process) -> str | None:
    """The behaviour a process runs as rows show it: the behaviour's ``label``
    (a GenServer may set one for tooling), else its class name; None for a plain
    function process.

    >>> class Pool:
    ...     label = None
    >>> class P:
    ...     behaviour = Pool()
    >>> behaviour_label(P())  # type: ignore[arg-type]
    'Pool'
    """
    b = proc.behaviour
    if b is None:
        return None
    return getattr(b, "label", None) or type(b).__name__


# -- events, reports, tombstones ------------------------------------------------------------


def event_json(event: TraceEvent, limit: int = 200) -> dict[str, Any]:
    """An event as data plus ``text``: its dbg-style line without the timestamp
    (the client prints the time in its own zone)."""
    _, _, body = format_event(event, limit).partition(" ")
    return {
        "ts": event.ts,
        "pid": pid_json(event.pid),
        "name": event.name,
        "kind": event.kind,
        "data": {str(k): term_to_json(v, limit) for k, v in event.data.items()},
        "text": body,
    }


def report_kind(report: Report) -> str:
    """The kind a ``reports`` filter knows a report by (one of `REPORT_KINDS`)."""
    if isinstance(report, (CrashReport, TaskCrashReport)):
        return "crash"
    if isinstance(report, ProgressReport):
        return "progress"
    return report.context


def report_matches(report: Report, kinds: frozenset[str] | None) -> bool:
    """``kinds`` None: every report but progress reports (as SASL by default)."""
    kind = report_kind(report)
    if kinds is None:
        return kind != "progress"
    return kind in kinds or (isinstance(report, SupervisorReport) and "supervisor" in kinds)


def report_json(report: Report, limit: int = 400) -> dict[str, Any]:
    """A report as data plus its text in three lengths (``text``, ``brief``, ``line``)."""
    out: dict[str, Any] = {
        "type": type(report).__name__,
        "kind": report_kind(report),
        "ts": report.ts,
        "text": format_report(report),
        "brief": format_report(report, "short"),
        "line": format_report(report, "line"),
    }
    if isinstance(report, SupervisorReport):
        cause = report.cause
        if isinstance(cause, dict) and isinstance(cause.get("offender"), dict):
            cause = {**cause, "offender": offender_json(cause["offender"], limit)}
        out.update(
            supervisor=as_text(report.supervisor),
            context=report.context,
            reason=short(report.reason, limit),
            reason_class=reason_class(report.reason),
            offender=offender_json(report.offender, limit),
            cause=term_to_json(cause, limit),
            rule=report.rule,
        )
    elif isinstance(report, ProgressReport):
        out.update(
            supervisor=as_text(report.supervisor), started=offender_json(report.started, limit)
        )
    elif isinstance(report, TaskCrashReport):
        out.update(
            task=report.task,
            coroutine=report.coroutine,
            reason=short(report.reason, limit),
            reason_class=reason_class(report.reason),
            created_at=list(report.created_at),
        )
    else:
        out.update(
            pid=str(report.pid),
            name=report.name,
            reason=short(report.reason, limit),
            reason_class=reason_class(report.reason),
            initial_call=report.initial_call,
        )
    return out


def offender_json(off: dict[str, Any], limit: int = 400) -> Any:
    """An offender (or started) dict as JSON, its ``start`` as a readable call."""
    data = term_to_json(off, limit)
    if isinstance(data, dict) and "start" in off:
        data["start"] = start_text(off["start"])
    return data


def tombstone_json(stone: Tombstone, limit: int = 200) -> dict[str, Any]:
    """What the node remembers of a registered name's last process, with its story."""
    return {
        "name": stone.name,
        "pid": str(stone.pid),
        "reason": short(stone.reason, limit),
        "reason_class": reason_class(stone.reason),
        "ts": stone.ts,
        "initial_call": stone.initial_call,
        "notes": list(stone.notes),
        "story": stone.story(),
        "last_events": [event_json(e, limit) for e in stone.last_events],
    }
