"""A real terminal for the CLI tests: one tmux session (on a private server) per
command, its screen read back as text."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from node_scripts.harness import poll

BASH = shutil.which("bash") or "bash"
# bash, not sh: after a child that handled Ctrl-C and exited normally, bash carries on
# (dash dies of the SIGINT too, and the exit line would never come).


class Pane:
    """One tmux session (on a private server) running one command."""

    def __init__(
        self,
        tmp: Path,
        env: dict[str, str],
        argv: list[str],
        width: int = 220,
        height: int = 50,
    ) -> None:
        self.server = f"suptrace-test-{uuid.uuid4().hex[:8]}"
        conf = tmp / "tmux.conf"
        conf.write_text("set -g remain-on-exit on\nset -g history-limit 10000\n")
        assigns = [f"{k}={v}" for k, v in env.items()]
        # The shell prints the exit status when the command ends: a line to wait for.
        self._tmux(
            "-f",
            str(conf),
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            str(width),
            "-y",
            str(height),
            "env",
            "-i",
            *assigns,
            BASH,
            "-c",
            '"$@"; echo "[exit $?]"',
            "bash",
            *argv,
        )

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.server, *args], capture_output=True, text=True, timeout=10
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def text(self, escapes: bool = False, joined: bool = True) -> str:
        """The whole history. ``joined``: lines the terminal wrapped are joined back
        (``-J``); without it, each screen row is a line, as a person sees it."""
        # -S -: from the start of the history, not just what is visible now
        return self._tmux(
            "capture-pane",
            "-p",
            *(["-J"] if joined else []),
            "-S",
            "-",
            "-t",
            "t",
            *(["-e"] if escapes else []),
        )

    def screen(self) -> str:
        """What is on the screen now (the alternate screen of a full-screen program)."""
        return self._tmux("capture-pane", "-p", "-t", "t")

    def wait_screen(self, check: Callable[[str], bool], what: str) -> str:
        return str(poll(lambda: check(s := self.screen()) and s, what=what))

    def wait_for(self, needle: str) -> str:
        return str(
            poll(lambda: needle in (t := self.text()) and t, what=f"{needle!r} on the screen")
        )

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def exit_status(self) -> int:
        def ended() -> str | None:
            found = re.search(r"^\[exit (\d+)\]$", self.text(), re.M)
            return found.group(1) if found else None

        return int(poll(ended, what="the command to finish"))

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True, timeout=10)
