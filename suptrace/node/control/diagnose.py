"""``suptrace doctor`` on a running node: the sampling run that gathers what the
rules of `suptrace.node.control.doctor` judge.

It samples the process table over time (mailbox sizes, stacks, message
counts), reads the supervision trees, the report history, the node's call
timeout counts and its telemetry export, and returns the findings, errors
first.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from suptrace.behaviours.gen_server import GenServer, calls_handled
from suptrace.core.process import Process
from suptrace.core.runtime import Runtime
from suptrace.core.terms import Pid, reason_class
from suptrace.node.control.doctor import (
    check_call_timeouts,
    check_growing_mailbox,
    check_restart_loops,
    check_stuck,
    check_telemetry,
    check_tree,
    check_vanished,
    restart_key,
)
from suptrace.node.control.shapes import as_text
from suptrace.node.control.trees import tree
from suptrace.observers.call_timeouts import CallTimeouts
from suptrace.observers.format import short, term_to_json
from suptrace.observers.reports import Reports, SupervisorReport

if TYPE_CHECKING:
    from suptrace.node.telemetry import Telemetry

__all__ = ["doctor", "telemetry_signals", "restart_history", "call_timeout_rows"]


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
    found.extend(check_vanished(trees["vanished"][:50]))
    now = time.time()
    last = snapshots[-1]
    for pid, (_mq, stack, m_in, m_out) in last.items():
        proc = rt.process(pid)
        if proc is None:
            continue
        series = [s[pid] for s in snapshots if pid in s]
        who, target = _who(proc), str(proc.name or proc.pid)
        if len(series) == len(snapshots):
            growing = check_growing_mailbox(
                who, target, [entry[0] for entry in series], interval, mailbox_min
            )
            if growing is not None:
                found.append(growing)
        if (
            proc.status == "running"
            and proc.ancestors  # a top-level process awaiting the app's end is normal
            and stack
            and all(entry[1:] == (stack, m_in, m_out) for entry in series)
        ):
            stuck = check_stuck(who, target, stack, now - _last_activity(proc), stuck_after)
            if stuck is not None:
                found.append(stuck)
    signals = telemetry_signals(telemetry)
    found.extend(check_telemetry(signals))
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
        # Each signal's exporter, state, exported / dropped counts and last error, as
        # `suptrace status` shows them: the doctor prints them under its findings.
        "telemetry": signals,
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
            key = restart_key(as_text(report.supervisor), term_to_json(cid))
            seen = reasons.setdefault(key, [])
            seen.append((reason_class(report.reason), short(report.reason, 120)))
            if len(seen) > keep:
                del seen[0]
        elif report.context == "shutdown":
            ids = gave_up.setdefault(as_text(report.supervisor), [])
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
            proc = rt.process(dest.pid)
        calls = None
        recent = dest.total
        if proc is not None and proc.alive:
            recent = dest.since(proc.started_at)
            behaviour = proc.behaviour
            if isinstance(behaviour, GenServer):
                # Handled so far; a timed-out call still queued counts once handled.
                calls = calls_handled(behaviour)
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


def _all_descs(roots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = list(roots)
    while stack:
        desc = stack.pop()
        out.append(desc)
        stack.extend(c["tree"] for c in desc.get("children", []) if isinstance(c.get("tree"), dict))
    return out
