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
import reprlib
import time
from typing import Any

from suptrace.core.events import TraceEvent
from suptrace.core.terms import Pid, Ref

__all__ = ["short", "format_event", "event_to_json", "term_to_json", "format_ts", "MARK"]

#: Appended where a long term was cut.
MARK = "…"


class _Repr(reprlib.Repr):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.maxstring = limit
        self.maxother = limit
        self.maxlist = 12
        self.maxtuple = 12
        self.maxdict = 12
        self.maxset = 12
        self.maxdeque = 12
        self.maxlevel = 5
        self.fillvalue = MARK

    def repr_instance(self, obj: Any, level: int) -> str:
        try:
            text = repr(obj)
        except Exception as exc:  # a broken __repr__ must not break tracing
            return f"<{type(obj).__name__} (repr failed: {type(exc).__name__})>"
        return text if len(text) <= self.maxother else text[: self.maxother] + MARK


_reprs: dict[int, _Repr] = {}


def short(value: Any, limit: int = 200) -> str:
    """A repr of ``value`` no longer than about ``limit`` characters, cut with a visible mark.

    >>> short("x" * 50, limit=10)
    "'xx…xxx'"
    >>> short(list(range(100)), limit=40)
    '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, …]'
    """
    r = _reprs.get(limit)
    if r is None:
        r = _reprs[limit] = _Repr(limit)
    if isinstance(value, BaseException):
        text = (
            f"{type(value).__name__}({str(value)!r})" if str(value) else f"{type(value).__name__}()"
        )
        if hasattr(value, "reason") and type(value).__repr__ is not BaseException.__repr__:
            text = repr(value)
    else:
        text = r.repr(value)
    if len(text) > limit * 2:
        text = text[: limit * 2] + MARK
    return text


def format_ts(ts: float, utc: bool = False) -> str:
    """``HH:MM:SS.micro`` of a wall-clock timestamp."""
    t = time.gmtime(ts) if utc else time.localtime(ts)
    return time.strftime("%H:%M:%S", t) + f".{int(round((ts % 1) * 1e6)) % 1000000:06d}"


def _who(pid: Any, name: str | None) -> str:
    return f"({pid} {name})" if name else f"({pid})"


def format_event(event: TraceEvent, limit: int = 200, utc: bool = False) -> str:
    """One dbg-like line: ``<<`` receive, ``!`` send, words for the rest."""
    d = event.data
    k = event.kind
    who = _who(event.pid, event.name)
    ts = format_ts(event.ts, utc)
    if k == "receive":
        body = f"{who} << {short(d.get('msg'), limit)}"
    elif k == "send":
        body = f"{who} {d.get('to')} ! {short(d.get('msg'), limit)}"
    elif k == "dead_letter":
        body = (
            f"{who} {d.get('to')} ! {short(d.get('msg'), limit)}  (dead letter: receiver not alive)"
        )
    elif k == "exit":
        body = f"{who} exit {short(d.get('reason'), limit)}"
    elif k == "spawn":
        body = f"{who} spawn {d.get('child')} {d.get('initial_call')}"
    elif k == "spawned":
        body = f"{who} spawned by {d.get('parent')} as {d.get('initial_call')}"
    elif k in ("link", "unlink", "getting_linked"):
        body = f"{who} {k} {d.get('peer')}"
    elif k in ("monitor", "demonitor"):
        body = f"{who} {k} {d.get('target')} {d.get('ref')}"
    elif k == "down":
        body = f"{who} down {d.get('target')} {short(d.get('reason'), limit)}"
    elif k == "exit_signal":
        body = f"{who} exit signal from {d.get('from')} {short(d.get('reason'), limit)} -> {d.get('action')}"
    elif k in ("register", "unregister"):
        extra = f" ({short(d['reason'], limit)})" if d.get("reason") is not None else ""
        body = f"{who} {k} {d.get('name')}{extra}"
    elif k == "call":
        body = f"{who} call {d.get('to')} {short(d.get('request'), limit)}"
    elif k == "reply":
        dur = d.get("duration")
        took = f" in {dur * 1e3:.3f}ms" if isinstance(dur, float) else ""
        body = f"{who} reply {d.get('to')} {short(d.get('reply'), limit)}{took}"
    elif k == "call_timeout":
        body = f"{who} call_timeout {d.get('to')} {short(d.get('request'), limit)} after {d.get('timeout')}s"
    elif k == "restart":
        body = (
            f"{who} restart {d.get('child_id')!r} {d.get('old_pid')} -> {d.get('new_pid')}"
            f" ({short(d.get('reason'), limit)})"
        )
    elif k == "intensity":
        body = (
            f"{who} intensity reached: {d.get('restarts')} restarts in {d.get('period')}s "
            f"(max {d.get('intensity')}); offender {d.get('child_id')!r} "
            f"{short(d.get('child_reason'), limit)}"
        )
    elif k in ("start_error", "child_terminated", "shutdown_error"):
        body = f"{who} {k} {d.get('child_id')!r} {short(d.get('reason'), limit)}"
    elif k == "not_restarted":
        body = f"{who} not_restarted {d.get('child_id')!r} {short(d.get('reason'), limit)} ({d.get('restart_type')})"
    elif k == "progress":
        started = d.get("started") or {}
        body = f"{who} started {started.get('id')!r} as {started.get('pid')}"
    elif k == "trace":
        body = str(d.get("note"))
    elif k == "call_trace":
        body = f"{who} {d.get('phase')} {d.get('function')} {short(d.get('value'), limit)}"
    else:
        body = f"{who} {k} {short(d, limit)}"
    return f"{ts} {body}"


def term_to_json(value: Any, limit: int = 200) -> Any:
    """A JSON-safe form of a term: plain values kept, the rest shortened reprs."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + MARK
    if isinstance(value, (Pid, Ref)):
        return str(value)
    if isinstance(value, dict) and len(value) <= 20:
        return {str(k): term_to_json(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and len(value) <= 20:
        return [term_to_json(v, limit) for v in value]
    return short(value, limit)


def event_to_json(event: TraceEvent, limit: int = 200) -> str:
    """One event as a JSON object on one line."""
    return json.dumps(
        {
            "ts": event.ts,
            "pid": str(event.pid) if event.pid is not None else None,
            "name": event.name,
            "kind": event.kind,
            "data": {k: term_to_json(v, limit) for k, v in event.data.items()},
        },
        ensure_ascii=False,
    )
