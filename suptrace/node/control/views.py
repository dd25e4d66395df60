"""What the control server's requests compute: plain JSON-ready data about a node.

Everything here reads the runtime from the node's own loop (the control server
calls it from plain asyncio tasks, never from a suptrace process). Supervisors
are asked through their admin API (`describe`), with a timeout, so a busy
supervisor makes an answer say "busy" instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import heapq
import itertools
import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from suptrace.behaviours.admin import (
    ChildNotFound,
    SupervisorError,
    describe,
    restart_child,
    terminate_child,
)
from suptrace.behaviours.gen_server import GenServer, get_state, statistics
from suptrace.behaviours.supervision import SupervisorBase
from suptrace.core.errors import CallError
from suptrace.core.events import TraceEvent
from suptrace.core.links import exit as exit_signal
from suptrace.core.process import Process
from suptrace.core.runtime import Runtime, Tombstone, process_of
from suptrace.core.saferepr import safe_str
from suptrace.core.terms import Pid, reason_class
from suptrace.node.control.doctor import (
    check_call_timeouts,
    check_restart_loops,
    check_telemetry,
    check_tree,
    finding,
    restart_key,
)
from suptrace.observers.call_timeouts import CallTimeouts
from suptrace.observers.format import format_event, short, term_to_json
from suptrace.observers.reports import (
    CrashReport,
    ProgressReport,
    Report,
    Reports,
    SupervisorReport,
    format_report,
    start_text,
)
from suptrace.observers.tasks import TaskCrashReport, TaskWatch, find_tasks, task_info, task_rows

if TYPE_CHECKING:
    from suptrace.node.telemetry import Telemetry

__all__ = [
    "OpError",
    "show",
    "event_json",
    "report_json",
    "report_matches",
    "REPORT_KINDS",
    "find_process",
    "ps",
    "info",
    "tree",
    "doctor",
    "tombstone_json",
    "write_op",
    "top",
    "memory_estimate",
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


class OpError(Exception):
    """A request failed in an expected way; becomes an error frame with ``code``."""

    def __init__(self, code: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


def show(value: Any, limit: int = 80) -> str:
    """A short repr of a value taken from a request, for an error message; never raises.

    >>> show("x" * 100, 10)
    "'xxxxxxxxx..."
    """
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _pid(pid: Any) -> str | None:
    return None if pid is None else str(pid)


def _pids(pids: Any) -> list[str]:
    return [str(p) for p in pids or ()]


# -- events, reports, tombstones ------------------------------------------------------------


def event_json(event: TraceEvent, limit: int = 200) -> dict[str, Any]:
    """An event as data plus ``text``: its dbg-style line without the timestamp
    (the client prints the time in its own zone)."""
    _, _, body = format_event(event, limit).partition(" ")
    return {
        "ts": event.ts,
        "pid": _pid(event.pid),
        "name": event.name,
        "kind": event.kind,
        "data": {str(k): term_to_json(v, limit) for k, v in event.data.items()},
        "text": body,
    }


def report_kind(report: Report) -> str:
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
            supervisor=_text(report.supervisor),
            context=report.context,
            reason=short(report.reason, limit),
            reason_class=reason_class(report.reason),
            offender=offender_json(report.offender, limit),
            cause=term_to_json(cause, limit),
            rule=report.rule,
        )
    elif isinstance(report, ProgressReport):
        out.update(
            supervisor=_text(report.supervisor), started=offender_json(report.started, limit)
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


def _text(value: Any) -> str:
    return value if isinstance(value, str) else safe_str(value)


def tombstone_json(stone: Tombstone, limit: int = 200) -> dict[str, Any]:
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


# -- processes ------------------------------------------------------------------------------


def find_process(rt: Runtime, target: str) -> Process | None:
    """The live process named by a registered name or a pid text (``<0.42.0>``)."""
    proc: Process | None
    if target.lstrip("<")[:2] == "0." and target.rstrip(">")[-1:].isdigit():
        try:
            pid = Pid.parse(target)
        except ValueError:
            return None
        proc = rt.procs.get(pid)
    else:
        proc = rt.names.get(target)
    return proc if proc is not None and proc.alive else None


def not_found(rt: Runtime, target: str, what: str = "process") -> OpError:
    """The error for a missing target, with the tombstone when the name had one."""
    stone = rt.tombstones.get(target)
    if stone is not None:
        return OpError("not_found", stone.story(), tombstone=tombstone_json(stone))
    close = difflib.get_close_matches(target, [str(n) for n in rt.names], n=3, cutoff=0.75)
    if close:
        return OpError(
            "not_found",
            f"no {what} {target!r} on node {rt.name}; did you mean {' or '.join(close)}?",
            did_you_mean=close,
        )
    return OpError(
        "not_found",
        f"no {what} {target!r} on node {rt.name} (see: suptrace ps)",
    )


def _behaviour(proc: Process) -> str | None:
    b = proc.behaviour
    if b is None:
        return None
    return getattr(b, "label", None) or type(b).__name__


def restarts(proc: Process) -> tuple[int, int, Process | None]:
    """How often the supervisor above ``proc`` restarted it: ``(total, within that
    supervisor's intensity window, the supervisor)``; ``(0, 0, None)`` when no
    supervisor watches it. Read from the supervisor's own counters, O(1)."""
    parent = process_of(proc.parent) if proc.parent is not None else None
    sup = parent.behaviour if parent is not None else None
    if isinstance(sup, SupervisorBase):
        counts = sup.restarts_of(proc.pid)
        if counts is not None:
            return counts[0], counts[1], parent
    return 0, 0, None


def proc_row(proc: Process) -> dict[str, Any]:
    total, window, _ = restarts(proc)
    return {
        "pid": str(proc.pid),
        "name": proc.name,
        "status": proc.status,
        "message_queue_len": len(proc.mailbox) if proc.mailbox else 0,
        "messages_in": proc.messages_in,
        "messages_out": proc.messages_out,
        "initial_call": proc.initial_call,
        "behaviour": _behaviour(proc),
        "parent": _pid(proc.parent),
        "started_at": proc.started_at,
        "system": proc.system,
        "traced": bool(proc.tracers),
        "restarts": total,
        "restarts_window": window,
    }


def ps(
    rt: Runtime, system: bool, limit: int, tasks: bool = False, watch: TaskWatch | None = None
) -> dict[str, Any]:
    """The node's live processes (and, with ``tasks``, its plain asyncio tasks;
    ``watch`` is the node's task watch, None when it keeps no reports)."""
    procs = [p for p in rt.procs.values() if p.alive and (system or not p.system)]
    procs.sort(key=lambda p: p.pid)
    out: dict[str, Any] = {
        "node": rt.name,
        "total": len(procs),
        "truncated": len(procs) > limit,
        "processes": [proc_row(p) for p in procs[:limit]],
    }
    if tasks:  # the loop's plain asyncio tasks, which are not processes
        rows = task_rows(rt)
        out["tasks"] = rows[:limit]
        out["tasks_total"] = len(rows)
        out["task_crash_reports"] = watch is not None and watch.active
        if watch is None:
            out["task_crash_reports_off"] = "the node keeps no reports (reports=False)"
        elif not watch.active:
            out["task_crash_reports_off"] = (
                "the application replaced the loop's exception handler after the node started"
            )
    return out


def _is_supervisor(proc: Process | None) -> bool:
    return proc is not None and isinstance(proc.behaviour, SupervisorBase)


async def info(rt: Runtime, target: str, timeout: float, limit: int) -> dict[str, Any]:
    proc = find_process(rt, target)
    if proc is None:
        found = find_tasks(rt, target)
        if len(found) == 1:
            return task_info(rt, found[0])
        if found:
            ids = ", ".join(hex(id(t)) for t in found)
            raise OpError(
                "ambiguous",
                f"{len(found)} plain tasks are named {target!r} on node {rt.name} ({ids}): "
                "inspect one by its id",
            )
        raise not_found(rt, target)
    raw = proc.info()
    out: dict[str, Any] = {
        "pid": str(proc.pid),
        "registered_name": proc.name,
        "status": raw["status"],
        "message_queue_len": raw["message_queue_len"],
        "links": _pids(raw["links"]),
        "monitors": _pids(raw["monitors"]),
        "monitored_by": _pids(raw["monitored_by"]),
        "trap_exit": raw["trap_exit"],
        "initial_call": raw["initial_call"],
        "ancestors": [str(a) for a in raw["ancestors"]],
        "parent": _pid(raw["parent"]),
        "current_stacktrace": list(raw["current_stacktrace"]),
        "messages_in": raw["messages_in"],
        "messages_out": raw["messages_out"],
        "started_at": raw["started_at"],
        "behaviour": _behaviour(proc),
        "system": raw["system"],
        "traced": bool(proc.tracers),
        "last_events": [event_json(e, limit) for e in raw["last_events"]],
    }
    total, window, parent = restarts(proc)
    out["restarts"] = total
    out["restarts_window"] = window
    out["restarted_by"] = None if parent is None else (parent.name or str(parent.pid))
    if parent is not None and isinstance(parent.behaviour, SupervisorBase):
        out["restart_period"] = parent.behaviour.intensity_use().period
    if _is_supervisor(proc):
        out["supervisor"] = await _describe(proc, timeout)
    elif isinstance(proc.behaviour, GenServer):
        try:
            state = await get_state(proc.pid, timeout=timeout)
            out["state"] = short(state, max(limit, 1000))
            out["statistics"] = term_to_json(await statistics(proc.pid, timeout=timeout), limit)
        except CallError as exc:
            out["state_error"] = (
                f"no answer in {timeout}s: the server is busy in a callback"
                if exc.reason == "timeout"
                else f"could not read its state: {short(exc.reason)}"
            )
    return out


# -- supervision tree -----------------------------------------------------------------------


#: The parent of the control plane's own calls: a valid span context that is not
#: sampled, so OpenTelemetry's parent-based sampling (the SDK's default) records
#: neither the CLIENT span of the call nor the supervisor's SERVER span.
_UNSAMPLED: Any = None


@contextlib.contextmanager
def _untraced() -> Iterator[None]:
    """The requests the control plane makes to a process (``describe`` for ``tree``,
    ``inspect`` and ``doctor``; the write commands' admin calls) stay out of the
    application's traces."""
    global _UNSAMPLED
    from opentelemetry import context, trace

    if _UNSAMPLED is None:
        ctx = trace.SpanContext(
            trace_id=0x5C0DE_0F_C0_47801,  # any valid ids: nothing is ever exported under them
            span_id=0x5C0DE,
            is_remote=False,
            trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT),
        )
        _UNSAMPLED = trace.set_span_in_context(trace.NonRecordingSpan(ctx))
    token = context.attach(_UNSAMPLED)
    try:
        yield
    finally:
        context.detach(token)


async def _describe(proc: Process, timeout: float) -> dict[str, Any]:
    """``describe`` of a supervisor as JSON-ready data (children without subtrees)."""
    base: dict[str, Any] = {
        "name": proc.name,
        "pid": str(proc.pid),
        "behaviour": _behaviour(proc),
    }
    try:
        with _untraced():
            desc = await asyncio.wait_for(describe(proc.pid), timeout)
    except (TimeoutError, CallError) as exc:
        base["status"] = "busy" if isinstance(exc, TimeoutError) else "gone"
        base["children"] = []
        return base
    base.update(
        status="ok",
        kind=desc.get("kind"),
        strategy=desc.get("strategy"),
        intensity=desc.get("intensity"),
        period=desc.get("period"),
        restarts_in_window=desc.get("restarts_in_window"),
        auto_shutdown=desc.get("auto_shutdown", "never"),
        max_children=desc.get("max_children"),
    )
    children = []
    # describe lists children newest first (as which_children); a tree reads in start order.
    for c in reversed(desc.get("children", [])):
        cpid = c.get("pid")
        cproc = process_of(cpid) if isinstance(cpid, Pid) else None
        children.append(
            {
                "id": term_to_json(c.get("id")),
                "id_text": c["id"] if isinstance(c.get("id"), str) else short(c.get("id"), 80),
                "pid": None if cpid is None else str(cpid),
                "restart": c.get("restart"),
                "type": c.get("type"),
                "shutdown": term_to_json(c.get("shutdown")),
                "significant": bool(c.get("significant")),
                "restarts": int(c.get("restarts") or 0),
                "restarts_window": int(c.get("restarts_window") or 0),
                "start": None if c.get("start") is None else start_text(c["start"]),
                "name": cproc.name if cproc is not None else None,
                "alive": cproc is not None and cproc.alive,
                "message_queue_len": len(cproc.mailbox)
                if cproc is not None and cproc.mailbox
                else 0,
            }
        )
    base["children"] = children
    return base


def _not_restarted(reports: Reports | None, sup: Process, child_id: Any) -> SupervisorReport | None:
    if reports is None:
        return None
    keys = {sup.pid, sup.name}
    for report in reversed(reports.history):
        if (
            isinstance(report, SupervisorReport)
            and report.context == "not_restarted"
            and report.supervisor in keys
            and term_to_json(report.offender.get("id")) == child_id
        ):
            return report
    return None


async def _subtree(
    rt: Runtime, reports: Reports | None, proc: Process, timeout: float, restart: str | None
) -> dict[str, Any]:
    desc = await _describe(proc, timeout)
    desc["restart"] = restart
    for child in desc["children"]:
        cproc = (
            rt.procs.get(Pid.parse(child["pid"]))
            if child["pid"] not in (None, "restarting")
            else None
        )
        if child["type"] == "supervisor" and _is_supervisor(cproc):
            assert cproc is not None
            child["tree"] = await _subtree(rt, reports, cproc, timeout, child["restart"])
        if child["pid"] is None:
            report = _not_restarted(reports, proc, child["id"])
            if report is not None:
                cause = report.cause or {}
                child["not_restarted"] = {
                    "ts": report.ts,
                    "reason": short(report.reason),
                    "cause": cause.get("text") if isinstance(cause, dict) else None,
                    "rule": report.rule,
                }
                dead = report.offender.get("pid")
                for stone in rt.tombstones.values():
                    if stone.pid == dead:
                        child["tombstone"] = tombstone_json(stone)
                        break
    return desc


async def tree(rt: Runtime, reports: Reports | None, timeout: float) -> dict[str, Any]:
    """Every supervision tree of the node, plus vanished names and the processes
    no supervisor watches."""
    sups = [p for p in list(rt.procs.values()) if p.alive and _is_supervisor(p)]
    roots = []
    for proc in sorted(sups, key=lambda p: p.pid):
        parent = process_of(proc.parent) if proc.parent is not None else None
        if not _is_supervisor(parent):
            roots.append(await _subtree(rt, reports, proc, timeout, None))
    supervised: set[str] = set()
    for root in roots:
        _collect_pids(root, supervised)
    loose = [
        proc_row(p)
        for p in sorted(rt.procs.values(), key=lambda p: p.pid)
        if p.alive and not p.system and str(p.pid) not in supervised
    ]
    return {
        "node": rt.name,
        "roots": roots,
        "unsupervised": loose[:100],
        "unsupervised_total": len(loose),
        "vanished": [tombstone_json(s) for s in reversed(list(rt.tombstones.values()))][:100],
    }


def _collect_pids(desc: dict[str, Any], into: set[str]) -> None:
    into.add(desc["pid"])
    for child in desc.get("children", []):
        if child.get("pid"):
            into.add(child["pid"])
        if isinstance(child.get("tree"), dict):
            _collect_pids(child["tree"], into)


# -- doctor ---------------------------------------------------------------------------------


def _last_activity(proc: Process) -> float:
    rec = proc.recorder
    return rec[-1][0] if rec else proc.started_at


def _sample(rt: Runtime) -> dict[Pid, tuple[int, tuple[str, ...], int, int]]:
    return {
        p.pid: (
            len(p.mailbox) if p.mailbox else 0,
            tuple(p.stacktrace(limit=8)),
            p.messages_in,
            p.messages_out,
        )
        for p in list(rt.procs.values())
        if p.alive and not p.system
    }


def _who(proc: Process) -> str:
    return f"{proc.name} ({proc.pid})" if proc.name else f"{proc.pid} {proc.initial_call}"


async def doctor(
    rt: Runtime,
    reports: Reports | None,
    *,
    samples: int,
    interval: float,
    stuck_after: float,
    mailbox_min: int,
    timeout: float,
    call_timeouts: CallTimeouts | None,
    telemetry: Telemetry | None,
) -> dict[str, Any]:
    """Findings for a running node: its trees, vanished names, growing mailboxes,
    processes stuck awaiting, call timeouts (``call_timeouts``: the node's counts)
    and telemetry that drops data (``telemetry``: the node's telemetry service)."""
    snapshots = [_sample(rt)]
    for _ in range(samples - 1):
        await asyncio.sleep(interval)  # sampling the node over time, not synchronising
        snapshots.append(_sample(rt))
    trees = await tree(rt, reports, timeout)
    found: list[dict[str, Any]] = []
    for root in trees["roots"]:
        found.extend(check_tree(root))
    reasons, gave_up = restart_history(reports)
    for root in trees["roots"]:
        found.extend(check_restart_loops(root, reasons, gave_up))
    timeouts = call_timeout_rows(rt, call_timeouts)
    found.extend(check_call_timeouts(timeouts))
    for stone in trees["vanished"][:50]:
        gone_for_good = any("did not restart" in n for n in stone["notes"])
        found.append(
            finding(
                "error" if gone_for_good else "warning",
                "vanished_name",
                stone["name"],
                stone["story"],
                f"nothing is registered as {stone['name']} any more: anything sending to it "
                f"gets NoProc; see: suptrace inspect {stone['name']}",
            )
        )
    now = time.time()
    last = snapshots[-1]
    for pid, (mq, stack, m_in, m_out) in last.items():
        proc = rt.procs.get(pid)
        if proc is None:
            continue
        series = [s[pid] for s in snapshots if pid in s]
        sizes = [entry[0] for entry in series]
        if (
            len(series) == len(snapshots) > 1
            and mq >= mailbox_min
            and all(b > a for a, b in itertools.pairwise(sizes))
        ):
            found.append(
                finding(
                    "warning",
                    "growing_mailbox",
                    _who(proc),
                    f"the mailbox of {_who(proc)} only grew while sampled: "
                    f"{' -> '.join(str(n) for n in sizes)} messages over "
                    f"{interval * (len(sizes) - 1):.1f}s; it receives faster than it handles",
                    f"see what arrives: suptrace attach {proc.name or proc.pid} --flags receive",
                )
            )
        idle = now - _last_activity(proc)
        if (
            proc.status == "running"
            and proc.ancestors  # a top-level process awaiting the app's end is normal
            and stack
            and all(entry[1:] == (stack, m_in, m_out) for entry in series)
            and idle >= stuck_after
            and "in sleep" not in stack[-1]
        ):
            found.append(
                finding(
                    "warning",
                    "stuck",
                    _who(proc),
                    f"{_who(proc)} has been awaiting the same thing for {idle:.0f}s with no "
                    f"message in or out; it waits at {_where(stack)}",
                    "a call with timeout=None or an event nobody sets? "
                    f"see: suptrace inspect {proc.name or proc.pid}",
                )
            )
    found.extend(check_telemetry(telemetry_signals(telemetry)))
    order = {"error": 0, "warning": 1}
    found.sort(key=lambda f: order.get(f["severity"], 2))
    return {
        "node": rt.name,
        "findings": found,
        "checked": {
            "supervisors": sum(1 for _ in _all_descs(trees["roots"])),
            "processes": len(last),
            "tombstones": len(trees["vanished"]),
            "samples": len(snapshots),
            "interval": interval,
            "call_destinations": len(timeouts),
        },
    }


def telemetry_signals(telemetry: Telemetry | None) -> dict[str, dict[str, Any]] | None:
    """The node's telemetry export per signal (None when telemetry is off)."""
    return telemetry.signals() if telemetry is not None else None


def restart_history(
    reports: Reports | None, keep: int = 50
) -> tuple[dict[str, list[tuple[str, str]]], dict[str, list[str]]]:
    """From the report history: each child's recent exit reasons (``(class,
    text)``, oldest first, keyed by `restart_key`) and, per supervisor name, the
    ids of the children that made it reach its max restart intensity."""
    reasons: dict[str, list[tuple[str, str]]] = {}
    gave_up: dict[str, list[str]] = {}
    if reports is None:
        return reasons, gave_up
    for report in list(reports.history):
        if not isinstance(report, SupervisorReport):
            continue
        cid = report.offender.get("id")
        if report.context == "child_terminated":
            key = restart_key(_text(report.supervisor), term_to_json(cid))
            seen = reasons.setdefault(key, [])
            seen.append((reason_class(report.reason), short(report.reason, 120)))
            if len(seen) > keep:
                del seen[0]
        elif report.context == "shutdown":
            ids = gave_up.setdefault(_text(report.supervisor), [])
            ids.append(cid if isinstance(cid, str) else short(cid, 60))
            if len(ids) > keep:
                del ids[0]
    return reasons, gave_up


def call_timeout_rows(rt: Runtime, service: CallTimeouts | None) -> list[dict[str, Any]]:
    """Per destination: timeouts (total and since the current process started),
    the calls that process received (a GenServer's count), and the callers
    (``service``: the node's call-timeout counts, None when it keeps none)."""
    if service is None:
        return []
    rows = []
    for dest in list(service.by_dest.values()):
        proc = rt.names.get(dest.destination)
        if proc is None and dest.pid is not None:
            proc = rt.procs.get(dest.pid)
        calls = None
        recent = dest.total
        if proc is not None and proc.alive:
            recent = dest.since(proc.started_at)
            behaviour = proc.behaviour
            if isinstance(behaviour, GenServer):
                # Handled so far; a timed-out call still queued counts once handled.
                calls = int(getattr(behaviour, "_calls", 0))
        rows.append(
            {
                "destination": dest.destination,
                "pid": None if proc is None else str(proc.pid),
                "alive": proc is not None and proc.alive,
                "timeouts": dest.total,
                "recent": recent,
                "calls": calls,
                "callers": dict(dest.callers),
                "timeout": term_to_json(dest.last_timeout),
            }
        )
    return rows


_RUNTIME_DIRS = tuple(f"{os.sep}suptrace{os.sep}{d}{os.sep}" for d in ("core", "behaviours"))


def _where(stack: tuple[str, ...]) -> str:
    """The innermost frame, and the innermost frame of the process's own code if
    that is elsewhere (a process stuck in `call` is stuck where it called)."""
    inner = stack[-1]
    own = next((f for f in reversed(stack) if not any(d in f for d in _RUNTIME_DIRS)), None)
    return inner if own is None or own == inner else f"{inner}, called from {own}"


def _all_descs(roots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = list(roots)
    while stack:
        desc = stack.pop()
        out.append(desc)
        stack.extend(c["tree"] for c in desc.get("children", []) if isinstance(c.get("tree"), dict))
    return out


# -- top ------------------------------------------------------------------------------------

#: Mailbox messages and state values looked at for a memory estimate; beyond, extrapolated.
_SIZE_SAMPLE = 64


def memory_estimate(proc: Process) -> int:
    """Bytes a process holds, estimated: its mailbox and its state, measured shallowly.

    ``sys.getsizeof`` of the mailbox and of each message (the first 64, the rest
    extrapolated), plus the behaviour object's attributes one level deep. Objects
    shared with others are counted for each, and nested containers only by their
    own size: a rough figure for ranking processes, not an accounting.

    >>> from collections import deque
    >>> class P:
    ...     mailbox = deque(["x" * 1000])
    ...     behaviour = None
    >>> memory_estimate(P()) > 1000  # type: ignore[arg-type]
    True
    """
    size = sys.getsizeof
    total = 0
    mb = proc.mailbox
    if mb:
        total += size(mb)
        n = len(mb)
        seen = list(itertools.islice(mb, _SIZE_SAMPLE))
        sampled = sum(size(getattr(m, "msg", m)) for m in seen)
        total += sampled * n // len(seen)
    state = proc.behaviour
    if state is not None:
        attrs = getattr(state, "__dict__", None)
        if attrs:
            total += size(attrs)
            values = list(itertools.islice(attrs.values(), _SIZE_SAMPLE))
            total += sum(size(v) for v in values)
    return total


def _sup_row(proc: Process, sup: SupervisorBase) -> dict[str, Any]:
    """Restart intensity use of a supervisor, read in place (no request to it)."""
    use = sup.intensity_use()
    return {
        "pid": str(proc.pid),
        "name": proc.name,
        "strategy": use.strategy,
        "intensity": use.intensity,
        "period": use.period,
        "restarts_in_window": use.restarts_in_window,
        "children": use.children,
    }


#: ``top``'s orders: mailbox, messages/s, restarts, memory.
TOP_SORTS = frozenset({"m", "s", "r", "y"})


def top(
    rt: Runtime,
    reports: Reports | None,
    limit: int,
    report_limit: int,
    sort: str = "m",
    previous: tuple[float, dict[Process, int]] | None = None,
) -> tuple[dict[str, Any], tuple[float, dict[Process, int]]]:
    """One round trip for ``suptrace top``: the ``limit`` first processes in the
    ``sort`` order (with messages/s and a memory estimate), every supervisor's
    restart intensity use and the latest reports.

    ``previous`` is what the last call returned second (the time and each process's
    message count): messages/s are counted from it. Only the rows sent are built
    in full, and memory is estimated for every process only when sorting by it, so
    a refresh costs the node one pass over its processes. Supervisors are read in
    place rather than asked: a refresh sends no message to the application."""
    now = time.monotonic()
    before, counts_before = previous if previous is not None else (now, {})
    dt = now - before
    # One pass over the process table (in spawn order, which ties keep).
    procs: list[Process] = []
    sups: list[dict[str, Any]] = []
    counts: dict[Process, int] = {}
    for p in rt.procs.values():
        if p.reason is not None or p.system:
            continue
        procs.append(p)
        counts[p] = p.messages_in + p.messages_out
        if p.behaviour is not None and isinstance(p.behaviour, SupervisorBase):
            sups.append(_sup_row(p, p.behaviour))

    def rate(p: Process) -> float | None:
        old = counts_before.get(p)
        return None if old is None or dt <= 0 else max(0.0, (counts[p] - old) / dt)

    full: dict[Process, dict[str, Any]] = {}
    key: Any
    if sort == "s":
        key = lambda p: rate(p) or 0.0  # noqa: E731
    elif sort == "y":
        key = memory_estimate
    elif sort == "r":
        # Restart counts are part of a process's full row.
        full = {p: proc_row(p) for p in procs}
        key = lambda p: full[p].get("restarts", 0) or 0  # noqa: E731
    else:
        key = lambda p: len(p.mailbox) if p.mailbox else 0  # noqa: E731
    rows = []
    for p in heapq.nlargest(limit, procs, key=key):
        row = full.get(p) or proc_row(p)
        row["memory"] = memory_estimate(p)
        per_s = rate(p)
        row["messages_per_s"] = None if per_s is None else round(per_s, 2)
        rows.append(row)
    recent: list[dict[str, Any]] = []
    if reports is not None and report_limit:
        picked = [r for r in list(reports.history)[-200:] if report_matches(r, None)]
        recent = [report_json(r) for r in picked[-report_limit:]]
    result = {
        "node": rt.name,
        "time": time.time(),
        "sort": sort,
        "total": len(procs),
        "processes": rows,
        "supervisors": sups,
        "reports": recent,
    }
    return result, (now, counts)


# -- write operations ------------------------------------------------------------------------


def _supervisor(rt: Runtime, target: str) -> Process:
    proc = find_process(rt, target)
    if proc is None:
        raise not_found(rt, target, "supervisor")
    if not _is_supervisor(proc):
        raise OpError("bad_args", f"{target} is not a supervisor (it runs {proc.initial_call})")
    return proc


def _child_key(sup: Process, child: str) -> Any:
    """The child id (or, for a DynamicSupervisor, pid) the text ``child`` names."""
    behaviour = sup.behaviour
    assert isinstance(behaviour, SupervisorBase)  # _supervisor() checked it
    try:
        return behaviour.child_key(child)
    except ValueError as exc:
        raise OpError("bad_args", str(exc)) from None


async def write_op(rt: Runtime, op: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    """``terminate_child``, ``restart_child`` or ``exit``."""
    if op == "exit":
        target = args["target"]
        proc = find_process(rt, target)
        if proc is None:
            raise not_found(rt, target)
        exit_signal(proc.pid, args["reason"])
        return {"target": str(proc.pid), "reason": args["reason"]}
    sup = _supervisor(rt, args["supervisor"])
    key = _child_key(sup, args["child"])
    try:
        if op == "terminate_child":
            with _untraced():
                await asyncio.wait_for(terminate_child(sup.pid, key), timeout)
            return {"supervisor": str(sup.pid), "child": short(key)}
        with _untraced():
            pid = await asyncio.wait_for(restart_child(sup.pid, key), timeout)
        return {"supervisor": str(sup.pid), "child": short(key), "pid": _pid(pid)}
    except SupervisorError as exc:
        code = "not_found" if isinstance(exc, ChildNotFound) else "bad_args"
        raise OpError(code, str(exc)) from None
    except TimeoutError:
        raise OpError("timeout", f"{sup.name or sup.pid} did not answer in {timeout}s") from None
