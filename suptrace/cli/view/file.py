"""Reading a telemetry file: OTLP/JSON lines into `Dump` and `SpanRec` records.

Each line is one ``ExportTraceServiceRequest``, ``ExportMetricsServiceRequest``
or ``ExportLogsServiceRequest`` in OTLP/JSON, as a node's embedded telemetry
default or an OpenTelemetry Collector's ``file`` exporter writes it. A line
that is not one of them is counted and skipped. A node started again appends
to the same file: its lines go to a run of their own (``Dump.runs``), told
apart by the resource they were exported under.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Dump", "SpanRec", "load", "load_lines"]

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
    """Add OTLP/JSON lines (``Export*ServiceRequest`` documents) to ``dump``.

    >>> import json
    >>> span = {"traceId": "01", "spanId": "0a", "name": "exit worker", "kind": 1,
    ...         "startTimeUnixNano": "1000", "endTimeUnixNano": "3000",
    ...         "status": {"code": 2, "message": "boom"}}
    >>> node = {"attributes": [{"key": "service.instance.id", "value": {"stringValue": "shop"}}]}
    >>> line = json.dumps({"resourceSpans": [{"resource": node,
    ...                                       "scopeSpans": [{"spans": [span]}]}]})
    >>> dump = load_lines(Dump(Path("shop.otlp.jsonl")), [line, "not json", ""])
    >>> [(s.name, s.kind, s.status, s.node) for s in dump.spans], dump.lines, dump.bad_lines
    ([('exit worker', 'INTERNAL', 'ERROR', 'shop')], 2, 1)
    """
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
