"""Which OpenTelemetry providers a node uses and whether they become the global ones.

Providers suptrace builds (OTLP or the embedded file) become the global
OpenTelemetry providers where the application has not installed its own, so
other instrumentations' spans join the same traces and backend;
``SUPTRACE_OTEL_GLOBAL=false`` keeps them private (see `install_globals` for
what remains after the node stops). Imports nothing from OpenTelemetry until
a function here is called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from suptrace.observers.otel.setup import Setup

__all__ = ["global_logger_provider", "global_set", "install_globals", "live", "ours"]


def ours(provider: Any) -> bool:
    """True for a provider suptrace built and installed as a global one."""
    return bool(getattr(provider, "_suptrace_global", False))


def global_set() -> bool:
    """True when the application installed global providers (not the API's proxies,
    nor the ones suptrace installed itself)."""
    from opentelemetry import metrics, trace

    tp = trace.get_tracer_provider()
    if not isinstance(tp, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)) and not ours(tp):
        return True
    mp = metrics.get_meter_provider()
    return type(mp).__name__ not in ("_ProxyMeterProvider", "NoOpMeterProvider") and not ours(mp)


def live(provider: Any, no_op: Callable[[], Any]) -> Any:
    """A global provider, or a no-op in place of one a stopped node left installed."""
    if ours(provider) and getattr(provider, "_suptrace_closed", False):
        return no_op()
    return provider


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


