"""Telemetry configuration and export: which providers a node uses and where their data goes.

`configure` turns a node's ``telemetry=`` option (and the standard ``OTEL_*``
environment variables) into a `Setup`:

========================  =====================================================
``telemetry=``            what happens
========================  =====================================================
``None`` / ``"auto"``     explicit providers if given; else the providers set by
                          `SuptraceInstrumentor` or installed as the global
                          ones; else the SDK with the standard OTLP exporters
                          when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or a per-signal
                          endpoint) is set; else the console exporter for the
                          signals whose ``OTEL_<SIGNAL>_EXPORTER`` is
                          ``console`` (the others off) when one is; else the embedded file when
                          ``SUPTRACE_OTLP_FILE`` is set; else off (the node
                          installs nothing). ``SUPTRACE_TELEMETRY``
                          (``off``/``file``/``otlp``/``global``) overrides the
                          choice; ``OTEL_SDK_DISABLED=true`` turns it off.
``True``                  as ``"auto"``, but on: with nothing configured, the
                          embedded default, OTLP-JSON lines appended to
                          ``$SUPTRACE_OTLP_FILE`` or ``./suptrace-<node>.otlp.jsonl``
``"off"`` / ``False``     no telemetry at all (nothing is installed on the node)
``"otlp"``                the SDK with OTLP exporters configured from ``OTEL_*``
``"file"`` or a path      the embedded OTLP-JSON lines file
``"global"``              the global providers (no-ops when none is installed)
========================  =====================================================

The OTLP configuration honours ``OTEL_EXPORTER_OTLP_[TRACES_|METRICS_|LOGS_]PROTOCOL``
(``grpc``, the Python default, or ``http/protobuf``), the endpoints, headers and
timeouts the exporters read themselves (the per-signal ones first, e.g.
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER[_ARG]``, ``OTEL_BSP_*``,
``OTEL_BLRP_*``, ``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER``
(``otlp``, ``console`` or ``none``; an unknown value is an error at node start
naming the variable) and ``OTEL_METRICS_EXPORTER=prometheus`` (with
``OTEL_EXPORTER_PROMETHEUS_HOST/PORT``).

Signals are independent: traces, metrics and logs each have their own
exporter, queue and `ExportGuard`, so exporting never blocks or crashes the
application and one signal's trouble never costs another. What cannot be
delivered is dropped and counted per signal; an outage (unreachable, timing
out, 5xx) is logged once, retried with backoff and its end logged; a backend
that does not take a signal at all (gRPC ``UNIMPLEMENTED``, HTTP 404/405/415:
Jaeger and Tempo take traces only) turns that signal off with one line naming
the status and the variable to set; a full queue is overload, counted and
logged at most once a minute. `Setup.signals` reports it all (``suptrace
status``, ``suptrace doctor``).

Providers suptrace builds (OTLP or the embedded file) become the global
OpenTelemetry providers where the application has not installed its own, so
other instrumentations' spans join the same traces and backend;
``SUPTRACE_OTEL_GLOBAL=false`` keeps them private (see `install_globals` for
what remains after the node stops). Shutting a node down flushes the providers
it created (never the ones it was given) with a time bound.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

__all__ = [
    "Setup",
    "ExportGuard",
    "JsonLinesFile",
    "FileSpanExporter",
    "FileMetricExporter",
    "FileLogExporter",
    "configure",
    "default_file",
    "install_globals",
    "MODES",
    "SIGNALS",
]

#: The values ``telemetry=`` accepts as words (anything else is a path, a bool or None).
MODES = ("auto", "off", "file", "otlp", "global")

_TRUE = {"1", "true", "yes", "on"}


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "node"


def default_file(node_name: str) -> Path:
    """Where the embedded default writes: ``$SUPTRACE_OTLP_FILE`` or ``./suptrace-<node>.otlp.jsonl``."""
    explicit = _env("SUPTRACE_OTLP_FILE")
    if explicit:
        return Path(explicit)
    return Path.cwd() / f"suptrace-{_sanitize(node_name)}.otlp.jsonl"


# -- guarding exports ----------------------------------------------------------------------

#: The three signals, each with its own exporter, queue and health.
SIGNALS = ("traces", "metrics", "logs")

#: What a permanent refusal looks like: the backend does not take this signal at all
#: (Jaeger and Tempo take traces only). Anything else is transient and retried.
_REFUSING_GRPC = frozenset({"UNIMPLEMENTED"})
_REFUSING_HTTP = frozenset({404, 405, 415})

#: Seconds between two "export queue is full" lines of one signal.
OVERLOAD_LOG_INTERVAL = 60.0


def _singular(signal: str) -> str:
    return {"traces": "span", "metrics": "metric point", "logs": "log record"}.get(signal, signal)


class ExportGuard:
    """The health of ONE signal's export: counts, state, outage backoff, overload.

    Every exporter suptrace creates is wrapped with its own guard, so a backend
    that refuses or loses one signal never costs another. States:

    * ``"ok"`` -- exports go through;
    * ``"backoff"`` -- the destination failed (unreachable, timing out, 5xx...):
      exports are skipped (dropped and counted) without touching the network
      until the backoff expires, then the next export is a probe whose success
      ends the outage; the outage and the recovery are each logged once;
    * ``"refused"`` -- the destination does not take this signal at all (gRPC
      ``UNIMPLEMENTED``, HTTP 404/405/415): the signal is off for the rest of the
      node's life, logged once with the status and the variable that turns it off.

    A full export queue is *overload* (the exporter is slower than the node
    produces), not an outage: `overload` counts it and it is logged at most once
    a minute with the count.

    >>> guard = ExportGuard("traces", "collector")
    >>> guard.run(3, lambda: True), guard.exported, guard.state
    (True, 3, 'ok')
    """

    def __init__(
        self,
        signal: str,
        target: str,
        *,
        exporter: str = "otlp",
        endpoint: str | None = None,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.signal = signal
        self.target = target
        self.exporter = exporter
        self.endpoint = endpoint
        self.exported = 0
        #: Everything that was lost (outage, refusal and overload drops).
        self.dropped = 0
        #: The part of `dropped` lost on a full queue.
        self.overload_dropped = 0
        self.failures = 0
        self.outages = 0
        self.state = "ok"
        self.last_error: str | None = None
        self.closed = False
        #: Set when the node stops: a signal that is not healthy then gets no new attempt.
        self.closing = False
        #: Stops the real exporter (ends its retry waits); set by the guarded exporter.
        self.stop_inner: Callable[[], None] | None = None
        #: The node's stop stopped the real exporter (see `interrupt`).
        self.interrupted = False
        self._initial_backoff = backoff
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._outage_drops = 0
        self._overload_pending = 0
        self._overload_since = 0.0
        self._overload_logged_at: float | None = None

    @property
    def variable(self) -> str:
        """The standard variable that chooses (or turns off) this signal's exporter."""
        return f"OTEL_{self.signal.upper()}_EXPORTER"

    def snapshot(self) -> dict[str, Any]:
        """The signal's health as plain data (what ``suptrace status`` shows)."""
        return {
            "exporter": self.exporter,
            "endpoint": self.endpoint,
            "state": self.state,
            "exported": self.exported,
            "dropped": self.dropped,
            "overload_dropped": self.overload_dropped,
            "last_error": self.last_error,
            "outages": self.outages,
        }

    def allow(self) -> bool:
        """False while an outage's backoff runs or the signal is refused."""
        state = self.state
        if state == "ok":
            return True
        return state == "backoff" and not self.closing and time.monotonic() >= self._retry_at

    def interrupt(self) -> None:
        """Stop the real exporter now (at node stop): an export waiting between its
        retries ends at once instead of holding the shutdown to its time bound."""
        stop = self.stop_inner
        self.interrupted = True
        if stop is not None:
            with contextlib.suppress(Exception):
                stop()

    def skip(self, count: int) -> None:
        """Count ``count`` items dropped without trying to export them (backoff, refusal)."""
        if count > 0:
            with self._lock:
                self.dropped += count
                self._outage_drops += count

    def overload(self, count: int) -> None:
        """Count ``count`` items dropped on a full queue (logged at most once a minute)."""
        if count <= 0:
            return
        with self._lock:
            self.dropped += count
            self.overload_dropped += count
            if not self._overload_pending:
                self._overload_since = time.monotonic()
            self._overload_pending += count
            # Normally reported when the slow export in flight ends; this covers an
            # export that never ends.
            stale = time.monotonic() - self._overload_since >= OVERLOAD_LOG_INTERVAL
        if stale:
            self._report_overload()

    def _report_overload(self) -> None:
        now = time.monotonic()
        with self._lock:
            pending = self._overload_pending
            last = self._overload_logged_at
            if not pending or (last is not None and now - last < OVERLOAD_LOG_INTERVAL):
                return
            self._overload_pending = 0
            self._overload_logged_at = now
        from loguru import logger

        logger.warning(
            "suptrace telemetry: the {} export queue to {} is full: {} {}s dropped since the "
            "last report ({} in all). This is overload, not an outage: the destination answers "
            "but the node produces {} faster than they can be sent. Export fewer (a sampler) "
            "or raise the queue and batch sizes (OTEL_BSP_* for traces, OTEL_BLRP_* for logs); "
            "logged at most once a minute.",
            self.signal,
            self.target,
            pending,
            _singular(self.signal),
            self.overload_dropped,
            self.signal,
        )

    def success(self, count: int) -> None:
        with self._lock:
            self.exported += count
            if self.state != "backoff":
                return
            self.state = "ok"
            self._backoff = self._initial_backoff
            recovered, self._outage_drops = self._outage_drops, 0
        from loguru import logger

        logger.info(
            "suptrace telemetry: {} export to {} works again ({} {}s were dropped during "
            "the outage)",
            self.signal,
            self.target,
            recovered,
            _singular(self.signal),
        )

    def trouble(self, why: str) -> None:
        """An attempt failed transiently while the exporter still retries: start the
        outage now, so what arrives meanwhile is shed as an outage, not queued."""
        with self._lock:
            self.last_error = why
            # An export the node's stop cut short is counted, not called an outage.
            first = self.state == "ok" and not self.interrupted
            if first:
                self._open()
        if first:
            self._log_down(why)

    def failure(self, count: int, why: str) -> None:
        with self._lock:
            self.failures += 1
            self.dropped += count
            self._outage_drops += count
            self.last_error = why
            first = self.state == "ok" and not self.interrupted
            if first:
                self._open()
            elif self.state == "backoff":
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, self._max_backoff)
        if first:
            self._log_down(why)

    def refuse(self, count: int, why: str) -> None:
        """The destination does not take this signal: turn it off, say so once."""
        with self._lock:
            self.failures += 1
            self.dropped += count
            self.last_error = why
            first = self.state != "refused"
            self.state = "refused"
        if not first:
            return
        from loguru import logger

        others = " and ".join(s for s in SIGNALS if s != self.signal)
        logger.warning(
            "suptrace telemetry: {} refuses {} ({}); {} export is off for this node, {} are not "
            "affected. {}: set {}=none to stop sending {} there, or OTEL_EXPORTER_OTLP_{}_ENDPOINT "
            "to a backend that takes them.",
            self.target,
            self.signal,
            why,
            self.signal,
            others,
            "A traces-only backend (Jaeger, Tempo) answers like this"
            if self.signal != "traces"
            else "A backend that takes no traces answers like this",
            self.variable,
            self.signal,
            self.signal.upper(),
        )

    def _open(self) -> None:
        self.state = "backoff"
        self.outages += 1
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self._max_backoff)

    def _log_down(self, why: str) -> None:
        from loguru import logger

        logger.warning(
            "suptrace telemetry: cannot export {} to {} ({}); dropping {} until it is reachable "
            "again, retrying with backoff. Other signals and the application are not affected; "
            "drops are counted and this is logged once per outage.",
            self.signal,
            self.target,
            why,
            self.signal,
        )

    def run(self, count: int, export: Callable[[], bool], source: Any = None) -> bool:
        """Export through ``export()`` (True on success) unless the signal is backing off
        or refused. ``source`` is the exporter: after a failure, the status it saw
        (see `_observed`) decides between an outage and a refusal."""
        if not self.allow():
            self.skip(count)
            return False
        if source is not None:
            source._suptrace_failure = None
        try:
            ok = export()
            why = "the exporter reported a failure"
        except Exception as exc:  # an exporter must never take the application down
            ok = False
            why = f"{type(exc).__name__}: {exc}"
        if ok:
            self.success(count)
        else:
            seen = getattr(source, "_suptrace_failure", None)
            if seen is not None and seen[1]:
                self.refuse(count, seen[0])
            else:
                self.failure(count, seen[0] if seen is not None else why)
        if self._overload_pending:
            self._report_overload()
        return ok


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
                    name in _REFUSING_GRPC,
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
            _note(self._owner, why, status in _REFUSING_HTTP)
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


_OBSERVED: dict[type, type] = {}


def _observed(cls: type) -> type:
    """A subclass of a standard OTLP exporter whose client is wrapped in a `_Probe`.

    Both the gRPC and the HTTP exporters keep their client in ``self._client``
    (and the gRPC one replaces it when it reconnects): a property catches every
    assignment, so the probe stays in place whatever the exporter does.
    """
    sub = _OBSERVED.get(cls)
    if sub is None:

        def get(self: Any) -> Any:
            return self.__dict__.get("_suptrace_client")

        def put(self: Any, value: Any) -> None:
            self.__dict__["_suptrace_client"] = None if value is None else _Probe(value, self)

        sub = type(
            cls.__name__,
            (cls,),
            {
                "_client": property(get, put),
                "_suptrace_failure": None,
                "_suptrace_guard": None,
                "__module__": cls.__module__,
            },
        )
        _OBSERVED[cls] = sub
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


def _quiet_exporters(on: bool) -> None:
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


class _GuardedSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, guard: ExportGuard) -> None:
        self.inner = inner
        self.guard = guard
        self._stopped = False
        guard.stop_inner = self._stop
        self._source = _guard_source(inner, guard)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self.guard.run(
            len(spans),
            lambda: self.inner.export(spans) == SpanExportResult.SUCCESS,
            self._source,
        )
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _GuardedMetricExporter(MetricExporter):
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
        points = _count_points(metrics_data)
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


def _count_points(data: MetricsData) -> int:
    n = 0
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                n += len(metric.data.data_points)
    return n


class _GuardedLogExporter(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, guard: ExportGuard) -> None:
        self.inner = inner
        self.guard = guard
        self._stopped = False
        guard.stop_inner = self._stop
        self._source = _guard_source(inner, guard)

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        ok = self.guard.run(len(batch), lambda: _log_ok(self.inner.export(batch)), self._source)
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _log_ok(result: Any) -> bool:
    return getattr(result, "name", None) == "SUCCESS"


class _BoundedSpanProcessor(BatchSpanProcessor):
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


class _BoundedLogProcessor(BatchLogRecordProcessor):
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


# -- the embedded OTLP-JSON lines file -----------------------------------------------------

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

        if _count_points(metrics_data):
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


# -- the setup -----------------------------------------------------------------------------


@dataclass
class Setup:
    """The providers one node uses, and what it must flush and shut down itself."""

    mode: str
    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None
    #: Providers this setup created (flushed and shut down on close); never user-given ones.
    owned: list[Any] = field(default_factory=list)
    #: One guard per exported signal (traces, metrics, logs), each with its own health.
    guards: dict[str, ExportGuard] = field(default_factory=dict)
    #: What handles a signal that has no guard: "none", "prometheus" or "application".
    exporters: dict[str, str] = field(default_factory=dict)
    #: Which of this setup's providers became the global OpenTelemetry providers.
    installed_globals: list[str] = field(default_factory=list)
    file: JsonLinesFile | None = None
    description: str = ""
    prometheus_server: Any = None
    prometheus_port: int | None = None
    #: The ``prometheus_client`` registry behind the node's ``/metrics`` endpoint.
    prometheus_registry: Any = None
    closed: bool = False
    _quiet: bool = False

    @property
    def file_path(self) -> Path | None:
        return self.file.path if self.file is not None else None

    def signals(self) -> dict[str, dict[str, Any]]:
        """Each signal's exporter and health (see `ExportGuard.snapshot`)."""
        out: dict[str, dict[str, Any]] = {}
        for signal in SIGNALS:
            guard = self.guards.get(signal)
            if guard is not None:
                out[signal] = guard.snapshot()
                continue
            exporter = self.exporters.get(signal, "none")
            endpoint = None
            if exporter == "prometheus" and self.prometheus_port is not None:
                endpoint = f"http://localhost:{self.prometheus_port}/metrics"
            out[signal] = {
                "exporter": exporter,
                "endpoint": endpoint,
                "state": "off" if exporter == "none" else "ok",
                "exported": 0,
                "dropped": 0,
                "overload_dropped": 0,
                "last_error": None,
                "outages": 0,
            }
        return out

    def close_sync(self, timeout: float) -> bool:
        """Flush and shut down the owned providers; True when done within ``timeout`` s."""
        if self.closed:
            return True
        self.closed = True
        ms = max(1, int(timeout * 1000))
        deadline = time.monotonic() + timeout
        guards = list(self.guards.values())
        for guard in guards:
            # A signal already failing gets no new attempt, and an export waiting between
            # its retries ends now: what it holds is lost either way.
            guard.closing = True
            if guard.state != "ok":
                guard.interrupt()
        # Half the time bound for flushing what a healthy collector takes; past that the
        # collector is not taking it, and the exporters are stopped so shutdown is quick.
        flush_by = time.monotonic() + timeout / 2
        for provider in self.owned:
            if _ours(provider):
                provider._suptrace_closed = True  # the global stays, but is no one's to use
            left = max(0.0, flush_by - time.monotonic())
            # Flushing and shutting down are best effort: the data is not worth a crash.
            # The SDK's flush waits for an export in progress whatever its timeout (an
            # exporter retrying a dead collector holds it up to its own timeout), so it
            # runs on a thread of its own and the exporters are stopped when it overstays.
            if not _within(left, functools.partial(provider.force_flush, int(left * 1000) or 1)):
                for guard in guards:
                    guard.interrupt()
            with contextlib.suppress(Exception):
                try:
                    provider.shutdown(timeout_millis=ms)
                except TypeError:
                    provider.shutdown()
        server = self.prometheus_server
        if server is not None:
            with contextlib.suppress(Exception):
                server.shutdown()
                server.server_close()
        if self.file is not None:
            self.file.close()
        if self._quiet:
            _quiet_exporters(False)
            self._quiet = False
        return time.monotonic() <= deadline

    async def aclose(self, timeout: float = 5.0) -> bool:
        """`close_sync` in a daemon thread, waited for at most ``timeout`` seconds, so a
        dead collector never holds the node (or ``asyncio.run``) up."""
        if self.closed or not (self.owned or self.prometheus_server or self.file):
            self.closed = True
            return True
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()

        def work() -> None:
            ok = False
            try:
                ok = self.close_sync(timeout)
            finally:
                # RuntimeError: the loop is gone, nobody waits any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, done, ok)

        threading.Thread(target=work, name="suptrace-telemetry-close", daemon=True).start()
        try:
            return await asyncio.wait_for(asyncio.shield(done), timeout + 0.5)
        except TimeoutError:
            from loguru import logger

            logger.warning(
                "suptrace telemetry: flushing to {} did not finish within {}s; the rest is dropped",
                self.description,
                timeout,
            )
            return False


def _within(seconds: float, work: Callable[[], Any]) -> bool:
    """Run ``work`` on a daemon thread; True when it ended within ``seconds``."""

    def run() -> None:
        with contextlib.suppress(Exception):
            work()

    thread = threading.Thread(target=run, name="suptrace-telemetry-flush", daemon=True)
    thread.start()
    thread.join(max(seconds, 0.001))
    return not thread.is_alive()


def _settle(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


def _resource(node_name: str) -> Resource:
    attrs: dict[str, Any] = {"service.instance.id": node_name, "suptrace.node": node_name}
    # Which run exported it: `suptrace view` keeps the runs a file accumulates apart.
    attrs.update({"process.pid": os.getpid(), "suptrace.run.started": time.time()})
    explicit = _env("OTEL_SERVICE_NAME") or "service.name=" in _env("OTEL_RESOURCE_ATTRIBUTES")
    if not explicit:
        script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        attrs["service.name"] = script.removesuffix(".py") or "suptrace"
    return Resource.create(attrs)


def _ours(provider: Any) -> bool:
    """True for a provider suptrace built and installed as a global one."""
    return bool(getattr(provider, "_suptrace_global", False))


def _global_set() -> bool:
    """True when the application installed global providers (not the API's proxies,
    nor the ones suptrace installed itself)."""
    from opentelemetry import metrics, trace

    tp = trace.get_tracer_provider()
    if not isinstance(tp, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)) and not _ours(tp):
        return True
    mp = metrics.get_meter_provider()
    return type(mp).__name__ not in ("_ProxyMeterProvider", "NoOpMeterProvider") and not _ours(mp)


def _live(provider: Any, no_op: Callable[[], Any]) -> Any:
    """A global provider, or a no-op in place of one a stopped node left installed."""
    if _ours(provider) and getattr(provider, "_suptrace_closed", False):
        return no_op()
    return provider


def _globals_wanted() -> bool:
    """``SUPTRACE_OTEL_GLOBAL`` (default true): may suptrace's providers become global?"""
    word = _env("SUPTRACE_OTEL_GLOBAL").lower()
    if not word or word in _TRUE:
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(
        f"SUPTRACE_OTEL_GLOBAL={word!r} is neither true nor false: set it to false to keep "
        "suptrace's OpenTelemetry providers private to the node, or unset it"
    )


def install_globals(setup: Setup) -> list[str]:
    """Make the providers suptrace built the global OpenTelemetry providers, each one
    only where the application has not installed its own; returns which it installed.

    The OpenTelemetry API sets each global provider once per process and cannot
    unset it: after the node stops, its providers stay installed but shut down
    (a span or log record made through them later is dropped as it ends, a meter
    asked for is a no-op, an instrument made before records into storage nobody
    reads), so late use is harmless. A later node in the same process builds its
    own providers, which cannot become global any more, and never falls back on
    the stopped ones. The propagator is never touched: it stays the one ``OTEL_PROPAGATORS``
    chooses (W3C ``tracecontext`` and ``baggage`` by default).
    """
    from opentelemetry import _logs, metrics, trace

    done: list[str] = []
    tp, mp, lp = setup.tracer_provider, setup.meter_provider, setup.logger_provider
    if tp is not None and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        tp._suptrace_global = True
        trace.set_tracer_provider(tp)
        done.append("tracer_provider")
    if mp is not None and type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider":
        mp._suptrace_global = True
        metrics.set_meter_provider(mp)
        done.append("meter_provider")
    if lp is not None and type(_logs.get_logger_provider()).__name__ == "ProxyLoggerProvider":
        lp._suptrace_global = True
        _logs.set_logger_provider(lp)
        done.append("logger_provider")
    setup.installed_globals = done
    return done


def global_logger_provider() -> Any:
    """The global logger provider, or None when none was installed."""
    from opentelemetry._logs import get_logger_provider

    lp = get_logger_provider()
    if type(lp).__name__ in ("ProxyLoggerProvider", "NoOpLoggerProvider"):
        return None
    return lp


def _resolve_mode(telemetry: Any, explicit: bool, defaults: dict[str, Any] | None) -> str:
    if telemetry is False:
        return "off"
    if telemetry is True:
        telemetry = "auto"
    if isinstance(telemetry, os.PathLike):
        return "file"
    if telemetry is None:
        telemetry = "auto"
    if not isinstance(telemetry, str):
        raise ValueError(
            f"telemetry must be None, 'auto', 'off', 'file', 'otlp', 'global', False or a file "
            f"path, got {telemetry!r}"
        )
    word = telemetry.strip().lower()
    if word not in MODES:
        if word.endswith(".jsonl") or os.sep in telemetry or "/" in telemetry:
            return "file"
        raise ValueError(
            f"telemetry must be None, 'auto', 'off', 'file', 'otlp', 'global', False or a file "
            f"path ending in .jsonl, got {telemetry!r}"
        )
    if word != "auto":
        return word
    if explicit:
        return "explicit"
    override = _env("SUPTRACE_TELEMETRY").lower()
    if override in ("off", "false", "0", "none"):
        return "off"
    if override in ("file", "otlp", "global"):
        return override
    if _env("OTEL_SDK_DISABLED").lower() in _TRUE:
        return "off"
    if defaults is not None:
        return "instrumented"
    if _global_set():
        return "global"
    if any(_env(key) for key in _ENDPOINT_VARIABLES):
        return "otlp"
    if console_asked():
        return "console"
    return "file"


def console_asked() -> bool:
    """Does an ``OTEL_<SIGNAL>_EXPORTER`` ask for the console exporter?"""
    return any("console" in _env(f"OTEL_{s.upper()}_EXPORTER").lower() for s in SIGNALS)


#: Any of these in the environment asks for OTLP export.
_ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
)


def configure(
    node_name: str,
    telemetry: Any = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
    *,
    prometheus: Any = None,
    defaults: dict[str, Any] | None = None,
) -> Setup | None:
    """Decide which providers a node uses (see the module docs); None means telemetry off.

    ``defaults`` are the providers `SuptraceInstrumentor.instrument` was given.
    """
    explicit = any(p is not None for p in (tracer_provider, meter_provider, logger_provider))
    mode = _resolve_mode(telemetry, explicit, defaults)
    if mode == "off":
        return None
    if mode in ("explicit", "global", "instrumented"):
        from opentelemetry import metrics, trace

        given = defaults or {}
        setup = Setup(
            mode=mode,
            tracer_provider=tracer_provider
            or given.get("tracer_provider")
            or _live(trace.get_tracer_provider(), trace.NoOpTracerProvider),
            meter_provider=meter_provider
            or given.get("meter_provider")
            or _live(metrics.get_meter_provider(), metrics.NoOpMeterProvider),
            logger_provider=logger_provider
            or given.get("logger_provider")
            or _live(global_logger_provider(), lambda: None),
            description=f"{mode} providers",
            exporters=dict.fromkeys(SIGNALS, "application"),
        )
        if prometheus:
            from loguru import logger

            logger.warning(
                "suptrace telemetry: prometheus= is ignored with {} providers; add a "
                "PrometheusMetricReader to your MeterProvider instead",
                mode,
            )
        return setup
    # Bad settings fail here, at node start, before anything is built.
    # Asked for by a console exporter alone (no endpoint): the signals not set stay off
    # rather than going to a default endpoint nobody configured.
    default = "none" if mode == "console" else "otlp"
    wanted = {signal: _exporter_wanted(signal, default) for signal in SIGNALS}
    make_global = _globals_wanted()
    resource = _resource(node_name)
    if mode == "file":
        path = (
            Path(telemetry)
            if isinstance(telemetry, (str, os.PathLike)) and str(telemetry).lower() not in MODES
            else default_file(node_name)
        )
        built = _file_setup(path, resource, prometheus, wanted)
    else:
        built = _otlp_setup(resource, prometheus, wanted)
        built.mode = mode
    if make_global:
        install_globals(built)
    return built


def _batch_kwargs() -> dict[str, Any]:
    # The SDK reads OTEL_BSP_* itself; only the queue bound gets a default of our own.
    if _env("OTEL_BSP_MAX_QUEUE_SIZE"):
        return {}
    return {"max_queue_size": 8192}


def _span_processor(exporter: SpanExporter, guard: ExportGuard) -> SpanProcessor:
    """The batch processor (bounded queue, background export) in front of ``exporter``."""
    return _BoundedSpanProcessor(_GuardedSpanExporter(exporter, guard), guard, **_batch_kwargs())


def _tracer_provider(resource: Resource, processors: Sequence[SpanProcessor]) -> TracerProvider:
    """The one place suptrace builds its `TracerProvider` (the sampler comes from
    ``OTEL_TRACES_SAMPLER``): ``processors`` in order, usually one `_span_processor`."""
    tp = TracerProvider(resource=resource, shutdown_on_exit=False)
    for processor in processors:
        tp.add_span_processor(processor)
    return tp


def _logger_provider(
    resource: Resource, exporter: LogRecordExporter, guard: ExportGuard
) -> LoggerProvider:
    lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
    lp.add_log_record_processor(_BoundedLogProcessor(_GuardedLogExporter(exporter, guard), guard))
    return lp


class _Meters(MeterProvider):
    """The SDK `MeterProvider`, quiet once shut down: a stopped node's provider may stay
    installed as the global one, and a meter asked of it later is a silent no-op."""

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> Any:
        if getattr(self, "_shutdown", False):
            from opentelemetry.metrics import NoOpMeter

            return NoOpMeter(name, version=version, schema_url=schema_url)
        return super().get_meter(name, version, schema_url, attributes)


def _metric_reader(exporter: MetricExporter, guard: ExportGuard) -> MetricReader:
    return PeriodicExportingMetricReader(_GuardedMetricExporter(exporter, guard))


def _prometheus_reader(prometheus: Any, setup: Setup) -> MetricReader | None:
    """A Prometheus pull endpoint on its own registry, served by a daemon thread."""
    if prometheus is None or prometheus is False:
        return None
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError as exc:
        raise RuntimeError(
            "prometheus= needs the Prometheus exporter: pip install 'suptrace[prometheus]'"
        ) from exc
    host = _env("OTEL_EXPORTER_PROMETHEUS_HOST") or "localhost"
    port = int(_env("OTEL_EXPORTER_PROMETHEUS_PORT") or 9464)
    if isinstance(prometheus, bool):
        pass
    elif isinstance(prometheus, int):
        port = prometheus
    elif isinstance(prometheus, str):
        h, _, p = prometheus.rpartition(":")
        host, port = (h or host), int(p)
    elif isinstance(prometheus, tuple) and len(prometheus) == 2:
        host, port = str(prometheus[0]), int(prometheus[1])
    else:
        raise ValueError(
            f"prometheus must be True, a port, 'host:port' or (host, port), got {prometheus!r}"
        )
    registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(registry=registry)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    setup.prometheus_server = server
    setup.prometheus_port = int(server.server_port)
    setup.prometheus_registry = registry
    return reader


def _file_setup(
    path: Path, resource: Resource, prometheus: Any, wanted: dict[str, list[str]]
) -> Setup:
    out = JsonLinesFile(path)
    setup = Setup(mode="file", file=out, description=f"file {path}")

    def guard(signal: str) -> ExportGuard:
        made = ExportGuard(signal, f"file {path}", exporter="file", endpoint=str(path))
        setup.guards[signal] = made
        return made

    owned: list[Any] = []
    if wanted["traces"]:
        tp = _tracer_provider(resource, [_span_processor(FileSpanExporter(out), guard("traces"))])
        setup.tracer_provider = tp
        owned.append(tp)
    if wanted["logs"]:
        lp = _logger_provider(resource, FileLogExporter(out), guard("logs"))
        setup.logger_provider = lp
        owned.append(lp)
    readers: list[MetricReader] = []
    if wanted["metrics"]:  # the file keeps the metrics too when Prometheus serves them
        readers.append(_metric_reader(FileMetricExporter(out), guard("metrics")))
    if "prometheus" in wanted["metrics"] and prometheus is None:
        prometheus = True
    prom = _prometheus_reader(prometheus, setup)
    if prom is not None:
        readers.append(prom)
    if readers:
        mp = _Meters(resource=resource, metric_readers=readers, shutdown_on_exit=False)
        setup.meter_provider = mp
        owned.append(mp)
    setup.owned = owned
    return setup


def _protocol(signal: str) -> str:
    proto = (
        _env(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or _env("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).lower()
    if proto == "grpc":
        return "grpc"
    if proto != "http/protobuf":
        from loguru import logger

        logger.warning(
            "suptrace telemetry: OTLP protocol {!r} is not supported by the Python exporters; "
            "using http/protobuf",
            proto,
        )
    return "http/protobuf"


_EXPORTERS = {
    "traces": ("otlp", "console", "none"),
    "metrics": ("otlp", "console", "none", "prometheus"),
    "logs": ("otlp", "console", "none"),
}


def _exporter_wanted(signal: str, default: str = "otlp") -> list[str]:
    """``OTEL_<SIGNAL>_EXPORTER`` as a list of exporter names ([] for ``none``)."""
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    raw = _env(variable).lower()
    words = [w.strip() for w in raw.split(",") if w.strip()] or [default]
    known = _EXPORTERS[signal]
    for word in words:
        if word not in known:
            raise ValueError(
                f"{variable}={raw!r}: suptrace does not know the exporter {word!r}; use "
                f"{', '.join(known[:-1])} or {known[-1]} (or unset {variable} for otlp)"
            )
    if "none" in words:
        return []
    exporters = [w for w in words if w != "prometheus"]
    if len(exporters) > 1:
        raise ValueError(
            f"{variable}={raw!r}: suptrace exports each signal through one exporter; "
            f"choose one of {', '.join(exporters)}"
        )
    return words


_OTLP_CLASSES = {
    ("traces", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
    ("metrics", "grpc"): (
        "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
        "OTLPMetricExporter",
    ),
    ("logs", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc._log_exporter", "OTLPLogExporter"),
    ("traces", "http/protobuf"): (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "OTLPSpanExporter",
    ),
    ("metrics", "http/protobuf"): (
        "opentelemetry.exporter.otlp.proto.http.metric_exporter",
        "OTLPMetricExporter",
    ),
    ("logs", "http/protobuf"): (
        "opentelemetry.exporter.otlp.proto.http._log_exporter",
        "OTLPLogExporter",
    ),
}


def _signal_exporter(signal: str, word: str) -> tuple[Any, ExportGuard]:
    """The exporter ``word`` (otlp or console) for ``signal``, and its own guard.

    The OTLP exporters read their endpoint, headers, timeout, compression and
    certificates from the standard variables themselves (the per-signal ones
    first, ``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT``, then the shared ones).
    """
    if word == "console":
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        console: Any = {
            "traces": ConsoleSpanExporter,
            "metrics": ConsoleMetricExporter,
            "logs": ConsoleLogRecordExporter,
        }[signal]()
        return console, ExportGuard(signal, "the console", exporter="console", endpoint="stdout")
    import importlib

    protocol = _protocol(signal)
    module, name = _OTLP_CLASSES[(signal, protocol)]
    cls = getattr(importlib.import_module(module), name)
    exporter = _observed(cls)()
    endpoint = str(getattr(exporter, "_endpoint", "") or "") or None
    label = "otlp/grpc" if protocol == "grpc" else "otlp/http"
    guard = ExportGuard(
        signal, f"OTLP {protocol} {endpoint or '(default endpoint)'}", exporter=label,
        endpoint=endpoint,
    )
    return exporter, guard


def _otlp_setup(resource: Resource, prometheus: Any, wanted: dict[str, list[str]]) -> Setup:
    setup = Setup(mode="otlp")
    _quiet_exporters(True)
    setup._quiet = True
    owned: list[Any] = []
    readers: list[MetricReader] = []
    try:
        for signal in SIGNALS:
            words = [w for w in wanted[signal] if w != "prometheus"]
            if not words:
                continue
            exporter, guard = _signal_exporter(signal, words[0])
            setup.guards[signal] = guard
            if signal == "traces":
                tp = _tracer_provider(resource, [_span_processor(exporter, guard)])
                setup.tracer_provider = tp
                owned.append(tp)
            elif signal == "logs":
                lp = _logger_provider(resource, exporter, guard)
                setup.logger_provider = lp
                owned.append(lp)
            else:
                readers.append(_metric_reader(exporter, guard))
        if "prometheus" in wanted["metrics"]:
            if "metrics" not in setup.guards:
                setup.exporters["metrics"] = "prometheus"
            if prometheus is None:
                prometheus = True
        prom = _prometheus_reader(prometheus, setup)
        if prom is not None:
            readers.append(prom)
        if readers:
            mp = _Meters(resource=resource, metric_readers=readers, shutdown_on_exit=False)
            setup.meter_provider = mp
            owned.append(mp)
    except BaseException:
        setup.owned = owned
        setup.close_sync(0.5)  # what was built so far (its export threads) goes
        raise
    setup.owned = owned
    shown = setup.guards.get("traces") or next(iter(setup.guards.values()), None)
    setup.description = shown.target if shown is not None else "OTLP (every signal off)"
    return setup
