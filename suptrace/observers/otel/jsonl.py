"""The embedded OTLP-JSON lines file: the local default when nothing else is configured.

Spans, metrics and log records are written as the OTLP/JSON encoding of the
``Export*ServiceRequest`` messages, one per line, in one append-only file that
``suptrace view`` reads.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk._logs.export import (
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from suptrace.observers.otel.exporters import count_points

__all__ = ["JsonLinesFile", "FileSpanExporter", "FileMetricExporter", "FileLogExporter", "otlp_json"]


_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _hex_ids(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex, where protobuf's JSON mapping uses base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            elif isinstance(value, (dict, list)):
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)
    return node


def otlp_json(message: Any) -> str:
    """One OTLP/JSON line for an ``Export*ServiceRequest`` protobuf message."""
    from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

    data = MessageToDict(message, use_integers_for_enums=True)
    return json.dumps(_hex_ids(data), separators=(",", ":"))


class JsonLinesFile:
    """An append-only file of OTLP/JSON lines, shared by the three file exporters."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fh: Any = None
        self.lines = 0

    def write(self, line: str) -> None:
        with self._lock:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            self._fh.write(line + "\n")
            self._fh.flush()
            self.lines += 1

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


class FileSpanExporter(SpanExporter):
    """Spans as ``ExportTraceServiceRequest`` JSON lines."""

    def __init__(self, out: JsonLinesFile) -> None:
        self.out = out

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        if spans:
            self.out.write(otlp_json(encode_spans(spans)))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class FileMetricExporter(MetricExporter):
    """Metrics as ``ExportMetricsServiceRequest`` JSON lines (cumulative temporality)."""

    def __init__(self, out: JsonLinesFile) -> None:
        super().__init__()
        self.out = out

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

        if count_points(metrics_data):
            self.out.write(otlp_json(encode_metrics(metrics_data)))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class FileLogExporter(LogRecordExporter):
    """Log records (the SASL-style reports) as ``ExportLogsServiceRequest`` JSON lines."""

    def __init__(self, out: JsonLinesFile) -> None:
        self.out = out

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

        if batch:
            self.out.write(otlp_json(encode_logs(batch)))
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


