"""What the bridge's spans share: scope, trace levels, span helpers, error marking.

Imported by `suptrace.observers.otel.state`, `~.messages`, `~.supervision`
and `~.logs`; no state of its own.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, TraceFlags

from suptrace.core.errors import Exit
from suptrace.core.process import Process
from suptrace.core.saferepr import exception_str
from suptrace.core.terms import is_normal_exit, reason_class
from suptrace.observers.format import short

__all__ = [
    "SCOPE",
    "SCHEMA_URL",
    "brief",
    "reason_text",
]

#: Instrumentation scope name; the version is suptrace's.
SCOPE = "suptrace"
#: The semantic conventions the attributes follow.
SCHEMA_URL = "https://opentelemetry.io/schemas/1.27.0"

#: How much tracing a provider can do (`trace_mode`): none, only inside sampled traces,
#: every span, or "failures" mode's pending records.
OFF, PARENT, ON, TAIL = 0, 1, 2, 3
EMPTY = Context()
OPS = {"call": "handle_call", "cast": "handle_cast", "info": "handle_info"}
SERVER = SpanKind.SERVER
CLIENT = SpanKind.CLIENT
CONSUMER = SpanKind.CONSUMER
INTERNAL = SpanKind.INTERNAL
UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
#: The trace id bits a trace-id ratio sampler compares (the W3C random part).
RATIO_MASK = (1 << 56) - 1
#: Name caches are cleared past this many entries (names can be dynamic).
NAME_LIMIT = 4096

def _context_reader() -> Any:
    """The running OpenTelemetry context's getter, read without the API's function layers
    (a `ContextVar` holding a `Context` in the default runtime context), or None."""
    import contextvars

    from opentelemetry import context as otel_context

    var = getattr(getattr(otel_context, "_RUNTIME_CONTEXT", None), "_current_context", None)
    return var.get if isinstance(var, contextvars.ContextVar) else None


def _span_key() -> str:
    from opentelemetry.trace import propagation

    return str(getattr(propagation, "_SPAN_KEY", ""))


context_now = _context_reader()
SPAN_KEY = _span_key()
if not SPAN_KEY:  # pragma: no cover - an API without the key: use the public functions
    context_now = None


def version() -> str:
    from suptrace._version import __version__

    return __version__

def trace_mode(provider: Any, tracer: Any) -> int:
    """How much tracing a provider can do: off, only inside sampled traces, or on."""
    if isinstance(tracer, trace.NoOpTracer) or isinstance(
        provider, (trace.NoOpTracerProvider, trace.ProxyTracerProvider)
    ):
        return OFF
    sampler = getattr(provider, "sampler", None)
    describe = getattr(sampler, "get_description", None)
    desc = describe() if callable(describe) else ""
    if desc == "AlwaysOffSampler":
        return OFF
    if isinstance(desc, str) and desc.startswith("ParentBased{root:AlwaysOffSampler"):
        return PARENT
    return ON


def app_sampler(provider: Any) -> bool:
    """Did the application configure a sampler (else ``SUPTRACE_TRACES_SAMPLE`` decides)?"""
    if os.environ.get("OTEL_TRACES_SAMPLER", "").strip():
        return True
    sampler = getattr(provider, "sampler", None)
    describe = getattr(sampler, "get_description", None)
    desc = describe() if callable(describe) else ""
    return not (
        desc == "AlwaysOnSampler"
        or (isinstance(desc, str) and desc.startswith("ParentBased{root:AlwaysOnSampler"))
    )


def sdk_tracer(tracer: Any) -> bool:
    """Can pending spans be exported through this tracer (an SDK tracer)?"""
    return all(
        hasattr(tracer, a)
        for a in ("span_processor", "resource", "_instrumentation_scope", "_span_limits")
    )
def meter_on(provider: Any, meter: Any) -> bool:
    from opentelemetry import metrics

    if provider is None or isinstance(meter, metrics.NoOpMeter):
        return False
    return type(provider).__name__ not in ("_ProxyMeterProvider", "NoOpMeterProvider")


def brief(value: Any, limit: int = 120) -> str:
    """A short repr that never walks a huge payload."""
    t = type(value)
    if t is str or t is bytes:
        if len(value) > limit:
            return repr(value[:limit]) + "…"
        return repr(value)
    if t is float or t is bool or value is None:
        return repr(value)
    return short(value, limit)  # ints too: 10**5000 has no str()


def record_exception(span: Any, exc: BaseException, attrs: dict[str, Any] | None = None) -> None:
    """``span.record_exception``, total: a message whose ``__str__`` raises (or a huge
    one) is recorded as its bounded text instead."""
    try:
        if len(str(exc)) <= 4000:
            span.record_exception(exc, attrs, escaped=True)
            return
    except Exception:  # the SDK calls str() too: record the bounded form below
        pass
    event = {
        "exception.type": type(exc).__qualname__,
        "exception.message": exception_str(exc, 4000),
        "exception.escaped": True,
        **(attrs or {}),
    }
    span.add_event("exception", event)


def reason_text(reason: Any, limit: int = 300) -> str:
    """An exit reason as an attribute value: atoms bare, anything else as a short repr."""
    if type(reason) is str:
        return reason if len(reason) <= limit else reason[:limit] + "…"
    return short(reason, limit)


def label_of(proc: Process) -> str:
    return proc.name or proc.initial_call


def failure_class(error: BaseException, proc: Process) -> str | None:
    """The error class of a failed handling, or None when it ended normally."""
    if isinstance(error, Exit):
        return None if is_normal_exit(error.reason) else reason_class(error.reason)
    if isinstance(error, asyncio.CancelledError):
        reason = proc.pending_exit
        return None if reason is None or is_normal_exit(reason) else reason_class(reason)
    return type(error).__name__


def mark_failed(span: Any, error: BaseException, failed: str | None) -> None:
    if isinstance(error, Exit):
        reason = error.reason
        span.add_event("exit", {"suptrace.exit.reason": reason_text(reason)})
        if failed is not None:
            if isinstance(reason, BaseException):
                record_exception(span, reason)
            span.set_status(Status(StatusCode.ERROR, f"exit {reason_text(reason, 200)}"))
    elif isinstance(error, asyncio.CancelledError):
        span.add_event("interrupted", {"suptrace.exit.reason": failed or "normal"})
        if failed is not None:
            span.set_status(Status(StatusCode.ERROR, f"interrupted: the process exited {failed}"))
    else:
        record_exception(span, error)
        span.set_status(Status(StatusCode.ERROR, error_text(error)))


def error_text(error: BaseException, limit: int = 300) -> str:
    text = exception_str(error, limit)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def call_failed(span: Any, error: BaseException, proc: Process | None) -> None:
    if isinstance(error, asyncio.CancelledError):
        reason = proc.pending_exit if proc is not None else None
        span.add_event("interrupted", {"suptrace.exit.reason": reason_text(reason, 200)})
        span.set_status(
            Status(
                StatusCode.ERROR, f"the caller exited ({reason_text(reason, 100)}) while waiting"
            )
        )
        return
    record_exception(span, error)
    span.set_status(Status(StatusCode.ERROR, error_text(error)))


