"""OpenTelemetry for suptrace nodes: the bridge, its export, its settings.

A node gets telemetry from its options (all optional; the node's telemetry
service is `suptrace.node.telemetry.Telemetry`)::

    suptrace.run(main, telemetry="auto", tracer_provider=..., meter_provider=...,
                 logger_provider=..., prometheus=None)

* ``telemetry`` -- ``"auto"`` (default), ``True``, ``"off"``/``False``, ``"otlp"``,
  ``"file"``, ``"global"`` or a ``.jsonl`` path; see `suptrace.observers.otel.setup`.
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
  `suptrace.observers.otel.bridge`.
* ``lifetime_spans`` -- ignored (no span measures a process's lifetime any more).
* ``message_repr`` -- put a short repr of each message on its span (True).

The modules, one concept each:

================  ===========================================================
``config``        every setting, decided once at node start (`Decision`)
``guard``         `ExportGuard`: one signal's export health
``exporters``     the guarded exporters and bounded processors
``jsonl``         the embedded OTLP-JSON lines file
``globals``       the global OpenTelemetry providers
``setup``         what a node uses (`configure`, `Setup`), flush and stop
``providers``     building the exporters and the SDK providers around them
``bridge``        `Bridge`, the runtime's instrument, made of:
``state``         its shared state, span names and attributes
``messages``      the per-message hooks (handlings, calls, sends)
``supervision``   spawns, exits and supervision events
``logs``          reports as log records
``spans``         span helpers shared by the parts
``tail``          ``traces="failures"``: in-process tail sampling
``metrics``       the metrics, aggregated in-process
``instrumentor``  ``SuptraceInstrumentor``
================  ===========================================================

Each signal (traces, metrics, logs) is exported and watched on its own. This
package imports nothing from OpenTelemetry until a node starts with telemetry
on (``config``, ``globals`` and ``instrumentor`` never do at import).

``SuptraceInstrumentor`` is registered as the ``opentelemetry_instrumentor``
entry point ``suptrace``: ``opentelemetry-instrument python app.py`` (or
``SuptraceInstrumentor().instrument(tracer_provider=...)``) makes every node
started afterwards use the instrumented (or global) providers.
"""

from __future__ import annotations

from typing import Any

# `SuptraceInstrumentor` is built on first access (module `__getattr__` below).
__all__ = ["SuptraceInstrumentor"]


def __getattr__(name: str) -> Any:
    # Built on first use, so importing this package stays free of OpenTelemetry imports.
    if name == "SuptraceInstrumentor":
        from suptrace.observers.otel.instrumentor import instrumentor_class

        return instrumentor_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
