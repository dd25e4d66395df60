"""The public hook API: how libraries subscribe to what a node does.

Stable: the signatures here and the `TraceEvent` schema (see
`suptrace.core.events`) follow semantic versioning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from suptrace.core.events import TraceEvent
from suptrace.core.runtime import current_runtime

__all__ = ["add_event_handler"]


def add_event_handler(
    fn: Callable[[TraceEvent], None], kinds: Iterable[str] | str | None = None
) -> Callable[[], None]:
    """Call ``fn(event)`` for every event of the current node (or only ``kinds``).

    Returns a function that unsubscribes. Handlers run synchronously inside
    the runtime: keep them short and never block (hand work to a queue). An
    exception in a handler is reported through the loop's exception handler
    and never reaches the process that caused the event.

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
    return current_runtime("add_event_handler()").add_event_handler(fn, kinds)
