"""The health of one signal's export: `ExportGuard`.

Traces, metrics and logs each have their own guard, so a backend that refuses
or loses one signal never costs another: an outage (unreachable, timing out,
5xx) is logged once, retried with backoff and its end logged; a backend that
does not take a signal at all turns that signal off with one line naming the
status and the variable to set; a full queue is overload, counted and logged
at most once a minute. The guarded exporters and processors that feed a guard
are in `suptrace.observers.otel.exporters`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from suptrace.observers.otel.config import SIGNALS

__all__ = ["ExportGuard", "OVERLOAD_LOG_INTERVAL", "REFUSING_GRPC", "REFUSING_HTTP"]


#: What a permanent refusal looks like: the backend does not take this signal at all
#: (Jaeger and Tempo take traces only). Anything else is transient and retried.
REFUSING_GRPC = frozenset({"UNIMPLEMENTED"})
REFUSING_HTTP = frozenset({404, 405, 415})

#: Seconds between two "export queue is full" lines of one signal.
OVERLOAD_LOG_INTERVAL = 60.0


def _singular(signal: str) -> str:
    return {"traces": "span", "metrics": "metric point", "logs": "log record"}.get(signal, signal)


class ExportGuard:
    """The health of ONE signal's export: counts, state, outage backoff, overload.

    Every exporter suptrace creates is wrapped with its own guard, so a backend
    that refuses or loses one signal never costs another. States:

    * ``"ok"`` -- exports go through;
    * ``"backoff"`` -- the destination failed (unreachable, timing out, 5xx...):
      exports are skipped (dropped and counted) without touching the network
      until the backoff expires, then the next export is a probe whose success
      ends the outage; the outage and the recovery are each logged once;
    * ``"refused"`` -- the destination does not take this signal at all (gRPC
      ``UNIMPLEMENTED``, HTTP 404/405/415): the signal is off for the rest of the
      node's life, logged once with the status and the variable that turns it off.

    A full export queue is *overload* (the exporter is slower than the node
    produces), not an outage: `overload` counts it and it is logged at most once
    a minute with the count.

    >>> guard = ExportGuard("traces", "collector")
    >>> guard.run(3, lambda: True), guard.exported, guard.state
    (True, 3, 'ok')
    """

    def __init__(
        self,
        signal: str,
        target: str,
        *,
        exporter: str = "otlp",
        endpoint: str | None = None,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.signal = signal
        self.target = target
        self.exporter = exporter
        self.endpoint = endpoint
        self.exported = 0
        #: Everything that was lost (outage, refusal and overload drops).
        self.dropped = 0
        #: The part of `dropped` lost on a full queue.
        self.overload_dropped = 0
        self.failures = 0
        self.outages = 0
        self.state = "ok"
        self.last_error: str | None = None
        self.closed = False
        #: Set when the node stops: a signal that is not healthy then gets no new attempt.
        self.closing = False
        #: Stops the real exporter (ends its retry waits); set by the guarded exporter.
        self.stop_inner: Callable[[], None] | None = None
        #: The node's stop stopped the real exporter (see `interrupt`).
        self.interrupted = False
        #: Called once, in the exporting thread, when the signal is refused (`refuse`).
        self.on_refused: list[Callable[[], None]] = []
        self._initial_backoff = backoff
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._outage_drops = 0
        self._overload_pending = 0
        self._overload_since = 0.0
        self._overload_logged_at: float | None = None

    @property
    def variable(self) -> str:
        """The standard variable that chooses (or turns off) this signal's exporter."""
        return f"OTEL_{self.signal.upper()}_EXPORTER"

    def snapshot(self) -> dict[str, Any]:
        """The signal's health as plain data (what ``suptrace status`` shows)."""
        return {
            "exporter": self.exporter,
            "endpoint": self.endpoint,
            "state": self.state,
            "exported": self.exported,
            "dropped": self.dropped,
            "overload_dropped": self.overload_dropped,
            "last_error": self.last_error,
            "outages": self.outages,
        }

    def allow(self) -> bool:
        """False while an outage's backoff runs or the signal is refused."""
        state = self.state
        if state == "ok":
            return True
        return state == "backoff" and not self.closing and time.monotonic() >= self._retry_at

    def interrupt(self) -> None:
        """Stop the real exporter now (at node stop): an export waiting between its
        retries ends at once instead of holding the shutdown to its time bound."""
        stop = self.stop_inner
        self.interrupted = True
        if stop is not None:
            with contextlib.suppress(Exception):
                stop()

    def skip(self, count: int) -> None:
        """Count ``count`` items dropped without trying to export them (backoff, refusal)."""
        if count > 0:
            with self._lock:
                self.dropped += count
                self._outage_drops += count

    def overload(self, count: int) -> None:
        """Count ``count`` items dropped on a full queue (logged at most once a minute)."""
        if count <= 0:
            return
        with self._lock:
            self.dropped += count
            self.overload_dropped += count
            if not self._overload_pending:
                self._overload_since = time.monotonic()
            self._overload_pending += count
            # Normally reported when the slow export in flight ends; this covers an
            # export that never ends.
            stale = time.monotonic() - self._overload_since >= OVERLOAD_LOG_INTERVAL
        if stale:
            self._report_overload()

    def _report_overload(self) -> None:
        now = time.monotonic()
        with self._lock:
            pending = self._overload_pending
            last = self._overload_logged_at
            if not pending or (last is not None and now - last < OVERLOAD_LOG_INTERVAL):
                return
            self._overload_pending = 0
            self._overload_logged_at = now
            total = self.overload_dropped  # with ``pending``: drops go on in other threads
        from loguru import logger

        unit = _singular(self.signal)
        if last is None:
            counted = f"{pending} {unit}s dropped"
        else:
            counted = f"{pending} {unit}s dropped since the last report ({total} in all)"
        logger.warning(
            "suptrace telemetry: the {} export queue to {} is full: {}. This is overload, not "
            "an outage: the destination answers but the node produces {} faster than they can "
            "be sent. Export fewer (a sampler) or raise the queue and batch sizes (OTEL_BSP_* "
            "for traces, OTEL_BLRP_* for logs); logged at most once a minute.",
            self.signal,
            self.target,
            counted,
            self.signal,
        )

    def success(self, count: int) -> None:
        with self._lock:
            self.exported += count
            if self.state != "backoff":
                return
            self.state = "ok"
            self._backoff = self._initial_backoff
            recovered, self._outage_drops = self._outage_drops, 0
        from loguru import logger

        logger.info(
            "suptrace telemetry: {} export to {} works again ({} {}s were dropped during "
            "the outage)",
            self.signal,
            self.target,
            recovered,
            _singular(self.signal),
        )

    def trouble(self, why: str) -> None:
        """An attempt failed transiently while the exporter still retries: start the
        outage now, so what arrives meanwhile is shed as an outage, not queued."""
        with self._lock:
            self.last_error = why
            # An export the node's stop cut short is counted, not called an outage.
            first = self.state == "ok" and not self.interrupted
            if first:
                self._open()
        if first:
            self._log_down(why)

    def failure(self, count: int, why: str) -> None:
        with self._lock:
            self.failures += 1
            self.dropped += count
            self._outage_drops += count
            self.last_error = why
            first = self.state == "ok" and not self.interrupted
            if first:
                self._open()
            elif self.state == "backoff":
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, self._max_backoff)
        if first:
            self._log_down(why)

    def refuse(self, count: int, why: str) -> None:
        """The destination does not take this signal: turn it off, say so once."""
        with self._lock:
            self.failures += 1
            self.dropped += count
            self.last_error = why
            first = self.state != "refused"
            self.state = "refused"
        if not first:
            return
        for hook in list(self.on_refused):
            with contextlib.suppress(Exception):  # a stopped node's loop, say
                hook()
        from loguru import logger

        others = " and ".join(s for s in SIGNALS if s != self.signal)
        logger.warning(
            "suptrace telemetry: {} refuses {} ({}); {} export is off for this node, {} are not "
            "affected. {}: set {}=none to stop sending {} there, or OTEL_EXPORTER_OTLP_{}_ENDPOINT "
            "to a backend that takes them.",
            self.target,
            self.signal,
            why,
            self.signal,
            others,
            "A traces-only backend (Jaeger, Tempo) answers like this"
            if self.signal != "traces"
            else "A backend that takes no traces answers like this",
            self.variable,
            self.signal,
            self.signal.upper(),
        )

    def _open(self) -> None:
        self.state = "backoff"
        self.outages += 1
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self._max_backoff)

    def _log_down(self, why: str) -> None:
        from loguru import logger

        logger.warning(
            "suptrace telemetry: cannot export {} to {} ({}); dropping {} until it is reachable "
            "again, retrying with backoff. Other signals and the application are not affected; "
            "drops are counted and this is logged once per outage.",
            self.signal,
            self.target,
            why,
            self.signal,
        )

    def run(self, count: int, export: Callable[[], bool], source: Any = None) -> bool:
        """Export through ``export()`` (True on success) unless the signal is backing off
        or refused. ``source`` is the exporter: after a failure, the status it saw
        (see `suptrace.observers.otel.exporters.observed`) decides between an outage and a refusal."""
        if not self.allow():
            self.skip(count)
            return False
        if source is not None:
            source._suptrace_failure = None
        try:
            ok = export()
            why = "the exporter reported a failure"
        except Exception as exc:  # an exporter must never take the application down
            ok = False
            why = f"{type(exc).__name__}: {exc}"
        if ok:
            self.success(count)
        else:
            seen = getattr(source, "_suptrace_failure", None)
            if seen is not None and seen[1]:
                self.refuse(count, seen[0])
            else:
                self.failure(count, seen[0] if seen is not None else why)
        if self._overload_pending:
            self._report_overload()
        return ok


