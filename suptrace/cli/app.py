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


def main() -> None:
    app()
