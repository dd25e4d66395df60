"""OpenTelemetry for suptrace nodes: the node service and the instrumentor.

A node gets telemetry from its options (all optional)::

    suptrace.run(main, telemetry="auto", tracer_provider=..., meter_provider=...,
                 logger_provider=..., prometheus=None)

* ``telemetry`` -- ``"auto"`` (default), ``True``, ``"off"``/``False``, ``"otlp"``,
  ``"file"``, ``"global"`` or a ``.jsonl`` path; see `suptrace.observers.otel_export`.
  ``"auto"`` turns telemetry on only when something asks for it (an OTLP endpoint
  or ``SUPTRACE_OTLP_FILE`` in the environment, the instrumentor, explicit or
  global SDK providers); otherwise the node installs nothing and pays nothing.
  ``True`` is "on": as auto, falling back to the embedded OTLP-JSON file.
* ``tracer_provider`` / ``meter_provider`` / ``logger_provider`` -- explicit
  providers (never shut down by the node); missing ones fall back to the global ones.
* ``prometheus`` -- serve ``/metrics`` for Prometheus: ``True`` (``OTEL_EXPORTER_PROMETHEUS_HOST/PORT``,
  default ``localhost:9464``), a port, ``"host:port"`` or ``(host, port)``; needs
  ``pip install 'suptrace[prometheus]'``.
* ``telemetry_flush_timeout`` -- seconds the node waits for its exporters at shutdown (5).
* ``traces`` -- ``"failures"``, ``"all"`` or ``"off"`` (else ``SUPTRACE_TRACES``); see
  `suptrace.observers.otel_traces`.
* ``lifetime_spans`` -- ignored (no span measures a process's lifetime any more).
* ``message_repr`` -- put a short repr of each message on its span (True).

Each signal (traces, metrics, logs) is exported and watched on its own;
`Telemetry.signals` reports their health (``suptrace status``). Providers the
node builds become the global OpenTelemetry providers unless the application
installed its own (``SUPTRACE_OTEL_GLOBAL=false`` opts out).

What is recorded is described in `suptrace.observers.otel_traces` (spans) and
`suptrace.observers.otel_metrics` (metrics). This module imports nothing from
OpenTelemetry until a node starts with telemetry on.

``SuptraceInstrumentor`` is registered as the ``opentelemetry_instrumentor``
entry point ``suptrace``: ``opentelemetry-instrument python app.py`` (or
``SuptraceInstrumentor().instrument(tracer_provider=...)``) makes every node
started afterwards use the instrumented (or global) providers.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from suptrace.node.parts import NodeParts
    from suptrace.observers.otel_export import Setup
    from suptrace.observers.otel_traces import Bridge

# `SuptraceInstrumentor` is built on first access (module `__getattr__` below).
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

#: Providers given to `SuptraceInstrumentor.instrument` (None when not instrumented).
_instrumented: dict[str, Any] | None = None


#: The words ``telemetry=`` accepts (see `suptrace.observers.otel_export`).
MODES = ("auto", "off", "file", "otlp", "global")


def _check_option(telemetry: Any) -> None:
    if telemetry is None or isinstance(telemetry, (bool, os.PathLike)):
        return
    if isinstance(telemetry, str) and (
        telemetry.strip().lower() in MODES
        or telemetry.endswith(".jsonl")
        or "/" in telemetry
        or os.sep in telemetry
    ):
        return
    raise ValueError(
        f"telemetry must be None, 'auto', 'off', 'file', 'otlp', 'global', False or a file "
        f"path ending in .jsonl, got {telemetry!r}"
    )


def _check_traces(traces: Any) -> None:
    """A bad ``traces=`` fails at Node(...); ``SUPTRACE_TRACES`` is checked at start."""
    if traces is not None and not (
        isinstance(traces, str) and traces.strip().lower() in ("failures", "all", "off")
    ):
        raise ValueError(f"traces must be 'failures', 'all' or 'off', got {traces!r}")


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
        _check_option(telemetry)  # a bad option fails at Node(...) rather than at start
        _check_traces(traces)
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

    async def start(self, node: NodeParts) -> None:
        import asyncio

        # Importing the SDK and the exporters takes a while the first time: keep it
        # (and any endpoint set-up) off the event loop.
        setup = await asyncio.to_thread(
            _configure,
            node.name,
            self.telemetry,
            self.tracer_provider,
            self.meter_provider,
            self.logger_provider,
            self.prometheus,
        )
        from suptrace.observers.otel_traces import Bridge

        if setup is None:
            return
        self.setup = setup
        try:
            bridge = Bridge(
                node.runtime,
                setup.tracer_provider,
                setup.meter_provider,
                setup.logger_provider,
                lifetime_spans=self.lifetime_spans,
                message_repr=self.message_repr,
                traces=self.traces,
                export=setup.mode,
                reports=node.reports,
            )
            bridge.attach()
        except BaseException:
            setup.close_sync(0.5)
            raise
        self.bridge = bridge

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
    name: str, telemetry: Any, tp: Any, mp: Any, lp: Any, prometheus: Any
) -> Setup | None:
    from suptrace.observers.otel_export import configure
    from suptrace.observers.otel_traces import Bridge  # noqa: F401 - imported here, off the loop

    return configure(name, telemetry, tp, mp, lp, prometheus=prometheus, defaults=_instrumented)


def telemetry_service(options: dict[str, Any]) -> Telemetry | None:
    """Take the telemetry options out of a node's ``options``; None when telemetry is off."""
    found = {key: options.pop(key) for key in TELEMETRY_OPTIONS if key in options}
    _check_traces(found.get("traces"))
    if _off(found.get("telemetry")):
        return None
    if found.get("telemetry") is None and not any(
        found.get(k) not in (None, False)
        for k in ("tracer_provider", "meter_provider", "logger_provider", "prometheus")
    ):
        # "auto" with the cheap checks first: no OpenTelemetry import when it ends up off.
        override = os.environ.get("SUPTRACE_TELEMETRY", "").strip().lower()
        if override in ("off", "false", "0", "none") and _instrumented is None:
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
    if _instrumented is not None or override in ("file", "otlp", "global"):
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
    from suptrace.observers.otel_export import _global_set

    return bool(_global_set())


# -- the instrumentor ------------------------------------------------------------------------


class _Instrumentor:
    """What `SuptraceInstrumentor` does, with or without opentelemetry-instrumentation."""

    def _instrument(self, **kwargs: Any) -> None:
        global _instrumented
        _instrumented = {
            key: kwargs.get(key) for key in ("tracer_provider", "meter_provider", "logger_provider")
        }

    def _uninstrument(self, **kwargs: Any) -> None:
        global _instrumented
        _instrumented = None

    def instrumentation_dependencies(self) -> tuple[str, ...]:
        return ()


def _make_instrumentor() -> type:
    try:
        from opentelemetry.instrumentation.instrumentor import (  # type: ignore[import-not-found,attr-defined,unused-ignore]
            BaseInstrumentor,
        )
    except ImportError:

        class SuptraceInstrumentor(_Instrumentor):
            """Make nodes started from now on use the given (else the global) providers.

            A minimal stand-in for ``BaseInstrumentor`` (opentelemetry-instrumentation
            is not installed): ``instrument(**kwargs)`` / ``uninstrument()``.
            """

            _is_instrumented_by_opentelemetry = False

            def __new__(cls, *args: Any, **kwargs: Any) -> Any:
                inst = getattr(cls, "_instance", None)
                if inst is None:
                    inst = super().__new__(cls)
                    cls._instance = inst
                return inst

            @property
            def is_instrumented_by_opentelemetry(self) -> bool:
                return self._is_instrumented_by_opentelemetry

            def instrument(self, **kwargs: Any) -> None:
                if self._is_instrumented_by_opentelemetry:
                    return
                self._instrument(**kwargs)
                type(self)._is_instrumented_by_opentelemetry = True

            def uninstrument(self, **kwargs: Any) -> None:
                if not self._is_instrumented_by_opentelemetry:
                    return
                self._uninstrument(**kwargs)
                type(self)._is_instrumented_by_opentelemetry = False

        return SuptraceInstrumentor

    class SuptraceInstrumentor(_Instrumentor, BaseInstrumentor):  # type: ignore[misc,no-redef,unused-ignore]
        """Make nodes started from now on use the given (else the global) providers."""

    return SuptraceInstrumentor


_instrumentor_class: type | None = None


def __getattr__(name: str) -> Any:
    # Built on first use, so importing this module stays free of OpenTelemetry imports.
    global _instrumentor_class
    if name == "SuptraceInstrumentor":
        if _instrumentor_class is None:
            cls = _make_instrumentor()
            cls.__qualname__ = cls.__name__ = "SuptraceInstrumentor"
            cls.__module__ = __name__
            _instrumentor_class = cls
        return _instrumentor_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
