"""What the control server's requests compute: plain JSON-ready data about a node.

Everything here reads the runtime from the node's own loop (the control server
calls it from plain asyncio tasks, never from a suptrace process). Supervisors
are asked through their admin API (`describe`), with a timeout, so a busy
supervisor makes an answer say "busy" instead of hanging it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any

from suptrace.behaviours.dynamic import DynamicSupervisor
from suptrace.behaviours.gen_server import GenServer, get_state, statistics
from suptrace.behaviours.supervisor import (
    Supervisor,
    SupervisorError,
    describe,
    restart_child,
    terminate_child,
)
from suptrace.core.errors import CallError
from suptrace.core.events import TraceEvent
from suptrace.core.process import Process
from suptrace.core.process import exit as exit_signal
from suptrace.core.runtime import Runtime, Tombstone
from suptrace.core.terms import Pid, reason_class
from suptrace.node.control_doctor import check_tree, finding
from suptrace.observers.format import format_event, short, term_to_json
from suptrace.observers.reports import (
    CrashReport,
    ProgressReport,
    Report,
    Reports,
    SupervisorReport,
    format_report,
)

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
    if isinstance(report, CrashReport):
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
    }
    if isinstance(report, SupervisorReport):
        out.update(
            supervisor=_text(report.supervisor),
            context=report.context,
            reason=short(report.reason, limit),
            reason_class=reason_class(report.reason),
            offender=term_to_json(report.offender, limit),
            cause=term_to_json(report.cause, limit),
            rule=report.rule,
        )
    elif isinstance(report, ProgressReport):
        out.update(supervisor=_text(report.supervisor), started=term_to_json(report.started, limit))
    else:
        out.update(
            pid=str(report.pid),
            name=report.name,
            reason=short(report.reason, limit),
            reason_class=reason_class(report.reason),
            initial_call=report.initial_call,
        )
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


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
    return OpError(
        "not_found",
        f"no {what} {target!r} on node {rt.name} (see: suptrace ps)",
    )


def _behaviour(proc: Process) -> str | None:
    b = proc.behaviour
    if b is None:
        return None
    return getattr(b, "label", None) or type(b).__name__


def proc_row(proc: Process) -> dict[str, Any]:
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
    }


def ps(rt: Runtime, system: bool, limit: int) -> dict[str, Any]:
    procs = [p for p in rt.procs.values() if p.alive and (system or not p.system)]
    procs.sort(key=lambda p: p.pid)
    return {
        "node": rt.name,
        "total": len(procs),
        "truncated": len(procs) > limit,
        "processes": [proc_row(p) for p in procs[:limit]],
    }


def _is_supervisor(proc: Process | None) -> bool:
    return proc is not None and isinstance(proc.behaviour, (Supervisor, DynamicSupervisor))


async def info(rt: Runtime, target: str, timeout: float, limit: int) -> dict[str, Any]:
    proc = find_process(rt, target)
    if proc is None:
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


async def _describe(proc: Process, timeout: float) -> dict[str, Any]:
    """``describe`` of a supervisor as JSON-ready data (children without subtrees)."""
    base: dict[str, Any] = {
        "name": proc.name,
        "pid": str(proc.pid),
        "behaviour": _behaviour(proc),
    }
    try:
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
        cproc = cpid._proc if isinstance(cpid, Pid) else None
        children.append(
            {
                "id": term_to_json(c.get("id")),
                "id_text": c["id"] if isinstance(c.get("id"), str) else short(c.get("id"), 80),
                "pid": None if cpid is None else str(cpid),
                "restart": c.get("restart"),
                "type": c.get("type"),
                "shutdown": term_to_json(c.get("shutdown")),
                "significant": bool(c.get("significant")),
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
        parent = proc.parent._proc if proc.parent is not None else None
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
) -> dict[str, Any]:
    """Findings for a running node: its trees, vanished names, growing mailboxes
    and processes stuck awaiting."""
    snapshots = [_sample(rt)]
    for _ in range(samples - 1):
        await asyncio.sleep(interval)  # sampling the node over time, not synchronising
        snapshots.append(_sample(rt))
    trees = await tree(rt, reports, timeout)
    found: list[dict[str, Any]] = []
    for root in trees["roots"]:
        found.extend(check_tree(root))
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
        },
    }


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
    if isinstance(sup.behaviour, DynamicSupervisor):
        try:
            return Pid.parse(child)
        except ValueError:
            raise OpError(
                "bad_args", f"{sup.name or sup.pid} is a DynamicSupervisor: name the child by pid"
            ) from None
    behaviour: Any = sup.behaviour
    for c in getattr(behaviour, "children", []):
        cid = c.spec.id
        if cid == child or str(cid) == child or repr(cid) == child:
            return cid
    return child


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
            await asyncio.wait_for(terminate_child(sup.pid, key), timeout)
            return {"supervisor": str(sup.pid), "child": short(key)}
        pid = await asyncio.wait_for(restart_child(sup.pid, key), timeout)
        return {"supervisor": str(sup.pid), "child": short(key), "pid": _pid(pid)}
    except SupervisorError as exc:
        code = "not_found" if type(exc).__name__ == "ChildNotFound" else "bad_args"
        raise OpError(code, str(exc)) from None
    except TimeoutError:
        raise OpError("timeout", f"{sup.name or sup.pid} did not answer in {timeout}s") from None
