"""What a telemetry file says, built from its records: the process forest (each
process's lifetime under its parent, with its supervisor's events), the message
traces (who called or sent what to whom), metric totals and quantiles, and the
machine-readable summary ``suptrace view --json`` prints.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from suptrace.cli.view.file import Dump, SpanRec

__all__ = [
    "index",
    "label",
    "sender",
    "process_forest",
    "message_traces",
    "tree_failed",
    "split_runs",
    "summarize",
    "summarize_run",
]


def index(dump: Dump) -> dict[str, SpanRec]:
    """The spans by id, each with its children cleared for `process_forest` and
    `message_traces` to fill."""
    by_id: dict[str, SpanRec] = {}
    for s in dump.spans:
        s.children = []
        by_id[s.span_id] = s
    return by_id


def label(s: SpanRec) -> str:
    """What a span is about: the process's name for a lifetime, else its destination."""
    a = s.attributes
    if s.lifetime:
        name = s.name.removeprefix("lifetime ").removeprefix("exit ")
        return str(a.get("suptrace.process.name") or name)
    return str(a.get("messaging.destination.name") or s.name)


def sender(s: SpanRec, by_id: dict[str, SpanRec]) -> str | None:
    """Who sent the message a CONSUMER span handles (from its link), if known."""
    for _trace, span_id, _attrs in s.links:
        linked = by_id.get(span_id)
        if linked is None:
            continue
        if linked.lifetime:
            return label(linked)
        return str(
            linked.attributes.get("messaging.destination.name")
            if linked.kind in ("SERVER", "CONSUMER")
            else linked.attributes.get("suptrace.caller.name") or linked.name
        )
    return None


_SUPERVISION = frozenset(
    {"restart", "child_terminated", "start_error", "intensity", "not_restarted", "shutdown_error"}
)


def _gather(lifetimes: list[SpanRec], dump: Dump) -> None:
    """Give each process's exit span what its handlings saw: the supervision events,
    their failures, and the time the process was first seen."""
    by_pid = {s.attributes.get("suptrace.process.pid"): s for s in lifetimes}
    for s in dump.spans:
        if s.lifetime or s.kind not in ("SERVER", "CONSUMER"):
            continue
        proc = by_pid.get(s.attributes.get("suptrace.process.pid"))
        if proc is None or not proc.name.startswith("exit "):
            continue
        proc.start = min(proc.start, s.start)
        for event in s.events:
            if event[0] in _SUPERVISION and event not in proc.events:
                proc.events.append(event)
                if s.failed and not proc.failed:
                    proc.status, proc.status_message = s.status, s.status_message
    for proc in lifetimes:
        proc.events.sort(key=lambda e: e[1])


def process_forest(dump: Dump, by_id: dict[str, SpanRec]) -> list[SpanRec]:
    """The processes' lifetimes, each under its parent's, the roots oldest first."""
    lifetimes = [s for s in dump.spans if s.lifetime]
    _gather(lifetimes, dump)
    by_pid = {s.attributes.get("suptrace.process.pid"): s for s in lifetimes}
    roots = []
    for s in lifetimes:
        parent = by_pid.get(s.attributes.get("suptrace.parent.pid"))
        for _trace, span_id, attrs in s.links:
            if attrs.get("suptrace.link") == "parent":
                parent = by_id.get(span_id)
        if parent is not None and parent.lifetime:
            parent.children.append(s)
        else:
            roots.append(s)
    for s in lifetimes:
        s.children.sort(key=lambda c: c.start)
    roots.sort(key=lambda c: c.start)
    return roots


def message_traces(dump: Dump, by_id: dict[str, SpanRec]) -> list[list[SpanRec]]:
    """The message spans as trees, one list of roots per trace, oldest trace first."""
    traces: dict[str, list[SpanRec]] = defaultdict(list)
    for s in dump.spans:
        if s.lifetime:
            continue
        parent = by_id.get(s.parent_id) if s.parent_id else None
        if parent is not None and not parent.lifetime:
            parent.children.append(s)
        else:
            traces[s.trace_id].append(s)
    result = []
    for roots in traces.values():
        for r in roots:
            _sort_tree(r)
        roots.sort(key=lambda r: r.start)
        result.append(roots)
    result.sort(key=lambda roots: roots[0].start)
    return result


def _sort_tree(s: SpanRec) -> None:
    s.children.sort(key=lambda c: c.start)
    for c in s.children:
        _sort_tree(c)


def tree_failed(s: SpanRec) -> bool:
    """Whether the span or any span below it failed."""
    return s.failed or any(tree_failed(c) for c in s.children)


def _metric_total(entry: dict[str, Any]) -> float:
    points = entry["points"].values()
    total: float = sum(
        p["value"] if entry["type"] in ("sum", "gauge") else p["count"] for p in points
    )
    return total


def _quantile(point: dict[str, Any], q: float) -> float | None:
    buckets, bounds = point.get("buckets") or [], point.get("bounds") or []
    total = sum(buckets)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(buckets):
        seen += count
        if seen >= rank:
            return bounds[i] if i < len(bounds) else (bounds[-1] if bounds else None)
    return bounds[-1] if bounds else None


def _merge_histogram(points: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"count": 0, "sum": 0.0, "bounds": [], "buckets": []}
    for p in points:
        merged["count"] += p["count"]
        merged["sum"] += p["sum"]
        if p.get("bounds") and (not merged["bounds"] or merged["bounds"] == p["bounds"]):
            merged["bounds"] = p["bounds"]
            if merged["buckets"]:
                merged["buckets"] = [
                    a + b for a, b in zip(merged["buckets"], p["buckets"], strict=False)
                ]
            else:
                merged["buckets"] = list(p["buckets"])
    return merged


def split_runs(dump: Dump) -> list[Dump]:
    """The runs of a loaded file, oldest first (a Dump filled by hand is one run)."""
    runs = list(dump.runs.values())
    if not runs:
        return [dump]
    return sorted(runs, key=lambda r: float(r.run_info.get("started") or 0.0))


def summarize(dump: Dump) -> dict[str, Any]:
    """The machine-readable summary ``--json`` prints.

    A file several runs wrote (a node started again appends to it) is summarised
    run by run under ``runs``, oldest first; the top-level figures are those of
    the latest run.

    >>> from pathlib import Path
    >>> dump = Dump(Path("empty.otlp.jsonl"))
    >>> summary = summarize(dump)
    >>> summary["file"], summary["spans"], summary["processes"], len(summary["runs"])
    ('empty.otlp.jsonl', 0, [], 1)
    """
    runs = split_runs(dump)
    per_run = []
    for run in runs:
        one = summarize_run(run)
        one["run"] = dict(run.run_info)
        per_run.append(one)
    latest = dict(per_run[-1])
    latest.update(
        file=str(dump.path),
        nodes=sorted(dump.nodes),
        lines=dump.lines,
        bad_lines=dump.bad_lines,
        runs=per_run,
    )
    return latest


def summarize_run(dump: Dump) -> dict[str, Any]:
    """The summary of one run: its processes, failed spans, metrics and reports."""
    by_id = index(dump)
    forest = process_forest(dump, by_id)
    traces = message_traces(dump, by_id)
    processes = []

    def walk(s: SpanRec, depth: int, parent: str | None) -> None:
        a = s.attributes
        processes.append(
            {
                "name": label(s),
                "pid": a.get("suptrace.process.pid"),
                "parent": parent,
                "depth": depth,
                "node": s.node,
                "exit_reason": a.get("suptrace.exit.reason"),
                "exit_reason_class": a.get("suptrace.exit.reason_class"),
                "failed": s.failed,
                "status_message": s.status_message or None,
                "events": [name for name, _ts, _a in s.events if name != "exception"],
                "duration": s.duration,
            }
        )
        for c in s.children:
            walk(c, depth + 1, a.get("suptrace.process.pid"))

    for root in forest:
        walk(root, 0, None)
    errors = [
        {
            "trace_id": s.trace_id,
            "span_id": s.span_id,
            "name": s.name,
            "kind": s.kind,
            "status_message": s.status_message,
            "node": s.node,
        }
        for s in dump.spans
        if s.failed
    ]
    kinds = Counter(s.kind for s in dump.spans if not s.lifetime)
    events = Counter(name for s in dump.spans for name, _ts, _a in s.events)
    metrics: dict[str, Any] = {}
    for name, entry in sorted(dump.metrics.items()):
        points = list(entry["points"].values())
        m: dict[str, Any] = {"type": entry["type"], "unit": entry["unit"]}
        if entry["type"] in ("sum", "gauge"):
            m["total"] = _metric_total(entry)
            m["points"] = [
                {"attributes": p["attributes"], "node": p["node"], "value": p["value"]}
                for p in points
            ]
        else:
            merged = _merge_histogram(points)
            m["count"] = merged["count"]
            m["sum"] = merged["sum"]
            m["p50"] = _quantile(merged, 0.5)
            m["p99"] = _quantile(merged, 0.99)
            m["points"] = [
                {
                    "attributes": p["attributes"],
                    "node": p["node"],
                    "count": p["count"],
                    "sum": p["sum"],
                }
                for p in points
            ]
        metrics[name] = m
    severities = Counter(str(r["severity"]) for r in dump.logs)
    return {
        "file": str(dump.path),
        "nodes": sorted(dump.nodes),
        "lines": dump.lines,
        "bad_lines": dump.bad_lines,
        "spans": len(dump.spans),
        "traces": len({s.trace_id for s in dump.spans}),
        "message_traces": len(traces),
        "span_kinds": dict(kinds),
        "events": dict(events),
        "errors": errors,
        "processes": processes,
        "metrics": metrics,
        "logs": {
            "count": len(dump.logs),
            "by_severity": dict(severities),
            "records": [
                {
                    "severity": r["severity"],
                    "event_name": r["event_name"],
                    "attributes": r["attributes"],
                    "first_line": r["body"].splitlines()[0] if r["body"] else "",
                    "trace_id": r["trace_id"],
                }
                for r in dump.logs
            ],
        },
    }
