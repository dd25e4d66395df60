"""In-process tail sampling: the ``traces="failures"`` mode of the OpenTelemetry bridge.

Every call and abnormal exit gets a `Pending` span: a small record with real
trace and span ids (allocated as the SDK would, propagated exactly as real spans
are) but no SDK span behind it. A cast or plain message is cheaper still: a raw
record (its handling token, see
`suptrace.observers.otel.state.BridgeState._pend`) whose `Pending`, ids
included, is made only when something needs it: the handler reading its current
span, a call or span made inside it, a message it sends, a failure exporting it.
While a handler runs, its span is the current OpenTelemetry span (through the
process's `Current`): a non-recording span with a valid ``SpanContext``, so the
spans other instrumentations make inside it and the W3C ``traceparent`` they
send downstream carry the trace id a later export uses. The sampled share of
healthy traces is recorded the same way and handed to the span processors as
finished spans when it ends.

Each process keeps its last handlings in a short ring; the spans of one trace
(a call chain across processes) share a list, and a handling keeps a weak
reference to the span that sent its message. Nothing else holds them: what
falls out of the rings is freed (counted in `Tail.evicted`), so a flood never
grows memory (at most ``recent`` handlings per live process, ``per_trace``
spans per trace). When something fails, `Tail.select` turns the trace into real
SDK spans (same ids, start and end times, links, attributes, status, events)
and hands them to the tracer provider's span processors, exactly as if they had
been recorded; spans of a selected trace still running are exported when they
end.
"""

from __future__ import annotations

import random
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.trace import (
    Link,
    Span,
    SpanContext,
    SpanKind,
    Status,
    TraceFlags,
)
from opentelemetry.util.types import Attributes

__all__ = ["Current", "Pending", "Tail", "new_trace_id", "new_span_id"]

_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status()
_bits = random.getrandbits
_now = time.time_ns


def new_trace_id() -> int:
    """A random 128-bit trace id (never the invalid 0)."""
    return _bits(128) or 1


def new_span_id() -> int:
    """A random 64-bit span id (never the invalid 0)."""
    return _bits(64) or 1


class Pending(Span):
    """A span recorded cheaply, exported only if its trace is selected.

    To OpenTelemetry it is a non-recording span with a valid context (the
    sampled flag is off: downstream services sample it as their parent-based
    rules say). The bridge fills in the rest; `Tail` turns it into an SDK span.

    >>> p = Pending(5, 7, 0, "process worker", SpanKind.CONSUMER, None)
    >>> p.get_span_context().trace_id, p.get_span_context().span_id, p.is_recording()
    (5, 7, False)
    """

    # What most pending spans never set lives on the class (fewer stores per message).
    end_ns = 0
    #: A root's (see ``__init__``); the bridge's hot path makes consumer roots without it.
    parent_id = 0
    kind = SpanKind.CONSUMER
    #: (trace id, span id) of the span this one is linked to (the sender's).
    link: tuple[int, int] | None = None
    error: BaseException | None = None
    failed: str | None = None
    events: list[tuple[str, int, dict[str, Any]]] | None = None
    #: An ERROR status description set by a supervision event.
    status: str | None = None
    sent = False
    _sc: SpanContext | None = None
    #: The spans of this trace recorded so far, shared by all of them; None while the
    #: span is alone in its trace (most handlings of casts).
    group: list[Pending] | None = None
    #: The sender's pending span, while it is still kept anywhere (followed when this
    #: one fails: the message that led to the failure).
    sender: weakref.ref[Pending] | None = None

    def __init__(
        self,
        trace_id: int,
        span_id: int,
        parent_id: int,
        name: str,
        kind: SpanKind,
        info: Any,
        link: tuple[int, int] | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        #: The parent's span id within the same trace, 0 for a root.
        self.parent_id = parent_id
        self.name = name
        self.kind = kind
        #: What the bridge needs to build the attributes, only if exported.
        self.info = info
        self.start = _now()
        if link is not None:
            self.link = link

    def __repr__(self) -> str:
        return f"<Pending {self.name} {self.trace_id:032x}/{self.span_id:016x}>"

    # -- the Span API: a non-recording span with a real context --------------------------

    def mark_sampled(self) -> None:
        """Make the span's context say "sampled": spans of other instrumentations
        inside it are sampled too, and the traceparent sent downstream says so."""
        self._sc = SpanContext(self.trace_id, self.span_id, False, _SAMPLED)

    def get_span_context(self) -> SpanContext:
        sc = self._sc
        if sc is None:
            sc = self._sc = SpanContext(self.trace_id, self.span_id, False, _UNSAMPLED)
        return sc

    def is_recording(self) -> bool:
        return False

    def end(self, end_time: int | None = None) -> None:
        """Ended by the bridge only (as the SDK's non-recording spans, a no-op)."""

    def set_attributes(self, attributes: Any) -> None:
        pass

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        pass

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        pass

    def update_name(self, name: str) -> None:
        pass

    def set_status(self, status: Any, description: str | None = None) -> None:
        pass

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        pass

    # -- what the bridge records ---------------------------------------------------------

    def note(self, name: str, attributes: dict[str, Any], failure: str | None = None) -> None:
        """A span event (and an ERROR status when ``failure``), kept for a later export."""
        if self.events is None:
            self.events = []
        self.events.append((name, _now(), attributes))
        if failure is not None:
            self.status = failure


def _unset_hook(rec: tuple[Any, ...]) -> None:
    """What `Current.sample` and `Current.finish` do until the bridge sets them: nothing."""


def _no_records(rec: tuple[Any, ...]) -> Pending:
    raise TypeError("a raw record reached a Current span that has no bridge to make its span")


class Current(Span):
    """A process's current span in ``"failures"`` mode, attached to its task's context once.

    While the process handles a message, it stands for that handling's span
    (``span``: a `Pending` or an SDK span); between handlings, for the span that
    was current before it was attached (``before``). So no context is attached
    and detached per message, and the spans other instrumentations make inside a
    handler still get the handling's real ids. A task that inherited this
    context from the process (a process it spawned) sees ``fallback(task's
    process)`` instead: the span current where that process was spawned.

    >>> c = Current(None, None, lambda proc: None)
    >>> c.span = Pending(5, 7, 0, "process worker", SpanKind.CONSUMER, None)
    >>> c.get_span_context().span_id
    7
    """

    def __init__(self, proc: Any, before: Any, fallback: Callable[[Any], Any]) -> None:
        #: The span of the handling in progress, None between handlings.
        self.span: Any = None
        self.proc = proc
        #: The process's recent handlings (its ring in `Tail.recent`): `Pending` spans
        #: and raw records (see `suptrace.observers.otel.state.BridgeState._pend`).
        self.ring: deque[Any] = deque(maxlen=1)
        #: Records appended to ``ring`` so far (what fell out = this - its length).
        self.count = 0
        #: Makes the `Pending` span of a raw record (set by the bridge).
        self.pend: Callable[[tuple[Any, ...]], Pending] = _no_records
        #: (label, where its durations go: a list, or nowhere without metrics) by
        #: handling kind (the hot path reuses them).
        self.keys: dict[str, tuple[str, Any]] = {}
        self.before = before
        self.fallback = fallback
        #: True when the GenServer loop may record this process's casts and plain
        #: messages itself, as raw records (``ring``, ``count``, ``span`` above, then
        #: ``sample`` for the sampled share and ``finish`` when one ends healthy).
        self.inline = False
        #: The share of new traces sampled ("failures" mode), and what samples one.
        self.ratio = 0.0
        self.sample: Callable[[tuple[Any, ...]], None] = _unset_hook
        #: What ends a raw record that ended healthy (set by the bridge).
        self.finish: Callable[[tuple[Any, ...]], None] = _unset_hook

    def target(self) -> Any:
        """The span this one stands for right now, in the running task."""
        from opentelemetry.trace import INVALID_SPAN

        from suptrace.core.runtime import current_process_var

        running = current_process_var.get()
        if running is self.proc:
            span = self.span
            if span is None:
                span = self.before
            elif type(span) is tuple:  # a raw record: its pending span, made now
                span = self.pend(span)
            return INVALID_SPAN if span is None else span
        span = self.fallback(running)
        return INVALID_SPAN if span is None else span

    def __repr__(self) -> str:
        return f"<Current {self.proc!r} {self.span!r}>"

    def get_span_context(self) -> SpanContext:
        result: SpanContext = self.target().get_span_context()
        return result

    def is_recording(self) -> bool:
        return bool(self.target().is_recording())

    def end(self, end_time: int | None = None) -> None:
        """Never ends: the bridge ends the handling spans it stands for."""

    def set_attributes(self, attributes: Any) -> None:
        self.target().set_attributes(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        self.target().set_attribute(key, value)

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        self.target().add_event(name, attributes, timestamp)

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        self.target().add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self.target().update_name(name)

    def set_status(self, status: Any, description: str | None = None) -> None:
        self.target().set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self.target().record_exception(exception, attributes, timestamp, escaped)


#: Builds (attributes, error marker) for a pending span at export time.
Describe = Callable[[Pending], dict[str, Any]]
#: Marks an SDK span failed the way the bridge marks live spans.
Mark = Callable[[Any, Pending], None]


class Tail:
    """Pending spans of one node, and the traces selected for export."""

    def __init__(
        self,
        tracer: Any,
        describe: Describe,
        mark: Mark,
        pend: Callable[[tuple[Any, ...]], Pending] | None = None,
        *,
        max_traces: int = 4096,
        per_trace: int = 256,
        recent: int = 16,
    ) -> None:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.trace import Span as SdkSpan

        class ExportedSpan(SdkSpan):
            """An SDK span rebuilt from a pending one (the SDK only lets tracers make
            its own class)."""

        self._sdk_span = ExportedSpan
        processor = tracer.span_processor

        def readable(*fields: Any) -> None:
            processor.on_end(ReadableSpan(*fields))

        #: Hands a finished span, built from its fields, to the tracer's processors.
        self._readable = readable
        self.tracer = tracer
        self.describe = describe
        self.mark = mark
        #: Makes the `Pending` span of a raw record (see `BridgeState._pend`).
        self.pend = pend
        self.max_traces = max_traces
        self.per_trace = per_trace
        self.recent_size = recent
        #: trace ids selected for export (bounded, oldest forgotten first).
        self.selected: OrderedDict[int, None] = OrderedDict()
        #: each process's recent handlings (its flight recorder, as spans).
        self.recent: dict[Any, deque[Any]] = {}
        #: Pending spans that fell out of a trace too long to keep whole, or out of the
        #: recent ring of a process that has no `Current` span (see `evicted`).
        self.dropped = 0
        #: Each process's `Current` span: its ring counts what was appended to it.
        self.proxies: dict[Any, Current] = {}
        #: Spans exported because their trace was selected.
        self.exported = 0
        #: Failures that selected a trace.
        self.failures = 0

    @property
    def evicted(self) -> int:
        """Pending spans that fell out of a process's recent ring or a trace too long to
        keep whole (exported only if their trace was already selected)."""
        return self.dropped + sum(
            max(0, c.count - len(c.ring)) for c in list(self.proxies.values())
        )

    def forget_proxy(self, proxy: Current) -> None:
        """``proxy``'s process is gone: what fell out of its ring stays counted."""
        self.dropped += max(0, proxy.count - len(proxy.ring))

    # -- recording -----------------------------------------------------------------------

    def add(self, rec: Pending, owner: Any) -> None:
        """Keep ``rec`` (just begun) in ``owner``'s recent ring."""
        if owner is not None:
            ring = self.recent.get(owner)
            if ring is None:
                ring = self.recent[owner] = deque(maxlen=self.recent_size)
            proxy = self.proxies.get(owner)
            if proxy is not None and proxy.ring is ring:
                proxy.count += 1
            elif len(ring) == self.recent_size:
                self.dropped += 1
            ring.append(rec)

    def join(self, parent: Pending, child: Pending) -> None:
        """``child`` belongs to ``parent``'s trace: kept with it, exported with it."""
        group = parent.group
        if group is None:
            group = parent.group = [parent]
        if len(group) < self.per_trace:
            group.append(child)
            child.group = group
        else:
            self.dropped += 1

    def ended(self, rec: Pending) -> None:
        """``rec`` ended healthy: exported now only if its trace was selected meanwhile."""
        if rec.trace_id in self.selected:
            self.emit(rec)

    def forget(self, owner: Any) -> None:
        self.recent.pop(owner, None)

    # -- selecting -----------------------------------------------------------------------

    def fail(self, rec: Pending | None, owner: Any, link_depth: int = 2) -> None:
        """A failure: export ``rec``'s trace, ``owner``'s recent handlings and their causes."""
        self.failures += 1
        if rec is not None:
            self.select(rec, link_depth)
            self.emit(rec)
        ring = self.recent.get(owner) if owner is not None else None
        if ring:
            for r in list(ring):
                if type(r) is tuple:  # a raw record: its pending span, made now
                    assert self.pend is not None
                    r = self.pend(r)
                self.select(r, 1)

    def select(self, rec: Pending, link_depth: int = 1) -> None:
        """Export every pending span of ``rec``'s trace (now if ended, else when it ends),
        and, ``link_depth`` hops back, the traces of the messages that led to it."""
        selected = self.selected
        tid = rec.trace_id
        if tid in selected:
            return
        selected[tid] = None
        if len(selected) > self.max_traces:
            selected.popitem(last=False)
        for r in list(rec.group or (rec,)):
            if r.end_ns:
                self.emit(r)
            if link_depth > 0 and r.sender is not None:
                sender = r.sender()
                if sender is not None:
                    self.select(sender, link_depth - 1)

    # -- exporting -----------------------------------------------------------------------

    def emit(self, rec: Pending) -> None:
        """Turn an ended pending span into an SDK span and hand it to the processors."""
        if rec.sent or not rec.end_ns:
            return
        rec.sent = True
        tracer = self.tracer
        tid = rec.trace_id
        links: Sequence[Link] = ()
        if rec.link is not None:
            links = (Link(SpanContext(rec.link[0], rec.link[1], False, _SAMPLED)),)
        parent = SpanContext(tid, rec.parent_id, False, _SAMPLED) if rec.parent_id else None
        if rec.error is None and rec.events is None and rec.status is None:
            # Healthy (the sampled share, and the healthy spans of a selected trace): a
            # finished span as it is handed to the processors, nothing to mutate first.
            self._readable(
                rec.name,
                SpanContext(tid, rec.span_id, False, _SAMPLED),
                parent,
                tracer.resource,
                self.describe(rec),
                (),
                links,
                rec.kind,
                None,
                _UNSET,
                rec.start,
                rec.end_ns,
                tracer._instrumentation_scope,
            )
            self.exported += 1
            return
        span = self._sdk_span(
            rec.name,
            SpanContext(tid, rec.span_id, False, _SAMPLED),
            parent=parent,
            resource=tracer.resource,
            attributes=self.describe(rec),
            links=links,
            kind=rec.kind,
            span_processor=tracer.span_processor,
            instrumentation_scope=tracer._instrumentation_scope,
            limits=tracer._span_limits,
        )
        span.start(start_time=rec.start)
        if rec.events:
            for name, ts, attrs in rec.events:
                span.add_event(name, attrs, ts)
        self.mark(span, rec)
        if rec.status is not None:
            from opentelemetry.trace import StatusCode

            span.set_status(Status(StatusCode.ERROR, rec.status))
        span.end(end_time=rec.end_ns)
        self.exported += 1
