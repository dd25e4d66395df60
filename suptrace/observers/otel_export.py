"""Telemetry configuration and export: which providers a node uses and where their data goes.

`configure` turns a node's ``telemetry=`` option (and the standard ``OTEL_*``
environment variables) into a `Setup`:

========================  =====================================================
``telemetry=``            what happens
========================  =====================================================
``None`` / ``"auto"``     explicit providers if given; else the providers set by
                          `SuptraceInstrumentor` or installed as the global
                          ones; else the SDK with the standard OTLP exporters
                          when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces
                          endpoint) is set; else the embedded file when
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
timeouts the exporters read themselves, ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER[_ARG]``, ``OTEL_BSP_*``,
``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER=none`` and
``OTEL_METRICS_EXPORTER=prometheus`` (with ``OTEL_EXPORTER_PROMETHEUS_HOST/PORT``).

Exporting never blocks or crashes the application: spans and log records go
through bounded batch queues drained by background threads, and every exporter
suptrace creates is wrapped in an `ExportGuard`: when the collector is
unreachable, slow or refusing, what cannot be delivered is dropped and counted,
the outage is logged once through loguru, exports are retried with backoff and
the recovery is logged when the collector comes back. Shutting a node down
flushes the providers it created (never the ones it was given) with a time bound.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
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
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
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
    "MODES",
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


class ExportGuard:
    """Shared by the exporters of one setup: counts drops, logs outages once, backs off.

    While the destination is known to be down, exports are skipped (dropped and
    counted) without touching the network until the backoff expires; then the
    next export is a probe, and its success ends the outage.
    """

    def __init__(self, target: str, backoff: float = 1.0, max_backoff: float = 30.0) -> None:
        self.target = target
        self.dropped: dict[str, int] = {"traces": 0, "metrics": 0, "logs": 0}
        self.exported: dict[str, int] = {"traces": 0, "metrics": 0, "logs": 0}
        self.failures = 0
        self.outages = 0
        self.down = False
        self.last_error: str | None = None
        self._initial_backoff = backoff
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._outage_drops = 0

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def allow(self) -> bool:
        """False while an outage's backoff runs (the caller drops instead of exporting)."""
        return not self.down or time.monotonic() >= self._retry_at

    def skip(self, signal: str, count: int, why: str = "the destination is unreachable") -> None:
        """Count ``count`` items dropped without trying to export them."""
        if count <= 0:
            return
        with self._lock:
            self.dropped[signal] = self.dropped.get(signal, 0) + count
            self._outage_drops += count
            first = not self.down
            if first:
                self._open(why)
        if first:
            self._log_down(signal, why)

    def success(self, signal: str, count: int) -> None:
        recovered = 0
        with self._lock:
            self.exported[signal] = self.exported.get(signal, 0) + count
            if self.down:
                self.down = False
                self._backoff = self._initial_backoff
                recovered = self._outage_drops
                self._outage_drops = 0
            else:
                return
        from loguru import logger

        logger.info(
            "suptrace telemetry: export to {} works again ({} items were dropped during the outage)",
            self.target,
            recovered,
        )

    def failure(self, signal: str, count: int, why: str) -> None:
        with self._lock:
            self.failures += 1
            self.dropped[signal] = self.dropped.get(signal, 0) + count
            self._outage_drops += count
            self.last_error = why
            first = not self.down
            if first:
                self._open(why)
            else:
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, self._max_backoff)
        if first:
            self._log_down(signal, why)

    def _open(self, why: str) -> None:
        self.down = True
        self.outages += 1
        self.last_error = why
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self._max_backoff)

    def _log_down(self, signal: str, why: str) -> None:
        from loguru import logger

        logger.warning(
            "suptrace telemetry: cannot export {} to {} ({}); dropping telemetry until it is "
            "reachable again, retrying with backoff. The application is not affected; drops are "
            "counted and this is logged once per outage.",
            signal,
            self.target,
            why,
        )

    def run(self, signal: str, count: int, export: Callable[[], bool]) -> bool:
        """Export through ``export()`` (True on success) unless an outage is backing off."""
        if not self.allow():
            self.skip(signal, count)
            return False
        try:
            ok = export()
            why = "the exporter reported a failure"
        except Exception as exc:  # an exporter must never take the application down
            ok = False
            why = f"{type(exc).__name__}: {exc}"
        if ok:
            self.success(signal, count)
        else:
            self.failure(signal, count, why)
        return ok


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
            or "Exception while exporting" in msg
        )


_QUIET = _QuietExporterLogs()
_QUIET_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.proto.http",
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


class _GuardedSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, guard: ExportGuard) -> None:
        self.inner = inner
        self.guard = guard

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self.guard.run(
            "traces", len(spans), lambda: self.inner.export(spans) == SpanExportResult.SUCCESS
        )
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
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

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        points = _count_points(metrics_data)
        ok = self.guard.run(
            "metrics",
            points,
            lambda: (
                self.inner.export(metrics_data, timeout_millis=timeout_millis)
                == MetricExportResult.SUCCESS
            ),
        )
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
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

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        ok = self.guard.run("logs", len(batch), lambda: _log_ok(self.inner.export(batch)))
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self.inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _log_ok(result: Any) -> bool:
    return getattr(result, "name", None) == "SUCCESS"


class _BoundedSpanProcessor(BatchSpanProcessor):
    """A `BatchSpanProcessor` whose bounded queue counts what it drops (and skips
    queueing while an outage backs off)."""

    def __init__(self, exporter: SpanExporter, guard: ExportGuard, **kwargs: Any) -> None:
        super().__init__(exporter, **kwargs)
        self._guard = guard
        batch = getattr(self, "_batch_processor", None)
        self._queue: Any = getattr(batch, "_queue", None)
        self._limit: int = getattr(batch, "_max_queue_size", 0) or 0

    def on_end(self, span: ReadableSpan) -> None:
        guard = self._guard
        if guard.down and not guard.allow():
            guard.skip("traces", 1)
            return
        queue = self._queue
        if queue is not None and self._limit and len(queue) >= self._limit:
            guard.skip("traces", 1, "the export queue is full (the collector is too slow)")
            return
        super().on_end(span)


class _BoundedLogProcessor(BatchLogRecordProcessor):
    def __init__(self, exporter: LogRecordExporter, guard: ExportGuard, **kwargs: Any) -> None:
        super().__init__(exporter, **kwargs)
        self._guard = guard
        batch = getattr(self, "_batch_processor", None)
        self._queue: Any = getattr(batch, "_queue", None)
        self._limit: int = getattr(batch, "_max_queue_size", 0) or 0

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        guard = self._guard
        if guard.down and not guard.allow():
            guard.skip("logs", 1)
            return
        queue = self._queue
        if queue is not None and self._limit and len(queue) >= self._limit:
            guard.skip("logs", 1, "the export queue is full (the collector is too slow)")
            return
        super().on_emit(log_record)


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
    guard: ExportGuard | None = None
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

    def close_sync(self, timeout: float) -> bool:
        """Flush and shut down the owned providers; True when done within ``timeout`` s."""
        if self.closed:
            return True
        self.closed = True
        ms = max(1, int(timeout * 1000))
        deadline = time.monotonic() + timeout
        for provider in self.owned:
            left = max(0.0, deadline - time.monotonic())
            # Flushing and shutting down are best effort: the data is not worth a crash.
            with contextlib.suppress(Exception):
                provider.force_flush(int(left * 1000) or 1)
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


def _global_set() -> bool:
    """True when the application installed global providers (not the API's proxies)."""
    from opentelemetry import metrics, trace

    tp = trace.get_tracer_provider()
    if not isinstance(tp, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return True
    mp = metrics.get_meter_provider()
    return type(mp).__name__ not in ("_ProxyMeterProvider", "NoOpMeterProvider")


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
    if _env("OTEL_EXPORTER_OTLP_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return "file"


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
            or trace.get_tracer_provider(),
            meter_provider=meter_provider
            or given.get("meter_provider")
            or metrics.get_meter_provider(),
            logger_provider=logger_provider
            or given.get("logger_provider")
            or global_logger_provider(),
            description=f"{mode} providers",
        )
        if prometheus:
            from loguru import logger

            logger.warning(
                "suptrace telemetry: prometheus= is ignored with {} providers; add a "
                "PrometheusMetricReader to your MeterProvider instead",
                mode,
            )
        return setup
    resource = _resource(node_name)
    if mode == "file":
        path = (
            Path(telemetry)
            if isinstance(telemetry, (str, os.PathLike)) and str(telemetry).lower() not in MODES
            else default_file(node_name)
        )
        return _file_setup(path, resource, prometheus)
    return _otlp_setup(resource, prometheus)


def _batch_kwargs() -> dict[str, Any]:
    # The SDK reads OTEL_BSP_* itself; only the queue bound gets a default of our own.
    if _env("OTEL_BSP_MAX_QUEUE_SIZE"):
        return {}
    return {"max_queue_size": 8192}


def _tracer_provider(
    resource: Resource, exporter: SpanExporter, guard: ExportGuard
) -> TracerProvider:
    tp = TracerProvider(resource=resource, shutdown_on_exit=False)
    tp.add_span_processor(_BoundedSpanProcessor(exporter, guard, **_batch_kwargs()))
    return tp


def _logger_provider(
    resource: Resource, exporter: LogRecordExporter, guard: ExportGuard
) -> LoggerProvider:
    lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
    lp.add_log_record_processor(_BoundedLogProcessor(exporter, guard))
    return lp


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


def _file_setup(path: Path, resource: Resource, prometheus: Any) -> Setup:
    out = JsonLinesFile(path)
    guard = ExportGuard(f"file {path}")
    setup = Setup(mode="file", file=out, guard=guard, description=f"file {path}")
    tp = _tracer_provider(resource, _GuardedSpanExporter(FileSpanExporter(out), guard), guard)
    readers: list[MetricReader] = [
        PeriodicExportingMetricReader(_GuardedMetricExporter(FileMetricExporter(out), guard))
    ]
    prom = _prometheus_reader(prometheus, setup)
    if prom is not None:
        readers.append(prom)
    mp = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
    lp = _logger_provider(resource, _GuardedLogExporter(FileLogExporter(out), guard), guard)
    setup.tracer_provider, setup.meter_provider, setup.logger_provider = tp, mp, lp
    setup.owned = [tp, lp, mp]
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


def _exporter_wanted(signal: str) -> str:
    value = _env(f"OTEL_{signal.upper()}_EXPORTER").lower()
    return value or "otlp"


def _otlp_target() -> str:
    endpoint = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    return f"OTLP {_protocol('traces')} {endpoint or '(default endpoint)'}"


def _otlp_setup(resource: Resource, prometheus: Any) -> Setup:
    guard = ExportGuard(_otlp_target())
    setup = Setup(mode="otlp", guard=guard, description=guard.target)
    _quiet_exporters(True)
    setup._quiet = True
    owned: list[Any] = []
    if "none" not in _exporter_wanted("traces"):
        if _protocol("traces") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
        tp = _tracer_provider(resource, _GuardedSpanExporter(OTLPSpanExporter(), guard), guard)
        setup.tracer_provider = tp
        owned.append(tp)
    if "none" not in _exporter_wanted("logs"):
        if _protocol("logs") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import (  # type: ignore[assignment]
                OTLPLogExporter,
            )
        lp = _logger_provider(resource, _GuardedLogExporter(OTLPLogExporter(), guard), guard)
        setup.logger_provider = lp
        owned.append(lp)
    wanted = _exporter_wanted("metrics")
    readers: list[MetricReader] = []
    if "otlp" in wanted:
        if _protocol("metrics") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
                OTLPMetricExporter,
            )
        readers.append(
            PeriodicExportingMetricReader(_GuardedMetricExporter(OTLPMetricExporter(), guard))
        )
    if "prometheus" in wanted and prometheus is None:
        prometheus = True
    prom = _prometheus_reader(prometheus, setup)
    if prom is not None:
        readers.append(prom)
    if readers:
        mp = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
        setup.meter_provider = mp
        owned.append(mp)
    setup.owned = owned
    return setup
