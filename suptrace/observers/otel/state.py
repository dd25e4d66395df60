"""The bridge's state and what its spans say: names, attributes, the current span.

`BridgeState` holds what the per-message hooks (`suptrace.observers.otel.messages`),
the supervision hooks (`~.supervision`) and the report logs (`~.logs`) share;
`suptrace.observers.otel.bridge.Bridge` puts them together.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from typing import Any

from opentelemetry.trace import INVALID_SPAN, get_current_span

from suptrace.core.process import Process
from suptrace.core.runtime import Runtime
from suptrace.core.terms import Pid
from suptrace.observers.otel.config import DEFAULT_SAMPLE, TRACE_MODES
from suptrace.observers.otel.metrics import Metrics
from suptrace.observers.otel.spans import (
    CONSUMER,
    NAME_LIMIT,
    OFF,
    OPS,
    RATIO_MASK,
    SCHEMA_URL,
    SCOPE,
    SPAN_KEY,
    TAIL,
    app_sampler,
    brief,
    call_failed,
    context_now,
    label_of,
    mark_failed,
    meter_on,
    record_exception,
    sdk_tracer,
    trace_mode,
    version,
)
from suptrace.observers.otel.tail import Current, Pending, Tail, new_span_id, new_trace_id
from suptrace.observers.reports import Reports

__all__ = ["BridgeState"]


class BridgeState:
    """One node's bridge state: providers, trace level, tail, caches (see `Bridge`)."""

    def __init__(
        self,
        runtime: Runtime,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        logger_provider: Any = None,
        *,
        traces: str = "all",
        sample: float = DEFAULT_SAMPLE,
        lifetime_spans: bool = False,
        message_repr: bool = True,
        repr_limit: int = 120,
        reports: Reports | None = None,
    ) -> None:
        self.runtime = runtime
        #: The node's reports, logged as OpenTelemetry logs when there is a logger provider.
        self.reports = reports
        scope_version = version()
        if traces not in TRACE_MODES:
            raise ValueError(f"traces must be 'failures', 'all' or 'off', got {traces!r}")
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"sample must be between 0 and 1, got {sample!r}")
        #: The trace mode, "failures", "all" or "off": decided once by
        #: `suptrace.observers.otel.config.decide`, as is ``sample``.
        self.traces = traces
        ratio = sample if traces == "failures" else DEFAULT_SAMPLE
        self.tracer: Any = None
        self.mode = OFF
        self.tail: Tail | None = None
        #: Share of new traces exported whole in "failures" mode (no sampler of the app's).
        self.ratio = ratio
        #: Trace ids whose low 56 bits are below this are sampled (``ratio`` of them).
        self._bound = int(ratio * (1 << 56)) if ratio else 0
        self.app_sampler = False
        if tracer_provider is not None and self.traces != "off":
            self.tracer = tracer_provider.get_tracer(SCOPE, scope_version, schema_url=SCHEMA_URL)
            self.mode = trace_mode(tracer_provider, self.tracer)
            if self.mode and self.traces == "failures" and sdk_tracer(self.tracer):
                self.mode = TAIL
                self.app_sampler = app_sampler(tracer_provider)
                self.tail = Tail(self.tracer, self._describe, self._mark_pending, self._pend)
        #: Casts and plain messages are recorded as raw records ("failures" mode without
        #: a sampler of the application's, which decides span by span).
        self._raw = self.mode == TAIL and not self.app_sampler
        self.metrics: Metrics | None = None
        if meter_provider is not None:
            meter = meter_provider.get_meter(SCOPE, scope_version, schema_url=SCHEMA_URL)
            if meter_on(meter_provider, meter):
                self.metrics = Metrics(meter, meter_provider)
        self.logger: Any = None
        if logger_provider is not None:
            self.logger = logger_provider.get_logger(SCOPE, scope_version, schema_url=SCHEMA_URL)
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
        return self.mode != OFF

    def stats(self) -> dict[str, int]:
        """What "failures" mode did: failures seen, spans exported and evicted unexported."""
        tail = self.tail
        if tail is None:
            return {}
        return {"failures": tail.failures, "exported": tail.exported, "evicted": tail.evicted}

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
            if len(self._pids) > NAME_LIMIT:
                self._pids.clear()
            text = self._pids[pid] = str(pid)
        return text

    # -- names -------------------------------------------------------------------------

    def _process_name(self, label: str) -> str:
        name = self._process_names.get(label)
        if name is None:
            if len(self._process_names) > NAME_LIMIT:
                self._process_names.clear()
            name = self._process_names[label] = f"process {label}"
        return name

    def _call_name(self, label: str) -> str:
        name = self._call_names.get(label)
        if name is None:
            if len(self._call_names) > NAME_LIMIT:
                self._call_names.clear()
            name = self._call_names[label] = f"call {label}"
        return name

    def _describe(self, rec: Pending) -> dict[str, Any]:
        """The attributes of a pending span, built only when it is exported."""
        info = rec.info
        tag = info[0]
        if tag == "handle":
            _, proc, kind, msg = info
            return self._handle_attributes(proc, label_of(proc), kind, msg)
        if tag == "call":
            _, server, caller, request = info
            return self._call_attributes(label_of(server), server, caller, request)
        return dict(info[1])  # an exit's, a refused call's: made when it was recorded

    def _mark_pending(self, span: Any, rec: Pending) -> None:
        error = rec.error
        if error is None:
            return
        tag = rec.info[0]
        if tag == "handle" or tag == "init":
            mark_failed(span, error, rec.failed)
        elif tag == "call" or tag == "refused":
            call_failed(span, error, rec.info[2])
        elif isinstance(error, BaseException):
            record_exception(span, error, {"suptrace.event": "exit"})

    # -- raw records ("failures" mode) ---------------------------------------------------
    #
    # A cast or plain message handled in "failures" mode outside any sampled trace is
    # recorded as a raw record: its token ``(cell, current, t0, process, label, kind)``
    # (the shape of every handling token, see `suptrace.observers.otel.messages`),
    # whose ``cell`` is the list ``[t0, t1, pending, message, link, sender]``: ``t0``
    # / ``t1`` are ``perf_counter()`` readings (``t1`` 0.0 while it runs), ``pending``
    # its `Pending` span once something needed one, ``link`` the sender's (trace id,
    # span id) and ``sender`` a weak reference to the sender's `Pending`. No id is
    # drawn, no span object made, until something asks: the handler reading its
    # current span (`Current`), a call or span made inside it, a failure exporting it
    # (`Tail.fail`), a send from it the receiver links to. Then `_pend` makes the
    # `Pending` once, and everything sees the same ids.

    def _sample(self, token: tuple[Any, ...]) -> None:
        """A raw record starting a sampled trace: its span now, with a trace id in the
        sampled share (as a trace-id ratio sampler decides), exported when it ends.

        The GenServer loop calls it itself (`Current.sample`): it never raises."""
        try:
            span = self._pend(token, True)
            span.mark_sampled()
            tail = self.tail
            assert tail is not None
            tail.select(span, 0)
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("handle_begin", exc)

    def _pend(self, token: tuple[Any, ...], sampled: bool = False) -> Pending:
        """The `Pending` span of a raw record, made on first use (same ids ever after)."""
        cell = token[0]
        span: Pending | None = cell[2]
        if span is not None:
            return span
        t0, t1, _, msg, link, sender = cell
        _, _, _, proc, label, kind = token
        name = self._process_names.get(label) or self._process_name(label)
        bound = self._bound
        trace_id = new_trace_id()
        if sampled:  # inside the sampled share
            trace_id = (trace_id & ~RATIO_MASK) | (trace_id & RATIO_MASK) % max(bound, 1)
            trace_id = trace_id or 1
        else:
            while trace_id & RATIO_MASK < bound:  # outside the sampled share
                trace_id = new_trace_id()
        span = Pending(trace_id, new_span_id(), 0, name, CONSUMER, ("handle", proc, kind, msg), link)
        offset = time.time_ns() - int(time.perf_counter() * 1e9)
        span.start = int(t0 * 1e9) + offset
        if t1:
            span.end_ns = int(t1 * 1e9) + offset
        if sender is not None:
            span.sender = sender
        cell[2] = span
        return span

    def _ended(self, span: Pending, t1: float) -> None:
        """A raw record whose `Pending` exists ended healthy at ``t1``: exported if its
        trace was selected (a sampled one alone in its trace is then forgotten: the
        sample never crowds the failures out of `Tail.selected`)."""
        span.end_ns = int(t1 * 1e9) + time.time_ns() - int(time.perf_counter() * 1e9)
        tail = self.tail
        if tail is not None and span.trace_id in tail.selected:
            tail.emit(span)
            if span.group is None and span.sender is None:
                tail.selected.pop(span.trace_id, None)

    def _link_of(self, ctx: Any) -> tuple[tuple[int, int] | None, Any]:
        """(link, weak reference to the sender's `Pending`) for a message's context."""
        if type(ctx) is tuple:  # a raw record's token
            ctx = self._pend(ctx)
        if type(ctx) is Pending:
            return (ctx.trace_id, ctx.span_id), weakref.ref(ctx)
        sc = ctx.get_span_context()
        if sc.is_valid:
            return (sc.trace_id, sc.span_id), None
        return None, None

    def _current(self, proc: Process | None) -> Any:
        """The current span, unless it is the one ``proc`` merely inherited at spawn."""
        if context_now is not None:  # get_current_span() without the API's layers
            span = context_now().get(SPAN_KEY)  # only spans are set under the key
            if span is None:
                span = INVALID_SPAN
        else:  # pragma: no cover - an API without the key
            span = get_current_span()
        if type(span) is Current:
            if proc is None or span.proc is not proc:
                return INVALID_SPAN  # a spawner's, inherited
            span = span.span if span.span is not None else span.before
            if type(span) is tuple:  # a raw record's token
                return self._pend(span)
            return INVALID_SPAN if span is None else span
        if proc is not None and span is not INVALID_SPAN and self.inherited.get(proc) is span:
            return INVALID_SPAN
        return span


    def _handle_attributes(self, proc: Process, label: str, kind: str, msg: Any) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "messaging.system": "suptrace",
            "messaging.operation.type": "process",
            "messaging.operation.name": OPS.get(kind, kind),
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

    def _call_attributes(
        self, label: str, server: Process | None, proc: Process | None, request: Any
    ) -> dict[str, Any]:
        """A call's attributes (``server`` None: a call nobody received, no pid)."""
        attrs: dict[str, Any] = {
            "messaging.system": "suptrace",
            "messaging.operation.type": "send",
            "messaging.operation.name": "call",
            "messaging.destination.name": label,
        }
        if server is not None:
            attrs["suptrace.destination.pid"] = self._pid_text(server.pid)
        if proc is not None:
            attrs["suptrace.caller.pid"] = self._pid_text(proc.pid)
            attrs["suptrace.caller.name"] = proc.name or proc.initial_call
        if self.message_repr:
            attrs["suptrace.message"] = brief(request, self.repr_limit)
        return attrs

