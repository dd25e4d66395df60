"""The ``suptrace`` command line (typer). Heavy modules are imported lazily so
``suptrace --help`` stays fast."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="suptrace",
    help="Erlang's dbg and SASL for Python: inspect and trace supervised asyncio services.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the suptrace version."""
    from suptrace import __version__

    typer.echo(__version__)


# `suptrace view FILE`: renders the embedded telemetry file (rich is imported inside).
from suptrace.cli.view import view as _view  # noqa: E402

app.command("view")(_view)


# -- node commands: clients of a node's control socket (suptrace/cli/commands.py, attach.py, demo.py)
from suptrace.cli import attach as _attach  # noqa: E402
from suptrace.cli import commands as _commands  # noqa: E402
from suptrace.cli import demo as _demo  # noqa: E402

app.command("nodes")(_commands.nodes)
app.command("ps")(_commands.ps)
app.command("tree")(_commands.tree)
app.command("inspect")(_commands.inspect)
app.command("attach")(_attach.attach)
app.command("reports")(_commands.reports)
app.command("doctor")(_commands.doctor)
app.command("status")(_commands.status)
app.command("tombstones")(_commands.tombstones)
app.command("terminate-child")(_commands.terminate_child)
app.command("restart-child")(_commands.restart_child)
app.command("exit")(_commands.exit_process)
app.command("demo")(_demo.demo)


def main() -> None:
    app()
