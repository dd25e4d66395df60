"""The bridge's lifecycle part: spawns, exits and supervision events.

Spawns are ``spawn`` events on the spawner's current span. An exit is a
zero-length ``exit <name>`` span (only abnormal exits in ``"failures"``
mode), the child of the handling that crashed, linked to the span current
where the process was spawned. Supervision events (`SUPERVISION_KINDS`) are
span events on the span current when they happen, or a short span of their
own outside any handling; the failures among them (`FAILURE_KINDS`) set ERROR
status, and in ``"failures"`` mode they and restarts select their trace.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    Status,
    StatusCode,
    set_span_in_context,
)

from suptrace.core.events import TraceEvent
from suptrace.core.process import Process
from suptrace.core.runtime import process_of
from suptrace.core.terms import is_normal_exit, reason_class
from suptrace.observers.format import short
from suptrace.observers.otel.metrics import child_label
from suptrace.observers.otel.spans import (
    EMPTY,
    INTERNAL,
    ON,
    PARENT,
    TAIL,
    reason_text,
    record_exception,
)
from suptrace.observers.otel.state import BridgeState
from suptrace.observers.otel.tail import Pending, new_span_id, new_trace_id

__all__ = ["Supervision", "SUPERVISION_KINDS", "FAILURE_KINDS"]

SUPERVISION_KINDS = (
    "restart",
    "child_terminated",
    "start_error",
    "intensity",
    "not_restarted",
    "shutdown_error",
)
#: Supervision events that mean something failed (ERROR status on their spans).
FAILURE_KINDS = frozenset({"start_error", "intensity", "not_restarted", "shutdown_error"})
#: Supervision events that select their trace in ``"failures"`` mode.
_SELECTING = FAILURE_KINDS | {"restart"}



class Supervision(BridgeState):
    """The spawn, death and supervision-event hooks of the bridge."""

    def _on_spawn(self, proc: Process, parent: Process | None) -> None:
        try:
            current = self._current(parent)
            if current is INVALID_SPAN:
                return
            self.inherited[proc] = current
            if proc.system:
                return
            if type(current) is Pending:
                current.note("spawn", self._spawn_attributes(proc))
            elif current.is_recording():
                current.add_event("spawn", self._spawn_attributes(proc))
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("spawn", exc)

    def _spawn_attributes(self, proc: Process) -> dict[str, Any]:
        return {
            "suptrace.process.pid": str(proc.pid),
            "suptrace.process.name": proc.name or proc.initial_call,
            "suptrace.initial_call": proc.initial_call,
        }

    def _on_death(self, proc: Process, reason: Any) -> None:
        m = self.metrics
        if m is not None:
            m.exits.add(
                1,
                {
                    "suptrace.process.name": proc.name or proc.initial_call,
                    "suptrace.exit.reason": reason_class(reason),
                },
            )
        mode = self.mode
        if not mode:
            return
        # Forgotten on the next loop iteration: the links and monitors this death notifies
        # right after this hook still send from this process, in its context.
        self.runtime.loop.call_soon(self._forget, proc)
        if proc.system or mode == PARENT:
            return
        normal = is_normal_exit(reason)
        if normal and mode == TAIL:
            return
        try:
            self._exit_span(proc, reason, normal)
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken("exit", exc)

    def _exit_span(self, proc: Process, reason: Any, normal: bool) -> None:
        """A zero-length ``exit <name>`` span: the child of the handling that crashed."""
        label = proc.name or proc.initial_call
        attrs: dict[str, Any] = {
            "suptrace.process.pid": str(proc.pid),
            "suptrace.process.name": label,
            "suptrace.initial_call": proc.initial_call,
            "suptrace.node": self.runtime.name,
            "suptrace.exit.reason": reason_text(reason),
            "suptrace.exit.reason_class": reason_class(reason),
            "suptrace.exit.by_signal": proc.pending_exit is not None,
            "suptrace.messages_in": proc.messages_in,
            "suptrace.messages_out": proc.messages_out,
        }
        if proc.parent is not None:
            attrs["suptrace.parent.pid"] = str(proc.parent)
        crashed = self._crashed.pop(proc, None)
        spawned = self.inherited.get(proc)
        name = f"exit {label}"
        status = None if normal else f"exited {reason_text(reason, 200)}"
        span: Any
        if self.mode == TAIL:
            link = None
            if spawned is not None:
                sc = spawned.get_span_context()
                link = (sc.trace_id, sc.span_id) if sc.is_valid else None
            info = ("attrs", attrs)
            if crashed is not None:
                sc = crashed.get_span_context()
                rec = Pending(sc.trace_id, new_span_id(), sc.span_id, name, INTERNAL, info, link)
                if type(crashed) is Pending:
                    self.tail.join(crashed, rec)  # type: ignore[union-attr]
            else:
                rec = Pending(new_trace_id(), new_span_id(), 0, name, INTERNAL, info, link)
            if type(spawned) is Pending:
                rec.sender = weakref.ref(spawned)
            rec.note("exit", attrs, status)
            rec.error = reason if isinstance(reason, BaseException) else None
            rec.end_ns = rec.start
            tail = self.tail
            assert tail is not None
            tail.add(rec, proc)
            tail.fail(rec, proc)
            span = rec
        else:
            links = []
            if spawned is not None:
                sc = spawned.get_span_context()
                if sc.is_valid:
                    links.append(Link(sc, {"suptrace.link": "spawned_during"}))
            ctx = set_span_in_context(crashed, EMPTY) if crashed is not None else EMPTY
            now = time.time_ns()
            span = self.tracer.start_span(
                name, ctx, INTERNAL, links=links, attributes=attrs, start_time=now
            )
            if span.is_recording():
                if isinstance(reason, BaseException):
                    record_exception(span, reason, {"suptrace.event": "exit"})
                span.add_event("exit", attrs, now)
                if status is not None:
                    span.set_status(Status(StatusCode.ERROR, status))
            span.end(now)
        self._dying = (proc.pid, span)
        dead = self._dead
        dead[proc.pid] = span
        if len(dead) > 64:
            dead.popitem(last=False)

    def _forget(self, proc: Process) -> None:
        self._dying = None
        self.inherited.pop(proc, None)
        self._crashed.pop(proc, None)
        self._proxies.pop(proc, None)
        if self.tail is not None:
            proxy = self.tail.proxies.pop(proc, None)
            if proxy is not None:
                self.tail.forget_proxy(proxy)
            self.tail.forget(proc)

    # -- supervision events ------------------------------------------------------------

    def _on_event(self, event: TraceEvent) -> None:
        kind = event.kind
        m = self.metrics
        d = event.data
        proc = process_of(event.pid) if event.pid is not None else None
        sup = event.name or (proc.initial_call if proc is not None else "?")
        child = child_label(d.get("child_id"))
        if m is not None:
            if kind == "restart":
                attrs = {
                    "suptrace.supervisor": sup,
                    "suptrace.exit.reason": reason_class(d.get("reason")),
                }
                if child is not None:
                    attrs["suptrace.child.id"] = child
                m.restarts.add(1, attrs)
            elif kind == "intensity":
                attrs = {"suptrace.supervisor": sup}
                if child is not None:
                    attrs["suptrace.child.id"] = child
                m.intensity_breaches.add(1, attrs)
        if not self.mode:
            return
        try:
            self._supervision_span_event(kind, sup, proc, d)
        except Exception as exc:  # telemetry must never break the process it watches
            self._broken(kind, exc)

    def _supervision_span_event(
        self, kind: str, sup: str, proc: Process | None, d: dict[str, Any]
    ) -> None:
        failed = _failure_text(kind, d) if kind in FAILURE_KINDS else None
        selecting = kind in _SELECTING or (
            kind == "child_terminated" and not is_normal_exit(d.get("reason"))
        )
        event_attrs = _supervision_attributes(kind, sup, d)
        current = self._current(proc)
        if type(current) is Pending:
            current.note(kind, event_attrs, failed)
            if selecting:
                self.tail.fail(current, proc)  # type: ignore[union-attr]
            return
        if current.is_recording():
            current.add_event(kind, event_attrs)
            if failed is not None:
                current.set_status(Status(StatusCode.ERROR, failed))
            return
        if self.mode == PARENT or not (selecting or self.mode == ON):
            return
        # Outside any handling (a supervisor's init, its shutdown): a short span of its own.
        name = f"{kind} {sup}"
        if self.mode == TAIL:
            rec = Pending(new_trace_id(), new_span_id(), 0, name, INTERNAL, ("attrs", event_attrs))
            rec.note(kind, event_attrs, failed)
            rec.end_ns = rec.start
            self.tail.add(rec, proc)  # type: ignore[union-attr]
            self.tail.fail(rec, proc)  # type: ignore[union-attr]
            return
        span = self.tracer.start_span(name, EMPTY, INTERNAL, attributes=event_attrs)
        span.add_event(kind, event_attrs)
        if failed is not None:
            span.set_status(Status(StatusCode.ERROR, failed))
        span.end()


def _supervision_attributes(kind: str, sup: str, d: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {"suptrace.supervisor": sup}
    child = d.get("child_id")
    if child is not None:
        attrs["suptrace.child.id"] = child if isinstance(child, str) else short(child, 100)
    reason = d.get("reason")
    if reason is not None or "reason" in d:
        attrs["suptrace.exit.reason"] = reason_text(reason)
        attrs["suptrace.exit.reason_class"] = reason_class(reason)
    if kind == "restart":
        if d.get("old_pid") is not None:
            attrs["suptrace.old.pid"] = str(d["old_pid"])
        if d.get("new_pid") is not None:
            attrs["suptrace.new.pid"] = str(d["new_pid"])
    elif kind == "intensity":
        for key in ("restarts", "intensity", "period"):
            if d.get(key) is not None:
                attrs[f"suptrace.{key}"] = d[key]
        if "child_reason" in d:
            attrs["suptrace.child.reason"] = reason_text(d["child_reason"])
    elif kind == "not_restarted":
        attrs["suptrace.restart_type"] = str(d.get("restart_type"))
        if d.get("rule"):
            attrs["suptrace.rule"] = str(d["rule"])
        cause = d.get("cause")
        if isinstance(cause, dict) and cause.get("text"):
            attrs["suptrace.cause"] = str(cause["text"])
    return attrs


def _failure_text(kind: str, d: dict[str, Any]) -> str:
    child = d.get("child_id")
    if kind == "intensity":
        return (
            f"reached max restart intensity ({d.get('restarts')} restarts, intensity "
            f"{d.get('intensity')} in {d.get('period')}s); last offender {child!r}"
        )
    if kind == "not_restarted":
        return f"child {child!r} exited {reason_text(d.get('reason'), 100)} and was not restarted"
    if kind == "start_error":
        return f"child {child!r} failed to start: {short(d.get('reason'), 150)}"
    return f"child {child!r}: {kind} {short(d.get('reason'), 150)}"
