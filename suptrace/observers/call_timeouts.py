"""Which destinations' calls time out, counted off the hot path.

`call` emits a ``call_timeout`` event only when a call expires; this observer
subscribes to that one kind and keeps, per destination (its registered name,
else its pid), how many calls to it timed out, when, and from which callers.
A call that gets its answer in time costs nothing more than before. ``suptrace
doctor`` compares the count with the calls the destination handled.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from suptrace.core.events import TraceEvent
from suptrace.core.runtime import Runtime, process_of
from suptrace.core.terms import Pid

__all__ = ["CallTimeouts", "DestinationTimeouts"]


class DestinationTimeouts:
    """The timeouts of the calls to one destination."""

    __slots__ = ("callers", "destination", "last_timeout", "pid", "times", "total")

    #: How many timeout times are kept per destination (for "since it started" counts).
    KEEP = 1024
    #: How many distinct callers are named per destination (the rest count as "others").
    CALLERS = 16

    def __init__(self, destination: str) -> None:
        self.destination = destination
        self.pid: Pid | None = None
        self.total = 0
        self.times: deque[float] = deque(maxlen=self.KEEP)
        self.callers: dict[str, int] = {}
        self.last_timeout: Any = None

    def add(self, ts: float, pid: Pid | None, caller: str, timeout: Any) -> None:
        self.total += 1
        self.times.append(ts)
        self.pid = pid
        self.last_timeout = timeout
        callers = self.callers
        if caller in callers or len(callers) < self.CALLERS:
            callers[caller] = callers.get(caller, 0) + 1
        else:
            callers["others"] = callers.get("others", 0) + 1

    def since(self, ts: float) -> int:
        """Timeouts at or after ``ts`` (within the kept ones)."""
        return sum(1 for t in self.times if t >= ts)


class CallTimeouts:
    """The node's per-destination call timeout counts (``NodeParts.call_timeouts``).

    >>> import suptrace
    >>> from suptrace.node.parts import current_parts
    >>> class Silent(suptrace.GenServer):
    ...     async def handle_call(self, request, caller):
    ...         return suptrace.NOREPLY        # never answers
    >>> async def main():
    ...     await Silent.start_link(name="silent")
    ...     try:
    ...         await suptrace.call("silent", "ping", timeout=0.01)
    ...     except suptrace.CallTimeout:
    ...         pass
    ...     dest = current_parts("main()").call_timeouts.by_dest["silent"]
    ...     return dest.total, sum(dest.callers.values())
    >>> suptrace.run(main, log_reports=False)
    (1, 1)
    """

    #: At most this many destinations are tracked; timeouts to others only count in ``untracked``.
    MAX_DESTINATIONS = 1000

    def __init__(self) -> None:
        self.by_dest: dict[str, DestinationTimeouts] = {}
        self.untracked = 0
        self._unsubscribe: Callable[[], None] | None = None

    def attach(self, runtime: Runtime) -> None:
        self._unsubscribe = runtime.add_event_handler(self._on_event, ("call_timeout",))

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, event: TraceEvent) -> None:
        to = event.data.get("to")
        proc = process_of(to) if isinstance(to, Pid) else None
        key = (proc.name if proc is not None else None) or str(to)
        entry = self.by_dest.get(key)
        if entry is None:
            if len(self.by_dest) >= self.MAX_DESTINATIONS:
                self.untracked += 1
                return
            entry = self.by_dest[key] = DestinationTimeouts(key)
        caller = event.name or str(event.pid)
        entry.add(event.ts, to if isinstance(to, Pid) else None, caller, event.data.get("timeout"))
