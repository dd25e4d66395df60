"""The OpenTelemetry bridge: every message, call, exit, restart and breach as spans.

`Bridge` is the runtime's `Instrument` (see `suptrace.core.runtime`) and a
subscriber of the event stream. It uses the OpenTelemetry API only.

Spans
-----

``process <dest>`` (CONSUMER)
    a GenServer handling a cast or a plain message. It starts a trace of its
    own and is *linked* to the sender's span context captured when the message
    was sent (messaging semantic conventions: ``messaging.system="suptrace"``,
    ``messaging.operation.type="process"``, ``messaging.destination.name``).
``call <dest>`` (CLIENT) and ``process <dest>`` (SERVER)
    a `call` is a CLIENT span (from the request to the reply, carried by the
    request's envelope); the server's handling of the request is its child, so
    a call chain A -> B -> C is one trace. Timeouts and exits of the server end the CLIENT span with ERROR
    status and an exception event.
``lifetime <name>`` (INTERNAL)
    one per process, from spawn to death; it ends when the process dies, even
    when killed. Its ``exit`` event carries the reason, with ERROR status for
    abnormal exits. A lifetime span starts its own trace, linked to the
    parent's lifetime span (``suptrace.link="parent"``) and to the span that
    was current when it was spawned (``"spawned_during"``), e.g. the
    supervisor's handling of a crash that restarted it.

Supervision events (``restart``, ``child_terminated``, ``start_error``,
``intensity``, ``not_restarted``, ``shutdown_error``) are span events on the
supervisor's lifetime span and on the span current when they happen (the
supervisor handling the child's exit). The failures among them (start errors,
intensity breaches, subtrees not restarted, shutdown errors) set ERROR status.

With a logger provider, SASL-style reports also become OpenTelemetry log
records, correlated with the span they were produced in.

Costs: nothing is built for a span that is not recording. An SDK tracer whose
sampler is always-off installs no per-message tracing at all; with a
parent-based always-off sampler only calls inside sampled traces are traced.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context, attach, detach
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    SpanKind,
    Status,
    StatusCode,
    get_current_span,
    set_span_in_context,
)

from suptrace.core.errors import CallError, CallTimeout, Exit
from suptrace.core.events import TraceEvent
from suptrace.core.process import Process
from suptrace.core.runtime import Runtime, _current_process
from suptrace.core.saferepr import exception_str
from suptrace.core.terms import Pid, is_normal_exit, reason_class
from suptrace.observers.format import short
from suptrace.observers.otel_metrics import Metrics, child_label

__all__ = ["Bridge", "SCOPE", "SCHEMA_URL", "SUPERVISION_KINDS", "FAILURE_KINDS"]

#: Instrumentation scope name; the version is suptrace's.
SCOPE = "suptrace"
#: The semantic conventions the attributes follow.
SCHEMA_URL = "https://opentelemetry.io/schemas/1.27.0"

SUPERVISION_KINDS = (
    "restart",
    "child_terminated",
    "start_error",
    "intensity",
    "not_restarted",
    "shutdown_error",
)
#: Supervision events that mean something failed (ERROR status on their spans).
FAILURE_KINDS = frozenset({"start_error", "intensity", "not_restarted", "shutdown_error"})

_EMPTY = Context()
_OFF, _PARENT, _ON = 0, 1, 2
_OPS = {"call": "handle_call", "cast": "handle_cast", "info": "handle_info"}
_SERVER = SpanKind.SERVER
_CLIENT = SpanKind.CLIENT
_CONSUMER = SpanKind.CONSUMER
_INTERNAL = SpanKind.INTERNAL
_perf = time.perf_counter
_NAME_LIMIT = 4096


def _version() -> str:
    from suptrace import __version__

    return __version__


def trace_mode(provider: Any, tracer: Any) -> int:
    """How much tracing a provider can do: off, only inside sampled traces, or on."""
    if isinstance(tracer, trace.NoOpTracer) or isinstance(
        provider, (trace.NoOpTracerProvider, trace.ProxyTracerProvider)
    ):
        return _OFF
    sampler = getattr(provider, "sampler", None)
    describe = getattr(sampler, "get_description", None)
    desc = describe() if callable(describe) else ""
    if desc == "AlwaysOffSampler":
        return _OFF
    if isinstance(desc, str) and desc.startswith("ParentBased{root:AlwaysOffSampler"):
        return _PARENT
    return _ON


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


def _record_exception(span: Any, exc: BaseException, attrs: dict[str, Any] | None = None) -> None:
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


def _label(proc: Process) -> str:
    return proc.name or proc.initial_call


def _pid_label(pid: Any) -> str:
    if type(pid) is Pid:
        proc = pid._proc
        if proc is not None:
            return _label(proc)
    return "?"


class Bridge:
    """One node's OpenTelemetry bridge: attach it to a runtime, detach to stop."""

    def __init__(
        self,
        runtime: Runtime,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        logger_provider: Any = None,
        *,
        lifetime_spans: bool = True,
        message_repr: bool = True,
        repr_limit: int = 120,
    ) -> None:
        self.runtime = runtime
        version = _version()
        self.tracer: Any = None
        self.mode = _OFF
        if tracer_provider is not None:
            self.tracer = tracer_provider.get_tracer(SCOPE, version, schema_url=SCHEMA_URL)
            self.mode = trace_mode(tracer_provider, self.tracer)
        self.metrics: Metrics | None = None
        if meter_provider is not None:
            meter = meter_provider.get_meter(SCOPE, version, schema_url=SCHEMA_URL)
            if meter_on(meter_provider, meter):
                self.metrics = Metrics(meter, meter_provider)
        self.logger: Any = None
        if logger_provider is not None:
            self.logger = logger_provider.get_logger(SCOPE, version, schema_url=SCHEMA_URL)
        self.lifetime_spans = lifetime_spans and self.mode == _ON
        self.message_repr = message_repr
        self.repr_limit = repr_limit
        #: Lifetime span of each live process.
        self.lives: dict[Process, Any] = {}
        #: The span that was current where each process was spawned. A process's task
        #: inherits its spawner's context; outside its own handlers that span is stale,
        #: so the bridge treats it as "no current span" (see `_current`).
        self.inherited: dict[Process, Any] = {}
        #: Recently ended lifetime spans (pid -> span), to correlate crash reports.
        self._dead: OrderedDict[Pid, Any] = OrderedDict()
        self._process_names: dict[str, str] = {}
        self._call_names: dict[str, str] = {}
        self._unsubscribe: list[Any] = []
        self.attached = False
        #: The CLIENT span of the call being sent: `call_begin` sets it, the envelope of
        #: the request takes it (`capture`) right after, with no await in between.
        self._outgoing: Any = None
        self._pids: dict[Pid, str] = {}
        #: Failures inside the bridge itself (see `_broken`).
        self.errors = 0

    @property
    def tracing(self) -> bool:
        return self.mode != _OFF

    # -- attaching ---------------------------------------------------------------------

    def attach(self) -> None:
        rt = self.runtime
        if self.attached:
            return
        if self.mode or self.metrics is not None:
            if rt.instrument is not None and rt.instrument is not self:
                raise RuntimeError(
                    f"node {rt.name!r} already has an instrument installed ({rt.instrument!r})"
                )
            rt.instrument = self
        if self.mode == _ON:
            rt.spawn_hooks = (*rt.spawn_hooks, self._on_spawn)
        if self.mode == _ON or self.metrics is not None:
            rt.death_hooks = (*rt.death_hooks, self._on_death)
        kinds: list[str] = list(SUPERVISION_KINDS)
        if self.metrics is not None:
            kinds.append("send")
            self.metrics.attach(rt)
        self._unsubscribe.append(rt.add_event_handler(self._on_event, kinds))
        reports = rt.services.get("reports")
        if self.logger is not None and reports is not None and hasattr(reports, "add_handler"):
            self._unsubscribe.append(reports.add_handler(self._on_report))
        self.attached = True

    def detach(self) -> None:
        """Stop observing; lifetime spans of processes still alive end here."""
        rt = self.runtime
        if not self.attached:
            return
        self.attached = False
        for remove in self._unsubscribe:
            remove()
        self._unsubscribe.clear()
        if rt.instrument is self:
            rt.instrument = None
        rt.spawn_hooks = tuple(h for h in rt.spawn_hooks if h != self._on_spawn)
        rt.death_hooks = tuple(h for h in rt.death_hooks if h != self._on_death)
        lives, self.lives = self.lives, {}
        self.inherited.clear()
        for span in lives.values():
            if span.is_recording():  # not ended yet: the process outlived the bridge
                span.add_event("node_stopped")
                span.end()

    def release(self) -> None:
        """Stop feeding the observable gauges (after the last collection)."""
        if self.metrics is not None:
            self.metrics.detach(self.runtime)

    def _broken(self, where: str, exc: Exception) -> None:
        """A bug or an SDK failure inside the bridge: logged once, then counted."""
        self.errors += 1
        if self.errors == 1:
            from loguru import logger

            logger.opt(exception=exc).error(
                "suptrace telemetry: the OpenTelemetry bridge failed in {} ({}: {}); the "
                "application is not affected, this telemetry is lost (later failures are "
                "counted in Bridge.errors, not logged)",
                where,
                type(exc).__name__,
                exc,
            )

    def _pid_text(self, pid: Pid) -> str:
        text = self._pids.get(pid)
        if text is None:
            if len(self._pids) > _NAME_LIMIT:
                self._pids.clear()
            text = self._pids[pid] = str(pid)
        return text

    # -- names -------------------------------------------------------------------------

    def _process_name(self, label: str) -> str:
        name = self._process_names.get(label)
        if name is None:
            if len(self._process_names) > _NAME_LIMIT:
                self._process_names.clear()
            name = self._process_names[label] = f"process {label}"
        return name

    def _call_name(self, label: str) -> str:
        name = self._call_names.get(label)
        if name is None:
            if len(self._call_names) > _NAME_LIMIT:
                self._call_names.clear()
            name = self._call_names[label] = f"call {label}"
        return name

    # -- the Instrument protocol ---------------------------------------------------------

    def capture(self) -> Any:
        """The sender's span (or its lifetime span), stored with the message."""
        try:
            if not self.mode:
                return None
            span = self._outgoing
            if span is not None:  # the request of the call that `call_begin` just opened
                self._outgoing = None
                return span
            span = get_current_span()
            if span is not INVALID_SPAN and not self.inherited:
                return span
            proc = _current_process.get()
            if proc is None:
                return None if span is INVALID_SPAN else span
            if span is not INVALID_SPAN and self.inherited.get(proc) is not span:
                return span
            return self.lives.get(proc)
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("capture", exc)
            return None

    def _current(self, proc: Process | None) -> Any:
        """The current span, unless it is the one ``proc`` merely inherited at spawn."""
        span = get_current_span()
        if proc is not None and span is not INVALID_SPAN and self.inherited.get(proc) is span:
            return INVALID_SPAN
        return span

    def handle_begin(self, proc: Process, kind: str, msg: Any, ctx: Any) -> Any:
        try:
            label = proc.name or proc.initial_call
            span = None
            token = None
            mode = self.mode
            if mode:
                name = self._process_names.get(label) or self._process_name(label)
                if kind == "call":
                    if ctx is not None:
                        if mode == _ON or ctx.get_span_context().trace_flags.sampled:
                            # The parent is the caller's CLIENT span; nothing else of the
                            # server's own context belongs in the lookup.
                            span = self.tracer.start_span(
                                name, set_span_in_context(ctx, _EMPTY), _SERVER
                            )
                    elif mode == _ON:
                        span = self.tracer.start_span(name, _EMPTY, _SERVER)
                elif mode == _ON:
                    if ctx is not None:
                        sc = ctx.get_span_context()
                        links = (Link(sc),) if sc.is_valid else None
                    else:
                        links = None
                    span = self.tracer.start_span(name, _EMPTY, _CONSUMER, links=links)
                if span is not None:
                    if span.is_recording():
                        span.set_attributes(self._handle_attributes(proc, label, kind, msg))
                    # Current while the callback runs: calls, casts and the application's
                    # own spans inside it become its children / link to it.
                    token = attach(set_span_in_context(span))
            if self.metrics is None:
                return None if span is None else (span, token, 0.0, proc, label, kind)
            return (span, token, _perf(), proc, label, kind)
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("handle_begin", exc)
            return None

    def _handle_attributes(self, proc: Process, label: str, kind: str, msg: Any) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "messaging.system": "suptrace",
            "messaging.operation.type": "process",
            "messaging.operation.name": _OPS.get(kind, kind),
            "messaging.destination.name": label,
            "suptrace.process.pid": self._pid_text(proc.pid),
        }
        if kind == "call":
            caller = msg.caller
            attrs["messaging.message.id"] = str(caller.ref)
            if caller.pid is not None:
                attrs["suptrace.caller.pid"] = self._pid_text(caller.pid)
            payload = msg.request
        elif kind == "cast":
            payload = msg.msg
        else:
            payload = msg
        if self.message_repr:
            attrs["suptrace.message"] = brief(payload, self.repr_limit)
        return attrs

    def handle_end(self, token: Any, error: BaseException | None) -> None:
        try:
            span, ctx_token, t0, proc, label, kind = token
            if ctx_token is not None:
                detach(ctx_token)
            failed = None
            if error is not None:
                failed = _failure(error, proc)
            if span is not None:
                if error is not None and span.is_recording():
                    _mark(span, error, failed)
                span.end()
            m = self.metrics
            if m is not None:
                attrs = m.handle_attrs(label, _OPS.get(kind, kind))
                if failed is not None:
                    attrs = {**attrs, "error.type": failed}
                m.message_duration.record(_perf() - t0, attrs)
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("handle_end", exc)

    def call_begin(self, proc: Process | None, server: Process, request: Any) -> Any:
        try:
            label = server.name or server.initial_call
            span = None
            mode = self.mode
            if mode:
                current = get_current_span()
                if (
                    proc is not None
                    and current is not INVALID_SPAN
                    and self.inherited.get(proc) is current
                ):
                    current = INVALID_SPAN
                if mode == _ON:
                    if current is INVALID_SPAN:
                        # A new trace, linked to the caller's lifetime when there is one.
                        life = self.lives.get(proc) if proc is not None else None
                        links = (Link(life.get_span_context()),) if life is not None else None
                        span = self.tracer.start_span(
                            self._call_name(label), _EMPTY, _CLIENT, links=links
                        )
                    else:
                        span = self.tracer.start_span(self._call_name(label), kind=_CLIENT)
                elif current.get_span_context().trace_flags.sampled:
                    span = self.tracer.start_span(self._call_name(label), kind=_CLIENT)
            if span is not None:
                if span.is_recording():
                    attrs: dict[str, Any] = {
                        "messaging.system": "suptrace",
                        "messaging.operation.type": "send",
                        "messaging.operation.name": "call",
                        "messaging.destination.name": label,
                        "suptrace.destination.pid": self._pid_text(server.pid),
                    }
                    if proc is not None:
                        attrs["suptrace.caller.pid"] = self._pid_text(proc.pid)
                        attrs["suptrace.caller.name"] = proc.name or proc.initial_call
                    if self.message_repr:
                        attrs["suptrace.message"] = brief(request, self.repr_limit)
                    span.set_attributes(attrs)
                # Not attached as the current context: the caller only waits until
                # `call_end`, so the one reader is the request's envelope (`capture`).
                self._outgoing = span
            m = self.metrics
            if m is None:
                return None if span is None else (span, None, 0.0, label, proc)
            m.count_sent(label, "call")
            return (span, None, _perf(), label, proc)
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("call_begin", exc)
            return None

    def call_end(self, token: Any, error: BaseException | None) -> None:
        try:
            span, _, t0, label, proc = token
            if span is not None:
                if self._outgoing is span:  # the request was never enqueued
                    self._outgoing = None
                if error is not None and span.is_recording():
                    _call_failed(span, error, proc)
                span.end()
            m = self.metrics
            if m is not None:
                attrs = m.dest_attrs(label)
                if error is not None:
                    if isinstance(error, CallTimeout):
                        m.call_timeouts.add(1, attrs)
                    attrs = {**attrs, "error.type": _call_error_type(error)}
                m.call_duration.record(_perf() - t0, attrs)
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("call_end", exc)

    # -- process lifetimes ---------------------------------------------------------------

    def _on_spawn(self, proc: Process, parent: Process | None) -> None:
        try:
            current = self._current(parent)
            if current is not INVALID_SPAN:
                self.inherited[proc] = current
            if proc.system or not self.lifetime_spans:
                return
            label = proc.name or proc.initial_call
            links = []
            parent_span = self.lives.get(parent) if parent is not None else None
            if parent_span is not None:
                links.append(Link(parent_span.get_span_context(), {"suptrace.link": "parent"}))
            if current is not INVALID_SPAN and current is not parent_span:
                sc = current.get_span_context()
                if sc.is_valid:
                    links.append(Link(sc, {"suptrace.link": "spawned_during"}))
            span = self.tracer.start_span(f"lifetime {label}", _EMPTY, _INTERNAL, links=links)
            if span.is_recording():
                attrs: dict[str, Any] = {
                    "suptrace.process.pid": str(proc.pid),
                    "suptrace.process.name": label,
                    "suptrace.initial_call": proc.initial_call,
                    "suptrace.node": self.runtime.name,
                }
                if parent is not None:
                    attrs["suptrace.parent.pid"] = str(parent.pid)
                    attrs["suptrace.parent.name"] = parent.name or parent.initial_call
                span.set_attributes(attrs)
            self.lives[proc] = span
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("spawn", exc)

    def _on_death(self, proc: Process, reason: Any) -> None:
        m = self.metrics
        if m is not None:
            m.exits.add(
                1,
                {
                    "suptrace.process.name": proc.name or proc.initial_call,
                    "suptrace.exit.reason": reason_class(reason),
                },
            )
        # Forgotten on the next loop iteration: the links and monitors this death notifies
        # right after this hook still send from this process, in its context.
        if proc in self.lives or proc in self.inherited:
            self.runtime.loop.call_soon(self._forget, proc)
        span = self.lives.get(proc)
        if span is None:
            return
        if span.is_recording():
            if proc.name and proc.initial_call != proc.name:
                span.update_name(f"lifetime {proc.name}")
                span.set_attribute("suptrace.process.name", proc.name)
            normal = is_normal_exit(reason)
            attrs = {
                "suptrace.exit.reason": reason_text(reason),
                "suptrace.exit.reason_class": reason_class(reason),
                "suptrace.exit.by_signal": proc.pending_exit is not None,
                "suptrace.messages_in": proc.messages_in,
                "suptrace.messages_out": proc.messages_out,
            }
            span.set_attributes(attrs)
            if isinstance(reason, BaseException):
                _record_exception(span, reason, {"suptrace.event": "exit"})
            span.add_event("exit", attrs)
            if not normal:
                span.set_status(Status(StatusCode.ERROR, f"exited {reason_text(reason, 200)}"))
        span.end()
        dead = self._dead
        dead[proc.pid] = span
        if len(dead) > 64:
            dead.popitem(last=False)

    def _forget(self, proc: Process) -> None:
        self.lives.pop(proc, None)
        self.inherited.pop(proc, None)

    # -- supervision events ------------------------------------------------------------

    def _on_event(self, event: TraceEvent) -> None:
        kind = event.kind
        m = self.metrics
        d = event.data
        if kind == "send":
            if m is not None:
                op = "cast" if type(d.get("msg")).__name__ == "_Cast" else "send"
                m.count_sent(_pid_label(d.get("to")), op)
            return
        proc = event.pid._proc if event.pid is not None else None
        sup = event.name or (proc.initial_call if proc is not None else "?")
        child = child_label(d.get("child_id"))
        if m is not None:
            if kind == "restart":
                attrs = {
                    "suptrace.supervisor": sup,
                    "suptrace.exit.reason": reason_class(d.get("reason")),
                }
                if child is not None:
                    attrs["suptrace.child.id"] = child
                m.restarts.add(1, attrs)
            elif kind == "intensity":
                attrs = {"suptrace.supervisor": sup}
                if child is not None:
                    attrs["suptrace.child.id"] = child
                m.intensity_breaches.add(1, attrs)
        if not self.mode:
            return
        targets = []
        life = self.lives.get(proc) if proc is not None else None
        if life is not None and life.is_recording():
            targets.append(life)
        current = self._current(proc)
        if current is not life and current.is_recording():
            targets.append(current)
        if not targets:
            return
        event_attrs = _supervision_attributes(kind, sup, d)
        failed = kind in FAILURE_KINDS
        for span in targets:
            span.add_event(kind, event_attrs)
            if failed:
                span.set_status(Status(StatusCode.ERROR, _failure_text(kind, d)))

    # -- reports as log records ------------------------------------------------------------

    def _on_report(self, report: Any) -> None:
        from opentelemetry._logs import SeverityNumber

        from suptrace.observers.reports import (
            CrashReport,
            ProgressReport,
            SupervisorReport,
            TaskCrashReport,
            format_report,
        )

        attrs: dict[str, Any] = {"suptrace.report": type(report).__name__}
        context = None
        if isinstance(report, ProgressReport):
            severity, text = SeverityNumber.INFO, "INFO"
            attrs["suptrace.supervisor"] = str(report.supervisor)
            attrs["suptrace.child.id"] = str(report.started.get("id"))
            event_name = "suptrace.progress"
        elif isinstance(report, SupervisorReport):
            if report.context == "not_restarted":
                severity, text = SeverityNumber.WARN, "WARNING"
            else:
                severity, text = SeverityNumber.ERROR, "ERROR"
            attrs["suptrace.supervisor"] = str(report.supervisor)
            attrs["suptrace.context"] = report.context
            attrs["suptrace.child.id"] = str(report.offender.get("id"))
            attrs["suptrace.exit.reason"] = reason_text(report.reason)
            attrs["suptrace.exit.reason_class"] = reason_class(report.reason)
            event_name = "suptrace.supervisor_report"
        elif isinstance(report, CrashReport):
            severity, text = SeverityNumber.ERROR, "ERROR"
            attrs["suptrace.process.pid"] = str(report.pid)
            attrs["suptrace.process.name"] = report.name or report.initial_call
            attrs["suptrace.exit.reason"] = reason_text(report.reason)
            attrs["suptrace.exit.reason_class"] = reason_class(report.reason)
            event_name = "suptrace.crash_report"
            span = self._dead.get(report.pid)
            if span is not None:
                context = set_span_in_context(span)
        elif isinstance(report, TaskCrashReport):  # a plain asyncio task, not a process
            severity, text = SeverityNumber.ERROR, "ERROR"
            attrs["suptrace.task.name"] = report.task
            attrs["suptrace.exit.reason"] = reason_text(report.reason)
            attrs["suptrace.exit.reason_class"] = reason_class(report.reason)
            event_name = "suptrace.crash_report"
        else:
            return
        self.logger.emit(
            timestamp=int(report.ts * 1e9),
            context=context,
            severity_number=severity,
            severity_text=text,
            body=format_report(report),
            attributes=attrs,
            event_name=event_name,
        )


def _failure(error: BaseException, proc: Process) -> str | None:
    """The error class of a failed handling, or None when it ended normally."""
    if isinstance(error, Exit):
        return None if is_normal_exit(error.reason) else reason_class(error.reason)
    if isinstance(error, asyncio.CancelledError):
        reason = proc.pending_exit
        return None if reason is None or is_normal_exit(reason) else reason_class(reason)
    return type(error).__name__


def _mark(span: Any, error: BaseException, failed: str | None) -> None:
    if isinstance(error, Exit):
        reason = error.reason
        span.add_event("exit", {"suptrace.exit.reason": reason_text(reason)})
        if failed is not None:
            if isinstance(reason, BaseException):
                _record_exception(span, reason)
            span.set_status(Status(StatusCode.ERROR, f"exit {reason_text(reason, 200)}"))
    elif isinstance(error, asyncio.CancelledError):
        span.add_event("interrupted", {"suptrace.exit.reason": failed or "normal"})
        if failed is not None:
            span.set_status(Status(StatusCode.ERROR, f"interrupted: the process exited {failed}"))
    else:
        _record_exception(span, error)
        span.set_status(Status(StatusCode.ERROR, _error_text(error)))


def _error_text(error: BaseException, limit: int = 300) -> str:
    text = exception_str(error, limit)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _call_error_type(error: BaseException) -> str:
    if isinstance(error, CallTimeout):
        return "timeout"
    if isinstance(error, CallError):
        return reason_class(error.reason)
    if isinstance(error, asyncio.CancelledError):
        return "caller_exited"
    return type(error).__name__


def _call_failed(span: Any, error: BaseException, proc: Process | None) -> None:
    if isinstance(error, asyncio.CancelledError):
        reason = proc.pending_exit if proc is not None else None
        span.add_event("interrupted", {"suptrace.exit.reason": reason_text(reason, 200)})
        span.set_status(
            Status(
                StatusCode.ERROR, f"the caller exited ({reason_text(reason, 100)}) while waiting"
            )
        )
        return
    _record_exception(span, error)
    span.set_status(Status(StatusCode.ERROR, _error_text(error)))


def _supervision_attributes(kind: str, sup: str, d: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {"suptrace.supervisor": sup}
    child = d.get("child_id")
    if child is not None:
        attrs["suptrace.child.id"] = child if isinstance(child, str) else short(child, 100)
    reason = d.get("reason")
    if reason is not None or "reason" in d:
        attrs["suptrace.exit.reason"] = reason_text(reason)
        attrs["suptrace.exit.reason_class"] = reason_class(reason)
    if kind == "restart":
        if d.get("old_pid") is not None:
            attrs["suptrace.old.pid"] = str(d["old_pid"])
        if d.get("new_pid") is not None:
            attrs["suptrace.new.pid"] = str(d["new_pid"])
    elif kind == "intensity":
        for key in ("restarts", "intensity", "period"):
            if d.get(key) is not None:
                attrs[f"suptrace.{key}"] = d[key]
        if "child_reason" in d:
            attrs["suptrace.child.reason"] = reason_text(d["child_reason"])
    elif kind == "not_restarted":
        attrs["suptrace.restart_type"] = str(d.get("restart_type"))
        if d.get("rule"):
            attrs["suptrace.rule"] = str(d["rule"])
        cause = d.get("cause")
        if isinstance(cause, dict) and cause.get("text"):
            attrs["suptrace.cause"] = str(cause["text"])
    return attrs


def _failure_text(kind: str, d: dict[str, Any]) -> str:
    child = d.get("child_id")
    if kind == "intensity":
        return (
            f"reached max restart intensity ({d.get('restarts')} restarts, intensity "
            f"{d.get('intensity')} in {d.get('period')}s); last offender {child!r}"
        )
    if kind == "not_restarted":
        return f"child {child!r} exited {reason_text(d.get('reason'), 100)} and was not restarted"
    if kind == "start_error":
        return f"child {child!r} failed to start: {short(d.get('reason'), 150)}"
    return f"child {child!r}: {kind} {short(d.get('reason'), 150)}"
