"""The restart-intensity rule, free of any event loop.

OTP (``supervisor:add_restart/1``) keeps the restart timestamps in whole
seconds of monotonic time, counts those within the last ``period`` seconds
*inclusively*, and gives up when the count exceeds ``intensity``::

    R1 = [Now | [T || T <- Restarts, T >= Now - Period]]
    length(R1) =< Intensity  ->  ok, else  ->  terminate

So with ``intensity=3`` the 4th restart inside the window terminates the
supervisor, ``intensity=0`` gives up on the first restart, and a timestamp
exactly ``period`` whole seconds old still counts (the effective window is up
to ``period + 1`` seconds).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

__all__ = ["add_restart", "RestartWindow"]


def add_restart(
    restarts: Sequence[int], now: int, intensity: int, period: int
) -> tuple[tuple[int, ...], bool]:
    """Record a restart at ``now``; return the new window (newest first) and
    whether the supervisor may go on.

    >>> w, ok = add_restart((), 10, 1, 5)
    >>> w, ok
    ((10,), True)
    >>> add_restart(w, 15, 1, 5)     # 10 >= 15 - 5: still in the window
    ((15, 10), False)
    >>> add_restart(w, 16, 1, 5)     # 10 < 16 - 5: expired
    ((16,), True)
    """
    window = (now, *(t for t in restarts if t >= now - period))
    return window, len(window) <= intensity


class RestartWindow:
    """The same rule in amortised O(1), for supervisors that restart a lot.

    >>> w = RestartWindow(intensity=2, period=5)
    >>> [w.add(t) for t in (0, 1, 2)]
    [True, True, False]
    >>> w.used(now=2)
    3
    """

    __slots__ = ("_times", "intensity", "period")

    def __init__(self, intensity: int, period: int) -> None:
        self.intensity = intensity
        self.period = period
        self._times: deque[int] = deque()  # oldest first

    def add(self, now: int) -> bool:
        times = self._times
        times.append(now)
        horizon = now - self.period
        while times[0] < horizon:
            times.popleft()
        return len(times) <= self.intensity

    def used(self, now: int) -> int:
        """How many restarts count against the intensity at ``now``."""
        horizon = now - self.period
        return sum(1 for t in self._times if t >= horizon)

    def snapshot(self) -> tuple[int, ...]:
        return tuple(reversed(self._times))
