"""``suptrace tree``: every supervision tree of a node, asked of its supervisors
from the roots down, with the children that were not restarted, the names that
vanished and the processes no supervisor watches."""

from __future__ import annotations

from typing import Any

from suptrace.core.process import Process
from suptrace.core.runtime import Runtime, process_of
from suptrace.core.terms import Pid
from suptrace.node.control.processes import proc_row
from suptrace.node.control.shapes import tombstone_json
from suptrace.node.control.supervisors import describe_supervisor, is_supervisor
from suptrace.observers.format import short, term_to_json
from suptrace.observers.reports import Reports, SupervisorReport

__all__ = ["tree"]


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
    desc = await describe_supervisor(proc, timeout)
    desc["restart"] = restart
    for child in desc["children"]:
        cproc = (
            rt.process(Pid.parse(child["pid"]))
            if child["pid"] not in (None, "restarting")
            else None
        )
        if child["type"] == "supervisor" and is_supervisor(cproc):
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
    sups = [p for p in list(rt.procs.values()) if p.alive and is_supervisor(p)]
    roots = []
    for proc in sorted(sups, key=lambda p: p.pid):
        parent = process_of(proc.parent) if proc.parent is not None else None
        if not is_supervisor(parent):
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
