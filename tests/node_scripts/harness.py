"""Running a real node in another process and the real `suptrace` command against it.

Everything waits on something observable (a line from the node, the node
appearing in ``suptrace nodes --json``, a line in a terminal) with a deadline;
the short pauses inside the polling loops only pace the polls.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "scenario_node.py"
_SCRIPT = Path(sys.executable).with_name("suptrace")
#: The installed console script (the real CLI); ``python -m suptrace`` where there is none.
SUPTRACE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "suptrace"]
DEADLINE = 15.0


def poll(check: Callable[[], Any], deadline: float = DEADLINE, what: str = "condition") -> Any:
    """Call ``check`` until it returns something truthy; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(0.05)  # pacing the poll, not synchronising on time


def env_for(run_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPTRACE_", "COLUMNS"))}
    env.update(SUPTRACE_RUNTIME_DIR=str(run_dir), PYTHONUNBUFFERED="1", **extra)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``suptrace ARGS`` to completion."""
    return subprocess.run(
        [*SUPTRACE, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def cli_json(env: dict[str, str], *args: str) -> Any:
    result = cli(env, *args, "--json")
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)


class Lines:
    """Lines of a pipe, read by a thread, taken with a deadline."""

    def __init__(self, pipe: Any) -> None:
        self.q: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self.thread.start()

    def _pump(self, pipe: Any) -> None:
        for line in pipe:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def wait_for(
        self, predicate: Callable[[str], bool], deadline: float = DEADLINE, what: str = "a line"
    ) -> str:
        end = time.monotonic() + deadline
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; got: {self.seen[-20:]}")
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"stream ended before {what}; got: {self.seen[-20:]}")
            self.seen.append(line)
            if predicate(line):
                return line

    def rest(self, deadline: float = DEADLINE) -> list[str]:
        """Everything until the stream ends."""
        self.thread.join(deadline)
        while True:
            try:
                line = self.q.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        return self.seen


class NodeProcess:
    """``scenario_node.py`` in a subprocess, found through ``suptrace nodes --json``."""

    def __init__(
        self, run_dir: Path, name: str, *args: str, env_extra: dict[str, str] | None = None
    ) -> None:
        self.run_dir = run_dir
        self.name = name
        self.env = env_for(run_dir, **(env_extra or {}))
        self.proc = subprocess.Popen(
            [sys.executable, str(SCENARIO), "--name", name, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            text=True,
        )
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)
        self.entry: dict[str, Any] = {}

    def wait_ready(self) -> dict[str, Any]:
        def listed() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"node {self.name} exited {self.proc.returncode}: {self.err.rest(1)}"
                )
            result = cli(self.env, "nodes", "--json")
            if result.returncode != 0:
                return None
            for entry in json.loads(result.stdout)["nodes"]:
                if entry["pid"] == self.proc.pid:
                    return dict(entry)
            return None

        self.entry = poll(listed, what=f"node {self.name} in `suptrace nodes --json`")
        return self.entry

    @property
    def id(self) -> str:
        return str(self.entry["id"])

    def command(self, line: str, deadline: float = DEADLINE) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        self.out.wait_for(lambda got: got == f"done {line}", deadline, f"node to do {line!r}")

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return cli(self.env, *args, "--node", self.id, timeout=timeout)

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
        return json.loads(result.stdout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode


def spawn_cli(env: dict[str, str], *args: str, **kw: Any) -> subprocess.Popen[str]:
    """Start ``suptrace ARGS`` without waiting (attach, reports --follow)."""
    return subprocess.Popen(
        [*SUPTRACE, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        **kw,
    )


class RawClient:
    """The control protocol by hand: for the tests that send what the CLI never would."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.sock.settimeout(DEADLINE)
        self.next_id = 1

    @classmethod
    def unix(cls, path: str) -> RawClient:
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.settimeout(DEADLINE)
        s.connect(path)
        return cls(s)

    @classmethod
    def tcp(cls, address: str) -> RawClient:
        import socket

        host, _, port = address.rpartition(":")
        return cls(socket.create_connection((host, int(port)), timeout=DEADLINE))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError(f"connection closed after {len(data)} of {n} bytes")
            data += chunk
        return data

    def read(self) -> dict[str, Any]:
        import struct

        (size,) = struct.unpack(">I", self.exact(4))
        return dict(json.loads(self.exact(size)))

    def closed_by_peer(self) -> bool:
        """True when the server closed the connection (reads EOF)."""
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, op: str, args: dict[str, Any] | None = None, **extra: Any) -> int:
        from suptrace.node.control.protocol import encode_frame

        req_id = self.next_id
        self.next_id += 1
        self.sock.sendall(encode_frame({"id": req_id, "op": op, "args": args or {}, **extra}))
        return req_id

    def request(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        req_id = self.send(op, args)
        while True:
            frame = self.read()
            if frame.get("id") in (req_id, None) and "ok" in frame:
                return frame
