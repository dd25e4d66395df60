"""Building one signal's exporter and the SDK providers around it.

The OTLP exporters (gRPC or http/protobuf per signal, as
``OTEL_EXPORTER_OTLP_[<SIGNAL>_]PROTOCOL`` says) or the console ones, each
behind its own `ExportGuard`, bounded batch processors in front of them, the
providers' resource, the Prometheus reader, and the two setups a node can
build itself: `file_setup` (the embedded OTLP-JSON file) and `otlp_setup`.
`suptrace.observers.otel.setup.configure` decides which.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from suptrace.observers.otel.config import SIGNALS, env, protocol
from suptrace.observers.otel.exporters import (
    BoundedLogProcessor,
    BoundedSpanProcessor,
    GuardedLogExporter,
    GuardedMetricExporter,
    GuardedSpanExporter,
    observed,
    quiet_exporters,
)
from suptrace.observers.otel.guard import ExportGuard
from suptrace.observers.otel.jsonl import (
    FileLogExporter,
    FileMetricExporter,
    FileSpanExporter,
    JsonLinesFile,
)
from suptrace.observers.otel.setup import Setup

__all__ = ["file_setup", "otlp_setup", "resource"]


def resource(node_name: str) -> Resource:
    attrs: dict[str, Any] = {"service.instance.id": node_name, "suptrace.node": node_name}
    # Which run exported it: `suptrace view` keeps the runs a file accumulates apart.
    attrs.update({"process.pid": os.getpid(), "suptrace.run.started": time.time()})
    explicit = env("OTEL_SERVICE_NAME") or "service.name=" in env("OTEL_RESOURCE_ATTRIBUTES")
    if not explicit:
        script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        attrs["service.name"] = script.removesuffix(".py") or "suptrace"
    return Resource.create(attrs)


def _batch_kwargs() -> dict[str, Any]:
    # The SDK reads OTEL_BSP_* itself; only the queue bound gets a default of our own.
    if env("OTEL_BSP_MAX_QUEUE_SIZE"):
        return {}
    return {"max_queue_size": 8192}


def _span_processor(exporter: SpanExporter, guard: ExportGuard) -> SpanProcessor:
    """The batch processor (bounded queue, background export) in front of ``exporter``."""
    return BoundedSpanProcessor(GuardedSpanExporter(exporter, guard), guard, **_batch_kwargs())


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
    lp.add_log_record_processor(BoundedLogProcessor(GuardedLogExporter(exporter, guard), guard))
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
    return PeriodicExportingMetricReader(GuardedMetricExporter(exporter, guard))


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
    host = env("OTEL_EXPORTER_PROMETHEUS_HOST") or "localhost"
    port = int(env("OTEL_EXPORTER_PROMETHEUS_PORT") or 9464)
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


def _meter_provider(
    setup: Setup,
    resource: Resource,
    readers: list[MetricReader],
    prometheus: Any,
    wanted: dict[str, list[str]],
    owned: list[Any],
) -> None:
    """The node's meter provider over ``readers`` plus the Prometheus endpoint when
    asked for (``prometheus=``, or ``prometheus`` in ``OTEL_METRICS_EXPORTER``); none
    when nothing reads the metrics."""
    if "prometheus" in wanted["metrics"] and prometheus is None:
        prometheus = True
    prom = _prometheus_reader(prometheus, setup)
    if prom is not None:
        readers.append(prom)
    if readers:
        mp = _Meters(resource=resource, metric_readers=readers, shutdown_on_exit=False)
        setup.meter_provider = mp
        owned.append(mp)


def file_setup(
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
    _meter_provider(setup, resource, readers, prometheus, wanted, owned)
    setup.owned = owned
    return setup


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

    proto = protocol(signal)
    module, name = _OTLP_CLASSES[(signal, proto)]
    cls = getattr(importlib.import_module(module), name)
    translate = None
    if signal == "traces" and proto == "grpc":
        from suptrace.observers.otel.wire import encode_spans

        translate = encode_spans  # the SDK's encoder costs several times more a span
    exporter = observed(cls, translate)()
    endpoint = str(getattr(exporter, "_endpoint", "") or "") or None
    label = "otlp/grpc" if proto == "grpc" else "otlp/http"
    guard = ExportGuard(
        signal, f"OTLP {proto} {endpoint or '(default endpoint)'}", exporter=label,
        endpoint=endpoint,
    )
    return exporter, guard


def otlp_setup(resource: Resource, prometheus: Any, wanted: dict[str, list[str]]) -> Setup:
    setup = Setup(mode="otlp")
    quiet_exporters(True)
    setup.quiet = True
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
        if "prometheus" in wanted["metrics"] and "metrics" not in setup.guards:
            setup.exporters["metrics"] = "prometheus"
        _meter_provider(setup, resource, readers, prometheus, wanted, owned)
    except BaseException:
        setup.owned = owned
        setup.close_sync(0.5)  # what was built so far (its export threads) goes
        raise
    setup.owned = owned
    shown = setup.guards.get("traces") or next(iter(setup.guards.values()), None)
    setup.description = shown.target if shown is not None else "OTLP (every signal off)"
    return setup
