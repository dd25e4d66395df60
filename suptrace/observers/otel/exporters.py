"""The exporters suptrace builds, wrapped so that each signal's `ExportGuard` sees every export.

* ``observed`` subclasses an OTLP exporter so the status of each attempt
  (which the standard exporters only log) reaches the guard: a permanent
  refusal (gRPC ``UNIMPLEMENTED``, HTTP 404/405/415) versus an outage;
* the guarded span, metric and log exporters run each export through the guard;
* the bounded batch processors count what a full queue drops as overload;
* the exporters' own log lines are quieted while a guard reports instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadWriteLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from suptrace.observers.otel.guard import REFUSING_GRPC, REFUSING_HTTP, ExportGuard

__all__ = [
    "GuardedSpanExporter",
    "GuardedMetricExporter",
    "GuardedLogExporter",
    "BoundedSpanProcessor",
    "BoundedLogProcessor",
    "count_points",
    "observed",
    "quiet_exporters",
]


class _Probe:
    """Stands in for an OTLP exporter's client (the gRPC stub, or the HTTP client) to
    see the status of each attempt, which the standard exporters only log."""

    __slots__ = ("_inner", "_owner")

    def __init__(self, inner: Any, owner: Any) -> None:
        self._inner = inner
        self._owner = owner
        transport = getattr(inner, "_transport", None)
        if transport is not None and not isinstance(transport, _AttemptProbe):
            inner._transport = _AttemptProbe(transport, owner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def Export(self, *args: Any, **kwargs: Any) -> Any:  # the gRPC stub's method
        try:
            return self._inner.Export(*args, **kwargs)
        except Exception as exc:
            error: Any = exc
            code = getattr(error, "code", None)
            name = getattr(code(), "name", None) if callable(code) else None
            if name is None:
                _note(self._owner, f"{type(error).__name__}: {error}", False)
            else:
                details = error.details() if callable(getattr(error, "details", None)) else ""
                _note(
                    self._owner,
                    f"gRPC status {name}" + (f": {details}" if details else ""),
                    name in REFUSING_GRPC,
                )
            raise

    def export(self, data: Any) -> Any:  # the HTTP client
        result = self._inner.export(data)
        if not getattr(result, "success", True):
            status = getattr(result, "status_code", None)
            if status is not None:
                reason = getattr(result, "reason", None)
                why = f"HTTP {status}" + (f" {reason}" if reason else "")
            else:
                error = getattr(result, "error", None)
                why = f"{type(error).__name__}: {error}" if error is not None else "no answer"
            _note(self._owner, why, status in REFUSING_HTTP)
        return result


#: HTTP answers the client retries: an outage starts at the first of them.
_RETRIED_HTTP = frozenset({429, 502, 503, 504})


class _AttemptProbe:
    """Stands in for the HTTP client's transport to see each attempt: the client
    retries 429/5xx answers for up to its timeout, and meanwhile the signal is
    already in an outage (what arrives is shed, not queued behind the retries)."""

    __slots__ = ("_inner", "_owner")

    def __init__(self, inner: Any, owner: Any) -> None:
        self._inner = inner
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        result = self._inner.request(*args, **kwargs)
        status = getattr(result, "status_code", None)
        guard = self._owner._suptrace_guard
        if status in _RETRIED_HTTP and guard is not None:
            reason = getattr(result, "reason", None)
            guard.trouble(f"HTTP {status}" + (f" {reason}" if reason else ""))
        return result


def _note(exporter: Any, why: str, permanent: bool) -> None:
    exporter._suptrace_failure = (why, permanent)
    guard = exporter._suptrace_guard
    if guard is not None and not permanent:
        guard.trouble(why)


_OBSERVED: dict[tuple[type, Any], type] = {}


def observed(cls: type, translate: Callable[[Any], Any] | None = None) -> type:
    """A subclass of a standard OTLP exporter whose client is wrapped in a `_Probe`.

    Both the gRPC and the HTTP exporters keep their client in ``self._client``
    (and the gRPC one replaces it when it reconnects): a property catches every
    assignment, so the probe stays in place whatever the exporter does.
    ``translate``, for a gRPC exporter, replaces the encoder it turns a batch
    into a request with (`suptrace.observers.otel.wire.encode_spans` for spans).
    """
    sub = _OBSERVED.get((cls, translate))
    if sub is None:

        def get(self: Any) -> Any:
            return self.__dict__.get("_suptrace_client")

        def put(self: Any, value: Any) -> None:
            self.__dict__["_suptrace_client"] = None if value is None else _Probe(value, self)

        namespace: dict[str, Any] = {
            "_client": property(get, put),
            "_suptrace_failure": None,
            "_suptrace_guard": None,
            "__module__": cls.__module__,
        }
        if translate is not None:
            namespace["_translate_data"] = lambda self, data: translate(data)
        sub = type(cls.__name__, (cls,), namespace)
        _OBSERVED[(cls, translate)] = sub
    return sub


class _QuietExporterLogs(logging.Filter):
    """Hide the OTLP exporters' per-attempt warnings while suptrace's guards report outages."""

    active = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not _QuietExporterLogs.active:
            return True
        msg = str(record.msg)
        return not (
            msg.startswith("Transient error")
            or msg.startswith("Failed to export")
            or msg.startswith("Shutdown in progress")
            or msg.startswith("Queue full")
            or "Exception while exporting" in msg
        )


_QUIET = _QuietExporterLogs()
_QUIET_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.metrics._internal.export",
)
_quiet_installed = False


def quiet_exporters(on: bool) -> None:
    global _quiet_installed
    if not _quiet_installed:
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).addFilter(_QUIET)
        _quiet_installed = True
    _QuietExporterLogs.active += 1 if on else -1


def _guard_source(inner: Any, guard: ExportGuard) -> Any:
    """Let an observed exporter report its attempts to ``guard``; the exporter itself,
    or None when it is not an observed one."""
    if "_suptrace_failure" in dir(type(inner)):
        inner._suptrace_guard = guard
        return inner
    return None


class _Guarded:
    """What the guarded span and log exporters share: the real exporter, its guard,
    and a stop that runs once (at node stop, by the guard, or by the SDK)."""

    def __init__(self, inner: Any, guard: ExportGuard) -> None:
        self.inner = inner
        self.guard = guard
        self._stopped = False
        guard.stop_inner = self._stop
        self._source = _guard_source(inner, guard)

    def shutdown(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


class GuardedSpanExporter(_Guarded, SpanExporter):
    def __init__(self, inner: SpanExporter, guard: ExportGuard) -> None:
        super().__init__(inner, guard)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self.guard.run(
            len(spans),
            lambda: self.inner.export(spans) == SpanExportResult.SUCCESS,
            self._source,
        )
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE


class GuardedMetricExporter(MetricExporter):
    def __init__(self, inner: MetricExporter, guard: ExportGuard) -> None:
        super().__init__(
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self.inner = inner
        self.guard = guard
        self._stopped = False
        guard.stop_inner = self._stop
        self._source = _guard_source(inner, guard)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        points = count_points(metrics_data)
        ok = self.guard.run(
            points,
            lambda: (
                self.inner.export(metrics_data, timeout_millis=timeout_millis)
                == MetricExportResult.SUCCESS
            ),
            self._source,
        )
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._stop(timeout_millis)

    def _stop(self, timeout_millis: float = 1_000) -> None:
        if not self._stopped:
            self._stopped = True
            self.inner.shutdown(timeout_millis=timeout_millis)


def count_points(data: MetricsData) -> int:
    n = 0
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                n += len(metric.data.data_points)
    return n


class GuardedLogExporter(_Guarded, LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, guard: ExportGuard) -> None:
        super().__init__(inner, guard)

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        ok = self.guard.run(len(batch), lambda: _log_ok(self.inner.export(batch)), self._source)
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE


def _log_ok(result: Any) -> bool:
    return getattr(result, "name", None) == "SUCCESS"


class BoundedSpanProcessor(BatchSpanProcessor):
    """A `BatchSpanProcessor` with its signal's guard in front of its bounded queue:
    nothing is queued while the signal backs off or is refused (counted as dropped),
    and a full queue is counted as overload."""

    def __init__(self, exporter: SpanExporter, guard: ExportGuard, **kwargs: Any) -> None:
        super().__init__(exporter, **kwargs)
        self._guard = guard
        batch = getattr(self, "_batch_processor", None)
        self._queue: Any = getattr(batch, "_queue", None)
        self._limit: int = getattr(batch, "_max_queue_size", 0) or 0

    def on_end(self, span: ReadableSpan) -> None:
        guard = self._guard
        if guard.state != "ok" or guard.closed:
            if guard.closed:
                return  # the node stopped: a span made later through the globals goes nowhere
            if not guard.allow():
                guard.skip(1)
                return
        queue = self._queue
        if queue is not None and self._limit and len(queue) >= self._limit:
            guard.overload(1)
            return
        super().on_end(span)

    def shutdown(self) -> None:
        self._guard.closed = True
        super().shutdown()  # type: ignore[no-untyped-call]


class BoundedLogProcessor(BatchLogRecordProcessor):
    def __init__(self, exporter: LogRecordExporter, guard: ExportGuard, **kwargs: Any) -> None:
        super().__init__(exporter, **kwargs)
        self._guard = guard
        batch = getattr(self, "_batch_processor", None)
        self._queue: Any = getattr(batch, "_queue", None)
        self._limit: int = getattr(batch, "_max_queue_size", 0) or 0

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        guard = self._guard
        if guard.state != "ok" or guard.closed:
            if guard.closed:
                return
            if not guard.allow():
                guard.skip(1)
                return
        queue = self._queue
        if queue is not None and self._limit and len(queue) >= self._limit:
            guard.overload(1)
            return
        super().on_emit(log_record)

    def shutdown(self) -> None:
        self._guard.closed = True
        super().shutdown()  # type: ignore[no-untyped-call]


