"""``suptrace view FILE``: render an OTLP-JSON lines file in the terminal.

The file is what a node writes with the embedded telemetry default (one
``ExportTraceServiceRequest``, ``ExportMetricsServiceRequest`` or
``ExportLogsServiceRequest`` in OTLP/JSON per line), or what an OpenTelemetry
Collector's ``file`` exporter writes. The view shows

* the processes: each process's lifetime under its parent, how it exited,
  the restarts and intensity breaches of supervisors (failures in red);
* the messages: each trace as a tree -- who called or sent what to whom, where
  it failed;
* a summary of the metrics and of the reports (log records).

``--json`` prints the same as one machine-readable JSON document.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from suptrace.cli.view import render
from suptrace.cli.view.file import Dump, SpanRec, load, load_lines
from suptrace.cli.view.model import summarize

__all__ = ["view", "load", "load_lines", "summarize", "Dump", "SpanRec"]


def view(
    file: Annotated[
        Path, typer.Argument(help="An OTLP-JSON lines file (suptrace-<node>.otlp.jsonl).")
    ],
    json_out: Annotated[
        bool, typer.Option("--json", "-j", help="Print a JSON summary instead.")
    ] = False,
    limit: Annotated[
        int,
        typer.Option("--limit", "-l", help="How many message traces to draw (failures first)."),
    ] = 30,
) -> None:
    """Render an OTLP-JSON telemetry file: processes, message traces, metrics, reports."""
    if not file.exists():
        typer.echo(f"suptrace view: {file}: no such file", err=True)
        raise typer.Exit(1)
    if file.is_dir():
        typer.echo(f"suptrace view: {file} is a directory, not an OTLP-JSON lines file", err=True)
        raise typer.Exit(2)
    try:
        dump = load(file)
    except OSError as exc:
        typer.echo(f"suptrace view: cannot read {file}: {exc}", err=True)
        raise typer.Exit(1) from exc
    if json_out:
        sys.stdout.write(json.dumps(summarize(dump), indent=2, default=str) + "\n")
        return
    import os

    from rich.console import Console

    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 10_000
    console = Console(highlight=False, soft_wrap=False, width=width)
    render.render(dump, limit, console)
