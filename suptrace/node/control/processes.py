"""What the control plane answers about processes: finding one by name or pid
(and the not-found error that says what became of it), the rows of ``ps``,
``inspect`` of one process or plain task, and ``top``'s ranked refresh.

Everything here reads the runtime from the node's own loop (the control server
calls it from plain asyncio tasks, never from a suptrace process).
"""

from __future__ import annotations

import difflib
import heapq
import itertools
import sys
import time
from typing import Any

from suptrace.behaviours.client import get_state, statistics
from suptrace.behaviours.gen_server import GenServer
from suptrace.behaviours.supervision import SupervisorBase
from suptrace.core.errors import CallError
from suptrace.core.process import Process
from suptrace.core.runtime import Runtime, process_of
from suptrace.core.terms import Pid
from suptrace.node.control.errors import OpError
from suptrace.node.control.shapes import (
    behaviour_label,
    event_json,
    pid_json,
    report_json,
    report_matches,
    tombstone_json,
)
from suptrace.node.control.supervisors import describe_supervisor, is_supervisor
from suptrace.observers.format import short, term_to_json
from suptrace.observers.reports import Reports
from suptrace.observers.tasks import TaskWatch, find_tasks, task_info, task_rows

__all__ = [
    "find_process",
    "not_found",
    "restarts",
    "proc_row",
    "ps",
    "info",
    "memory_estimate",
    "TOP_SORTS",
    "top",
]

# -- finding a process ----------------------------------------------------------------------


def find_process(rt: Runtime, target: str) -> Process | None:
    """The live process named by a registered name or a pid text (``<0.42.0>``)."""
    proc: Process | None
    if target.lstrip("<")[:2] == "0." and target.rstrip(">")[-1:].isdigit():
        try:
            pid = Pid.parse(target)
        except ValueError:
            return None
        proc = rt.process(pid)
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


# -- ps and inspect -------------------------------------------------------------------------


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
    """A process as one row of ``ps``, ``top`` and ``tree``'s unsupervised list."""
    total, window, _ = restarts(proc)
    return {
        "pid": str(proc.pid),
        "name": proc.name,
        "status": proc.status,
        "message_queue_len": len(proc.mailbox) if proc.mailbox else 0,
        "messages_in": proc.messages_in,
        "messages_out": proc.messages_out,
        "initial_call": proc.initial_call,
        "behaviour": behaviour_label(proc),
        "parent": pid_json(proc.parent),
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


def _pids(pids: Any) -> list[str]:
    return [str(p) for p in pids or ()]


async def info(rt: Runtime, target: str, timeout: float, limit: int) -> dict[str, Any]:
    """``inspect``: one process in full (a supervisor with its children, a
    GenServer with its state and statistics), or the one plain task so named."""
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
        "parent": pid_json(raw["parent"]),
        "current_stacktrace": list(raw["current_stacktrace"]),
        "messages_in": raw["messages_in"],
        "messages_out": raw["messages_out"],
        "started_at": raw["started_at"],
        "behaviour": behaviour_label(proc),
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
    if is_supervisor(proc):
        out["supervisor"] = await describe_supervisor(proc, timeout)
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
