"""Terminal output for the commands: rich consoles, colours, JSON, times.

Colour is on for a terminal and off when output is piped or ``NO_COLOR`` is
set (rich's rules). On a terminal, text wraps at the terminal's width between
words (never inside one unless it is wider than the screen); piped output is
never wrapped, so lines stay greppable.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

__all__ = ["out", "err", "print_json", "print_json_line", "when", "ago", "event_text"]

_consoles: dict[bool, Console] = {}


def _console(stderr: bool) -> Console:
    console = _consoles.get(stderr)
    if console is None:
        from rich.console import Console

        stream = sys.stderr if stderr else sys.stdout
        width = None
        if not stream.isatty() and "COLUMNS" not in os.environ:
            width = 10_000  # piped: never wrap
        console = Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)
        _consoles[stderr] = console
    return console


def out() -> Console:
    """The console for results (stdout)."""
    return _console(False)


def err() -> Console:
    """The console for messages about the command itself (stderr)."""
    return _console(True)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def print_json_line(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


#: Styles of trace lines by event kind.
KIND_STYLE = {
    "receive": "green",
    "send": "blue",
    "dead_letter": "bold red",
    "exit": "red",
    "exit_signal": "red",
    "down": "red",
    "intensity": "bold red",
    "not_restarted": "bold red",
    "start_error": "red",
    "child_terminated": "red",
    "shutdown_error": "red",
    "call_timeout": "red",
    "restart": "yellow",
    "progress": "yellow",
    "spawn": "cyan",
    "spawned": "cyan",
    "register": "cyan",
    "unregister": "cyan",
    "trace": "magenta",
    "long_schedule": "yellow",
    "large_mailbox": "yellow",
}


def event_text(event: dict[str, Any]) -> Text:
    """A trace line: the node's dbg-style text after the local time, coloured by kind."""
    from rich.text import Text

    from suptrace.observers.format import format_ts  # light: terms and events only

    line = Text(format_ts(float(event.get("ts") or 0.0)), style="dim")
    line.append(" ")
    line.append(str(event.get("text", "")), style=KIND_STYLE.get(str(event.get("kind")), ""))
    return line
