"""The operations a client may ask for: one handler each, in one table.

Every handler checks its arguments (``bad_args`` naming the bad one), then asks
the module of its concept for the answer (`~suptrace.node.control.processes`,
`~suptrace.node.control.trees`, `~suptrace.node.control.diagnose`,
`~suptrace.node.control.writes`), which reads the node from its own loop. The
read ops describe the node; ``attach`` and ``reports`` with ``follow`` open a
stream; the write ops (``terminate_child``, ``restart_child``, ``exit``) change
the node, and the server refuses them unless the node allows writes.

>>> sorted(name for name, op in OPS.items() if op.writes)
['exit', 'restart_child', 'terminate_child']
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suptrace._version import __version__
from suptrace.node.control import diagnose, processes, shapes, trees, writes
from suptrace.node.control.args import capped, optional, required, sampling_time, texts
from suptrace.node.control.errors import OpError, show
from suptrace.node.control.protocol import PROTOCOL
from suptrace.node.control.streams import ReportStream, TraceStream
from suptrace.observers.calltrace import resolve_function, trace_calls
from suptrace.observers.tracer import FLAGS, Tracer, running_tracers

if TYPE_CHECKING:
    from suptrace.node.control.connection import Connection
    from suptrace.node.control.server import ControlServer

__all__ = ["OPS", "WRITE_OPS", "Op"]

Handler = Callable[["ControlServer", "Connection", Any, dict[str, Any]], Awaitable[Any]]


def _no_extra_time(args: dict[str, Any]) -> float:
    return 0.0


@dataclass(frozen=True)
class Op:
    """One operation: its handler, whether it changes the node, and how much
    longer than ``op_timeout`` it may take for the arguments it got."""

    name: str
    run: Handler
    writes: bool = False
    extra_time: Callable[[dict[str, Any]], float] = _no_extra_time


# -- read ops -------------------------------------------------------------------------------


async def hello(server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]) -> Any:
    return {
        "protocol": PROTOCOL,
        "node": server.node_name,
        "id": server.id,
        "pid": os.getpid(),
        "started": server.started,
        "version": __version__,
        "python": sys.version.split()[0],
        "allow_write": server.options.allow_write,
        "ops": sorted(OPS),
        "limits": server.limits(),
    }


async def status(server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]) -> Any:
    rt = server.runtime
    tracers = running_tracers(rt)
    streams = [s for c in server.connections for s in c.streams.values()]
    stats = []
    for t in tracers:
        s = t.stats()
        s["traced_pids"] = [str(p) for p in s.get("traced_pids", ())]
        stats.append(s)
    return {
        "node": server.node_name,
        "processes": sum(1 for p in rt.procs.values() if p.alive),
        "registered": len(rt.names),
        "clients": len(server.connections),
        "streams": {
            "attach": sum(1 for s in streams if s.kind == "attach"),
            "reports": sum(1 for s in streams if s.kind == "reports"),
        },
        "tracers": stats,
        "traced_processes": sum(1 for p in rt.procs.values() if p.tracers),
        "event_hooks": len(rt.hooks),
        "spawn_hooks": len(rt.spawn_hooks),
        "hook_errors": rt.hook_errors,
        "frames_dropped": server.frames_dropped,
        "requests": server.requests,
        "errors": server.errors,
        "refused": server.refused,
        "connections": server.connection_counts(),
        "allow_write": server.options.allow_write,
        "limits": server.limits(),
        "telemetry": diagnose.telemetry_signals(server.parts.telemetry),
    }


async def ps(server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]) -> Any:
    system = optional(args, "system", bool, False)
    limit = optional(args, "limit", int, 10_000)
    tasks = optional(args, "tasks", bool, False)
    return processes.ps(server.runtime, system, max(1, limit), tasks, server.parts.tasks)


async def info(server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]) -> Any:
    target = required(args, "target", str)
    return await processes.info(server.runtime, target, server.options.call_timeout, 200)


async def tree(server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]) -> Any:
    return await trees.tree(server.runtime, server.parts.reports, server.options.call_timeout)


async def top(server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]) -> Any:
    limit = max(1, min(optional(args, "limit", int, 100), 10_000))
    report_limit = max(0, min(optional(args, "reports", int, 5), 50))
    sort = optional(args, "sort", str, "m")
    if sort not in processes.TOP_SORTS:
        raise OpError("bad_args", f"top: sort must be one of m, s, r, y, not {sort!r}")
    # The message counts of this connection's last refresh: messages/s since then.
    result, conn.top_counts = processes.top(
        server.runtime, server.parts.reports, limit, report_limit, sort, conn.top_counts
    )
    return result


async def tombstones(
    server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]
) -> Any:
    stones = reversed(list(server.runtime.tombstones.values()))
    return {"tombstones": [shapes.tombstone_json(s) for s in stones]}


async def tombstone(
    server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]
) -> Any:
    name = required(args, "name", str)
    stone = server.runtime.tombstones.get(name)
    if stone is None:
        raise OpError("not_found", f"no tombstone for {show(name)} on node {server.node_name}")
    return shapes.tombstone_json(stone)


async def doctor(server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]) -> Any:
    samples = optional(args, "samples", int, 3)
    interval = optional(args, "interval", (int, float), 0.5)
    if not 1 <= samples <= 20 or not 0 < interval <= 10:
        raise OpError("bad_args", "doctor: samples must be 1..20 and interval 0..10 s")
    stuck_after = float(optional(args, "stuck_after", (int, float), 30.0))
    mailbox_min = optional(args, "mailbox_min", int, 10)
    return await diagnose.doctor(
        server.runtime,
        server.parts.reports,
        samples=samples,
        interval=float(interval),
        stuck_after=stuck_after,
        mailbox_min=mailbox_min,
        timeout=server.options.call_timeout,
        call_timeouts=server.parts.call_timeouts,
        telemetry=server.parts.telemetry,
    )


# -- streams --------------------------------------------------------------------------------


def _check_stream_room(server: ControlServer, conn: Connection, req_id: Any) -> None:
    if req_id in conn.streams:
        raise OpError("bad_request", f"a stream with id {req_id!r} is already open")
    most = server.options.max_streams
    if len(conn.streams) >= most:
        raise OpError("busy", f"this connection already has {most} streams (max_streams)")


async def reports(
    server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]
) -> Any:
    history = server.parts.reports
    if history is None:
        raise OpError("not_found", f"node {server.node_name} runs without reports")
    kinds_arg = texts(args, "kinds", None)
    kinds = None
    if kinds_arg is not None:
        bad = [k for k in kinds_arg if k not in shapes.REPORT_KINDS]
        if bad or not kinds_arg:
            raise OpError(
                "bad_args",
                f"unknown report kind(s) {show(bad)}; "
                f"kinds: {', '.join(sorted(shapes.REPORT_KINDS))}",
            )
        kinds = frozenset(kinds_arg)
    limit = max(0, min(optional(args, "limit", int, 100), history.history.maxlen or 1000))
    chosen = [r for r in history.history if shapes.report_matches(r, kinds)]
    result: dict[str, Any] = {
        "reports": [shapes.report_json(r) for r in chosen[-limit:]] if limit else [],
        "total": len(chosen),
    }
    if optional(args, "follow", bool, False):
        _check_stream_room(server, conn, req_id)
        stream = ReportStream(conn, req_id, kinds, 400)
        stream.unsubscribe = history.add_handler(stream.on_report)
        conn.streams[req_id] = stream
        result["stream"] = req_id
    return result


async def attach(server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]) -> Any:
    rt = server.runtime
    options = server.options
    target_text = required(args, "target", str)
    flags = texts(args, "flags", ["send", "receive", "procs"])
    if not flags:
        raise OpError("bad_args", f"flags: a list of {', '.join(FLAGS)} or event kinds")
    calls = texts(args, "call", [], most=32)
    follow = optional(args, "follow_name", bool, True)
    limits = {
        "max_events": capped(args, "max_events", 1000, options.max_events, int),
        "duration": capped(args, "duration", 60.0, options.max_duration, float),
        "rate": capped(args, "rate", 1000.0, options.max_rate, float),
    }
    term_limit = int(capped(args, "term_limit", 200, options.max_term, int))
    _check_stream_room(server, conn, req_id)
    active = sum(1 for c in server.connections for s in c.streams.values() if s.kind == "attach")
    if active >= options.max_tracers:
        raise OpError(
            "busy",
            f"node {server.node_name} already runs {options.max_tracers} attach sessions",
        )
    target: Any
    if target_text in ("all", "new"):
        target = target_text
    else:
        proc = processes.find_process(rt, target_text)
        if proc is None:
            raise processes.not_found(rt, target_text)
        target = proc.name if proc.name == target_text else proc.pid
    set_on_spawn = optional(args, "set_on_spawn", bool, False)
    for spec in calls:
        if spec.partition(":")[0] not in sys.modules:
            raise OpError(
                "bad_args",
                f"--call {show(spec)}: only functions of modules the node has already "
                "imported can be traced (the control socket never imports code)",
            )
        try:
            resolve_function(spec)
        except Exception as exc:
            raise OpError("bad_args", f"--call {show(spec)}: {show(exc, 300)}") from None
    stream = TraceStream(conn, req_id, term_limit)
    try:
        tracer = Tracer(
            rt,
            target,
            flags,
            max_events=int(limits["max_events"]),
            duration=limits["duration"],
            rate=limits["rate"],
            handler=stream.on_event,
            follow_name=follow,
            set_on_spawn=set_on_spawn,
            term_limit=term_limit,
            on_stop=stream.on_stop,
        )
    except (ValueError, TypeError) as exc:
        raise OpError("bad_args", str(exc)[:500]) from None
    stream.tracer = tracer
    conn.streams[req_id] = stream
    try:
        tracer.start()
        if calls:
            trace_calls(calls, tracer=tracer)  # undone by tracer.stop()
    except Exception as exc:
        conn.streams.pop(req_id, None)
        stream.ended = True
        tracer.stop("failed")
        raise OpError("bad_args", f"attach {target_text}: {show(exc, 300)}") from None
    return {
        "stream": req_id,
        "target": str(target),
        "pid": next((str(p) for p in tracer.stats()["traced_pids"]), None),
        "kinds": sorted(tracer.kinds),
        "limits": {**limits, "term_limit": term_limit},
        "follow_name": follow,
    }


async def detach(server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]) -> Any:
    stream_id = optional(args, "stream", (int, str), None)
    stream = conn.streams.get(stream_id)
    if stream is None:
        if stream_id is None:
            conn.stop_streams("detached")
            return {"detached": "all"}
        raise OpError("not_found", f"no open stream {show(stream_id)} on this connection")
    stream.stop("detached")
    return {"detached": stream_id}


# -- write ops: checked here, carried out by the supervisor or the process's runtime --------


async def terminate_child(
    server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]
) -> Any:
    return await _child_op("terminate_child", server, args)


async def restart_child(
    server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]
) -> Any:
    return await _child_op("restart_child", server, args)


async def _child_op(op: str, server: ControlServer, args: dict[str, Any]) -> Any:
    required(args, "supervisor", str)
    required(args, "child", str)
    return await writes.write_op(server.runtime, op, args, server.options.call_timeout)


async def exit_process(
    server: ControlServer, conn: Connection, req_id: Any, args: dict[str, Any]
) -> Any:
    required(args, "target", str)
    reason = required(args, "reason", str)
    if not reason or len(reason) > 200:
        raise OpError("bad_args", "exit: reason must be a non-empty string (<= 200)")
    return await writes.write_op(server.runtime, "exit", args, server.options.call_timeout)


#: Every operation by name (the order ``hello`` lists them in is sorted).
OPS: dict[str, Op] = {
    op.name: op
    for op in (
        Op("hello", hello),
        Op("status", status),
        Op("ps", ps),
        Op("info", info),
        Op("tree", tree),
        Op("reports", reports),
        Op("tombstones", tombstones),
        Op("tombstone", tombstone),
        Op("attach", attach),
        Op("detach", detach),
        Op("doctor", doctor, extra_time=sampling_time),
        Op("top", top),
        Op("terminate_child", terminate_child, writes=True),
        Op("restart_child", restart_child, writes=True),
        Op("exit", exit_process, writes=True),
    )
}

#: Operations that change the node: refused unless ``allow_write``.
WRITE_OPS = frozenset(name for name, op in OPS.items() if op.writes)
