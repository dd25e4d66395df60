"""``suptrace top``: a live, self-refreshing view of a node (observer_cli, ``top``).

Each refresh is one ``top`` request over the control socket: the first rows in
the chosen order (mailbox, messages/s, restarts, a memory estimate), every
supervisor's restart intensity use and the latest reports. The node counts
messages/s from the message counters since the connection's previous refresh.
It answers from what it already keeps, in one pass over its processes; no
message is sent to the application's processes.

Keys: ``m`` mailbox, ``s`` messages/s, ``r`` restarts, ``y`` memory (the sort),
``q`` quits (Ctrl-C too).
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["top", "TopState", "SORTS", "render_screen"]

#: Sort keys: key -> (column title, what it sorts by).
SORTS: dict[str, tuple[str, str]] = {
    "m": ("MQ", "mailbox"),
    "s": ("MSG/S", "messages/s"),
    "r": ("RESTARTS", "restarts"),
    "y": ("MEM~", "memory"),
}


@dataclass
class TopState:
    """What the screen shows: the node's latest answer, in the order asked for."""

    sort: str = "m"
    snapshot: dict[str, Any] = field(default_factory=dict)

    def update(self, snapshot: dict[str, Any]) -> None:
        self.snapshot = snapshot

    def rows(self) -> list[dict[str, Any]]:
        """The process rows, in the node's order for ``sort`` (largest first).

        >>> st = TopState()
        >>> st.update({"processes": [{"pid": "<0.2.0>"}, {"pid": "<0.1.0>"}]})
        >>> [r["pid"] for r in st.rows()]
        ['<0.2.0>', '<0.1.0>']
        """
        return list(self.snapshot.get("processes", []))


def _pid_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.strip("<>").split(".") if p.isdigit())


def _bytes(n: int) -> str:
    """A byte count for a narrow column.

    >>> _bytes(512), _bytes(2048), _bytes(5 * 1024 * 1024)
    ('512B', '2.0K', '5.0M')
    """
    if n < 1024:
        return f"{n}B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f}K"
    return f"{n / (1024 * 1024):.1f}M"


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 10 or value == 0 else f"{value:.1f}"


def render_screen(state: TopState, width: int, height: int, fill: bool = True) -> RenderableType:
    """The whole screen for a terminal of ``width`` x ``height``; ``fill``: the process
    table spans the width (off for piped output, which is never padded)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    snap = state.snapshot
    sups = snap.get("supervisors", [])
    reports = snap.get("reports", [])
    stamp = time.strftime("%H:%M:%S", time.localtime(float(snap.get("time") or time.time())))
    head = Text(f"node {snap.get('node', '?')}", style="bold")
    head.append(f"  {snap.get('total', 0)} processes, {len(sups)} supervisors", style="")
    head.append(f"  {stamp}", style="dim")
    head.append(f"  sorted by {SORTS[state.sort][1]}", style="cyan")
    head.no_wrap = True
    head.overflow = "ellipsis"

    sup_table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
    sup_table.add_column("SUPERVISOR", overflow="ellipsis", no_wrap=True, ratio=None)
    sup_table.add_column("STRATEGY", no_wrap=True)
    sup_table.add_column("INTENSITY", no_wrap=True)
    shown_sups = sorted(
        sups,
        key=lambda s: (-(s["restarts_in_window"] / max(1, s["intensity"])), _pid_key(s["pid"])),
    )[: max(1, min(6, height // 6))]
    for s in shown_sups:
        used, most = int(s["restarts_in_window"]), int(s["intensity"])
        style = "bold red" if used >= most > 0 else "yellow" if used else "green"
        sup_table.add_row(
            Text(s.get("name") or s["pid"], style="bold"),
            s["strategy"],
            Text(f"{used}/{most} in {s['period']}s", style=style),
        )

    report_lines: list[Text] = [Text("latest reports", style="bold")]
    for r in reports[-3:]:
        line = Text(time.strftime("%H:%M:%S", time.localtime(float(r.get("ts") or 0))), "dim")
        line.append(
            f" {r.get('kind')} ", style="bold red" if r.get("kind") == "crash" else "yellow"
        )
        who = r.get("name") or r.get("supervisor") or r.get("pid") or ""
        line.append(str(who), style="cyan")
        if r.get("reason") is not None:
            line.append(f" {r.get('reason')}")
        line.no_wrap = True
        line.overflow = "ellipsis"
        report_lines.append(line)
    if not reports:
        report_lines.append(Text("none", style="dim"))

    footer = Text("sort: ", style="dim")
    for key, (_, what) in SORTS.items():
        footer.append(f"{key}", style="bold reverse" if key == state.sort else "bold")
        footer.append(f" {what}  ", style="dim")
    footer.append("q", style="bold")
    footer.append(" quit", style="dim")
    footer.no_wrap = True
    footer.overflow = "ellipsis"

    fixed = 1 + 1 + (len(shown_sups) + 1) + 1 + len(report_lines) + 1 + 1
    room = max(1, height - fixed - 1)
    table = Table(box=None, pad_edge=False, header_style="bold", expand=fill)
    table.add_column("PID", no_wrap=True, style="dim")
    table.add_column("NAME", no_wrap=True, overflow="ellipsis", ratio=1, style="cyan")
    for key in ("m", "s", "r", "y"):
        title = SORTS[key][0]
        table.add_column(
            Text(title, style="bold reverse" if key == state.sort else "bold"),
            justify="right",
            no_wrap=True,
        )
    table.add_column("STATUS", no_wrap=True, overflow="ellipsis")
    rows = state.rows()
    for row in rows[:room]:
        mq = int(row.get("message_queue_len", 0) or 0)
        rate = row.get("messages_per_s")
        restarts = int(row.get("restarts", 0) or 0)
        table.add_row(
            row["pid"],
            row.get("name") or row.get("initial_call") or "",
            Text(str(mq), style="bold red" if mq >= 1000 else "yellow" if mq >= 10 else ""),
            _rate(rate),
            Text(str(restarts), style="yellow" if restarts else ""),
            _bytes(int(row.get("memory", 0) or 0)),
            row.get("status", ""),
        )
    more = len(rows) - min(len(rows), room)
    parts: list[Any] = [head, Text(""), table]
    if more > 0:
        parts.append(Text(f"... {more} more", style="dim"))
    parts += [Text(""), sup_table, Text(""), *report_lines, Text(""), footer]
    return Group(*parts)


@contextlib.contextmanager
def _keys() -> Iterator[int | None]:
    """The terminal in cbreak mode (keys arrive one by one, Ctrl-C still interrupts);
    restored on the way out whatever happens. None when stdin is not a terminal."""
    if not sys.stdin.isatty():
        yield None
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read_key(fd: int | None, timeout: float) -> str:
    """The next key typed within ``timeout`` seconds ("" if none)."""
    if fd is None:
        time.sleep(timeout)  # no keyboard: just pace the refreshes
        return ""
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return ""
    return os.read(fd, 32).decode(errors="replace")


def _fetch(client: Client, state: TopState, limit: int) -> None:
    """Ask the node for the first ``limit`` processes in ``state.sort``'s order;
    messages/s are counted by the node since this connection's last request."""
    args = {"limit": limit, "reports": 5, "sort": state.sort}
    state.update(client.request("top", args))


def run_top(client: Client, interval: float, sort: str, once: bool, as_json: bool = False) -> None:
    from rich.live import Live

    from suptrace.cli.output import out, print_json

    console = out()
    state = TopState(sort=sort)
    if as_json:
        _fetch(client, state, 10_000)
        time.sleep(interval)  # the sampling period of messages/s, not a synchronisation
        _fetch(client, state, 10_000)
        print_json(state.snapshot)
        return
    if once:
        rows = max(console.height, 40) if console.is_terminal else 10_000
        _fetch(client, state, rows)
        # Two samples, so that messages/s means something.
        time.sleep(interval)  # the sampling period of the rate, not a synchronisation
        _fetch(client, state, rows)
        console.print(render_screen(state, console.width, rows, fill=console.is_terminal))
        return
    _fetch(client, state, max(10, console.height))
    with (
        _keys() as fd,
        Live(console=console, screen=True, auto_refresh=False, transient=True) as live,
    ):
        while True:
            live.update(render_screen(state, console.width, console.height), refresh=True)
            next_at = time.monotonic() + interval
            key = ""
            while not key and time.monotonic() < next_at:
                key = _read_key(fd, max(0.0, next_at - time.monotonic()))
            for ch in key.lower():
                if ch == "q":
                    return
                if ch in SORTS:
                    state.sort = ch
            _fetch(client, state, max(10, console.height))


_SORT_WORDS = {
    "mailbox": "m",
    "mq": "m",
    "messages": "s",
    "rate": "s",
    "restarts": "r",
    "memory": "y",
    "mem": "y",
}


@handle_errors
def top(
    interval: Annotated[
        float,
        typer.Option("--interval", "-i", min=0.2, max=60, help="Seconds between refreshes."),
    ] = 1.0,
    sort: Annotated[
        str,
        typer.Option(
            "--sort",
            "-s",
            help="Initial order: m mailbox, s messages/s, r restarts, y memory "
            "(the same keys switch it while it runs).",
        ),
    ] = "m",
    once: Annotated[
        bool,
        typer.Option("--once", help="Print one screen (two samples --interval apart) and exit."),
    ] = False,
    as_json: JsonOpt = False,
    node: NodeOpt = None,
    connect: ConnectOpt = None,
    cookie_file: CookieOpt = None,
    tls: TlsOpt = False,
    cafile: CafileOpt = None,
) -> None:
    """A live view of a node: its busiest processes, supervisors and latest reports.

    Processes sort by mailbox, messages/s, restarts or memory; supervisors show
    their restart intensity use. Keys: m, s, r, y choose the order; q quits
    (Ctrl-C too). MEM~ is an estimate: the mailbox and the state's attributes,
    measured one level deep. --json prints one sample (every process) and exits."""
    key = _SORT_WORDS.get(sort.strip().lower(), sort.strip().lower())
    if key not in SORTS:
        names = ", ".join(f"{k} ({what})" for k, (_, what) in SORTS.items())
        raise CliError(f"--sort must be one of {names}, not {sort!r}", 2)
    with target(node, connect, cookie_file, tls, cafile).open() as client:
        try:
            run_top(client, interval, key, once, as_json)
        except KeyboardInterrupt:
            return
        except ConnectionLost:
            raise CliError(
                f"lost the connection to node {client.node} (did the node exit?)"
            ) from None
