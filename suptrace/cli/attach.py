"""``suptrace attach``: a live, dbg-style trace of a process of a running node.

The node runs the tracer (with the limits given here, capped by its own
maxima) and streams events; this side only prints them. Ctrl-C detaches: the
node stops the tracer and removes every hook it had put in place. Closing the
connection in any other way does the same.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from suptrace.cli.client import Client, CliError, ConnectionLost
from suptrace.cli.common import (
    CafileOpt,
    ConnectOpt,
    CookieOpt,
    JsonOpt,
    NodeOpt,
    TlsOpt,
    handle_errors,
    target,
)

__all__ = ["attach", "follow_stream", "run_attach", "ending_line"]

#: How long to wait for the node to confirm a detach.
DETACH_TIMEOUT = 3.0


def follow_stream(
    client: Client, stream_id: int, on_item: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Hand each stream item to ``on_item`` until the stream ends; Ctrl-C detaches.

    Returns the ``end`` frame's data (``reason`` says why it ended).
    """
    client.set_timeout(None)
    try:
        for frame in client.stream_frames(stream_id):
            if frame["stream"] == "end":
                return dict(frame.get("data") or {})
            on_item(frame.get("data") or {})
    except KeyboardInterrupt:
        pass
    # Ctrl-C: ask the node to stop, and show what was still on the way.
    previous = signal.signal(signal.SIGINT, _second_interrupt)
    try:
        client.send("detach", {"stream": stream_id})
        client.set_timeout(DETACH_TIMEOUT)
        for frame in client.stream_frames(stream_id):
            if frame["stream"] == "end":
                return dict(frame.get("data") or {})
            on_item(frame.get("data") or {})
    except CliError:
        pass
    finally:
        signal.signal(signal.SIGINT, previous)
    return {"reason": "detached"}


def _second_interrupt(signum: int, frame: Any) -> None:
    raise typer.Exit(130)


_ENDINGS = {
    "detached": "detached",
    "node_stopped": "the node stopped",
    "max_events": "reached --max-events",
    "duration": "reached --duration",
    "target_exited": "the process exited (attach with --follow to wait for a restart under the same name)",
    "client_gone": "the connection closed",
}


def ending_line(target_name: str, node: str, end: dict[str, Any]) -> str:
    reason = str(end.get("reason"))
    stats = end.get("stats") or {}
    text = f"trace of {target_name} on node {node} ended: {_ENDINGS.get(reason, reason)}"
    text += f"; {stats.get('delivered', end.get('sent', 0))} events"
    dropped = int(stats.get("dropped", 0) or 0) + int(end.get("client_dropped", 0) or 0)
    if dropped:
        text += (
            f", {dropped} dropped ({stats.get('dropped_rate', 0)} over --rate, "
            f"{stats.get('dropped_buffer', 0)} on a full buffer, "
            f"{end.get('client_dropped', 0)} while this terminal was behind)"
        )
    return text


def run_attach(
    client: Client,
    args: dict[str, Any],
    as_json: bool,
    on_started: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Attach over an open client and print until the trace ends; returns the end data."""
    from suptrace.cli.output import err, event_text, out, print_json_line

    req_id = client.send("attach", args)
    started = client.wait_reply(req_id)
    limits = started.get("limits", {})
    who = started["target"] + (
        f" ({started['pid']})" if started.get("pid") and started["pid"] != started["target"] else ""
    )
    err().print(
        f"[bold]attached[/] to {who} on node {client.node}: "
        f"{', '.join(args.get('flags') or [])}; stops after {limits.get('max_events')} events "
        f"or {limits.get('duration'):g}s, at most {limits.get('rate'):g} events/s. "
        "Ctrl-C detaches.",
        markup=True,
        highlight=False,
    )
    if on_started is not None:
        on_started(started)
    console = out()

    def show(event: dict[str, Any]) -> None:
        if as_json:
            print_json_line(event)
        else:
            console.print(event_text(event))

    return follow_stream(client, req_id, show)


@handle_errors
def attach(
    name: Annotated[str, typer.Argument(help="Registered name, pid (<0.42.0>), 'all' or 'new'.")],
    flags: Annotated[
        list[str] | None,
        typer.Option(
            "--flags",
            "-t",
            help="What to see, comma separated: send, receive, procs, monitors, calls, "
            "supervisor, call_trace, system, all, or event kinds.",
            show_default="send,receive,procs",
        ),
    ] = None,
    max_events: Annotated[
        int, typer.Option("--max-events", "-m", min=1, help="Stop after this many events.")
    ] = 1000,
    duration: Annotated[
        float, typer.Option("--duration", "-d", min=0.001, help="Stop after this many seconds.")
    ] = 60.0,
    rate: Annotated[
        float,
        typer.Option(
            "--rate",
            "-r",
            min=0.001,
            help="At most this many events a second (the rest are dropped and counted).",
        ),
    ] = 1000.0,
    call: Annotated[
        list[str] | None,
        typer.Option(
            "--call",
            "-c",
            help="Also trace calls of MODULE:FUNC (repeatable; modules the node imported).",
            show_default=False,
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow",
            help="Follow the name to the next process that registers it (restarts).",
        ),
    ] = True,
    set_on_spawn: Annotated[
        bool, typer.Option("--spawned", help="Also trace the processes it spawns.")
    ] = False,
    term_limit: Annotated[
        int,
        typer.Option("--term-limit", min=10, help="Characters of a term shown before it is cut."),
    ] = 200,
    as_json: JsonOpt = False,
    node: NodeOpt = None,
    connect: ConnectOpt = None,
    cookie_file: CookieOpt = None,
    tls: TlsOpt = False,
    cafile: CafileOpt = None,
) -> None:
    """Trace a process live, dbg style (Ctrl-C detaches and removes all trace state)."""
    from suptrace.cli.output import err

    chosen = [
        f.strip()
        for spec in (flags or ["send,receive,procs"])
        for f in spec.split(",")
        if f.strip()
    ]
    args: dict[str, Any] = {
        "target": name,
        "flags": chosen,
        "max_events": max_events,
        "duration": duration,
        "rate": rate,
        "follow_name": follow,
        "set_on_spawn": set_on_spawn,
        "term_limit": term_limit,
        "call": list(call or []),
    }
    with target(node, connect, cookie_file, tls, cafile).open() as client:
        begun = time.monotonic()
        try:
            end = run_attach(client, args, as_json)
        except ConnectionLost:
            raise CliError(
                f"lost the connection to node {client.node} after "
                f"{time.monotonic() - begun:.1f}s (did the node exit?)"
            ) from None
        err().print(ending_line(name, client.node, end), style="bold", highlight=False)
