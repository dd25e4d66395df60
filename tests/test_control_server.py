"""The control server inside one process: files, names, options, framing helpers.

The end-to-end behaviour (a real node in another process, the real CLI) is in
test_control_security.py and the test_cli_*.py modules.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from node_scripts.harness import NodeProcess

import suptrace
from suptrace.node.control import ControlServer
from suptrace.node.control.protocol import (
    HEADER,
    ProtocolError,
    client_proof,
    decode_body,
    encode_frame,
    load_or_create_cookie,
    read_cookie,
    runtime_dir,
    server_proof,
    socket_stem,
)


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "run"
    monkeypatch.setenv("SUPTRACE_RUNTIME_DIR", str(path))
    return path


def _request(path: str, op: str, args: dict[str, object] | None = None) -> dict[str, object]:
    """One request over a fresh blocking connection (from a thread: the node keeps running)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        frames = _Frames(s)
        welcome = frames.read()
        assert welcome["type"] == "welcome"
        s.sendall(encode_frame({"id": 1, "op": op, "args": args or {}}))
        return frames.read()


class _Frames:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def read(self) -> dict[str, object]:
        (size,) = HEADER.unpack(self._exact(4))
        return decode_body(self._exact(size))


async def test_a_node_serves_its_socket_and_removes_it_when_it_stops(run_dir: Path) -> None:
    import asyncio

    async with suptrace.Node("files", log_reports=False) as node:
        control = node.control
        assert control is not None and control.path == run_dir / "files.sock"
        assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(control.path).st_mode) == 0o600
        sidecar = run_dir / "files.json"
        assert stat.S_IMODE(os.stat(sidecar).st_mode) == 0o600
        data = json.loads(sidecar.read_text())
        assert data["node"] == "files" and data["pid"] == os.getpid() and data["started"] > 0
        reply = await asyncio.to_thread(_request, str(control.path), "hello")
        assert reply["ok"] and reply["result"]["node"] == "files"  # type: ignore[index]
    assert sorted(os.listdir(run_dir)) == []


async def test_control_false_serves_nothing(run_dir: Path) -> None:
    async with suptrace.Node("quiet", control=False, log_reports=False) as node:
        assert node.control is None
        assert node.parts.control is None
    assert not run_dir.exists() or os.listdir(run_dir) == []
    async with suptrace.Node("defaults", control={}, log_reports=False) as node:
        assert node.control is not None and node.control.id == "defaults"  # {}: all defaults


async def test_a_stale_socket_of_a_dead_node_is_replaced(run_dir: Path) -> None:
    run_dir.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(run_dir / "again.sock"))
    stale.close()  # the file stays, nobody listens: what a killed node leaves
    (run_dir / "again.json").write_text('{"pid": 1}')
    async with suptrace.Node("again", log_reports=False) as node:
        assert node.control is not None and node.control.id == "again"


def test_a_live_node_keeps_its_name_and_a_second_one_gets_a_pid_suffix(tmp_path: Path) -> None:
    other = NodeProcess(tmp_path / "run", "twin")
    try:
        other.wait_ready()
        assert other.id == "twin"
        code = (
            "import asyncio, os, suptrace\n"
            "async def main():\n"
            "    async with suptrace.Node('twin', log_reports=False) as node:\n"
            "        print(node.control.id, os.getpid())\n"
            "asyncio.run(main())\n"
        )
        got = subprocess.run(
            [sys.executable, "-c", code], env=other.env, capture_output=True, text=True, timeout=30
        )
        assert got.returncode == 0, got.stderr
        got_id, pid = got.stdout.split()
        assert got_id == f"twin-{pid}"
        assert (tmp_path / "run" / "twin.sock").exists()  # the first node's socket is untouched
    finally:
        other.stop()


async def test_a_runtime_dir_of_another_user_is_refused(run_dir: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to give the directory to another user")
    run_dir.mkdir(mode=0o700)
    os.chown(run_dir, 65534, 65534)
    async with suptrace.Node("refused", log_reports=False) as node:
        assert node.control is not None and node.control.path is None  # runs without a socket
    assert os.listdir(run_dir) == []


def test_options_are_checked_and_name_the_bad_one() -> None:
    with pytest.raises(ValueError, match="max_clients"):
        ControlServer(max_clients=0)
    with pytest.raises(ValueError, match="max_duration"):
        ControlServer(max_duration=-1)
    with pytest.raises(ValueError, match="certfile and keyfile"):
        ControlServer(tcp=True, certfile="c.pem")
    with pytest.raises(ValueError, match="need tcp"):
        ControlServer(certfile="c.pem", keyfile="k.pem")
    with pytest.raises(ValueError, match="tcp"):
        ControlServer(tcp="nonsense")
    with pytest.raises(TypeError):
        suptrace.Node("x", control={"no_such_option": 1})


def test_runtime_dir_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUPTRACE_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert runtime_dir() == Path("/run/user/1000/suptrace")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert runtime_dir().name == f"suptrace-{os.getuid()}"
    monkeypatch.setenv("SUPTRACE_RUNTIME_DIR", "/somewhere")
    assert runtime_dir() == Path("/somewhere")


def test_frames_round_trip_and_bad_bodies_are_named() -> None:
    frame = encode_frame({"id": 7, "op": "ps"})
    (size,) = HEADER.unpack(frame[:4])
    assert size == len(frame) - 4
    assert decode_body(frame[4:]) == {"v": 1, "id": 7, "op": "ps"}
    for body, words in ((b"\xff\xfe", "UTF-8"), (b"{not json", "JSON"), (b"[1, 2]", "object")):
        with pytest.raises(ProtocolError, match=words) as info:
            decode_body(body)
        assert info.value.code == "bad_frame"


def test_socket_names_are_safe_file_names() -> None:
    assert socket_stem("copycat") == "copycat"
    stem = socket_stem("../../etc/passwd")
    assert "/" not in stem and not stem.startswith(".")
    assert socket_stem("a b/c") == "a_b_c"
    assert len(socket_stem("x" * 500)) == 64


def test_proofs_depend_on_role_nonces_and_cookie(tmp_path: Path) -> None:
    cookie = load_or_create_cookie(tmp_path / "cookie")
    assert stat.S_IMODE(os.stat(tmp_path / "cookie").st_mode) == 0o600
    assert read_cookie(tmp_path / "cookie") == cookie
    a = client_proof(cookie, "n1", "n2")
    assert a != server_proof(cookie, "n1", "n2")
    assert a != client_proof(cookie, "n1", "n3")
    assert a != client_proof(b"other", "n1", "n2")
    assert cookie not in a.encode()
    (tmp_path / "open").write_text("secret")
    os.chmod(tmp_path / "open", 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        read_cookie(tmp_path / "open")
