"""Text forms of terms and events: dbg-like lines, bounded, one event a line.

>>> from suptrace.core.events import TraceEvent
>>> from suptrace.core.terms import Pid
>>> ev = TraceEvent(0.0, Pid(404), "copycat.import_sup", "receive",
...                 {"from": Pid(409), "msg": ("job", 1)})
>>> format_event(ev, utc=True)
"00:00:00.000000 (<0.404.0> copycat.import_sup) << ('job', 1)"
"""

from __future__ import annotations

import json
import time
from typing import Any

from suptrace.core.events import TraceEvent
from suptrace.core.runtime import process_of
from suptrace.core.saferepr import MARK, BoundedRepr, safe_repr, safe_str
from suptrace.core.terms import Down, ExitMsg, Pid, Ref, Shutdown

__all__ = ["short", "format_event", "event_to_json", "term_to_json", "format_ts", "MARK"]

class _Repr(BoundedRepr):
    # The runtime's own messages read like dbg's: ExitMsg(<0.9.0>, reason), positional.
    def repr_ExitMsg(self, obj: ExitMsg, level: int) -> str:
        return f"ExitMsg({obj.pid}, {self.repr1(obj.reason, level - 1)})"

    def repr_Down(self, obj: Down, level: int) -> str:
        return f"Down({obj.ref}, {obj.pid}, {self.repr1(obj.reason, level - 1)})"

    def repr_Shutdown(self, obj: Shutdown, level: int) -> str:
        return f"Shutdown({self.repr1(obj.term, level - 1)})"


_reprs: dict[int, _Repr] = {}


def short(value: Any, limit: int = 200) -> str:
    """A repr of ``value`` no longer than about ``limit`` characters, cut with a visible mark.

    Total: a ``__repr__``/``__str__`` that raises, an int too large for ``str()``
    or a value that contains itself gives a placeholder, never an exception.

    >>> short("x" * 50, limit=10)
    "'xx…xxx'"
    >>> short(list(range(100)), limit=40)
    '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, …]'
    >>> short(10**5000)
    '<int of 5001 digits>'
    """
    if isinstance(value, BaseException):
        return safe_repr(value, limit)
    r = _reprs.get(limit)
    if r is None or r.busy:
        r = _Repr(limit)
        if len(_reprs) < 64:
            _reprs[limit] = r
    try:
        text = r.repr(value)
    except Exception:
        text = safe_repr(value, limit)
    if len(text) > limit * 2:
        text = text[: limit * 2] + MARK
    return text


def format_ts(ts: float, utc: bool = False) -> str:
    """``HH:MM:SS.micro`` of a wall-clock timestamp.

    >>> format_ts(1.9999996, utc=True)
    '00:00:02.000000'
    """
    # Round once, then split: rounding the fraction alone could print :01.000000 for 1.9999996.
    seconds, micro = divmod(round(ts * 1_000_000), 1_000_000)
    t = time.gmtime(seconds) if utc else time.localtime(seconds)
    return time.strftime("%H:%M:%S", t) + f".{micro:06d}"


def _who(pid: Any, name: str | None) -> str:
    return f"({pid} {_text(name)})" if name else f"({pid})"


def _text(value: Any, limit: int = 200) -> str:
    """A value shown as itself (pids, names, ids): ``str`` when short, else cut."""
    if type(value) is str and len(value) <= limit:
        return value
    if value is None or type(value) in (float, bool, Pid, Ref):
        return str(value)
    if type(value) is int:
        return safe_str(value, limit)
    return short(value, limit)


def _peer(value: Any, limit: int = 200) -> str:
    """The other process of an event: its pid, and its registered name while it has one."""
    if type(value) is Pid:
        proc = process_of(value)  # also for a parsed or unpickled copy of the pid
        name = proc.name if proc is not None else None
        return f"{value} {name}" if name else str(value)
    return _text(value, limit)


def _one_line(text: str) -> str:
    if "\n" in text or "\r" in text:
        return text.replace("\r", "\\r").replace("\n", "\\n")
    return text


def format_event(event: TraceEvent, limit: int = 200, utc: bool = False) -> str:
    """One dbg-like line: ``<<`` receive, ``!`` send, words for the rest.

    Every term in the line is cut at about ``2 * limit`` characters with `MARK`,
    and newlines are escaped, so one event is always one bounded line.
    """
    return _one_line(_format_event(event, limit, utc))


def _format_event(event: TraceEvent, limit: int, utc: bool) -> str:
    d = event.data
    k = event.kind
    who = _who(event.pid, event.name)
    ts = format_ts(event.ts, utc)
    if k == "receive":
        body = f"{who} << {short(d.get('msg'), limit)}"
    elif k == "send":
        body = f"{who} {_peer(d.get('to'), limit)} ! {short(d.get('msg'), limit)}"
    elif k == "dead_letter":
        body = f"{who} {_peer(d.get('to'), limit)} ! {short(d.get('msg'), limit)}  (dead letter: receiver not alive)"
    elif k == "exit":
        body = f"{who} exit {short(d.get('reason'), limit)}"
    elif k == "spawn":
        body = f"{who} spawn {_peer(d.get('child'), limit)} {_text(d.get('initial_call'), limit)}"
    elif k == "spawned":
        body = f"{who} spawned by {_text(d.get('parent'), limit)} as {_text(d.get('initial_call'), limit)}"
    elif k in ("link", "unlink", "getting_linked"):
        body = f"{who} {k} {_peer(d.get('peer'), limit)}"
    elif k in ("monitor", "demonitor"):
        body = f"{who} {k} {_peer(d.get('target'), limit)} {_text(d.get('ref'), limit)}"
    elif k == "down":
        body = f"{who} down {_peer(d.get('target'), limit)} {short(d.get('reason'), limit)}"
    elif k == "exit_signal":
        body = f"{who} exit signal from {_text(d.get('from'), limit)} {short(d.get('reason'), limit)} -> {_text(d.get('action'), limit)}"
    elif k in ("register", "unregister"):
        extra = f" ({short(d['reason'], limit)})" if d.get("reason") is not None else ""
        body = f"{who} {k} {_text(d.get('name'), limit)}{extra}"
    elif k == "call":
        body = f"{who} call {_peer(d.get('to'), limit)} {short(d.get('request'), limit)}"
    elif k == "reply":
        dur = d.get("duration")
        took = f" in {dur * 1e3:.3f}ms" if isinstance(dur, float) else ""
        body = f"{who} reply {_peer(d.get('to'), limit)} {short(d.get('reply'), limit)}{took}"
    elif k == "call_timeout":
        body = f"{who} call_timeout {_peer(d.get('to'), limit)} {short(d.get('request'), limit)} after {_text(d.get('timeout'), limit)}s"
    elif k == "restart":
        body = (
            f"{who} restart {short(d.get('child_id'), limit)} {_text(d.get('old_pid'), limit)} -> {_text(d.get('new_pid'), limit)}"
            f" ({short(d.get('reason'), limit)})"
        )
    elif k == "intensity":
        body = (
            f"{who} intensity reached: {_text(d.get('restarts'), limit)} restarts in {_text(d.get('period'), limit)}s "
            f"(max {_text(d.get('intensity'), limit)}); offender {short(d.get('child_id'), limit)} "
            f"{short(d.get('child_reason'), limit)}"
        )
    elif k in ("start_error", "child_terminated", "shutdown_error"):
        body = f"{who} {k} {short(d.get('child_id'), limit)} {short(d.get('reason'), limit)}"
    elif k == "not_restarted":
        body = f"{who} not_restarted {short(d.get('child_id'), limit)} {short(d.get('reason'), limit)} ({_text(d.get('restart_type'), limit)})"
    elif k == "progress":
        started = d.get("started")
        if not isinstance(started, dict):
            started = {}
        body = (
            f"{who} started {short(started.get('id'), limit)} as {_text(started.get('pid'), limit)}"
        )
    elif k == "trace":
        body = _text(d.get("note"), limit)
    elif k == "call_trace":
        body = f"{who} {_text(d.get('phase'), limit)} {_text(d.get('function'), limit)} {short(d.get('value'), limit)}"
    elif k == "long_schedule":
        stack = d.get("stack")
        where = f" at {_text(stack[-1], limit)}" if isinstance(stack, list) and stack else ""
        dur = d.get("duration")
        held = f"{dur:.3f}s" if isinstance(dur, float) else _text(dur, limit)
        body = f"{who} long_schedule: held the loop {held} without awaiting{where}"
    elif k == "large_mailbox":
        body = f"{who} large_mailbox: {_text(d.get('size'), limit)} messages queued"
    else:
        body = f"{who} {k} {short(d, limit)}"
    return f"{ts} {body}"


def term_to_json(value: Any, limit: int = 200, depth: int = 4) -> Any:
    """A JSON-safe form of a term: plain values kept, the rest shortened reprs.

    Containers are kept as JSON up to ``depth`` levels and 20 items; deeper or
    larger ones become shortened reprs, so the size stays bounded. Total: a
    value that cannot be walked (a hostile ``__len__``, ``__iter__``...) becomes
    its safe repr.

    >>> term_to_json({"n": 10**5000, "s": "x" * 5}, limit=3)
    {'n': '<int of 5001 digits>', 's': 'xxx…'}
    """
    try:
        return _term_to_json(value, limit, depth)
    except Exception:
        return short(value, limit)


def _term_to_json(value: Any, limit: int, depth: int) -> Any:
    if value is None or type(value) is bool:
        return value
    if isinstance(value, int):
        return int(value) if -_BIG_INT < value < _BIG_INT else safe_str(value, limit)
    if isinstance(value, float):
        return value if value == value and value not in (_INF, -_INF) else repr(value)
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + MARK
    if isinstance(value, (Pid, Ref)):
        return str(value)
    if isinstance(value, TraceEvent):  # an exit's last_events
        return json.loads(event_to_json(value, limit))
    if depth > 0:
        if isinstance(value, dict) and len(value) <= 20:
            return {_text(k, limit): _term_to_json(v, limit, depth - 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)) and len(value) <= 20:
            return [_term_to_json(v, limit, depth - 1) for v in value]
    return short(value, limit)


_INF = float("inf")
#: Ints beyond this are shown as text (JSON readers lose precision past 2**53 anyway).
_BIG_INT = 2**63


def event_to_json(event: TraceEvent, limit: int = 200) -> str:
    """One event as a JSON object on one line."""
    return json.dumps(
        {
            "ts": event.ts,
            "pid": str(event.pid) if event.pid is not None else None,
            "name": event.name,
            "kind": event.kind,
            "data": {
                k if type(k) is str else _text(k, limit): term_to_json(v, limit)
                for k, v in event.data.items()
            },
        },
        ensure_ascii=False,
    )
