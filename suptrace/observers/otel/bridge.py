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
    in-process tail sampling (`suptrace.observers.otel.tail`): every handling
    and call is recorded cheaply, its trace and span ids drawn when something
    first needs them (the handler's current span, an export); a failure
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

``traces=``, else ``SUPTRACE_TRACES``, chooses the mode, and ``SUPTRACE_TRACES_SAMPLE``
the sample; both are decided once at node start (`suptrace.observers.otel.config.decide`)
and given to the bridge, which reads no setting itself.

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

from suptrace.observers.otel.logs import ReportLogs
from suptrace.observers.otel.messages import Messages
from suptrace.observers.otel.spans import ON, TAIL
from suptrace.observers.otel.supervision import SUPERVISION_KINDS, Supervision

__all__ = ["Bridge"]


class Bridge(Messages, Supervision, ReportLogs):
    """One node's OpenTelemetry bridge: attach it to a runtime, detach to stop.

    Its parts: the per-message hooks (`Messages`), spawns, exits and supervision
    events (`Supervision`), reports as log records (`ReportLogs`), over the
    shared `BridgeState`.
    """

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
        if self.mode == ON or self.mode == TAIL:
            rt.spawn_hooks = (*rt.spawn_hooks, self._on_spawn)
        if self.mode == ON or self.mode == TAIL or self.metrics is not None:
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
        for proc in self._proxies:
            if proc.instrument_state is not None:
                proc.instrument_state = None
        self._proxies.clear()
        if self.tail is not None:
            for proxy in self.tail.proxies.values():
                self.tail.forget_proxy(proxy)
            self.tail.proxies.clear()
        if self.metrics is not None:
            self.metrics.flush()

    def release(self) -> None:
        """Stop feeding the observable gauges (after the last collection)."""
        if self.metrics is not None:
            self.metrics.detach(self.runtime)

