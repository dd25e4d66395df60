"""Options every node command shares, and the error handling around a command."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from suptrace.cli.client import CliError, Target

__all__ = [
    "NodeOpt",
    "ConnectOpt",
    "CookieOpt",
    "TlsOpt",
    "CafileOpt",
    "JsonOpt",
    "target",
    "handle_errors",
    "fail",
]

NodeOpt = Annotated[
    str | None,
    typer.Option(
        "--node",
        "-n",
        help="Which node (id, node name or OS pid, see `suptrace nodes`); "
        "needed only when several run.",
        show_default=False,
    ),
]
ConnectOpt = Annotated[
    str | None,
    typer.Option(
        "--connect",
        help="HOST:PORT of a node's TCP listener instead of a local socket (needs the cookie).",
        show_default=False,
    ),
]
CookieOpt = Annotated[
    str | None,
    typer.Option(
        "--cookie-file",
        help="Cookie for --connect (default $SUPTRACE_COOKIE_FILE or ~/.suptrace.cookie).",
        show_default=False,
    ),
]
TlsOpt = Annotated[bool, typer.Option("--tls", help="Use TLS with --connect.")]
CafileOpt = Annotated[
    str | None,
    typer.Option(
        "--cafile",
        help="CA certificate that signed the node's TLS certificate.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", "-j", help="Print JSON instead of text.")]


def target(
    node: str | None,
    connect: str | None,
    cookie_file: str | None,
    tls: bool,
    cafile: str | None,
) -> Target:
    return Target(node=node, connect=connect, cookie_file=cookie_file, tls=tls, cafile=cafile)


F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> typer.Exit:
    from suptrace.cli.output import err

    err().print(f"[bold red]suptrace:[/] {_escape(message)}")
    return typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def handle_errors(fn: F) -> F:
    """Turn `CliError` into a message on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {}
            stone = detail.get("tombstone")
            if isinstance(stone, dict):
                from suptrace.cli.render import print_tombstone

                print_tombstone(stone)
                raise typer.Exit(exc.code) from None
            raise fail(exc.message, exc.code) from None
        except BrokenPipeError:
            raise typer.Exit(0) from None

    return wrapper  # type: ignore[return-value]
