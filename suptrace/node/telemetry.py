"""The node's telemetry service: the OpenTelemetry bridge and the providers it exports through.

The node takes its telemetry options out of its keyword options with
`telemetry_service` (None when telemetry is off: the node then installs and
pays nothing), starts the service first and closes it last. What the options
mean is described in `suptrace.observers.otel`; what is recorded in
`suptrace.observers.otel.bridge` (spans) and `suptrace.observers.otel.metrics`.
This module imports nothing from OpenTelemetry until a node starts with
telemetry on.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from suptrace.observers.otel.config import check_option, check_traces, telemetry_override
from suptrace.observers.otel.instrumentor import instrumented

if TYPE_CHECKING:
    from suptrace.core.runtime import Runtime
    from suptrace.observers.otel.bridge import Bridge
    from suptrace.observers.otel.setup import Setup
    from suptrace.observers.reports import Reports

__all__ = ["Telemetry", "telemetry_service", "TELEMETRY_OPTIONS"]

#: The node options this module consumes.
TELEMETRY_OPTIONS = (
    "telemetry",
    "tracer_provider",
    "meter_provider",
    "logger_provider",
    "prometheus",
    "telemetry_flush_timeout",
    "lifetime_spans",
    "message_repr",
    "traces",
)


def _off(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "off")


class Telemetry:
    """The node service that owns one `Bridge` and the providers it created."""

    def __init__(
        self,
        telemetry: Any = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        logger_provider: Any = None,
        *,
        prometheus: Any = None,
        telemetry_flush_timeout: float = 5.0,
        lifetime_spans: bool = True,
        message_repr: bool = True,
        traces: str | None = None,
    ) -> None:
        check_option(telemetry)  # a bad option fails at Node(...) rather than at start
        check_traces(traces)
        self.traces = traces
        self.telemetry = telemetry
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider
        self.prometheus = prometheus
        self.flush_timeout = float(telemetry_flush_timeout)
        self.lifetime_spans = lifetime_spans
        self.message_repr = message_repr
        self.setup: Setup | None = None
        self.bridge: Bridge | None = None

    def __repr__(self) -> str:
        what = self.setup.description if self.setup is not None else "not started"
        return f"<Telemetry {what}>"

    # -- what tests and tools look at ---------------------------------------------------

    @property
    def file(self) -> os.PathLike[str] | None:
        """The OTLP-JSON lines file of the embedded default, if that is in use."""
        return self.setup.file_path if self.setup is not None else None

    @property
    def prometheus_port(self) -> int | None:
        return self.setup.prometheus_port if self.setup is not None else None

    @property
    def dropped(self) -> dict[str, int]:
        """Items dropped per signal because the destination was unreachable, refused
        the signal or was too slow."""
        if self.setup is None:
            return {}
        return {signal: guard.dropped for signal, guard in self.setup.guards.items()}

    def signals(self) -> dict[str, dict[str, Any]]:
        """Each signal's export and its health, keyed ``traces``, ``metrics``, ``logs``.

        Every entry has ``exporter`` (``otlp/grpc``, ``otlp/http``, ``console``,
        ``file``, ``prometheus``, ``application`` for providers the application
        gave, or ``none``), ``endpoint``, ``state`` (``ok``, ``backoff`` while an
        outage is retried, ``refused`` when the destination does not take the
        signal, ``off``), the ``exported`` and ``dropped`` counts (items: spans,
        metric points, log records), ``overload_dropped`` (the part of the drops
        due to a full queue) and ``last_error``.

        >>> Telemetry().signals()["traces"]["state"]  # not started
        'off'
        """
        if self.setup is not None:
            return self.setup.signals()
        return {
            signal: {
                "exporter": "none",
                "endpoint": None,
                "state": "off",
                "exported": 0,
                "dropped": 0,
                "overload_dropped": 0,
                "last_error": None,
                "outages": 0,
            }
            for signal in ("traces", "metrics", "logs")
        }

    # -- service protocol ----------------------------------------------------------------

    async def start(self, runtime: Runtime, name: str, reports: Reports | None) -> None:
        """Build the providers and exporters (off the loop) and attach the bridge to
        ``runtime``; ``name`` is the node's, ``reports`` its reports (sent as logs)."""
        import asyncio

        # Importing the SDK and the exporters takes a while the first time: keep it
        # (and any endpoint set-up) off the event loop.
        setup = await asyncio.to_thread(
            _configure,
            name,
            self.telemetry,
            self.tracer_provider,
            self.meter_provider,
            self.logger_provider,
            self.prometheus,
            self.traces,
        )
        from suptrace.observers.otel.bridge import Bridge

        if setup is None:
            return
        self.setup = setup
        try:
            bridge = Bridge(
                runtime,
                setup.tracer_provider,
                setup.meter_provider,
                setup.logger_provider,
                lifetime_spans=self.lifetime_spans,
                message_repr=self.message_repr,
                traces=setup.decision.traces,
                sample=setup.decision.sample,
                reports=reports,
            )
            bridge.attach()
        except BaseException:
            setup.close_sync(0.5)
            raise
        self.bridge = bridge
        guard = setup.guards.get("metrics")
        if guard is not None and setup.prometheus_server is None and bridge.metrics is not None:
            # The refused destination is the metrics' only reader (no /metrics endpoint):
            # once it refuses them, the hot path stops paying for metrics nobody takes.
            loop = asyncio.get_running_loop()

            def refused() -> None:
                loop.call_soon_threadsafe(bridge.metrics_refused)

            guard.on_refused.append(refused)

    async def close(self) -> None:
        bridge, self.bridge = self.bridge, None
        if bridge is not None:
            bridge.detach()
        setup = self.setup
        try:
            if setup is not None:
                await setup.aclose(self.flush_timeout)
        finally:
            if bridge is not None:
                bridge.release()


def _configure(
    name: str, telemetry: Any, tp: Any, mp: Any, lp: Any, prometheus: Any, traces: Any
) -> Setup | None:
    from suptrace.observers.otel.bridge import Bridge  # noqa: F401 - imported here, off the loop
    from suptrace.observers.otel.setup import configure

    return configure(
        name, telemetry, tp, mp, lp, prometheus=prometheus, defaults=instrumented(), traces=traces
    )


def telemetry_service(options: dict[str, Any]) -> Telemetry | None:
    """Take the telemetry options out of a node's ``options``; None when telemetry is off."""
    found = {key: options.pop(key) for key in TELEMETRY_OPTIONS if key in options}
    check_traces(found.get("traces"))
    if _off(found.get("telemetry")):
        return None
    if found.get("telemetry") is None and not any(
        found.get(k) not in (None, False)
        for k in ("tracer_provider", "meter_provider", "logger_provider", "prometheus")
    ):
        # "auto" with the cheap checks first: no OpenTelemetry import when it ends up off.
        override = telemetry_override()  # a bad value fails here, at node start
        if override == "off" and instrumented() is None:
            return None
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() in ("1", "true", "yes", "on"):
            return None
        if not _asked_for(override):
            return None  # nothing asks for telemetry: the node pays nothing for it
    return Telemetry(**found)


def _asked_for(override: str) -> bool:
    """Does anything outside the node's own options ask for telemetry?

    An OTLP endpoint or the embedded file in the environment, an explicit
    ``SUPTRACE_TELEMETRY`` mode, `SuptraceInstrumentor`, or global SDK providers
    installed by the application (only possible if it imported OpenTelemetry).
    """
    if instrumented() is not None or override in ("file", "otlp", "global"):
        return True
    env = os.environ
    if any(
        env.get(key, "").strip()
        for key in (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "SUPTRACE_OTLP_FILE",
        )
    ):
        return True
    if env.get("OTEL_METRICS_EXPORTER", "").strip().lower() == "prometheus":
        return True
    if any(
        "console" in env.get(f"OTEL_{signal}_EXPORTER", "").lower()
        for signal in ("TRACES", "METRICS", "LOGS")
    ):
        return True
    if "opentelemetry.trace" not in sys.modules:
        return False
    from suptrace.observers.otel.globals import global_set

    return bool(global_set())
