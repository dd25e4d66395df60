"""The OpenTelemetry bridge: every message, call, exit, restart and breach as spans.

`Bridge` is the runtime's `Instrument` (see `suptrace.core.runtime`) and a
subscriber of the event stream. It uses the OpenTelemetry API only (and, in
``"failures"`` mode, the SDK's span class to export the traces it selects).

Trace modes
-----------

``traces="all"``
    every handling and call is an SDK span (the provider's sampler still
    applies). The default with the embedded OTLP-JSON file and with providers
    passed to ``run``/``Node``.
``traces="failures"``
    in-process tail sampling (`suptrace.observers.otel_tail`): every handling
    and call is recorded cheaply, with real trace and span ids; a failure
    (crash, abnormal exit, `CallError` including `CallTimeout`, restart, start
    error, intensity breach, ``not_restarted``) exports the complete trace that
    led to it: the failing process's recent handlings, the call chain into it
    across processes, the sends linked to them, with the ids the callers saw.
    Healthy traffic is exported by a parent-based sample of new traces: the
    application's sampler when it configured one (``OTEL_TRACES_SAMPLER`` or a
    provider with a sampler of its own), else ``SUPTRACE_TRACES_SAMPLE``
    (default 0.01). The default when spans go over OTLP (also with the global
    or instrumented providers).
``traces="off"``
    no spans; metrics (exact in every mode) and logs only.

``SUPTRACE_TRACES`` sets the mode when the keyword is not given.

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
    a call chain A -> B -> C is one trace. Timeouts and exits of the server end
    the CLIENT span with ERROR status and an exception event.
``exit <name>`` (INTERNAL)
    a zero-length span when a process exits (only abnormal exits in
    ``"failures"`` mode), with the reason, ERROR status for abnormal exits, the
    child of the handling that crashed, linked to the span that was current
    where the process was spawned (``suptrace.link="spawned_during"``: the
    supervisor's handling that restarted it). The supervisor's handling of the
    exit signal is linked to it. No span measures a process's lifetime.

Handling spans are the current span while the callback runs, so spans made by
other instrumentations inside it are their children and W3C ``traceparent``
propagates downstream (in ``"failures"`` mode a non-recording span with the
real ids). Spawns are ``spawn`` events on the spawner's current span.

Supervision events (``restart``, ``child_terminated``, ``start_error``,
``intensity``, ``not_restarted``, ``shutdown_error``) are span events on the
span current when they happen (the supervisor handling the child's exit), or
on a short span of their own outside any handling. The failures among them
(start errors, intensity breaches, subtrees not restarted, shutdown errors)
set ERROR status.

With a logger provider, SASL-style reports also become OpenTelemetry log
records, correlated with the span they were produced in.

Costs: nothing is built for a span that is not recording. An SDK tracer whose
sampler is always-off installs no per-message tracing at all; with a
parent-based always-off sampler only calls inside sampled traces are traced.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import weakref
from collections import OrderedDict, deque
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context, attach, detach
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    get_current_span,
    set_span_in_context,
)

from suptrace.behaviours.gen_server import _Call, _Cast, _System
from suptrace.core.errors import Exit
from suptrace.core.events import TraceEvent
from suptrace.core.process import Process
from suptrace.core.runtime import Runtime, _current_process
from suptrace.core.saferepr import exception_str
from suptrace.core.terms import Down, ExitMsg, Pid, is_normal_exit, reason_class
from suptrace.observers.format import short
from suptrace.observers.otel_metrics import _MESSAGE, _PENDING_LIMIT, Metrics, child_label
from suptrace.observers.otel_tail import Current, Pending, Tail, new_span_id, new_trace_id
from suptrace.observers.reports import Reports

__all__ = [
    "Bridge",
    "SCOPE",
    "SCHEMA_URL",
    "SUPERVISION_KINDS",
    "FAILURE_KINDS",
    "TRACE_MODES",
    "traces_setting",
    "sample_setting",
]

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
#: Supervision events that select their trace in ``"failures"`` mode.
_SELECTING = FAILURE_KINDS | {"restart"}

#: The values ``traces=`` and ``SUPTRACE_TRACES`` accept.
TRACE_MODES = ("failures", "all", "off")
#: The default share of healthy traces exported in ``"failures"`` mode.
DEFAULT_SAMPLE = 0.01

_EMPTY = Context()
_OFF, _PARENT, _ON, _TAIL = 0, 1, 2, 3
_OPS = {"call": "handle_call", "cast": "handle_cast", "info": "handle_info"}
_SERVER = SpanKind.SERVER
_CLIENT = SpanKind.CLIENT
_CONSUMER = SpanKind.CONSUMER
_INTERNAL = SpanKind.INTERNAL
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_perf = time.perf_counter
_time_ns = time.time_ns
_bits = random.getrandbits
_weakref = weakref.ref
_new_pending = Pending.__new__
#: The trace id bits a trace-id ratio sampler compares (the W3C random part).
_RATIO_MASK = (1 << 56) - 1
_random = random.random
_NAME_LIMIT = 4096


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


_context_now = _context_reader()
_SPAN_KEY = _span_key()
if not _SPAN_KEY:  # pragma: no cover - an API without the key: use the public functions
    _context_now = None


def _version() -> str:
    from suptrace._version import __version__

    return __version__


def traces_setting(value: Any = None, export: str = "") -> str:
    """The trace mode: the ``traces=`` keyword, else ``SUPTRACE_TRACES``, else the default.

    The default is ``"all"`` for the embedded file (``export="file"``) and for
    providers the application passed (``"explicit"``), ``"failures"`` otherwise.

    >>> traces_setting("failures"), traces_setting(None, "file")
    ('failures', 'all')
    >>> traces_setting("some")
    Traceback (most recent call last):
      ...
    ValueError: traces must be 'failures', 'all' or 'off', got 'some'
    """
    if value is not None:
        if isinstance(value, str) and value.strip().lower() in TRACE_MODES:
            return value.strip().lower()
        raise ValueError(f"traces must be 'failures', 'all' or 'off', got {value!r}")
    env = os.environ.get("SUPTRACE_TRACES", "").strip()
    if env:
        if env.lower() in TRACE_MODES:
            return env.lower()
        raise ValueError(
            f"SUPTRACE_TRACES must be 'failures', 'all' or 'off', got {env!r}; fix or unset "
            f"the variable"
        )
    return "all" if export in ("file", "explicit") else "failures"


def sample_setting() -> float:
    """``SUPTRACE_TRACES_SAMPLE``: the share of healthy traces exported in "failures" mode.

    >>> sample_setting()
    0.01
    """
    raw = os.environ.get("SUPTRACE_TRACES_SAMPLE", "").strip()
    if not raw:
        return DEFAULT_SAMPLE
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:  # also rejects nan
        raise ValueError(
            f"SUPTRACE_TRACES_SAMPLE must be a number between 0 and 1 (the share of healthy "
            f"traces exported), got {raw!r}; fix or unset the variable"
        )
    return ratio


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


def _app_sampler(provider: Any) -> bool:
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


def _sdk_tracer(tracer: Any) -> bool:
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


class Bridge:
    """One node's OpenTelemetry bridge: attach it to a runtime, detach to stop."""

    def __init__(
        self,
        runtime: Runtime,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        logger_provider: Any = None,
        *,
        traces: str | None = None,
        export: str = "explicit",
        lifetime_spans: bool = False,
        message_repr: bool = True,
        repr_limit: int = 120,
        reports: Reports | None = None,
    ) -> None:
        self.runtime = runtime
        #: The node's reports, logged as OpenTelemetry logs when there is a logger provider.
        self.reports = reports
        version = _version()
        #: The trace mode: "failures", "all" or "off" (see the module docs).
        self.traces = traces_setting(traces, export)
        ratio = sample_setting() if self.traces == "failures" else DEFAULT_SAMPLE
        self.tracer: Any = None
        self.mode = _OFF
        self.tail: Tail | None = None
        #: Share of new traces exported whole in "failures" mode (no sampler of the app's).
        self.ratio = ratio
        #: Trace ids whose low 56 bits are below this are sampled (``ratio`` of them).
        self._bound = int(ratio * (1 << 56)) if ratio else 0
        self.app_sampler = False
        if tracer_provider is not None and self.traces != "off":
            self.tracer = tracer_provider.get_tracer(SCOPE, version, schema_url=SCHEMA_URL)
            self.mode = trace_mode(tracer_provider, self.tracer)
            if self.mode and self.traces == "failures" and _sdk_tracer(self.tracer):
                self.mode = _TAIL
                self.app_sampler = _app_sampler(tracer_provider)
                self.tail = Tail(self.tracer, self._describe, self._mark_pending)
        self.metrics: Metrics | None = None
        if meter_provider is not None:
            meter = meter_provider.get_meter(SCOPE, version, schema_url=SCHEMA_URL)
            if meter_on(meter_provider, meter):
                self.metrics = Metrics(meter, meter_provider)
        self.logger: Any = None
        if logger_provider is not None:
            self.logger = logger_provider.get_logger(SCOPE, version, schema_url=SCHEMA_URL)
        self.message_repr = message_repr
        self.repr_limit = repr_limit
        #: The span that was current where each process was spawned. A process's task
        #: inherits its spawner's context; outside its own handlers that span is stale,
        #: so the bridge treats it as "no current span" (see `_current`).
        self.inherited: dict[Process, Any] = {}
        #: The failed handling span of a process about to exit (its exit span's parent).
        self._crashed: dict[Process, Any] = {}
        #: (pid, exit span) of the process whose death is being notified right now:
        #: the exit signals its links and monitors receive carry it (see `capture`).
        self._dying: tuple[Pid, Any] | None = None
        #: Recent exit spans (pid -> span), to correlate crash reports.
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
        #: Each process's `Current` span ("failures" mode), attached to its task once.
        self._proxies: dict[Process, Current] = {}

    @property
    def tracing(self) -> bool:
        return self.mode != _OFF

    def stats(self) -> dict[str, int]:
        """What "failures" mode did: failures seen, spans exported and evicted unexported."""
        tail = self.tail
        if tail is None:
            return {}
        return {"failures": tail.failures, "exported": tail.exported, "evicted": tail.evicted}

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
        if self.mode == _ON or self.mode == _TAIL:
            rt.spawn_hooks = (*rt.spawn_hooks, self._on_spawn)
        if self.mode == _ON or self.mode == _TAIL or self.metrics is not None:
            rt.death_hooks = (*rt.death_hooks, self._on_death)
        kinds: list[str] = list(SUPERVISION_KINDS)
        if self.metrics is not None:  # sends are counted in `capture`
            self.metrics.attach(rt)
        self._unsubscribe.append(rt.add_event_handler(self._on_event, kinds))
        if self.logger is not None and self.reports is not None:
            self._unsubscribe.append(self.reports.add_handler(self._on_report))
        self.attached = True

    def detach(self) -> None:
        """Stop observing."""
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
        self.inherited.clear()
        self._crashed.clear()
        self._proxies.clear()
        if self.metrics is not None:
            self.metrics.flush()

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

    # -- "failures" mode: new traces and pending spans -----------------------------------

    def _root(
        self,
        name: str,
        kind: SpanKind,
        link: tuple[int, int] | None,
        info: Any,
        sampled: bool = False,
    ) -> Any:
        """A span starting a new trace: a real one if the trace is sampled (``sampled``:
        already decided so), else pending."""
        if self.app_sampler:
            links = (Link(SpanContext(link[0], link[1], False, _UNSAMPLED)),) if link else None
            span = self.tracer.start_span(name, _EMPTY, kind, links=links)
            if span.is_recording():
                return span
            sc = span.get_span_context()
            return Pending(sc.trace_id, sc.span_id, 0, name, kind, info, link)
        if sampled or (self.ratio and _random() < self.ratio):
            links = (Link(SpanContext(link[0], link[1], False, _UNSAMPLED)),) if link else None
            return self.tracer.start_span(name, _EMPTY, kind, links=links)
        return Pending(new_trace_id(), new_span_id(), 0, name, kind, info, link)

    def _child(self, parent: Any, name: str, kind: SpanKind, info: Any) -> Any:
        """A span under ``parent`` (a pending span, an SDK span or another's span)."""
        if type(parent) is Pending:
            child = Pending(parent.trace_id, new_span_id(), parent.span_id, name, kind, info)
            self.tail.join(parent, child)  # type: ignore[union-attr]
            return child
        if parent.is_recording() or parent.get_span_context().trace_flags.sampled:
            return self.tracer.start_span(name, set_span_in_context(parent, _EMPTY), kind)
        sc = parent.get_span_context()
        if sc.is_valid:  # an unsampled span of the application's: keep its trace id
            return Pending(sc.trace_id, new_span_id(), sc.span_id, name, kind, info)
        return self._root(name, kind, None, info)

    def _describe(self, rec: Pending) -> dict[str, Any]:
        """The attributes of a pending span, built only when it is exported."""
        info = rec.info
        tag = info[0]
        if tag == "handle":
            _, proc, kind, msg = info
            return self._handle_attributes(proc, _label(proc), kind, msg)
        if tag == "call":
            _, server, caller, request = info
            return self._call_attributes(_label(server), server, caller, request)
        return dict(info[1])

    def _mark_pending(self, span: Any, rec: Pending) -> None:
        error = rec.error
        if error is None:
            return
        tag = rec.info[0]
        if tag == "handle":
            _mark(span, error, rec.failed)
        elif tag == "call":
            _call_failed(span, error, rec.info[2])
        elif isinstance(error, BaseException):
            _record_exception(span, error, {"suptrace.event": "exit"})

    # -- the Instrument protocol ---------------------------------------------------------

    def capture(self, dest: Process, msg: Any, sender: Pid | None) -> Any:
        """The sender's current span, stored with the message (and the send counted)."""
        try:
            m = self.metrics
            if m is not None and sender is not None:
                t = type(msg)
                if t is _Cast:
                    key = (dest.name or dest.initial_call, "cast")
                    tally = m.sent
                    count = tally.get(key)
                    if count is None:
                        m.count_sent(*key)
                    else:
                        tally[key] = count + 1
                elif t is not _Call and t is not ExitMsg and t is not Down and t is not _System:
                    m.count_sent(dest.name or dest.initial_call, "send")
            if not self.mode:
                return None
            span = self._outgoing
            if span is not None:  # the request of the call that `call_begin` just opened
                self._outgoing = None
                return span
            dying = self._dying
            if dying is not None and sender is dying[0]:  # its exit signals carry the exit
                return dying[1]
            if _context_now is not None:
                span = _context_now().get(_SPAN_KEY)
                if span is None:
                    return None
                if type(span) is Current:  # "failures" mode: the handling in progress
                    if span.proc is _current_process.get():
                        return span.span
                    return None  # a spawner's, inherited
            else:
                span = get_current_span()
            if span is INVALID_SPAN:
                return None
            if not self.inherited:
                return span
            proc = _current_process.get()
            if proc is not None and self.inherited.get(proc) is span:
                return None
            return span
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("capture", exc)
            return None

    def _current(self, proc: Process | None) -> Any:
        """The current span, unless it is the one ``proc`` merely inherited at spawn."""
        span = get_current_span()
        if type(span) is Current:
            if proc is None or span.proc is not proc:
                return INVALID_SPAN  # a spawner's, inherited
            span = span.span if span.span is not None else span.before
            return INVALID_SPAN if span is None else span
        if proc is not None and span is not INVALID_SPAN and self.inherited.get(proc) is span:
            return INVALID_SPAN
        return span

    def _attach_current(self, proc: Process) -> Current:
        """``proc``'s `Current` span, attached to its task's context (once: the task's
        context is its own, what it attaches stays until the task ends)."""
        before = self._current(proc)
        proxy = Current(proc, None if before is INVALID_SPAN else before, self.inherited.get)
        tail = self.tail
        if tail is not None:
            ring = tail.recent.get(proc)
            if ring is None:
                ring = tail.recent[proc] = deque(maxlen=tail.recent_size)
            proxy.ring = ring
        attach(set_span_in_context(proxy))
        self._proxies[proc] = proxy
        return proxy

    def handle_begin(self, proc: Process, kind: str, msg: Any, ctx: Any) -> Any:
        try:
            sampled = False
            if self.mode == _TAIL and kind != "call" and not self.app_sampler:
                # "failures" mode, a cast or a plain message: a new trace, pending unless
                # the trace id falls in the sampled share (as a trace-id ratio sampler).
                tid = _bits(128) or 1
                if tid & _RATIO_MASK >= self._bound:
                    # The hot path, inline: a pending root span for a cast or a message.
                    proxy = self._proxies.get(proc)
                    if proxy is None:
                        proxy = self._attach_current(proc)
                    label = proc.name or proc.initial_call
                    name = self._process_names.get(label) or self._process_name(label)
                    # Pending(tid, span id, 0, name, _CONSUMER, info) without the call: the
                    # parent id and the kind are the class's defaults.
                    rec = _new_pending(Pending)
                    rec.trace_id = tid
                    rec.span_id = _bits(64) or 1
                    rec.name = name
                    rec.info = ("handle", proc, kind, msg)
                    rec.start = _time_ns()
                    if ctx is not None:
                        if type(ctx) is Pending:
                            rec.link = (ctx.trace_id, ctx.span_id)
                            rec.sender = _weakref(ctx)
                        else:
                            sc = ctx.get_span_context()
                            if sc.is_valid:
                                rec.link = (sc.trace_id, sc.span_id)
                    ring = proxy.ring
                    if len(ring) == ring.maxlen:
                        self.tail.evicted += 1  # type: ignore[union-attr]
                    ring.append(rec)
                    proxy.span = rec  # the current span while the callback runs
                    if self.metrics is None:
                        return (rec, proxy, 0.0, proc, label, kind)
                    return (rec, proxy, _perf(), proc, label, kind)
                sampled = True
            label = proc.name or proc.initial_call
            span = None
            token: Any = None
            mode = self.mode
            if mode == _TAIL:
                token = self._proxies.get(proc)
                if token is None:
                    token = self._attach_current(proc)
                name = self._process_names.get(label) or self._process_name(label)
                info = ("handle", proc, kind, msg)
                if kind == "call":
                    if ctx is not None:
                        span = self._child(ctx, name, _SERVER, info)
                    else:
                        span = self._root(name, _SERVER, None, info)
                else:
                    link = None
                    if ctx is not None:
                        if type(ctx) is Pending:
                            link = (ctx.trace_id, ctx.span_id)
                        else:
                            sc = ctx.get_span_context()
                            if sc.is_valid:
                                link = (sc.trace_id, sc.span_id)
                    span = self._root(name, _CONSUMER, link, info, sampled)
                    if type(ctx) is Pending and type(span) is Pending:
                        span.sender = weakref.ref(ctx)
                if type(span) is Pending:
                    self.tail.add(span, proc)  # type: ignore[union-attr]
                elif span.is_recording():
                    span.set_attributes(self._handle_attributes(proc, label, kind, msg))
                token.span = span  # the current span while the callback runs
            elif mode:
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
            if type(ctx_token) is Current:
                ctx_token.span = None
                if error is None and type(span) is Pending:  # the hot path: a healthy handling
                    span.end_ns = _time_ns()
                    if span.trace_id in self.tail.selected:  # type: ignore[union-attr]
                        self.tail.emit(span)  # type: ignore[union-attr]
                    m = self.metrics
                    if m is not None:
                        slot = ctx_token.keys.get(kind)
                        if slot is None or slot[0] is not label:
                            series = m.series_for(_MESSAGE, (label, _OPS.get(kind, kind), None))
                            slot = ctx_token.keys[kind] = (label, series)
                        series = slot[1]
                        series.append(_perf() - t0)
                        if len(series) > _PENDING_LIMIT:
                            m.flush()
                    return
            elif ctx_token is not None:
                detach(ctx_token)
            failed = None
            if error is not None:
                failed = _failure(error, proc)
            if span is not None:
                if type(span) is Pending:
                    span.end_ns = time.time_ns()
                    if error is not None:
                        span.error = error
                        span.failed = failed
                    tail = self.tail
                    assert tail is not None
                    if failed is not None:
                        self._crashed[proc] = span
                        tail.fail(span, proc)
                    elif span.trace_id in tail.selected:
                        tail.emit(span)
                else:
                    if error is not None and span.is_recording():
                        _mark(span, error, failed)
                        if failed is not None:
                            self._crashed[proc] = span
                    span.end()
            m = self.metrics
            if m is not None:
                m.record_handling(label, _OPS.get(kind, kind), failed, _perf() - t0)
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("handle_end", exc)

    def _call_attributes(
        self, label: str, server: Process, proc: Process | None, request: Any
    ) -> dict[str, Any]:
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
        return attrs

    def call_begin(self, proc: Process | None, server: Process, request: Any) -> Any:
        try:
            label = server.name or server.initial_call
            span = None
            mode = self.mode
            if mode:
                current = self._current(proc)
                if mode == _TAIL:
                    name = self._call_names.get(label) or self._call_name(label)
                    info = ("call", server, proc, request)
                    if current is INVALID_SPAN:
                        span = self._root(name, _CLIENT, None, info)
                    else:
                        span = self._child(current, name, _CLIENT, info)
                    if type(span) is Pending:
                        self.tail.add(span, proc)  # type: ignore[union-attr]
                        self._outgoing = span
                        span = (span,)  # not a plain span: `call_end` tells them apart
                elif mode == _ON:
                    if current is INVALID_SPAN:
                        span = self.tracer.start_span(self._call_name(label), _EMPTY, _CLIENT)
                    else:
                        span = self.tracer.start_span(self._call_name(label), kind=_CLIENT)
                elif current.get_span_context().trace_flags.sampled:
                    span = self.tracer.start_span(self._call_name(label), kind=_CLIENT)
            if span is not None and type(span) is not tuple:
                if span.is_recording():
                    span.set_attributes(self._call_attributes(label, server, proc, request))
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
            if type(span) is tuple:
                rec = span[0]
                if self._outgoing is rec:
                    self._outgoing = None
                rec.end_ns = time.time_ns()
                if error is None:
                    self.tail.ended(rec)  # type: ignore[union-attr]
                else:
                    rec.error = error
                    if isinstance(error, asyncio.CancelledError):
                        self.tail.ended(rec)  # type: ignore[union-attr]  # the caller's exit decides
                    else:
                        self.tail.fail(rec, None)  # type: ignore[union-attr]
            elif span is not None:
                if self._outgoing is span:  # the request was never enqueued
                    self._outgoing = None
                if error is not None and span.is_recording():
                    _call_failed(span, error, proc)
                span.end()
            m = self.metrics
            if m is not None:
                m.record_call(label, error, _perf() - t0)
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("call_end", exc)

    # -- spawns and exits ----------------------------------------------------------------

    def _on_spawn(self, proc: Process, parent: Process | None) -> None:
        try:
            current = self._current(parent)
            if current is INVALID_SPAN:
                return
            self.inherited[proc] = current
            if proc.system:
                return
            if type(current) is Pending:
                current.note("spawn", self._spawn_attributes(proc))
            elif current.is_recording():
                current.add_event("spawn", self._spawn_attributes(proc))
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("spawn", exc)

    def _spawn_attributes(self, proc: Process) -> dict[str, Any]:
        return {
            "suptrace.process.pid": str(proc.pid),
            "suptrace.process.name": proc.name or proc.initial_call,
            "suptrace.initial_call": proc.initial_call,
        }

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
        mode = self.mode
        if not mode:
            return
        # Forgotten on the next loop iteration: the links and monitors this death notifies
        # right after this hook still send from this process, in its context.
        self.runtime.loop.call_soon(self._forget, proc)
        if proc.system or mode == _PARENT:
            return
        normal = is_normal_exit(reason)
        if normal and mode == _TAIL:
            return
        try:
            self._exit_span(proc, reason, normal)
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("exit", exc)

    def _exit_span(self, proc: Process, reason: Any, normal: bool) -> None:
        """A zero-length ``exit <name>`` span: the child of the handling that crashed."""
        label = proc.name or proc.initial_call
        attrs: dict[str, Any] = {
            "suptrace.process.pid": str(proc.pid),
            "suptrace.process.name": label,
            "suptrace.initial_call": proc.initial_call,
            "suptrace.node": self.runtime.name,
            "suptrace.exit.reason": reason_text(reason),
            "suptrace.exit.reason_class": reason_class(reason),
            "suptrace.exit.by_signal": proc.pending_exit is not None,
            "suptrace.messages_in": proc.messages_in,
            "suptrace.messages_out": proc.messages_out,
        }
        if proc.parent is not None:
            attrs["suptrace.parent.pid"] = str(proc.parent)
        crashed = self._crashed.pop(proc, None)
        spawned = self.inherited.get(proc)
        name = f"exit {label}"
        status = None if normal else f"exited {reason_text(reason, 200)}"
        span: Any
        if self.mode == _TAIL:
            link = None
            if spawned is not None:
                sc = spawned.get_span_context()
                link = (sc.trace_id, sc.span_id) if sc.is_valid else None
            info = ("attrs", attrs)
            if crashed is not None:
                sc = crashed.get_span_context()
                rec = Pending(sc.trace_id, new_span_id(), sc.span_id, name, _INTERNAL, info, link)
                if type(crashed) is Pending:
                    self.tail.join(crashed, rec)  # type: ignore[union-attr]
            else:
                rec = Pending(new_trace_id(), new_span_id(), 0, name, _INTERNAL, info, link)
            if type(spawned) is Pending:
                rec.sender = weakref.ref(spawned)
            rec.note("exit", attrs, status)
            rec.error = reason if isinstance(reason, BaseException) else None
            rec.end_ns = rec.start
            tail = self.tail
            assert tail is not None
            tail.add(rec, proc)
            tail.fail(rec, proc)
            span = rec
        else:
            links = []
            if spawned is not None:
                sc = spawned.get_span_context()
                if sc.is_valid:
                    links.append(Link(sc, {"suptrace.link": "spawned_during"}))
            ctx = set_span_in_context(crashed, _EMPTY) if crashed is not None else _EMPTY
            now = time.time_ns()
            span = self.tracer.start_span(
                name, ctx, _INTERNAL, links=links, attributes=attrs, start_time=now
            )
            if span.is_recording():
                if isinstance(reason, BaseException):
                    _record_exception(span, reason, {"suptrace.event": "exit"})
                span.add_event("exit", attrs, now)
                if status is not None:
                    span.set_status(Status(StatusCode.ERROR, status))
            span.end(now)
        self._dying = (proc.pid, span)
        dead = self._dead
        dead[proc.pid] = span
        if len(dead) > 64:
            dead.popitem(last=False)

    def _forget(self, proc: Process) -> None:
        self._dying = None
        self.inherited.pop(proc, None)
        self._crashed.pop(proc, None)
        self._proxies.pop(proc, None)
        if self.tail is not None:
            self.tail.forget(proc)

    # -- supervision events ------------------------------------------------------------

    def _on_event(self, event: TraceEvent) -> None:
        kind = event.kind
        m = self.metrics
        d = event.data
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
        try:
            self._supervision_span_event(kind, sup, proc, d)
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken(kind, exc)

    def _supervision_span_event(
        self, kind: str, sup: str, proc: Process | None, d: dict[str, Any]
    ) -> None:
        failed = _failure_text(kind, d) if kind in FAILURE_KINDS else None
        selecting = kind in _SELECTING or (
            kind == "child_terminated" and not is_normal_exit(d.get("reason"))
        )
        event_attrs = _supervision_attributes(kind, sup, d)
        current = self._current(proc)
        if type(current) is Pending:
            current.note(kind, event_attrs, failed)
            if selecting:
                self.tail.fail(current, proc)  # type: ignore[union-attr]
            return
        if current.is_recording():
            current.add_event(kind, event_attrs)
            if failed is not None:
                current.set_status(Status(StatusCode.ERROR, failed))
            return
        if self.mode == _PARENT or not (selecting or self.mode == _ON):
            return
        # Outside any handling (a supervisor's init, its shutdown): a short span of its own.
        name = f"{kind} {sup}"
        if self.mode == _TAIL:
            rec = Pending(new_trace_id(), new_span_id(), 0, name, _INTERNAL, ("attrs", event_attrs))
            rec.note(kind, event_attrs, failed)
            rec.end_ns = rec.start
            self.tail.add(rec, proc)  # type: ignore[union-attr]
            self.tail.fail(rec, proc)  # type: ignore[union-attr]
            return
        span = self.tracer.start_span(name, _EMPTY, _INTERNAL, attributes=event_attrs)
        span.add_event(kind, event_attrs)
        if failed is not None:
            span.set_status(Status(StatusCode.ERROR, failed))
        span.end()

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
