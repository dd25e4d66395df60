"""The ``suptrace`` command line (typer). Heavy modules are imported lazily so
``suptrace --help`` stays fast."""

from __future__ import annotations

from typing import Annotated, Any

import typer
import typer.core

app = typer.Typer(
    name="suptrace",
    help="Erlang's dbg and SASL for Python: inspect and trace supervised asyncio services.",
    epilog="Short options mean the same in every command: -n/--node, -j/--json, "
    "-f/--follow, -k/--kind, -l/--limit, -s/--sort, -i/--interval, -a/--all; "
    "attach: -t/--flags (it follows a name across restarts unless --no-follow).",
    no_args_is_help=True,
    add_completion=False,
)


def _flag_metavar_hidden() -> None:
    """Flags take no value: `--help` shows none for them (no ``<bool>``)."""
    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if option is None or shown is None or getattr(shown, "_suptrace", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._suptrace = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_flag_metavar_hidden()


def _print_version(value: bool) -> None:
    if value:
        from suptrace._version import __version__

        typer.echo(f"suptrace {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print the suptrace version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Erlang's dbg and SASL for Python: inspect and trace supervised asyncio services."""


@app.command()
def version() -> None:
    """Print the suptrace version."""
    from suptrace._version import __version__

    typer.echo(__version__)


# `suptrace view FILE`: renders the embedded telemetry file (rich is imported inside).
from suptrace.cli.view import view as _view  # noqa: E402

app.command("view")(_view)


# -- node commands: clients of a node's control socket (suptrace/cli/commands.py, attach.py, demo.py)
from suptrace.cli import attach as _attach  # noqa: E402
from suptrace.cli import commands as _commands  # noqa: E402
from suptrace.cli import demo as _demo  # noqa: E402
from suptrace.cli import top as _top  # noqa: E402

app.command("nodes")(_commands.nodes)
app.command("ps")(_commands.ps)
app.command("tree")(_commands.tree)
app.command("inspect")(_commands.inspect)
app.command("attach")(_attach.attach)
app.command("top")(_top.top)
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
