"""The metrics of the OpenTelemetry bridge: pinned names, low-cardinality attributes.

=======================================  =========================  ==========================================
metric                                   instrument                 attributes
=======================================  =========================  ==========================================
``suptrace.process.restarts``            counter                    ``suptrace.supervisor``, ``suptrace.child.id``, ``suptrace.exit.reason``
``suptrace.supervisor.intensity_breaches`` counter                  ``suptrace.supervisor``, ``suptrace.child.id``
``suptrace.process.exits``               counter                    ``suptrace.process.name``, ``suptrace.exit.reason``
``suptrace.processes``                   observable gauge           ``suptrace.node``
``suptrace.mailbox.size``                observable gauge (max)     ``suptrace.node``, ``suptrace.process.name``
``suptrace.messages.sent``               counter                    ``messaging.destination.name``, ``messaging.operation.name``
``suptrace.message.duration``            histogram (s)              ``messaging.destination.name``, ``messaging.operation.name``, ``error.type``
``suptrace.call.duration``               histogram (s)              ``messaging.destination.name``, ``error.type``
``suptrace.call.timeouts``               counter                    ``messaging.destination.name``
=======================================  =========================  ==========================================

``suptrace.process.name`` and ``messaging.destination.name`` are the registered
name, else the initial call (``module:function``) -- never a pid.
``suptrace.exit.reason`` and ``error.type`` are `reason_class` values:
``normal``, ``shutdown``, ``killed``, or an exception class name.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from bisect import bisect_right
from collections.abc import Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from suptrace.core.errors import CallError, CallTimeout
from suptrace.core.runtime import SERIES_LIMIT, Runtime
from suptrace.core.terms import Pid, reason_class

__all__ = [
    "Metrics",
    "DURATION_BUCKETS",
    "METRIC_NAMES",
    "child_label",
]

#: Second-scale histogram boundaries: 100 microseconds to 10 seconds.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

METRIC_NAMES = (
    "suptrace.process.restarts",
    "suptrace.supervisor.intensity_breaches",
    "suptrace.process.exits",
    "suptrace.processes",
    "suptrace.mailbox.size",
    "suptrace.messages.sent",
    "suptrace.message.duration",
    "suptrace.call.duration",
    "suptrace.call.timeouts",
)

#: Attribute caches are cleared when they grow past this (names can be dynamic).
_CACHE_LIMIT = 4096
#: Pending durations recorded on the hot path itself past this (no collection is running);
#: the GenServer loop's own recording stops at the same limit.
PENDING_LIMIT = SERIES_LIMIT
MESSAGE, CALL = 0, 1
#: The attributes of each histogram, in the order of the keys in `_Observed.durations`.
_DURATION_KEYS = (
    ("messaging.destination.name", "messaging.operation.name", "error.type"),
    ("messaging.destination.name", "error.type"),
)


def child_label(child_id: Any) -> str | None:
    """A child id as a metric attribute, or None when it would be high-cardinality."""
    if isinstance(child_id, str):
        return child_id
    if isinstance(child_id, bool) or child_id is None:
        return str(child_id)
    if isinstance(child_id, (int, float)):
        return str(child_id)
    if isinstance(child_id, Pid):
        return None
    text = repr(child_id)
    return text if len(text) <= 64 else None


class _Observed:
    """One set of observable instruments per meter provider, fed by every attached runtime."""

    def __init__(self, meter: Meter) -> None:
        self.runtimes: weakref.WeakSet[Runtime] = weakref.WeakSet()
        meter.create_observable_gauge(
            "suptrace.processes",
            callbacks=[self._processes],
            unit="{process}",
            description="Live suptrace processes.",
        )
        meter.create_observable_gauge(
            "suptrace.mailbox.size",
            callbacks=[self._mailboxes],
            unit="{message}",
            description="Messages waiting in mailboxes (the largest per process name).",
        )
        #: Messages sent, tallied in a plain dict on the hot path and reported as a
        #: cumulative counter at collection time (an SDK ``Counter.add`` per message
        #: costs far more than the send itself).
        self.sent: dict[tuple[str, str], int] = {}
        #: Casts sent, by destination: the hot path's share of ``sent``, keyed by the
        #: label alone (a string's hash is cached, a tuple's is computed at each lookup).
        self.casts: dict[str, int] = {}
        meter.create_observable_counter(
            "suptrace.messages.sent",
            callbacks=[self._sent],
            unit="{message}",
            description="Messages sent (send, cast and call requests).",
        )
        #: Durations not yet recorded into the SDK histograms, one list per (histogram,
        #: attributes key), appended on the hot path (the lists are never replaced, so
        #: the hot path may keep them) and recorded in bulk at collection time
        #: (`flush`). The collecting thread copies the first ``n`` values and deletes
        #: exactly those (each one step under the interpreter lock): what is appended
        #: meanwhile stays for the next collection, nothing is lost or counted twice.
        self.series: dict[tuple[int, tuple[str | None, ...]], list[float]] = {}
        self.message_duration = meter.create_histogram(
            "suptrace.message.duration",
            unit="s",
            description="Time a GenServer spent handling one message.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.call_duration = meter.create_histogram(
            "suptrace.call.duration",
            unit="s",
            description="Time a call waited for its reply, as seen by the caller.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._attrs: dict[tuple[int, tuple[str | None, ...]], dict[str, str]] = {}

    def flush(self) -> None:
        """Record the pending durations into the SDK histograms (exact: every one, once).

        The first duration of each attribute set goes through ``Histogram.record``
        (which creates the SDK's aggregation for it, honouring views and the
        cardinality limit); the rest are merged into those aggregations in bulk: an
        SDK ``record`` per message costs more than the message itself. When the
        SDK's internals are not the ones expected, every duration is recorded one
        by one instead: slower, as exact.
        """
        histograms = (self.message_duration, self.call_duration)
        cache = self._attrs
        for (which, key), series in list(self.series.items()):
            n = len(series)
            if not n:
                continue
            values = series[:n]
            del series[:n]
            attrs = cache.get((which, key))
            if attrs is None:
                if len(cache) > _CACHE_LIMIT:
                    cache.clear()
                names = _DURATION_KEYS[which]
                attrs = cache[(which, key)] = {
                    n: v for n, v in zip(names, key, strict=True) if v is not None
                }
            histogram = histograms[which]
            histogram.record(values[0], attrs)
            rest = values[1:]
            if rest and not _merge(histogram, attrs, rest):
                for seconds in rest:
                    histogram.record(seconds, attrs)

    def _sent(self, options: CallbackOptions) -> Iterable[Observation]:
        # Collection runs the callbacks before it reads the synchronous instruments:
        # the durations recorded here are part of this very collection.
        self.flush()
        totals = dict(self.sent)
        for label, count in list(self.casts.items()):
            key = (label, "cast")
            totals[key] = totals.get(key, 0) + count
        for (label, op), count in totals.items():
            yield Observation(
                count, {"messaging.destination.name": label, "messaging.operation.name": op}
            )

    def _processes(self, options: CallbackOptions) -> Iterable[Observation]:
        for rt in list(self.runtimes):
            yield Observation(len(rt.procs), {"suptrace.node": rt.name})

    def _mailboxes(self, options: CallbackOptions) -> Iterable[Observation]:
        for rt in list(self.runtimes):
            largest: dict[str, int] = {}
            for proc in list(rt.procs.values()):
                label = proc.name or proc.initial_call
                mailbox = proc.mailbox  # read once: collection may run in another thread
                size = len(mailbox) if mailbox else 0
                if size >= largest.get(label, 0):
                    largest[label] = size
            for label, size in largest.items():
                yield Observation(size, {"suptrace.node": rt.name, "suptrace.process.name": label})


_OBSERVED: weakref.WeakKeyDictionary[Any, _Observed] = weakref.WeakKeyDictionary()
_OBSERVED_STRONG: dict[int, tuple[Any, _Observed]] = {}


def _observed(provider: Any, meter: Meter) -> _Observed:
    try:
        found = _OBSERVED.get(provider)
    except TypeError:  # not weak-referenceable: keep it alive with its instruments
        pair = _OBSERVED_STRONG.get(id(provider))
        if pair is None:
            pair = (provider, _Observed(meter))
            _OBSERVED_STRONG[id(provider)] = pair
        return pair[1]
    if found is None:
        found = _OBSERVED[provider] = _Observed(meter)
    return found


class Metrics:
    """The bridge's instruments, with cached attribute dicts for the hot path."""

    def __init__(self, meter: Meter, provider: Any) -> None:
        self.meter = meter
        self.restarts = meter.create_counter(
            "suptrace.process.restarts",
            unit="{restart}",
            description="Children restarted by their supervisor.",
        )
        self.intensity_breaches = meter.create_counter(
            "suptrace.supervisor.intensity_breaches",
            unit="{breach}",
            description="Supervisors that gave up after reaching their max restart intensity.",
        )
        self.exits = meter.create_counter(
            "suptrace.process.exits",
            unit="{exit}",
            description="Process exits, by exit reason class.",
        )
        self.call_timeouts = meter.create_counter(
            "suptrace.call.timeouts",
            unit="{timeout}",
            description="Calls that timed out.",
        )
        self.observed = _observed(provider, meter)
        self.message_duration = self.observed.message_duration
        self.call_duration = self.observed.call_duration
        #: Durations to record at collection (`_Observed.series`), for the hot path.
        self.series = self.observed.series
        #: Messages sent by (destination, operation) (`_Observed.sent`), for the hot path.
        self.sent = self.observed.sent
        #: Casts sent by destination (`_Observed.casts`), for the hot path.
        self.casts = self.observed.casts
        self._handle_attrs: dict[tuple[str, str], dict[str, str]] = {}
        self._dest_attrs: dict[str, dict[str, str]] = {}

    def attach(self, runtime: Runtime) -> None:
        self.observed.runtimes.add(runtime)

    def detach(self, runtime: Runtime) -> None:
        self.observed.runtimes.discard(runtime)

    # -- cached attribute sets -----------------------------------------------------------

    def handle_attrs(self, label: str, op: str) -> dict[str, str]:
        key = (label, op)
        attrs = self._handle_attrs.get(key)
        if attrs is None:
            if len(self._handle_attrs) > _CACHE_LIMIT:
                self._handle_attrs.clear()
            attrs = self._handle_attrs[key] = {
                "messaging.destination.name": label,
                "messaging.operation.name": op,
            }
        return attrs

    def dest_attrs(self, label: str) -> dict[str, str]:
        attrs = self._dest_attrs.get(label)
        if attrs is None:
            if len(self._dest_attrs) > _CACHE_LIMIT:
                self._dest_attrs.clear()
            attrs = self._dest_attrs[label] = {"messaging.destination.name": label}
        return attrs

    def flush(self) -> None:
        """Record the pending durations now (collection does it; so does detaching)."""
        self.observed.flush()

    def series_for(self, which: int, key: tuple[str | None, ...]) -> list[float]:
        """The list the durations of one histogram and attribute set are appended to
        (``which``: `MESSAGE` or `CALL`); kept for good, the hot path may cache it."""
        series = self.series
        values = series.get((which, key))
        if values is None:
            values = series.setdefault((which, key), [])
        return values

    def record_handling(self, label: str, op: str, failed: str | None, seconds: float) -> None:
        """One handling of ``op`` by ``label`` took ``seconds`` (``failed``: its error class)."""
        values = self.series_for(MESSAGE, (label, op, failed))
        values.append(seconds)
        if len(values) > PENDING_LIMIT:
            self.observed.flush()

    def record_call(self, label: str, error: BaseException | None, seconds: float) -> None:
        """A call to ``label`` returned (or failed with ``error``) after ``seconds``."""
        if error is None:
            values = self.series_for(CALL, (label, None))
        else:
            if isinstance(error, CallTimeout):
                self.call_timeouts.add(1, self.dest_attrs(label))
            values = self.series_for(CALL, (label, _call_error_type(error)))
        values.append(seconds)
        if len(values) > PENDING_LIMIT:
            self.observed.flush()

    def count_cast(self, label: str) -> None:
        """The first cast to ``label`` (the hot path increments the next ones itself)."""
        casts = self.observed.casts
        if label not in casts and len(casts) > _CACHE_LIMIT:
            return  # too many distinct destinations: keep the metric low-cardinality
        casts[label] = casts.get(label, 0) + 1

    def count_sent(self, label: str, op: str) -> None:
        """One more message sent to ``label`` (cheap: a dict increment)."""
        tally = self.observed.sent
        key = (label, op)
        count = tally.get(key)
        if count is None:
            if len(tally) > _CACHE_LIMIT:
                return  # too many distinct destinations: keep the metric low-cardinality
            count = 0
        tally[key] = count + 1


def _call_error_type(error: BaseException) -> str:
    if isinstance(error, CallTimeout):
        return "timeout"
    if isinstance(error, CallError):
        return reason_class(error.reason)
    if isinstance(error, asyncio.CancelledError):
        return "caller_exited"
    return type(error).__name__


def _merge(histogram: Any, attrs: dict[str, str], values: list[float]) -> bool:
    """Add ``values`` to the SDK's explicit-bucket aggregations of ``histogram`` for
    ``attrs`` in every reader, as ``record`` would one by one; False when the SDK
    does not look as expected (nothing merged then)."""
    try:
        from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes

        targets = []
        storages = histogram._measurement_consumer._reader_storages.values()
        for storage in storages:
            for match in storage._instrument_view_instrument_matches.get(histogram, ()):
                keys = match._view._attribute_keys
                view_attrs = attrs if keys is None else {k: v for k, v in attrs.items() if k in keys}
                agg = match._attributes_aggregation.get(_hash_attributes(view_attrs))
                if agg is None or type(agg).__name__ != "_ExplicitBucketHistogramAggregation":
                    return False
                if not (hasattr(agg, "_value") and hasattr(agg, "_boundaries")):
                    return False
                targets.append((match, agg))
    except (AttributeError, ImportError, TypeError):
        return False
    if not targets:
        return False
    bounds = targets[0][1]._boundaries
    if any(agg._boundaries != bounds for _, agg in targets):
        return False
    # Bucket i holds bounds[i-1] < v <= bounds[i]. Most durations fall in the first
    # bucket: only the values above its bound are sorted (filtered at C speed), then
    # counted up to each further bound.
    if bounds:
        ordered = sorted(filter(bounds[0].__lt__, values))
        counts = [len(values) - len(ordered)]
        below = 0
        for bound in bounds[1:]:
            upto = bisect_right(ordered, bound, below)
            counts.append(upto - below)
            below = upto
        counts.append(len(ordered) - below)
    else:
        counts = [len(values)]
    total, low, high = math.fsum(values), min(values), max(values)
    for match, agg in targets:
        with match._lock, agg._lock:
            if agg._value is None:
                agg._value = agg._get_empty_bucket_counts()
            value = agg._value
            for i, c in enumerate(counts):
                if c:
                    value[i] += c
            agg._sum += total
            if agg._record_min_max:
                agg._min = min(agg._min, low)
                agg._max = max(agg._max, high)
    return True
