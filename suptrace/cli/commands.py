"""The node commands: nodes, ps, tree, inspect, status, tombstones, reports,
doctor and the write operations. Each one is a client of the control socket."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from suptrace.cli.client import EXIT_NOT_FOUND, CliError, scan_nodes
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

__all__ = [
    "nodes",
    "ps",
    "tree",
    "inspect",
    "status",
    "tombstones",
    "reports",
    "doctor",
    "terminate_child",
    "restart_child",
    "exit_process",
]


@handle_errors
def nodes(
    as_json: JsonOpt = False,
    keep_stale: Annotated[
        bool, typer.Option("--keep-stale", help="List stale entries instead of removing them.")
    ] = False,
) -> None:
    """List the running nodes (and remove the sockets of nodes that died)."""
    from suptrace.cli.output import err, out, print_json

    alive, stale = scan_nodes(clean=not keep_stale)
    if as_json:
        print_json(
            {
                "nodes": [n.as_json() for n in alive],
                "stale": [{**n.as_json(), "removed": not keep_stale} for n in stale],
            }
        )
        return
    from suptrace.cli.render import nodes_table

    for n in stale:
        verb = "stale" if keep_stale else "removed stale entry of"
        err().print(f"{verb} node {n.id} (pid {n.pid} is gone)", style="dim")
    if not alive:
        from suptrace.node.control.protocol import runtime_dir

        err().print(f"no suptrace node is running (looked in {runtime_dir()})")
        return
    out().print(nodes_table([n.as_json() for n in alive]))


@handle_errors
def ps(
    include_system: Annotated[
        bool,
        typer.Option(
            "--all",
            "-a",
            help="Include system processes and the loop's plain asyncio tasks (not processes).",
        ),
    ] = False,
    sort: Annotated[
        str, typer.Option("--sort", "-s", help="pid, mq, in, out, restarts or name.")
    ] = "pid",
    limit: Annotated[
        int, typer.Option("--limit", "-l", min=1, help="Show at most this many.")
    ] = 10_000,
    as_json: JsonOpt = False,
    node: NodeOpt = None,
    connect: ConnectOpt = None,
    cookie_file: CookieOpt = None,
    tls: TlsOpt = False,
    cafile: CafileOpt = None,
) -> None:
    """List the processes of a node."""
    keys = {
        "pid": lambda p: _pid_key(p["pid"]),
        "mq": lambda p: -p["message_queue_len"],
        "in": lambda p: -p["messages_in"],
        "out": lambda p: -p["messages_out"],
        "restarts": lambda p: (-p.get("restarts", 0), -p.get("restarts_window", 0)),
        "name": lambda p: (p.get("name") is None, p.get("name") or ""),
    }
    if sort not in keys:
        raise CliError(f"--sort must be one of {', '.join(keys)}, not {sort!r}", 2)
    with target(node, connect, cookie_file, tls, cafile).open() as client:
        result = client.request(
            "ps", {"system": include_system, "tasks": include_system, "limit": limit}
        )
    result["processes"].sort(key=keys[sort])
    if as_json:
        from suptrace.cli.output import print_json

        print_json(result)
        return
    from suptrace.cli.output import err, out
    from suptrace.cli.render import ps_table

    out().print(ps_table(result["processes"]))
    if result.get("truncated"):
        err().print(f"showing {limit} of {result['total']} processes (--limit)", style="dim")
    if "tasks" in result:
        _print_tasks(result, limit)


def _print_tasks(result: dict[str, Any], limit: int) -> None:
    from rich.text import Text

    from suptrace.cli.output import err, out
    from suptrace.cli.render import tasks_table

    console = out()
    console.print()
    console.print(Text(f"plain asyncio tasks (not processes): {result['tasks_total']}", style="bold"))
    if result["tasks"]:
        console.print(tasks_table(result["tasks"]))
    if result["tasks_total"] > len(result["tasks"]):
        err().print(f"showing {limit} of {result['tasks_total']} tasks (--limit)", style="dim")
    if not result.get("task_crash_reports"):
        why = result.get("task_crash_reports_off") or "the node does not watch its tasks"
        err().print(
            f"note: {why}, so a plain task that dies with an exception nobody retrieves gets "
            "no crash report",
            style="yellow",
        )


def _pid_key(text: str) -> tuple[int, ...]:
    body = text.strip("<>").split(".")
    return tuple(int(p) for p in body if p.isdigit())


@handle_errors
def tree(
    as_json: JsonOpt = False,
    node: NodeOpt = None,
    connect: ConnectOpt = None,
    cookie_file: CookieOpt = None,
    tls: TlsOpt = False,
    cafile: CafileOpt = None,
) -> None:
    """Show the supervision trees, restart intensity used and the branches that died (in red).

    Each supervisor shows its strategy and restarts used in its window (like 2/3 in 5s);
    each child its restart type. Children that died and will not come back are red."""
    with target(node, connect, cookie_file, tls, cafile).open() as client:
        result = client.request("tree")
    if as_json:
        from suptrace.cli.output import print_json

        print_json(result)
        return
    from suptrace.cli.render import print_tree

    print_tree(result)


@handle_errors
def inspect(
    name: Annotated[
        str, typer.Argument(help="Registered name, pid (<0.42.0>) or plain asyncio task name.")
    ],
    as_json: JsonOpt = False,
    node: NodeOpt = None,
    connect: ConnectOpt = None,
    cookie_file: CookieOpt = None,
    tls: TlsOpt = False,
    cafile: CafileOpt = None,
) -> None:
    """Everything about one process: where it awaits, its state, links, last events.

    A name whose process died shows its tombstone (and exits 1)."""
    with target(node, connect, cookie_file, tls, cafile).open() as client:
        try:
            result = client.request("info", {"target": name})
        except CliError as exc:
            stone = exc.detail.get("tombstone") if isinstance(exc.detail, dict) else None
            if as_json and isinstance(stone, dict):
                from suptrace.cli.output import print_json

                print_json({"alive": False, "tombstone": stone})
                raise typer.Exit(EXIT_NOT_FOUND) from None
            raise
    if as_json:
        from suptrace.cli.output import print_json

        print_json({"alive": True, **result})
        return
    from suptrace.cli.render import print_info, print_task_info

    if result.get("kind") == "task":
        print_task_info(result)
        return
    print_info(result)


@handle_errors
def status(
    as_json: JsonOpt = False,
    node: NodeOpt = None,
    connect: ConnectOpt = None,
    cookie_file: CookieOpt = None,
    tls: TlsOpt = False,
    cafile: CafileOpt = None,
) -> None:
    """The node's control-side state: clients, streams, active tracers and hooks, and
    each telemetry signal's export (exported, dropped, last error)."""
    with target(node, connect, cookie_file, tls, cafile).open() as client:
        result = client.request("status")
    if as_json:
        from suptrace.cli.output import print_json

        print_json(result)
        return
    from suptrace.cli.render import print_status

    print_status(result)


@handle_errors
def tombstones(
    as_json: JsonOpt = False,
    node: NodeOpt = None,
    connect: ConnectOpt = None,
    cookie_file: CookieOpt = None,
    tls: TlsOpt = False,
    cafile: CafileOpt = None,
) -> None:
    """Registered names whose process died: who, when, why, and its last events."""
    with target(node, connect, cookie_file, tls, cafile).open() as client:
        result = client.request("tombstones")
    if as_json:
        from suptrace.cli.output import print_json

        print_json(result)
        return
    from suptrace.cli.output import out
    from suptrace.cli.render import print_tombstone

    if not result["tombstones"]:
        out().print("no registered process has died", style="dim")
    for stone in result["tombstones"]:
        print_tombstone(stone)
        out().print()


@handle_errors
def reports(
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep printing new reports as they come (Ctrl-C stops); starts at now "
            "unless --since or --last asks for past ones too.",
        ),
    ] = False,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            "-k",
            help="crash, supervisor, progress, not_restarted, child_terminated, start_error, "
            "shutdown_error or shutdown (repeatable; default: all but progress).",
            show_default=False,
        ),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option(
            "--last",
            "--limit",
            "-l",
            min=0,
            help="How many past reports to show (default 100; with --follow, none).",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only reports of the last DURATION: 90s, 5m, 2h (also with --follow).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Only reports about NAME: a process name or pid, a supervisor, or a child "
            "id (shell-style wildcards: 'importer.*').",
            show_default=False,
        ),
    ] = None,
    short_form: Annotated[
        bool, typer.Option("--short", help="One line per report.")
    ] = False,
    full: Annotated[
        bool,
        typer.Option(
            "--full", help="Crash reports in full (whole traceback, every recorded event)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", "-j", help="One JSON object per line.")] = False,
    node: NodeOpt = None,
    connect: ConnectOpt = None,
    cookie_file: CookieOpt = None,
    tls: TlsOpt = False,
    cafile: CafileOpt = None,
) -> None:
    """SASL-style reports of a node: crashes, supervisor reports, not_restarted.

    Crash reports show in about ten lines; --full gives the whole report, --short
    one line per report."""
    import time

    from suptrace.cli.attach import follow_stream
    from suptrace.cli.output import err, print_json_line
    from suptrace.cli.render import print_report, report_filter

    if short_form and full:
        raise CliError("--short and --full do not go together: pick one", 2)
    kinds = [k.strip() for spec in (kind or []) for k in spec.split(",") if k.strip()]
    after = None if since is None else time.time() - parse_duration(since, "--since")
    wanted = report_filter(name, after)
    form = "line" if short_form else "full" if full else "short"
    past = last if last is not None else (0 if follow and since is None else 100)
    # Filtering by name or time happens here, so ask for the whole history then.
    ask = past if wanted is None else 1_000_000

    def show(report: dict[str, Any]) -> None:
        if wanted is not None and not wanted(report):
            return
        if as_json:
            print_json_line(report)
        else:
            print_report(report, form)

    with target(node, connect, cookie_file, tls, cafile).open() as client:
        req_id = client.send(
            "reports", {"kinds": kinds or None, "limit": min(ask, 1_000_000), "follow": follow}
        )
        result = client.wait_reply(req_id)
        chosen = [r for r in result["reports"] if wanted is None or wanted(r)]
        chosen = chosen[-past:] if past else []
        for report in chosen:
            show(report)
        if not follow:
            if not as_json and not chosen:
                err().print(f"no reports on node {client.node}", style="dim")
            return
        err().print(f"following reports of node {client.node}; Ctrl-C stops", style="dim")
        end = follow_stream(client, req_id, show)
        err().print(f"stopped following reports: {end.get('reason')}", style="dim")


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, option: str) -> float:
    """Seconds in ``90``, ``90s``, ``5m``, ``2h``, ``1d`` or ``250ms``.

    >>> parse_duration("5m", "--since"), parse_duration("1.5h", "--since")
    (300.0, 5400.0)
    """
    raw = text.strip().lower()
    unit = next((u for u in ("ms", "s", "m", "h", "d") if raw.endswith(u)), "")
    try:
        value = float(raw[: len(raw) - len(unit)] if unit else raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise CliError(
            f"{option} {text!r} is not a duration: write a number with s, m, h or d "
            "(like 90s, 5m, 2h)",
            2,
        )
    return value * _UNITS.get(unit, 1.0)


@handle_errors
def doctor(
    spec: Annotated[
        str | None,
        typer.Argument(
            help="Check a spec instead of a running node: MODULE:ATTRIBUTE naming a list of "
            "ChildSpec (or a dict with 'children' and supervisor flags).",
            show_default=False,
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option("--samples", min=2, max=20, help="Mailbox/stack samples taken.")
    ] = 3,
    interval: Annotated[
        float,
        typer.Option("--interval", "-i", min=0.01, max=10, help="Seconds between samples."),
    ] = 0.5,
    stuck_after: Annotated[
        float,
        typer.Option(
            "--stuck-after",
            min=0,
            help="Seconds awaiting the same thing before a process counts as stuck.",
        ),
    ] = 30.0,
    mailbox_min: Annotated[
        int, typer.Option("--mailbox-min", min=1, help="Smallest growing mailbox worth a finding.")
    ] = 10,
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy", help="Spec mode: the root supervisor's strategy.", show_default=False
        ),
    ] = None,
    intensity: Annotated[
        int | None,
        typer.Option("--intensity", help="Spec mode: the root's intensity.", show_default=False),
    ] = None,
    period: Annotated[
        int | None,
        typer.Option("--period", help="Spec mode: the root's period.", show_default=False),
    ] = None,
    auto_shutdown: Annotated[
        str | None,
        typer.Option(
            "--auto-shutdown", help="Spec mode: the root's auto_shutdown.", show_default=False
        ),
    ] = None,
    as_json: JsonOpt = False,
    node: NodeOpt = None,
    connect: ConnectOpt = None,
    cookie_file: CookieOpt = None,
    tls: TlsOpt = False,
    cafile: CafileOpt = None,
) -> None:
    """Find supervision hazards in a running node, or in a spec without running it.

    Exit code 1 when something is found."""
    if spec is not None:
        from suptrace.cli.spec_doctor import check_spec

        flags = {
            "strategy": strategy,
            "intensity": intensity,
            "period": period,
            "auto_shutdown": auto_shutdown,
        }
        result = check_spec(spec, {k: v for k, v in flags.items() if v is not None})
        checked = f"spec {spec}: {result['checked']['supervisors']} supervisor(s)"
    else:
        with target(node, connect, cookie_file, tls, cafile).open() as client:
            result = client.request(
                "doctor",
                {
                    "samples": samples,
                    "interval": interval,
                    "stuck_after": stuck_after,
                    "mailbox_min": mailbox_min,
                },
            )
        c = result["checked"]
        checked = (
            f"node {result['node']}: {c['supervisors']} supervisor(s), {c['processes']} "
            f"processes, {c['samples']} samples over {c['interval'] * (c['samples'] - 1):.1f}s"
        )
    if as_json:
        from suptrace.cli.output import print_json

        print_json(result)
    else:
        from suptrace.cli.output import err
        from suptrace.cli.render import print_findings, print_telemetry

        for note in result.get("notes", []):
            err().print(note, style="dim")
        if spec is None:
            print_telemetry(result.get("telemetry"))
        print_findings(result["findings"], checked)
    if result["findings"]:
        raise typer.Exit(EXIT_NOT_FOUND)


def _write(op: str, args: dict[str, Any], as_json: bool, tgt: Any, done: str) -> None:
    with tgt.open() as client:
        result = client.request(op, args)
    if as_json:
        from suptrace.cli.output import print_json

        print_json(result)
        return
    from suptrace.cli.output import out

    out().print(done.format(**result), highlight=False)


@handle_errors
def terminate_child(
    supervisor: Annotated[str, typer.Argument(help="Supervisor name or pid.")],
    child: Annotated[str, typer.Argument(help="Child id (pid for a DynamicSupervisor).")],
    as_json: JsonOpt = False,
    node: NodeOpt = None,
    connect: ConnectOpt = None,
    cookie_file: CookieOpt = None,
    tls: TlsOpt = False,
    cafile: CafileOpt = None,
) -> None:
    """Stop a supervisor's child (needs a node started with allow_write)."""
    _write(
        "terminate_child",
        {"supervisor": supervisor, "child": child},
        as_json,
        target(node, connect, cookie_file, tls, cafile),
        "terminated child {child} of {supervisor}",
    )


@handle_errors
def restart_child(
    supervisor: Annotated[str, typer.Argument(help="Supervisor name or pid.")],
    child: Annotated[str, typer.Argument(help="Child id.")],
    as_json: JsonOpt = False,
    node: NodeOpt = None,
    connect: ConnectOpt = None,
    cookie_file: CookieOpt = None,
    tls: TlsOpt = False,
    cafile: CafileOpt = None,
) -> None:
    """Start a stopped child again from its spec (needs allow_write)."""
    _write(
        "restart_child",
        {"supervisor": supervisor, "child": child},
        as_json,
        target(node, connect, cookie_file, tls, cafile),
        "restarted child {child} of {supervisor} as {pid}",
    )


@handle_errors
def exit_process(
    name: Annotated[str, typer.Argument(help="Registered name or pid.")],
    reason: Annotated[
        str, typer.Argument(help="Exit reason: kill, shutdown, normal or any word.")
    ] = "kill",
    as_json: JsonOpt = False,
    node: NodeOpt = None,
    connect: ConnectOpt = None,
    cookie_file: CookieOpt = None,
    tls: TlsOpt = False,
    cafile: CafileOpt = None,
) -> None:
    """Send an exit signal to a process (OTP's exit/2; needs allow_write)."""
    _write(
        "exit",
        {"target": name, "reason": reason},
        as_json,
        target(node, connect, cookie_file, tls, cafile),
        "sent exit {reason} to {target}",
    )
