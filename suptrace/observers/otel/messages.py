"""The bridge's per-message part: the runtime's `Instrument` hooks.

``capture`` runs in the sender as a message is enqueued; ``handle_begin`` /
``handle_end`` around each GenServer callback; ``call_begin`` / ``call_end``
around a whole `call`. The hot path of every traced message runs here.

One token shape: ``handle_begin`` and ``call_begin`` return a `Token`, the
tuple ``(span, context, t0, process, label, kind)`` given back to
``handle_end`` / ``call_end``:

* ``span`` -- the handling or call span: an SDK span, a `Pending` record
  ("failures" mode) or None (no span, metrics only);
* ``context`` -- for a handling, the `Current` proxy ("failures" mode) or the
  token of the OpenTelemetry context attached while the callback runs; None
  for a call (its span is never the current one);
* ``t0`` -- ``perf_counter()`` at the start when metrics are on (always for a
  raw record), else 0.0;
* ``process`` -- the handling process, or the caller (None outside a process);
* ``label`` -- the handling process's or the called server's name for
  metrics and span names;
* ``kind`` -- ``"call"``, ``"cast"`` or ``"info"`` for a handling, ``"init"``
  for a server's ``init`` (``t0`` 0.0: it is no message), ``"client"`` for a call.

A tuple rather than a class: building it is the cheapest thing on the path.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections import deque
from typing import Any

from opentelemetry.context import attach, detach
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    SpanContext,
    SpanKind,
    get_current_span,
    set_span_in_context,
)

from suptrace.behaviours.requests import CallRequest, SystemRequest
from suptrace.core.process import Process
from suptrace.core.runtime import current_process_var
from suptrace.core.terms import CastRequest, Down, ExitMsg, Pid
from suptrace.observers.otel.metrics import MESSAGE, PENDING_LIMIT
from suptrace.observers.otel.spans import (
    CLIENT,
    CONSUMER,
    EMPTY,
    INTERNAL,
    ON,
    OPS,
    SERVER,
    SPAN_KEY,
    TAIL,
    UNSAMPLED,
    call_failed,
    context_now,
    failure_class,
    mark_failed,
)
from suptrace.observers.otel.state import BridgeState
from suptrace.observers.otel.tail import Current, Pending, new_span_id, new_trace_id

__all__ = ["Messages", "Token"]

#: What ``handle_begin`` and ``call_begin`` return (see the module docs).
Token = tuple[Any, Any, float, "Process | None", str, str]

_perf = time.perf_counter
_time_ns = time.time_ns
_bits = random.getrandbits
_weakref = weakref.ref
_new_pending = Pending.__new__
_random = random.random
#: Where the server loop writes durations when there are no metrics: nowhere.
_NO_SERIES: deque[float] = deque(maxlen=0)


class Messages(BridgeState):
    """The `Instrument` hooks of the bridge (see the module docs)."""

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
            links = (Link(SpanContext(link[0], link[1], False, UNSAMPLED)),) if link else None
            span = self.tracer.start_span(name, EMPTY, kind, links=links)
            if span.is_recording():
                return span
            sc = span.get_span_context()
            return Pending(sc.trace_id, sc.span_id, 0, name, kind, info, link)
        if sampled or (self.ratio and _random() < self.ratio):
            links = (Link(SpanContext(link[0], link[1], False, UNSAMPLED)),) if link else None
            return self.tracer.start_span(name, EMPTY, kind, links=links)
        return Pending(new_trace_id(), new_span_id(), 0, name, kind, info, link)

    def _child(self, parent: Any, name: str, kind: SpanKind, info: Any) -> Any:
        """A span under ``parent`` (a pending span, an SDK span or another's span)."""
        if type(parent) is Pending:
            child = Pending(parent.trace_id, new_span_id(), parent.span_id, name, kind, info)
            self.tail.join(parent, child)  # type: ignore[union-attr]
            return child
        if parent.is_recording() or parent.get_span_context().trace_flags.sampled:
            return self.tracer.start_span(name, set_span_in_context(parent, EMPTY), kind)
        sc = parent.get_span_context()
        if sc.is_valid:  # an unsampled span of the application's: keep its trace id
            return Pending(sc.trace_id, new_span_id(), sc.span_id, name, kind, info)
        return self._root(name, kind, None, info)

    def _under(self, parent: Any, name: str, kind: SpanKind, info: Any) -> Any:
        """A span under ``parent``, or starting a new trace when there is none."""
        if parent is None or parent is INVALID_SPAN:
            return self._root(name, kind, None, info)
        return self._child(parent, name, kind, info)

    # -- the Instrument protocol ---------------------------------------------------------

    def capture(self, dest: Process, msg: Any, sender: Pid | None) -> Any:
        """The sender's current span, stored with the message (and the send counted)."""
        try:
            m = self.metrics
            if m is not None and sender is not None:
                t = type(msg)
                if t is CastRequest:
                    label = dest.name or dest.initial_call
                    casts = m.casts
                    count = casts.get(label)
                    if count is None:
                        m.count_cast(label)
                    else:
                        casts[label] = count + 1
                elif t is not CallRequest and t is not ExitMsg and t is not Down and t is not SystemRequest:
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
            if context_now is not None:
                span = context_now().get(SPAN_KEY)
                if span is None:
                    return None
                if type(span) is Current:  # "failures" mode: the handling in progress
                    if span.proc is current_process_var.get():
                        return span.span
                    return None  # a spawner's, inherited
            else:
                span = get_current_span()
            if span is INVALID_SPAN:
                return None
            if not self.inherited:
                return span
            proc = current_process_var.get()
            if proc is not None and self.inherited.get(proc) is span:
                return None
            return span
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("capture", exc)
            return None

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
        proxy.pend = self._pend
        if self._raw:  # the GenServer loop records casts and plain messages itself
            proxy.inline = True
            proxy.ratio = self.ratio
            proxy.sample = self._sample
            proxy.finish = self._finish
        attach(set_span_in_context(proxy))
        self._proxies[proc] = proxy
        if tail is not None:
            tail.proxies[proc] = proxy
        proc.instrument_state = proxy
        return proxy

    def handle_begin(self, proc: Process, kind: str, msg: Any, ctx: Any) -> Any:
        """A `Token`, a raw record ("failures" mode's hot path) or None."""
        try:
            if kind == "init":
                return self._init_begin(proc)
            if self._raw and kind != "call":
                # "failures" mode, a cast or a plain message: a new trace, recorded as a raw
                # record (see `BridgeState._pend`); in the sampled share, exported at its end.
                cur = proc.instrument_state
                if cur is None:
                    cur = self._attach_current(proc)
                t0 = _perf()
                if ctx is None:
                    rec = [t0, 0.0, None, msg, None, None]
                else:
                    rec = [t0, 0.0, None, msg, *self._link_of(ctx)]
                raw = (rec, cur, t0, proc, proc.name or proc.initial_call, kind)
                cur.ring.append(raw)
                cur.count += 1
                cur.span = raw  # the current span while the callback runs
                ratio = self.ratio
                if ratio and _random() < ratio:
                    self._sample(raw)
                return raw
            label = proc.name or proc.initial_call
            span = None
            token = None
            mode = self.mode
            if mode == TAIL:
                token = proc.instrument_state
                if token is None:
                    token = self._attach_current(proc)
                name = self._process_names.get(label) or self._process_name(label)
                info = ("handle", proc, kind, msg)
                if kind == "call":
                    if ctx is not None:
                        span = self._child(ctx, name, SERVER, info)
                    else:
                        span = self._root(name, SERVER, None, info)
                else:
                    link = None
                    if ctx is not None:
                        if type(ctx) is Pending:
                            link = (ctx.trace_id, ctx.span_id)
                        else:
                            sc = ctx.get_span_context()
                            if sc.is_valid:
                                link = (sc.trace_id, sc.span_id)
                    span = self._root(name, CONSUMER, link, info)
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
                        if mode == ON or ctx.get_span_context().trace_flags.sampled:
                            # The parent is the caller's CLIENT span; nothing else of the
                            # server's own context belongs in the lookup.
                            span = self.tracer.start_span(
                                name, set_span_in_context(ctx, EMPTY), SERVER
                            )
                    elif mode == ON:
                        span = self.tracer.start_span(name, EMPTY, SERVER)
                elif mode == ON:
                    if ctx is not None:
                        sc = ctx.get_span_context()
                        links = (Link(sc),) if sc.is_valid else None
                    else:
                        links = None
                    span = self.tracer.start_span(name, EMPTY, CONSUMER, links=links)
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

    def _init_begin(self, proc: Process) -> Token | None:
        """The ``init <name>`` span of a server starting: the child of the span current
        where it was spawned (its supervisor's own init, at a tree's start), and the
        current span while ``init`` runs, so the children it starts are spawned under
        it and their exits link to it. Its token's ``t0`` is 0.0: no duration metric."""
        mode = self.mode
        if not mode:
            return None
        label = proc.name or proc.initial_call
        parent = self.inherited.get(proc)
        attrs = {
            "suptrace.process.pid": str(proc.pid),
            "suptrace.process.name": label,
            "suptrace.initial_call": proc.initial_call,
            "suptrace.node": self.runtime.name,
        }
        name = f"init {label}"
        span: Any
        if mode == TAIL:
            current = proc.instrument_state
            if current is None:
                current = self._attach_current(proc)
            span = self._under(parent, name, INTERNAL, ("init", attrs))
            if type(span) is Pending:
                self.tail.add(span, proc)  # type: ignore[union-attr]
            elif span.is_recording():
                span.set_attributes(attrs)
            current.span = span
            return (span, current, 0.0, proc, label, "init")
        if mode != ON and (parent is None or not parent.get_span_context().trace_flags.sampled):
            return None  # parent-based: an unsampled start is not recorded
        ctx = EMPTY if parent is None else set_span_in_context(parent, EMPTY)
        span = self.tracer.start_span(name, ctx, INTERNAL, attributes=attrs)
        return (span, attach(set_span_in_context(span)), 0.0, proc, label, "init")

    def _finish(self, token: tuple[Any, ...]) -> None:
        """A raw record's handling ended healthy (`Current.finish`: the GenServer loop
        calls it, as ``handle_end`` would): its end time, its export when its span was
        made and its trace selected meanwhile, its duration."""
        try:
            cell, current, _, _, label, kind = token
            t1 = cell[1] or _perf()  # the loop may have read it
            cell[1] = t1
            current.span = None
            if cell[2] is not None:  # its span was made meanwhile: its end, export
                self._ended(cell[2], t1)
            self._duration(current, label, kind, t1 - cell[0])
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("handle_end", exc)

    def _duration(self, current: Current, label: str, kind: str, seconds: float) -> None:
        """A healthy handling's duration, into the series ``current`` keeps for its kind
        (the server loop appends the next ones itself, see `Current.inline`)."""
        m = self.metrics
        slot = current.keys.get(kind)
        if m is None:
            if slot is None:
                # No metrics: a series that keeps nothing, so that the loop writes the
                # next durations inline instead of calling here each time.
                current.keys[kind] = (label, _NO_SERIES)
            return
        if slot is None or slot[0] is not label:
            series = m.series_for(MESSAGE, (label, OPS.get(kind, kind), None))
            slot = current.keys[kind] = (label, series)
        series = slot[1]
        series.append(seconds)
        if len(series) > PENDING_LIMIT:
            m.flush()

    def metrics_refused(self) -> None:
        """Nothing takes this node's metrics any more (its only reader's destination
        refused them): stop recording them on the hot path, and stop feeding the
        observable instruments. Runs on the node's loop."""
        m = self.metrics
        if m is None:
            return
        self.metrics = None
        m.detach(self.runtime)
        for proxy in self._proxies.values():
            proxy.keys.clear()  # the durations series: see `_finish`

    def handle_end(self, token: Any, error: BaseException | None) -> None:
        try:
            span, ctx_token, t0, proc, label, kind = token
            if type(span) is list:  # a raw record ("failures" mode's hot path)
                proc.inbound = None  # a bare message leaves no stale context behind
                if error is None:
                    self._finish(token)
                    return
                span[1] = _perf()
                span = self._pend(token)
            if type(ctx_token) is Current:
                ctx_token.span = None
                proc.inbound = None  # no stale context behind
                if error is None and type(span) is Pending:  # the hot path: a healthy handling
                    span.end_ns = _time_ns()
                    if span.trace_id in self.tail.selected:  # type: ignore[union-attr]
                        self.tail.emit(span)  # type: ignore[union-attr]
                    if t0:  # 0.0: an init, which is no message
                        self._duration(ctx_token, label, kind, _perf() - t0)
                    return
            elif ctx_token is not None:
                detach(ctx_token)
            assert proc is not None  # a handling's token names its process
            proc.inbound = None  # a bare message leaves no stale context behind
            failed = None
            if error is not None:
                failed = failure_class(error, proc)
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
                        mark_failed(span, error, failed)
                        if failed is not None:
                            self._crashed[proc] = span
                    span.end()
            m = self.metrics
            if m is not None and t0:  # 0.0: an init, which is no message
                m.record_handling(label, OPS.get(kind) or kind, failed, _perf() - t0)
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("handle_end", exc)

    def call_begin(self, proc: Process | None, server: Process, request: Any) -> Token | None:
        try:
            label = server.name or server.initial_call
            span = None
            pending = False
            mode = self.mode
            if mode:
                current = self._current(proc)
                if mode == TAIL:
                    name = self._call_names.get(label) or self._call_name(label)
                    info = ("call", server, proc, request)
                    if current is INVALID_SPAN:
                        span = self._root(name, CLIENT, None, info)
                    else:
                        span = self._child(current, name, CLIENT, info)
                    if type(span) is Pending:
                        self.tail.add(span, proc)  # type: ignore[union-attr]
                        self._outgoing = span
                        pending = True
                elif mode == ON:
                    if current is INVALID_SPAN:
                        span = self.tracer.start_span(self._call_name(label), EMPTY, CLIENT)
                    else:
                        span = self.tracer.start_span(self._call_name(label), kind=CLIENT)
                elif current.get_span_context().trace_flags.sampled:
                    span = self.tracer.start_span(self._call_name(label), kind=CLIENT)
            if span is not None and not pending:
                if span.is_recording():
                    span.set_attributes(self._call_attributes(label, server, proc, request))
                # Not attached as the current context: the caller only waits until
                # `call_end`, so the one reader is the request's envelope (`capture`).
                self._outgoing = span
            m = self.metrics
            if m is None:
                return None if span is None else (span, None, 0.0, proc, label, "client")
            m.count_sent(label, "call")
            return (span, None, _perf(), proc, label, "client")
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("call_begin", exc)
            return None

    def call_refused(
        self, proc: Process | None, dest: Any, request: Any, error: BaseException
    ) -> None:
        """A call that failed before its request was sent: a CLIENT span that fails at
        once, under the caller's current span; in "failures" mode its trace exported."""
        try:
            mode = self.mode
            if not mode:
                return
            label = dest if isinstance(dest, str) else self._pid_text(dest)
            current = self._current(proc)
            if mode != TAIL and mode != ON and not current.get_span_context().trace_flags.sampled:
                return  # parent-based: an unsampled caller's call is not recorded
            name = self._call_names.get(label) or self._call_name(label)
            attrs = self._call_attributes(label, None, proc, request)
            if mode == TAIL:
                span = self._under(current, name, CLIENT, ("refused", attrs, proc))
                if type(span) is Pending:
                    span.end_ns = span.start
                    span.error = error
                    tail = self.tail
                    assert tail is not None
                    tail.add(span, proc)
                    tail.fail(span, None)
                    return
            elif current is INVALID_SPAN:
                span = self.tracer.start_span(name, EMPTY, CLIENT)
            else:
                span = self.tracer.start_span(name, kind=CLIENT)
            if span.is_recording():
                span.set_attributes(attrs)
                call_failed(span, error, proc)
            span.end()
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("call_refused", exc)

    def call_end(self, token: Token, error: BaseException | None) -> None:
        try:
            span, _, t0, proc, label, _ = token
            if type(span) is Pending:
                if self._outgoing is span:
                    self._outgoing = None
                span.end_ns = time.time_ns()
                if error is None:
                    self.tail.ended(span)  # type: ignore[union-attr]
                else:
                    span.error = error
                    if isinstance(error, asyncio.CancelledError):
                        self.tail.ended(span)  # type: ignore[union-attr]  # the caller's exit decides
                    else:
                        self.tail.fail(span, None)  # type: ignore[union-attr]
            elif span is not None:
                if self._outgoing is span:  # the request was never enqueued
                    self._outgoing = None
                if error is not None and span.is_recording():
                    call_failed(span, error, proc)
                span.end()
            m = self.metrics
            if m is not None:
                m.record_call(label, error, _perf() - t0)
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("call_end", exc)
