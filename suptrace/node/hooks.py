"""The public hook API: how libraries subscribe to what a node does.

Two entry points, both stable (their signatures, the `TraceEvent` schema in
`suptrace.core.events` and the report dataclasses follow semantic versioning):

* `add_event_handler(fn, kinds=None)`: every event of the node (or only some
  kinds), as it happens. This is the stream the tracer, the reports, the flight
  recorder and the OpenTelemetry bridge are built on.
* `add_report_handler(fn)`: the SASL-style reports (supervisor, progress,
  crash), in emission order.

Both return a function that unsubscribes. Handlers run synchronously inside
the runtime, in the step of the process the event is about: keep them short,
never block and never await (hand work to a queue or a process with `send`).

Failure rule: an exception in a handler is contained where the handler is
called; it never reaches the process that caused the event and never stops a
death from being fully processed (links, monitors, name and tombstone, crash
and supervisor reports, restart). The handler **stays subscribed** (one odd
event must not silence a subscriber for good). Its first failure is logged
once through loguru as a WARNING naming the handler, the event kind and the
exception; every failure is counted in ``Runtime.hook_errors`` (shown by
``suptrace status``) and per handler in ``Runtime.handler_failures``.
``examples/hooks_subscriber.py`` is a complete third-party subscriber.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from suptrace.core.events import KINDS, TraceEvent
from suptrace.core.runtime import current_runtime
from suptrace.observers.reports import add_report_handler

__all__ = ["add_event_handler", "add_report_handler", "KINDS"]


def add_event_handler(
    fn: Callable[[TraceEvent], None], kinds: Iterable[str] | str | None = None
) -> Callable[[], None]:
    """Call ``fn(event)`` for every event of the current node (or only ``kinds``).

    ``kinds`` is one kind or an iterable of kinds from `KINDS` (an unknown kind
    raises `ValueError`). Returns a function that unsubscribes (calling it twice
    is harmless). Handlers run synchronously inside the runtime: keep them short
    and never block (hand work to a queue). An exception in a handler is
    contained, counted (``Runtime.hook_errors``) and its first one logged as a
    WARNING naming the handler; the handler stays subscribed, and the process
    that caused the event (even a dying one) never sees it.

    >>> import suptrace
    >>> seen = []
    >>> async def main():
    ...     stop = suptrace.add_event_handler(lambda e: seen.append(e.kind), kinds=["spawn", "exit"])
    ...     async def child():
    ...         pass
    ...     pid, ref = suptrace.spawn_monitor(child)
    ...     await suptrace.receive(lambda m: isinstance(m, suptrace.Down))
    ...     stop()
    >>> suptrace.run(main)
    >>> seen
    ['spawn', 'exit']
    """
    if not callable(fn):
        raise TypeError(f"add_event_handler() needs a callable fn(event), got {fn!r}")
    return current_runtime("add_event_handler()").add_event_handler(fn, kinds)
