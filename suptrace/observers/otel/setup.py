"""Telemetry configuration and export: which providers a node uses and where their data goes.

`configure` turns a node's ``telemetry=`` option (and the standard ``OTEL_*``
environment variables) into a `Setup`; the choice (and the trace mode that
follows from it) is taken once by `suptrace.observers.otel.config.decide` and
kept as `Setup.decision`:

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
import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suptrace.observers.otel.config import (
    MODES,
    SIGNALS,
    Decision,
    decide,
    default_file,
    exporter_wanted,
    globals_wanted,
)
from suptrace.observers.otel.exporters import (
    quiet_exporters,
)
from suptrace.observers.otel.globals import global_logger_provider, install_globals, live, ours
from suptrace.observers.otel.guard import ExportGuard
from suptrace.observers.otel.jsonl import (
    JsonLinesFile,
)

__all__ = ["Setup", "configure"]


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
    #: What the node's telemetry does (export mode, trace mode, sample), decided once.
    decision: Decision = field(default_factory=lambda: Decision("off"))
    #: Whether this setup turned the OTLP exporters' own error logs off (the
    #: guard reports export failures instead); `close_sync` turns them back on.
    quiet: bool = False

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
            if ours(provider):
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
        if self.quiet:
            quiet_exporters(False)
            self.quiet = False
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


def configure(
    node_name: str,
    telemetry: Any = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
    *,
    prometheus: Any = None,
    defaults: dict[str, Any] | None = None,
    traces: Any = None,
) -> Setup | None:
    """Build what the node's `Decision` asks for (see the module docs); None means telemetry
    off. The decision (export mode, trace mode, sample) is taken here, once, by `decide`
    from the options and the environment, and kept as `Setup.decision`.

    ``defaults`` are the providers `SuptraceInstrumentor.instrument` was given;
    ``traces`` is the node's ``traces=`` option.
    """
    explicit = any(p is not None for p in (tracer_provider, meter_provider, logger_provider))
    decision = decide(telemetry, traces, explicit=explicit, defaults=defaults)
    built = _build(node_name, decision, telemetry, tracer_provider, meter_provider,
                   logger_provider, prometheus, defaults)
    if built is not None:
        built.decision = decision
    return built


def _build(
    node_name: str,
    decision: Decision,
    telemetry: Any,
    tracer_provider: Any,
    meter_provider: Any,
    logger_provider: Any,
    prometheus: Any,
    defaults: dict[str, Any] | None,
) -> Setup | None:
    mode = decision.export
    if mode == "off":
        return None
    if mode in ("explicit", "global", "instrumented"):
        from opentelemetry import metrics, trace

        given = defaults or {}
        setup = Setup(
            mode=mode,
            tracer_provider=tracer_provider
            or given.get("tracer_provider")
            or live(trace.get_tracer_provider(), trace.NoOpTracerProvider),
            meter_provider=meter_provider
            or given.get("meter_provider")
            or live(metrics.get_meter_provider(), metrics.NoOpMeterProvider),
            logger_provider=logger_provider
            or given.get("logger_provider")
            or live(global_logger_provider(), lambda: None),
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
    wanted = {signal: exporter_wanted(signal, default) for signal in SIGNALS}
    make_global = globals_wanted()
    # Imported here: the builders make `Setup`s of this module.
    from suptrace.observers.otel.providers import file_setup, otlp_setup, resource

    res = resource(node_name)
    if mode == "file":
        path = (
            Path(telemetry)
            if isinstance(telemetry, (str, os.PathLike)) and str(telemetry).lower() not in MODES
            else default_file(node_name)
        )
        built = file_setup(path, res, prometheus, wanted)
    else:
        built = otlp_setup(res, prometheus, wanted)
        built.mode = mode
    if make_global:
        install_globals(built)
    return built


