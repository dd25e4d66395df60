"""A connection's streams: an ``attach`` (trace events) or a ``reports`` follow.

A stream pushes items to its client while the client keeps up, drops and
counts them when it does not (the ``end`` frame says how many), and ends when
its tracer stops, its client detaches or leaves, or the node stops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from suptrace.node.control.shapes import event_json, report_json, report_matches
from suptrace.observers.reports import Report
from suptrace.observers.tracer import Tracer

if TYPE_CHECKING:
    from suptrace.node.control.connection import Connection

__all__ = ["ReportStream", "Stream", "TraceStream"]


class Stream:
    """One streaming request of a connection."""

    kind = "stream"

    def __init__(self, conn: Connection, req_id: Any) -> None:
        self.conn = conn
        self.id = req_id
        self.dropped = 0
        self.sent = 0
        self.ended = False

    def push(self, item: str, data: dict[str, Any]) -> None:
        if self.ended:
            return
        if self.conn.send_stream({"id": self.id, "stream": item, "data": data}):
            self.sent += 1
        else:
            self.dropped += 1

    def end(self, reason: str, **extra: Any) -> None:
        if self.ended:
            return
        self.ended = True
        self.conn.streams.pop(self.id, None)
        data = {"reason": reason, "sent": self.sent, "client_dropped": self.dropped, **extra}
        self.conn.send({"id": self.id, "stream": "end", "data": data})

    def stop(self, reason: str) -> None:
        self.end(reason)


class TraceStream(Stream):
    """The events of an ``attach``: its tracer's handler and ``on_stop``."""

    kind = "attach"

    def __init__(self, conn: Connection, req_id: Any, term_limit: int) -> None:
        super().__init__(conn, req_id)
        self.term_limit = term_limit
        self.tracer: Tracer | None = None

    def on_event(self, event: Any) -> None:
        self.push("event", event_json(event, self.term_limit))

    def on_stop(self, tracer: Tracer) -> None:
        stats = tracer.stats()
        stats["traced_pids"] = [str(p) for p in stats.get("traced_pids", ())]
        self.end(tracer.stop_reason or "stopped", stats=stats, summary=tracer.summary())

    def stop(self, reason: str) -> None:
        if self.tracer is not None and self.tracer.active:
            self.tracer.stop(reason)  # its on_stop ends the stream
        else:
            self.end(reason)


class ReportStream(Stream):
    """The reports of a ``reports`` follow, of the kinds asked for."""

    kind = "reports"

    def __init__(
        self, conn: Connection, req_id: Any, kinds: frozenset[str] | None, limit: int
    ) -> None:
        super().__init__(conn, req_id)
        self.kinds = kinds
        self.limit = limit
        self.unsubscribe: Callable[[], None] | None = None

    def on_report(self, report: Report) -> None:
        if report_matches(report, self.kinds):
            self.push("report", report_json(report, self.limit))

    def end(self, reason: str, **extra: Any) -> None:
        if self.unsubscribe is not None:
            self.unsubscribe()
            self.unsubscribe = None
        super().end(reason, **extra)
