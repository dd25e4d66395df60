"""``suptrace view FILE``: render an OTLP-JSON lines file in the terminal.

The file is what a node writes with the embedded telemetry default (one
``ExportTraceServiceRequest``, ``ExportMetricsServiceRequest`` or
``ExportLogsServiceRequest`` in OTLP/JSON per line), or what an OpenTelemetry
Collector's ``file`` exporter writes. The view shows

* the processes: each process's lifetime under its parent, how it exited,
  the restarts and intensity breaches of supervisors (failures in red);
* the messages: each trace as a tree -- who called or sent what to whom, where
  it failed;
* a summary of the metrics and of the reports (log records).

``--json`` prints the same as one machine-readable JSON document.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["view", "load", "load_lines", "summarize", "Dump", "SpanRec"]

_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_KIND_NAMES = {
    "SPAN_KIND_INTERNAL": "INTERNAL",
    "SPAN_KIND_SERVER": "SERVER",
    "SPAN_KIND_CLIENT": "CLIENT",
    "SPAN_KIND_PRODUCER": "PRODUCER",
    "SPAN_KIND_CONSUMER": "CONSUMER",
}
_SEVERITY = {1: "TRACE", 5: "DEBUG", 9: "INFO", 13: "WARN", 17: "ERROR", 21: "FATAL"}


# -- loading -----------------------------------------------------------------------------------


def _value(v: dict[str, Any]) -> Any:
    if not v:
        return None
    key, val = next(iter(v.items()))
    if key == "intValue":
        return int(val)
    if key == "doubleValue":
        return float(val)
    if key == "arrayValue":
        return [_value(x) for x in val.get("values", [])]
    if key == "kvlistValue":
        return {kv["key"]: _value(kv.get("value", {})) for kv in val.get("values", [])}
    return val


def _attrs(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv["key"]: _value(kv.get("value", {})) for kv in items or []}


def _kind(value: Any) -> str:
    if isinstance(value, int):
        return _KINDS.get(value, str(value))
    if isinstance(value, str):
        return _KIND_NAMES.get(value, value)
    return "INTERNAL"


def _status(status: dict[str, Any] | None) -> tuple[str, str]:
    status = status or {}
    code = status.get("code", 0)
    if code in (2, "STATUS_CODE_ERROR"):
        return "ERROR", status.get("message", "")
    if code in (1, "STATUS_CODE_OK"):
        return "OK", status.get("message", "")
    return "UNSET", ""


def _ns(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


@dataclass
class SpanRec:
    """One span from the file."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    start: int
    end: int
    status: str
    status_message: str
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    links: list[tuple[str, str, dict[str, Any]]]
    node: str
    children: list[SpanRec] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return max(0, self.end - self.start) / 1e9

    @property
    def failed(self) -> bool:
        return self.status == "ERROR"

    @property
    def lifetime(self) -> bool:
        """A process record: its ``exit`` span (older files: its ``lifetime`` span)."""
        return self.name.startswith(("lifetime ", "exit ")) and self.kind == "INTERNAL"


@dataclass
class Dump:
    """Everything read from one file."""

    path: Path
    spans: list[SpanRec] = field(default_factory=list)
    #: (node, metric name) -> {"type", "unit", "points": {attrs-key: point}}
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)
    nodes: set[str] = field(default_factory=set)
    lines: int = 0
    bad_lines: int = 0
    #: The runs in the file (a node started again appends a new one), in file order:
    #: each a Dump of its own, told apart by the resource of what it exported. The
    #: fields above hold all runs together.
    runs: dict[str, Dump] = field(default_factory=dict)
    #: For a run: its node, OS pid and start time (unix seconds), when the file says.
    run_info: dict[str, Any] = field(default_factory=dict)


def _node_of(resource: dict[str, Any]) -> str:
    attrs = _attrs(resource.get("attributes"))
    return str(
        attrs.get("service.instance.id")
        or attrs.get("suptrace.node")
        or attrs.get("service.name")
        or "?"
    )


def _run_of(dump: Dump, resource: dict[str, Any]) -> Dump:
    """The Dump of the run that exported under ``resource`` (created on first sight).

    A node's resource carries ``process.pid`` and ``suptrace.run.started``; a file
    without them (an older writer, another SDK) counts one run per node."""
    attrs = _attrs(resource.get("attributes"))
    node = _node_of(resource)
    pid = attrs.get("process.pid")
    started = attrs.get("suptrace.run.started")
    key = f"{node}\x00{pid}\x00{started}"
    run = dump.runs.get(key)
    if run is None:
        run = dump.runs[key] = Dump(dump.path)
        run.run_info = {"node": node, "pid": pid, "started": started}
    dump.nodes.add(node)
    return run


def load(path: Path) -> Dump:
    """Read an OTLP-JSON lines file (unknown or broken lines are counted and skipped)."""
    dump = Dump(Path(path))
    with open(path, encoding="utf-8", errors="replace") as fh:
        load_lines(dump, fh)
    return dump


def load_lines(dump: Dump, lines: Iterable[str]) -> Dump:
    """Add OTLP/JSON lines (``Export*ServiceRequest`` documents) to ``dump``."""
    for raw in lines:
        raw = raw.strip()
        if not raw:
            continue
        dump.lines += 1
        try:
            doc = json.loads(raw)
        except ValueError:
            dump.bad_lines += 1
            continue
        if not isinstance(doc, dict):
            dump.bad_lines += 1
            continue
        try:
            for key, loader in (
                ("resourceSpans", _load_spans),
                ("resourceMetrics", _load_metrics),
                ("resourceLogs", _load_logs),
            ):
                if key in doc:
                    loader(dump, doc[key])  # the whole file, all runs together
                    for entry in doc[key]:
                        loader(_run_of(dump, entry.get("resource", {})), [entry])
                    break
            else:
                dump.bad_lines += 1
        except (KeyError, TypeError, ValueError, AttributeError):
            dump.bad_lines += 1
    return dump


def _load_spans(dump: Dump, resource_spans: list[dict[str, Any]]) -> None:
    for rs in resource_spans:
        node = _node_of(rs.get("resource", {}))
        dump.nodes.add(node)
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                status, message = _status(s.get("status"))
                dump.spans.append(
                    SpanRec(
                        trace_id=s.get("traceId", ""),
                        span_id=s.get("spanId", ""),
                        parent_id=s.get("parentSpanId", ""),
                        name=s.get("name", ""),
                        kind=_kind(s.get("kind", 1)),
                        start=_ns(s.get("startTimeUnixNano")),
                        end=_ns(s.get("endTimeUnixNano")),
                        status=status,
                        status_message=message,
                        attributes=_attrs(s.get("attributes")),
                        events=[
                            (
                                e.get("name", ""),
                                _ns(e.get("timeUnixNano")),
                                _attrs(e.get("attributes")),
                            )
                            for e in s.get("events", [])
                        ],
                        links=[
                            (
                                link.get("traceId", ""),
                                link.get("spanId", ""),
                                _attrs(link.get("attributes")),
                            )
                            for link in s.get("links", [])
                        ],
                        node=node,
                    )
                )


def _attr_key(attrs: dict[str, Any]) -> str:
    return json.dumps(attrs, sort_keys=True, default=str)


def _load_metrics(dump: Dump, resource_metrics: list[dict[str, Any]]) -> None:
    for rm in resource_metrics:
        node = _node_of(rm.get("resource", {}))
        dump.nodes.add(node)
        for sm in rm.get("scopeMetrics", []):
            for m in sm.get("metrics", []):
                name = m.get("name", "")
                for mtype in ("sum", "gauge", "histogram", "exponentialHistogram", "summary"):
                    if mtype in m:
                        break
                else:
                    continue
                body = m[mtype]
                entry = dump.metrics.setdefault(
                    name, {"type": mtype, "unit": m.get("unit", ""), "points": {}}
                )
                if mtype == "sum":
                    entry["monotonic"] = bool(body.get("isMonotonic"))
                delta = body.get("aggregationTemporality") in (1, "AGGREGATION_TEMPORALITY_DELTA")
                for p in body.get("dataPoints", []):
                    attrs = _attrs(p.get("attributes"))
                    key = node + "\x00" + _attr_key(attrs)
                    ts = _ns(p.get("timeUnixNano"))
                    if mtype in ("sum", "gauge"):
                        value: Any = (
                            float(p["asDouble"]) if "asDouble" in p else int(p.get("asInt", 0))
                        )
                        point = {"attributes": attrs, "node": node, "ts": ts, "value": value}
                    elif mtype == "histogram":
                        point = {
                            "attributes": attrs,
                            "node": node,
                            "ts": ts,
                            "count": int(p.get("count", 0)),
                            "sum": float(p.get("sum", 0.0)),
                            "bounds": [float(b) for b in p.get("explicitBounds", [])],
                            "buckets": [int(c) for c in p.get("bucketCounts", [])],
                        }
                    else:
                        point = {
                            "attributes": attrs,
                            "node": node,
                            "ts": ts,
                            "count": int(p.get("count", 0)),
                            "sum": float(p.get("sum", 0.0)),
                        }
                    old = entry["points"].get(key)
                    if old is not None and delta and mtype != "gauge":
                        _accumulate(old, point)
                    elif old is None or ts >= old["ts"]:
                        entry["points"][key] = point


def _accumulate(old: dict[str, Any], new: dict[str, Any]) -> None:
    if "value" in old:
        old["value"] += new["value"]
    else:
        old["count"] += new["count"]
        old["sum"] += new["sum"]
        if "buckets" in old and len(old["buckets"]) == len(new.get("buckets", [])):
            old["buckets"] = [a + b for a, b in zip(old["buckets"], new["buckets"], strict=True)]
    old["ts"] = max(old["ts"], new["ts"])


def _load_logs(dump: Dump, resource_logs: list[dict[str, Any]]) -> None:
    for rl in resource_logs:
        node = _node_of(rl.get("resource", {}))
        dump.nodes.add(node)
        for sl in rl.get("scopeLogs", []):
            for r in sl.get("logRecords", []):
                sev = r.get("severityNumber", 0)
                if isinstance(sev, str):
                    sev = 0
                body = _value(r.get("body", {}))
                dump.logs.append(
                    {
                        "node": node,
                        "ts": _ns(r.get("timeUnixNano") or r.get("observedTimeUnixNano")),
                        "severity": r.get("severityText") or _SEVERITY.get(sev - (sev - 1) % 4, ""),
                        "severity_number": sev,
                        "body": body if isinstance(body, str) else json.dumps(body, default=str),
                        "attributes": _attrs(r.get("attributes")),
                        "event_name": r.get("eventName", ""),
                        "trace_id": r.get("traceId", ""),
                        "span_id": r.get("spanId", ""),
                    }
                )


# -- analysis --------------------------------------------------------------------------------


def _index(dump: Dump) -> dict[str, SpanRec]:
    by_id: dict[str, SpanRec] = {}
    for s in dump.spans:
        s.children = []
        by_id[s.span_id] = s
    return by_id


def _label(s: SpanRec) -> str:
    a = s.attributes
    if s.lifetime:
        name = s.name.removeprefix("lifetime ").removeprefix("exit ")
        return str(a.get("suptrace.process.name") or name)
    return str(a.get("messaging.destination.name") or s.name)


def _sender(s: SpanRec, by_id: dict[str, SpanRec]) -> str | None:
    """Who sent the message a CONSUMER span handles (from its link), if known."""
    for _trace, span_id, _attrs in s.links:
        linked = by_id.get(span_id)
        if linked is None:
            continue
        if linked.lifetime:
            return _label(linked)
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


def _process_forest(dump: Dump, by_id: dict[str, SpanRec]) -> list[SpanRec]:
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


def _message_traces(dump: Dump, by_id: dict[str, SpanRec]) -> list[list[SpanRec]]:
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


def _tree_failed(s: SpanRec) -> bool:
    return s.failed or any(_tree_failed(c) for c in s.children)


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


def _runs(dump: Dump) -> list[Dump]:
    """The runs of a loaded file, oldest first (a Dump filled by hand is one run)."""
    runs = list(dump.runs.values())
    if not runs:
        return [dump]
    return sorted(runs, key=lambda r: float(r.run_info.get("started") or 0.0))


def summarize(dump: Dump) -> dict[str, Any]:
    """The machine-readable summary ``--json`` prints.

    A file several runs wrote (a node started again appends to it) is summarised
    run by run under ``runs``, oldest first; the top-level figures are those of
    the latest run."""
    runs = _runs(dump)
    per_run = []
    for run in runs:
        one = _summarize_run(run)
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


def _summarize_run(dump: Dump) -> dict[str, Any]:
    by_id = _index(dump)
    forest = _process_forest(dump, by_id)
    traces = _message_traces(dump, by_id)
    processes = []

    def walk(s: SpanRec, depth: int, parent: str | None) -> None:
        a = s.attributes
        processes.append(
            {
                "name": _label(s),
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


# -- rendering ---------------------------------------------------------------------------------


def _fmt_duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f}s"
    if seconds >= 0.001:
        return f"{seconds * 1000:.1f}ms"
    return f"{seconds * 1e6:.0f}µs"


def _span_text(s: SpanRec, by_id: dict[str, SpanRec]) -> Any:
    from rich.text import Text

    a = s.attributes
    style = "bold red" if s.failed else ""
    text = Text()
    dest = str(a.get("messaging.destination.name") or s.name)
    msg = a.get("suptrace.message")
    if s.kind == "CLIENT":
        caller = a.get("suptrace.caller.name") or "(outside any process)"
        text.append(f"{caller} → {dest}", style=style or "cyan")
        text.append(" call", style=style)
    elif s.kind == "SERVER":
        text.append(f"{dest}", style=style or "green")
        text.append(" handles the call", style=style)
    elif s.kind == "CONSUMER":
        sender = _sender(s, by_id) or "?"
        op = str(a.get("messaging.operation.name", "")).removeprefix("handle_") or "message"
        text.append(f"{sender} → {dest}", style=style or "magenta")
        text.append(f" {op}", style=style)
    else:
        text.append(s.name, style=style)
    if msg is not None:
        text.append(f" {msg}", style="dim" if not s.failed else style)
    text.append(f"  {_fmt_duration(s.duration)}", style="dim")
    if s.failed:
        text.append(f"  ✗ {s.status_message or 'error'}", style="bold red")
    return text


def _event_text(name: str, attrs: dict[str, Any]) -> Any:
    from rich.text import Text

    failure = name in ("intensity", "not_restarted", "start_error", "shutdown_error", "exception")
    style = "red" if failure else ("yellow" if name in ("restart", "child_terminated") else "dim")
    text = Text(f"• {name}", style=style)
    detail = []
    if "suptrace.child.id" in attrs:
        detail.append(f"child {attrs['suptrace.child.id']}")
    if name == "exception":
        detail.append(f"{attrs.get('exception.type', '')}: {attrs.get('exception.message', '')}")
    elif "suptrace.exit.reason" in attrs and name != "exit":
        detail.append(f"reason {attrs['suptrace.exit.reason']}")
    if name == "intensity":
        detail.append(
            f"{attrs.get('suptrace.restarts')} restarts > intensity {attrs.get('suptrace.intensity')} "
            f"in {attrs.get('suptrace.period')}s"
        )
    if name == "restart" and "suptrace.new.pid" in attrs:
        detail.append(f"now {attrs['suptrace.new.pid']}")
    if name == "not_restarted" and attrs.get("suptrace.rule"):
        detail.append(str(attrs["suptrace.rule"]))
    if detail:
        text.append(": " + "; ".join(detail), style=style)
    return text


def _process_text(s: SpanRec) -> Any:
    from rich.text import Text

    a = s.attributes
    style = "bold red" if s.failed else "bold"
    text = Text(_label(s), style=style)
    if a.get("suptrace.process.pid"):
        text.append(f" {a['suptrace.process.pid']}", style="dim")
    reason = a.get("suptrace.exit.reason")
    if reason is not None:
        text.append("  exited ", style="dim" if not s.failed else "red")
        text.append(str(reason), style="red" if s.failed else "green")
    elif any(name == "node_stopped" for name, _t, _a in s.events):
        text.append("  alive at node stop", style="dim")
    text.append(f"  {_fmt_duration(s.duration)}", style="dim")
    return text


def _add_process(tree: Any, s: SpanRec) -> None:
    node = tree.add(_process_text(s))
    for name, _ts, attrs in s.events:
        if name in ("exit", "node_stopped"):
            continue
        node.add(_event_text(name, attrs))
    for c in s.children:
        _add_process(node, c)


def _add_span(tree: Any, s: SpanRec, by_id: dict[str, SpanRec]) -> None:
    node = tree.add(_span_text(s, by_id))
    for name, _ts, attrs in s.events:
        if name == "exception" or name in (
            "restart",
            "intensity",
            "not_restarted",
            "start_error",
            "child_terminated",
            "shutdown_error",
        ):
            node.add(_event_text(name, attrs))
    for c in s.children:
        _add_span(node, c, by_id)


def render(dump: Dump, limit: int, console: Any) -> None:
    """Every run of the file, oldest first, each under a line that says which run."""
    runs = _runs(dump)
    if dump.bad_lines:
        console.print(f"{dump.path}: {dump.bad_lines} unreadable lines skipped")
    if len(runs) > 1:
        console.print(
            f"[bold]{dump.path}[/] holds {len(runs)} runs (a node started again appends); "
            "each is shown on its own, oldest first"
        )
    for i, run in enumerate(runs, 1):
        if len(runs) > 1:
            console.rule(f"[bold]run {i} of {len(runs)}[/]: {_run_title(run)}", align="left")
        _render_run(run, limit, console)


def _run_title(run: Dump) -> str:
    info = run.run_info
    text = f"node {info.get('node', '?')}"
    if info.get("pid") is not None:
        text += f", pid {info['pid']}"
    started = info.get("started")
    if started is not None:
        import time

        text += ", started " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(started)))
    return text


def _render_run(dump: Dump, limit: int, console: Any) -> None:
    from rich.table import Table
    from rich.tree import Tree

    summary = _summarize_run(dump)
    summary["nodes"] = sorted(dump.nodes)
    by_id = _index(dump)
    forest = _process_forest(dump, by_id)
    traces = _message_traces(dump, by_id)
    errors = len(summary["errors"])
    console.print(
        f"[bold]{dump.path}[/]: {len(dump.spans)} spans in {summary['traces']} traces, "
        f"{len(dump.metrics)} metrics, {len(dump.logs)} log records; nodes: "
        f"{', '.join(summary['nodes']) or '-'}"
        + (f"; [red]{errors} failed spans[/]" if errors else "")
    )
    if forest:
        tree = Tree("[bold]Processes[/] (lifetimes, under their parents)")
        for root in forest:
            _add_process(tree, root)
        console.print(tree)
    if traces:
        failing = [t for t in traces if any(_tree_failed(r) for r in t)]
        rest = [t for t in traces if t not in failing]
        shown = failing[:limit] + rest[-max(0, limit - len(failing[:limit])) :] if limit else []
        shown.sort(key=lambda roots: roots[0].start)
        title = f"[bold]Messages[/] ({len(traces)} traces"
        if len(shown) < len(traces):
            title += f", showing {len(shown)}: failures first, then the latest; --limit to see more"
        title += ")"
        tree = Tree(title)
        for roots in shown:
            for root in roots:
                _add_span(tree, root, by_id)
        console.print(tree)
    if dump.metrics:
        table = Table(title="Metrics", title_justify="left", show_lines=False)
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_column("detail")
        for name, m in summary["metrics"].items():
            if m["type"] in ("sum", "gauge"):
                value = _num(m["total"])
                top = sorted(m["points"], key=lambda p: -abs(p["value"]))[:4]
                detail = ", ".join(
                    f"{_attrs_text(p['attributes'])}={_num(p['value'])}"
                    for p in top
                    if p["attributes"]
                )
            else:
                value = f"{m['count']} obs"
                mean = m["sum"] / m["count"] if m["count"] else 0.0
                detail = f"mean {_fmt_duration(mean) if m['unit'] == 's' else _num(mean)}"
                if m["p50"] is not None:
                    fmt = _fmt_duration if m["unit"] == "s" else _num
                    detail += f", p50 ≤ {fmt(m['p50'])}, p99 ≤ {fmt(m['p99'])}"
            style = "red" if _alarming(name, m) else None
            table.add_row(name, value, detail, style=style)
        console.print(table)
    if dump.logs:
        sev = summary["logs"]["by_severity"]
        console.print(
            "[bold]Reports[/] (log records): "
            + ", ".join(f"{k} {v}" for k, v in sorted(sev.items()))
        )
        for r in dump.logs:
            if r["severity_number"] >= 13 or str(r["severity"]).upper() in (
                "WARN",
                "WARNING",
                "ERROR",
            ):
                first = r["body"].splitlines()[0] if r["body"] else ""
                detail = r["attributes"].get("suptrace.context") or r["attributes"].get(
                    "suptrace.process.name", ""
                )
                reason = r["attributes"].get("suptrace.exit.reason", "")
                console.print(f"  [red]{first}[/] {detail} {reason}".rstrip())


def _alarming(name: str, m: dict[str, Any]) -> bool:
    if name in (
        "suptrace.supervisor.intensity_breaches",
        "suptrace.call.timeouts",
        "suptrace.process.restarts",
    ):
        return bool(m.get("total"))
    return False


def _num(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return str(int(value)) if isinstance(value, float) else str(value)


def _attrs_text(attrs: dict[str, Any]) -> str:
    return ",".join(str(v) for v in attrs.values())


def view(
    file: Annotated[
        Path, typer.Argument(help="An OTLP-JSON lines file (suptrace-<node>.otlp.jsonl).")
    ],
    json_out: Annotated[
        bool, typer.Option("--json", "-j", help="Print a JSON summary instead.")
    ] = False,
    limit: Annotated[
        int,
        typer.Option("--limit", "-l", help="How many message traces to draw (failures first)."),
    ] = 30,
) -> None:
    """Render an OTLP-JSON telemetry file: processes, message traces, metrics, reports."""
    if not file.exists():
        typer.echo(f"suptrace view: {file}: no such file", err=True)
        raise typer.Exit(1)
    if file.is_dir():
        typer.echo(f"suptrace view: {file} is a directory, not an OTLP-JSON lines file", err=True)
        raise typer.Exit(2)
    try:
        dump = load(file)
    except OSError as exc:
        typer.echo(f"suptrace view: cannot read {file}: {exc}", err=True)
        raise typer.Exit(1) from exc
    if json_out:
        sys.stdout.write(json.dumps(summarize(dump), indent=2, default=str) + "\n")
        return
    import os

    from rich.console import Console

    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 10_000
    console = Console(highlight=False, soft_wrap=False, width=width)
    render(dump, limit, console)
