"""The control plane's requests to a supervisor.

Supervisors are asked through their admin API (`describe`), with a timeout, so
a busy supervisor makes an answer say "busy" instead of hanging it, and under
an unsampled span context, so these requests stay out of the application's
traces.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from suptrace.behaviours.admin import describe
from suptrace.behaviours.supervision import SupervisorBase
from suptrace.core.errors import CallError
from suptrace.core.process import Process
from suptrace.core.runtime import process_of
from suptrace.core.terms import Pid
from suptrace.node.control.shapes import behaviour_label
from suptrace.observers.format import short, term_to_json
from suptrace.observers.reports import start_text

__all__ = ["is_supervisor", "untraced", "describe_supervisor"]


def is_supervisor(proc: Process | None) -> bool:
    """Whether ``proc`` runs a supervisor behaviour (a Supervisor or a
    DynamicSupervisor); False for None.

    >>> is_supervisor(None)
    False
    """
    return proc is not None and isinstance(proc.behaviour, SupervisorBase)


#: The parent of the control plane's own calls: a valid span context that is not
#: sampled, so OpenTelemetry's parent-based sampling (the SDK's default) records
#: neither the CLIENT span of the call nor the supervisor's SERVER span.
_UNSAMPLED: Any = None


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """The requests the control plane makes to a process (``describe`` for ``tree``,
    ``inspect`` and ``doctor``; the write commands' admin calls) stay out of the
    application's traces."""
    global _UNSAMPLED
    from opentelemetry import context, trace

    if _UNSAMPLED is None:
        ctx = trace.SpanContext(
            trace_id=0x5C0DE_0F_C0_47801,  # any valid ids: nothing is ever exported under them
            span_id=0x5C0DE,
            is_remote=False,
            trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT),
        )
        _UNSAMPLED = trace.set_span_in_context(trace.NonRecordingSpan(ctx))
    token = context.attach(_UNSAMPLED)
    try:
        yield
    finally:
        context.detach(token)


async def describe_supervisor(proc: Process, timeout: float) -> dict[str, Any]:
    """``describe`` of a supervisor as JSON-ready data (children without subtrees,
    oldest first), asked out of the application's traces; ``status`` says
    ``busy`` when it did not answer in ``timeout`` seconds and ``gone`` when it
    died first (then ``children`` is empty)."""
    base: dict[str, Any] = {
        "name": proc.name,
        "pid": str(proc.pid),
        "behaviour": behaviour_label(proc),
    }
    try:
        with untraced():
            desc = await asyncio.wait_for(describe(proc.pid), timeout)
    except (TimeoutError, CallError) as exc:
        base["status"] = "busy" if isinstance(exc, TimeoutError) else "gone"
        base["children"] = []
        return base
    base.update(
        status="ok",
        kind=desc.get("kind"),
        strategy=desc.get("strategy"),
        intensity=desc.get("intensity"),
        period=desc.get("period"),
        restarts_in_window=desc.get("restarts_in_window"),
        auto_shutdown=desc.get("auto_shutdown", "never"),
        max_children=desc.get("max_children"),
    )
    children = []
    # describe lists children newest first (as which_children); a tree reads in start order.
    for c in reversed(desc.get("children", [])):
        cpid = c.get("pid")
        cproc = process_of(cpid) if isinstance(cpid, Pid) else None
        children.append(
            {
                "id": term_to_json(c.get("id")),
                "id_text": c["id"] if isinstance(c.get("id"), str) else short(c.get("id"), 80),
                "pid": None if cpid is None else str(cpid),
                "restart": c.get("restart"),
                "type": c.get("type"),
                "shutdown": term_to_json(c.get("shutdown")),
                "significant": bool(c.get("significant")),
                "restarts": int(c.get("restarts") or 0),
                "restarts_window": int(c.get("restarts_window") or 0),
                "start": None if c.get("start") is None else start_text(c["start"]),
                "name": cproc.name if cproc is not None else None,
                "alive": cproc is not None and cproc.alive,
                "message_queue_len": len(cproc.mailbox)
                if cproc is not None and cproc.mailbox
                else 0,
            }
        )
    base["children"] = children
    return base
