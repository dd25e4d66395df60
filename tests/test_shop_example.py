"""`python -m examples.shop`, run as a user would: talk to its TCP front end,
then stop it with SIGTERM and check the orderly shutdown."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from node_scripts.harness import DEADLINE, Lines, env_for, poll

ROOT = Path(__file__).resolve().parents[1]


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.file = self.sock.makefile("rw")

    def ask(self, line: str) -> str:
        self.file.write(line + "\n")
        self.file.flush()
        return self.file.readline().strip()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_shop_serves_tcp_and_stops_in_order_on_sigterm(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.shop", "--port", "0", "--quiet"],
        cwd=ROOT,
        env=env_for(run_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        listening = out.wait_for(lambda line: line.startswith("listening on "), what="the port")
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", listening)
        assert match is not None, listening
        out.wait_for(lambda line: line == "ready", what="the shop to be ready")
        assert sorted(p.name for p in run_dir.iterdir()) == ["shop.json", "shop.sock"]

        client = Client(int(match.group(1)))
        assert int(client.ask("STOCK apple")) >= 5  # importers only ever add
        assert client.ask("BUY apple 2") == "ORDER 1"
        assert client.ask("BUY pear 9") == "SOLD OUT"
        # The job packs the order under the DynamicSupervisor, then updates the database.
        poll(lambda: client.ask("STATUS 1") == "packed", what="order 1 to be packed")
        # STATS: the handler task calls the front end that created it, the db and the poller.
        assert re.fullmatch(r"connections=1 orders=1 pending=\d", client.ask("STATS"))
        assert client.ask("FOO").startswith("ERROR unknown command")

        proc.send_signal(signal.SIGTERM)
        code = proc.wait(DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines, errors = out.rest(), err.rest()
    client.close()
    assert code == 143, errors
    started = [line.split()[1] for line in lines if line.startswith("started ")]
    stopped = [line.split()[1] for line in lines if line.startswith("terminate ")]
    assert started == ["shop.db", "shop.importer.north", "shop.importer.south", "shop.poller", "shop.front"]
    assert stopped == list(reversed(started))
    assert all(line.endswith(" shutdown") for line in lines if line.startswith("terminate "))
    assert list(run_dir.iterdir()) == []
    assert errors == ["suptrace: SIGTERM: stopping node 'shop' in order (send SIGTERM again to stop at once)"]


def test_ctrl_c_on_a_terminal_stops_the_shop_with_one_line(tmp_path: Path) -> None:
    """What a person sees after Ctrl-C: the servers stopping, one line, no traceback."""
    if shutil.which("tmux") is None or shutil.which("bash") is None:
        pytest.skip("needs tmux and bash")
    from node_scripts.terminal import Pane

    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT),
        "SUPTRACE_RUNTIME_DIR": str(run_dir),
    }
    pane = Pane(tmp_path, env, [sys.executable, "-m", "examples.shop", "--port", "0", "--quiet"])
    try:
        pane.wait_for("ready")
        pane.keys("C-c")
        # bash dies of the SIGINT with its child, as shells do: wait for the pane to be dead.
        poll(
            lambda: pane._tmux("display", "-p", "-t", "t", "#{pane_dead}").strip() == "1",
            what="the shop to end",
        )
        text = pane.text()
    finally:
        pane.close()
    assert "Traceback" not in text and "CancelledError" not in text, text
    after = text[text.index("ready") :].splitlines()
    said = [line.removeprefix("^C") for line in after if "suptrace:" in line]
    assert said == ["suptrace: SIGINT: stopping node 'shop' in order (send SIGINT again to stop at once)"]
    stopped = [line for line in after if line.startswith("terminate ")]
    assert stopped[:1] == ["terminate shop.front shutdown"] and len(stopped) == 5
    assert list(run_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "said"),
    [("abc", "not a port number: 'abc'"), ("70000", "a port is 0..65535")],
)
def test_shop_refuses_a_bad_port_in_one_line(value: str, said: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.shop", "--port", value],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert said in done.stderr and "Traceback" not in done.stderr
