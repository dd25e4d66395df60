"""The flight recorder: each process's last few events, kept as raw tuples.

A process's recorder is a bounded deque created on first use (its size is the
node's ``recorder_size``; 0 turns it off). Entries are ``(ts, kind, peer,
payload)`` tuples: the hot path appends one tuple and reads the clock once;
they become `TraceEvent` values only when someone reads them (a crash report,
``process_info``, a tombstone).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, overload

from suptrace.core.events import TraceEvent
from suptrace.core.terms import CAST, CastRequest, Pid

if TYPE_CHECKING:
    from suptrace.core.process import Process

__all__ = ["RecordedEvents", "record", "recorded"]

#: The flight recorder's clock (a module-level name: one lookup less per entry).
clock = time.time


def record(proc: Process, kind: str, peer: Any, payload: Any) -> None:
    """Append to ``proc``'s flight recorder (created on first use)."""
    rec = proc.recorder
    if rec is None:
        size = proc.runtime.recorder_size
        if not size:
            return
        rec = proc.recorder = deque(maxlen=size)
    rec.append((clock(), kind, peer, payload))


def recorded(proc: Process) -> RecordedEvents:
    """A snapshot of ``proc``'s flight recorder, turned into events only when read."""
    return RecordedEvents(proc.pid, proc.name, tuple(proc.recorder) if proc.recorder else ())


_PEER_KEY = {"receive": "from", "send": "to", "call": "to", "exit_signal": "from"}


class RecordedEvents(Sequence[TraceEvent]):
    """A process's last recorded events (oldest first), immutable.

    The recorder keeps raw tuples; they become `TraceEvent` values on first
    read, so a crash pays for a copy of the ring, not for building events that
    nobody may look at.
    """

    __slots__ = ("_events", "_name", "_pid", "_raw")

    def __init__(self, pid: Pid, name: str | None, raw: tuple[tuple[float, str, Any, Any], ...]) -> None:
        self._pid = pid
        self._name = name
        self._raw = raw
        self._events: tuple[TraceEvent, ...] | None = None

    def _all(self) -> tuple[TraceEvent, ...]:
        events = self._events
        if events is None:
            events = self._events = tuple(
                _recorded_event(self._pid, self._name, entry) for entry in self._raw
            )
        return events

    @overload
    def __getitem__(self, index: int) -> TraceEvent: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[TraceEvent, ...]: ...

    def __getitem__(self, index: int | slice) -> TraceEvent | tuple[TraceEvent, ...]:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._raw)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return self._all() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self._all()))


def _recorded_event(pid: Pid, name: str | None, entry: tuple[float, str, Any, Any]) -> TraceEvent:
    ts, kind, peer, payload = entry
    if kind == "exit_signal":
        reason, action = payload
        data: dict[str, Any] = {"from": peer, "reason": reason, "action": action}
    elif kind == "call":
        data = {"to": peer, "request": payload}
    else:
        if type(payload) is tuple and payload and payload[0] is CAST:
            payload = CastRequest(payload[1])  # a cast, as its mailbox holds it
        data = {_PEER_KEY.get(kind, "peer"): peer, "msg": payload}
    return TraceEvent(ts, pid, name, kind, data)
