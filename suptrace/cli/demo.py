"""``suptrace demo``: run a small node with a silent-death trap and look at it.

Without options it starts the node (see `suptrace.cli.demo_scenario`) and
says which commands to try from another terminal. ``--script`` runs a short
self-driving tour instead -- tree, a live trace while the import subtree dies,
the reports, the tree again, doctor -- through the node's own control socket,
exactly as the commands do, and exits.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Annotated, Any

import typer

__all__ = ["demo"]


def demo(
    script: Annotated[
        bool, typer.Option("--script", help="Run a short self-driving tour and exit.")
    ] = False,
    name: Annotated[str, typer.Option("--name", help="Node name.")] = "demo",
    breach_after: Annotated[
        float,
        typer.Option("--breach-after", min=0, help="Seconds before the importer starts failing."),
    ] = 20.0,
    allow_write: Annotated[
        bool,
        typer.Option(
            "--allow-write", help="Let terminate-child/restart-child/exit act on the demo."
        ),
    ] = False,
) -> None:
    """Start a demo node (a supervision tree with a silent-death trap) to try the commands on."""
    import suptrace
    from suptrace.cli import demo_scenario, render  # noqa: F401 - loaded before the node runs
    from suptrace.cli.output import err, out

    out(), err()  # build the consoles now: inside the node, slow imports would block the loop

    # Telemetry on the embedded default: OTLP-JSON lines in a local file (no collector).
    if script:
        suptrace.run(
            _tour,
            name,
            node=name,
            log_reports=False,
            control={"allow_write": allow_write},
            telemetry=True,
        )
        _point_at_telemetry(name)
        return
    with contextlib.suppress(KeyboardInterrupt):
        suptrace.run(
            _interactive,
            name,
            breach_after,
            node=name,
            log_reports=False,
            control={"allow_write": allow_write},
            telemetry=True,
        )
    err().print("demo stopped", style="dim")
    _point_at_telemetry(name)


def _point_at_telemetry(name: str) -> None:
    from suptrace.cli.output import out
    from suptrace.observers.otel.config import default_file

    path = default_file(name)
    if path.exists():
        out().print(
            f"The demo's spans and metrics are in {path}: see them with `suptrace view {path}`.",
            highlight=False,
        )


def _node_id() -> str:
    from suptrace.node.parts import current_parts

    control = current_parts("the demo").control
    return str(control.id) if control is not None and control.id else "?"


async def _interactive(name: str, breach_after: float) -> None:
    import asyncio

    import suptrace
    from suptrace.cli import demo_scenario
    from suptrace.cli.output import err, out

    scenario = demo_scenario.Scenario()
    await demo_scenario.start(scenario)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    node = _node_id()
    console = err()

    def show(report: Any) -> None:
        if type(report).__name__ != "ProgressReport":
            out().print(suptrace.format_report(report), highlight=False)
            out().print()

    suptrace.add_report_handler(show)
    flag = f" --node {node}"
    console.print(
        f"[bold]suptrace demo[/]: node [cyan]{node}[/] is running. In another terminal, try:\n"
        f"  suptrace tree{flag}\n"
        f"  suptrace attach demo.imports{flag} --flags procs,supervisor\n"
        f"  suptrace attach demo.mailer{flag}\n"
        f"  suptrace reports --follow{flag}\n"
        f"  suptrace inspect demo.reporter{flag}\n"
        f"  suptrace doctor{flag} --stuck-after 5\n"
        f"In {breach_after:g}s demo.importer.survey starts failing: demo.imports reaches its "
        "restart intensity and, being transient, is never restarted. Ctrl-C stops the demo.",
        highlight=False,
    )
    with contextlib.suppress(TimeoutError):  # the demo's timeline, not synchronisation
        await asyncio.wait_for(stop.wait(), breach_after)
    if stop.is_set():
        return
    console.print("[bold red]now:[/] demo.importer.survey starts failing", highlight=False)
    scenario.failing.set()
    await stop.wait()  # Ctrl-C (asyncio cancels this) or SIGTERM


async def _tour(name: str) -> None:
    import asyncio

    from suptrace.cli import demo_scenario
    from suptrace.node.parts import current_parts

    scenario = demo_scenario.Scenario(crash_delay=0.1)
    await demo_scenario.start(scenario)
    control = current_parts("the demo").control
    if control is None or control.path is None:
        raise typer.Exit(1)
    loop = asyncio.get_running_loop()

    def fail() -> None:
        loop.call_soon_threadsafe(scenario.failing.set)

    # The client side runs in a thread: the node keeps serving on its loop meanwhile.
    await asyncio.to_thread(_tour_client, str(control.path), control.id, fail)


def _step(command: str) -> None:
    from suptrace.cli.output import out

    out().print()
    out().print(f"[bold]$ {command}[/]", highlight=False)


def _tour_client(path: str, node: str, fail: Any) -> None:
    from suptrace.cli.attach import ending_line, run_attach
    from suptrace.cli.client import Client
    from suptrace.cli.output import out
    from suptrace.cli.render import print_findings, print_report, print_telemetry, print_tree

    flag = f"--node {node}"
    with Client.unix(path, node) as client:
        out().print(
            "A tour of a node whose import subtree dies silently "
            "(the commands are what you would type in another terminal).",
            highlight=False,
        )
        _step(f"suptrace tree {flag}")
        print_tree(client.request("tree"))

        _step(f"suptrace attach all {flag} --flags supervisor,exit --duration 2")
        out().print("(the importer starts failing now)", style="dim")
        args = {
            "target": "all",
            "flags": ["supervisor", "exit"],
            "duration": 2.0,
            "max_events": 200,
        }
        end = run_attach(client, args, False, on_started=lambda _: fail())
        out().print(ending_line("all", node, end), style="bold", highlight=False)

        _step(f"suptrace reports --kind not_restarted {flag}")
        for report in client.request("reports", {"kinds": ["not_restarted"]})["reports"]:
            print_report(report)

        _step(f"suptrace tree {flag}")
        print_tree(client.request("tree"))

        _step(f"suptrace doctor {flag} --stuck-after 1")
        result = client.request("doctor", {"stuck_after": 1.0, "samples": 3, "interval": 0.3})
        print_telemetry(result.get("telemetry"))
        print_findings(result["findings"], f"node {node}")
        out().print()
        out().print(
            "That was the demo. Run `suptrace demo` to explore it yourself.", highlight=False
        )
