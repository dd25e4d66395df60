"""The control socket under hostile or careless clients, against a real node process.

Who may connect (same uid only; TCP only with the cookie, which never crosses
the wire), what a read-only node refuses, and that malformed, oversized,
random or truncated frames -- and clients that stop reading -- never harm the
node.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from node_scripts.harness import NodeProcess, RawClient, cli, poll

from suptrace.node.control.protocol import encode_frame


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess(tmp_path_factory.mktemp("sec") / "run", "sec")
    n.wait_ready()
    yield n
    assert n.stop() == 0
    assert "Traceback" not in "\n".join(n.err.rest(5))


def _healthy(node: NodeProcess) -> None:
    with RawClient.unix(node.entry["socket"]) as c:
        assert c.read()["type"] == "welcome"
        reply = c.request("ps")
        assert reply["ok"], reply
        names = {p["name"] for p in reply["result"]["processes"]}
        assert {"app.sup", "app.echo", "app.store"} <= names


# -- who may connect ------------------------------------------------------------------------


def test_runtime_files_are_private(node: NodeProcess) -> None:
    sock = Path(node.entry["socket"])
    assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(sock.with_suffix(".json")).st_mode) == 0o600


_INTRUDER = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
    sys.exit(0)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print("GOT " + data[4:].decode())
"""


_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _python_for_nobody() -> str:
    """An interpreter uid 65534 can start: this one, unless it lives where that user cannot
    read (a pyenv build under a 0700 home), else the system's."""
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if candidate and subprocess.run(
            [*_NOBODY, candidate, "-I", "-c", "pass"], capture_output=True, timeout=30
        ).returncode == 0:
            return candidate
    pytest.skip("no Python interpreter that uid 65534 can run")


def _as_nobody(path: str) -> str:
    result = subprocess.run(
        [
            *_NOBODY,
            _python_for_nobody(),
            "-I",
            "-c",
            _INTRUDER,
            path,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_another_uid_cannot_connect() -> None:
    base = Path(tempfile.mkdtemp(prefix="suptrace-uid-"))
    try:
        os.chmod(base, 0o711)  # others may traverse the parent, as /run/user or /tmp allow
        n = NodeProcess(base / "run", "guarded")
        try:
            n.wait_ready()
            sock = n.entry["socket"]
            # The 0700 directory already keeps other users out...
            assert _as_nobody(sock) == "EACCES"
            # ...and if someone loosens it, the peer uid check still refuses them.
            os.chmod(base / "run", 0o711)
            os.chmod(sock, 0o666)
            got = _as_nobody(sock)
            assert got.startswith("GOT "), got
            frame = json.loads(got[4:])
            assert frame["ok"] is False and frame["error"]["code"] == "forbidden"
            assert "65534" in frame["error"]["message"]
            assert "guarded" not in got and "app." not in got  # nothing about the node leaks
            # The CLI will not trust a loosened directory either...
            refused = n.cli("ps")
            assert refused.returncode == 1 and "open to other users" in refused.stderr
            # ...and once it is private again, the node's own user gets in.
            os.chmod(base / "run", 0o700)
            assert n.cli("ps").returncode == 0
        finally:
            n.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- TCP and the cookie ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tcp_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, Path]]:
    base = tmp_path_factory.mktemp("tcp")
    cookie = base / "cookie"
    n = NodeProcess(base / "run", "tcpnode", "--tcp", "127.0.0.1:0", "--cookie-file", str(cookie))
    n.wait_ready()
    yield n, cookie
    n.stop()


def test_tcp_listens_on_loopback_and_creates_a_private_cookie(
    tcp_node: tuple[NodeProcess, Path],
) -> None:
    n, cookie = tcp_node
    assert n.entry["tcp"].startswith("127.0.0.1:")
    assert stat.S_IMODE(os.stat(cookie).st_mode) == 0o600
    assert len(cookie.read_bytes().strip()) >= 32


def test_tcp_without_auth_is_refused_and_learns_nothing(tcp_node: tuple[NodeProcess, Path]) -> None:
    n, _ = tcp_node
    with RawClient.tcp(n.entry["tcp"]) as c:
        welcome = c.read()
        assert set(welcome) == {"v", "type", "protocol", "auth", "nonce"}
        assert welcome["auth"] == "hmac-sha256"
        reply = c.request("ps")
        assert reply["ok"] is False and reply["error"]["code"] == "unauthenticated"
        assert "tcpnode" not in json.dumps(reply) and "app." not in json.dumps(reply)
        assert c.closed_by_peer()


def test_tcp_with_a_wrong_cookie_is_refused(
    tcp_node: tuple[NodeProcess, Path], tmp_path: Path
) -> None:
    n, _ = tcp_node
    with RawClient.tcp(n.entry["tcp"]) as c:
        c.read()
        reply = c.request("auth", {"nonce": "ab" * 16, "proof": "00" * 32})
        assert reply["error"]["code"] == "unauthenticated"
        assert c.closed_by_peer()
    wrong = tmp_path / "wrong"
    wrong.write_text("not the cookie\n")
    os.chmod(wrong, 0o600)
    result = cli(n.env, "ps", "--connect", n.entry["tcp"], "--cookie-file", str(wrong))
    assert result.returncode == 1
    assert "cookies differ" in result.stderr
    assert result.stdout == ""


def test_tcp_with_the_cookie_works_through_the_cli(tcp_node: tuple[NodeProcess, Path]) -> None:
    n, cookie = tcp_node
    result = cli(n.env, "ps", "--connect", n.entry["tcp"], "--cookie-file", str(cookie), "--json")
    assert result.returncode == 0, result.stderr
    assert "app.echo" in {p["name"] for p in json.loads(result.stdout)["processes"]}


def test_the_cli_never_sends_the_cookie(tmp_path: Path) -> None:
    """A fake node records every byte the CLI sends while authenticating."""
    cookie = tmp_path / "cookie"
    cookie.write_text("the-cookie-itself-must-stay-home\n")
    os.chmod(cookie, 0o600)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received = bytearray()

    def fake_node() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(
                encode_frame(
                    {"type": "welcome", "protocol": 1, "auth": "hmac-sha256", "nonce": "cd" * 16}
                )
            )
            conn.settimeout(10)
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received.extend(chunk)
                if len(received) > 4 and len(received) >= 4 + struct.unpack(">I", received[:4])[0]:
                    conn.sendall(
                        encode_frame(
                            {
                                "id": 1,
                                "ok": False,
                                "error": {"code": "unauthenticated", "message": "no"},
                            }
                        )
                    )
                    break

    thread = threading.Thread(target=fake_node, daemon=True)
    thread.start()
    result = cli(
        os.environ.copy(), "ps", "--connect", f"127.0.0.1:{port}", "--cookie-file", str(cookie)
    )
    thread.join(10)
    server.close()
    assert result.returncode == 1
    sent = json.loads(bytes(received[4:]))
    assert sent["op"] == "auth" and len(sent["args"]["proof"]) == 64
    assert b"the-cookie-itself" not in received


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_tls_over_tcp(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    cookie = tmp_path / "cookie"
    n = NodeProcess(
        tmp_path / "run",
        "tlsnode",
        "--tcp",
        "127.0.0.1:0",
        "--cookie-file",
        str(cookie),
        "--certfile",
        str(cert),
        "--keyfile",
        str(key),
    )
    try:
        n.wait_ready()
        assert n.entry["tls"] is True
        args = ("ps", "--connect", n.entry["tcp"], "--cookie-file", str(cookie), "--json")
        ok = cli(n.env, *args, "--tls", "--cafile", str(cert))
        assert ok.returncode == 0, ok.stderr
        assert "app.store" in ok.stdout
    finally:
        n.stop()


# -- what a read-only node refuses ----------------------------------------------------------


def test_write_ops_are_refused_unless_enabled(node: NodeProcess) -> None:
    with RawClient.unix(node.entry["socket"]) as c:
        c.read()
        for op, args in (
            ("exit", {"target": "app.store", "reason": "kill"}),
            ("terminate_child", {"supervisor": "app.sup", "child": "echo"}),
            ("restart_child", {"supervisor": "app.sup", "child": "echo"}),
        ):
            reply = c.request(op, args)
            assert reply["error"]["code"] == "forbidden", reply
            assert "allow_write" in reply["error"]["message"]
    info = node.cli_json("inspect", "app.store")
    assert info["alive"] is True  # untouched


# -- malformed frames -------------------------------------------------------------------------


def test_malformed_requests_get_clear_errors_and_the_connection_survives(node: NodeProcess) -> None:
    with RawClient.unix(node.entry["socket"]) as c:
        c.read()
        cases = [
            (struct.pack(">I", 9) + b"{not json", "bad_frame"),
            (struct.pack(">I", 6) + b"[1, 2]", "bad_frame"),
            (struct.pack(">I", 0), "bad_frame"),
            (encode_frame({"op": "ps"}), "bad_request"),  # no id
            (encode_frame({"v": 99, "id": 1, "op": "ps"}), "bad_version"),
            (encode_frame({"id": 2, "op": "format_disk"}), "unknown_op"),
            (encode_frame({"id": 3, "op": "ps", "args": [1]}), "bad_request"),
            (encode_frame({"id": 4, "op": "info", "args": {}}), "bad_args"),
            (
                encode_frame(
                    {"id": 5, "op": "attach", "args": {"target": "app.echo", "flags": ["nope"]}}
                ),
                "bad_args",
            ),
            (
                encode_frame(
                    {"id": 6, "op": "attach", "args": {"target": "app.echo", "max_events": -1}}
                ),
                "bad_args",
            ),
        ]
        for data, code in cases:
            c.send_raw(data)
            frame = c.read()
            assert frame["ok"] is False and frame["error"]["code"] == code, (data, frame)
            assert frame["error"]["message"]
        assert c.request("ps")["ok"]  # same connection, still fine


def test_an_oversized_frame_is_refused_and_the_connection_closed(node: NodeProcess) -> None:
    with RawClient.unix(node.entry["socket"]) as c:
        c.read()
        c.send_raw(struct.pack(">I", 512 << 20))
        frame = c.read()
        assert frame["error"]["code"] == "frame_too_large"
        assert "max_frame" in frame["error"]["message"]
        assert c.closed_by_peer()
    _healthy(node)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_ops = st.sampled_from(
    [
        "ps",
        "info",
        "tree",
        "attach",
        "detach",
        "reports",
        "doctor",
        "exit",
        "auth",
        "tombstone",
        "hello",
        "x",
    ]
)


@st.composite
def _payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["garbage", "random_body", "truncated", "request", "huge"]))
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=64))
    if kind == "random_body":
        body = draw(st.binary(max_size=64))
        return struct.pack(">I", len(body)) + body
    request = {
        "id": draw(st.integers(0, 9) | st.text(max_size=5)),
        "op": draw(_ops),
        "args": draw(_json),
    }
    if draw(st.booleans()):
        request["v"] = draw(st.integers(0, 3))
    frame = encode_frame(request)
    if kind == "truncated":
        return frame[: draw(st.integers(1, len(frame) - 1))]
    if kind == "huge":
        return struct.pack(">I", draw(st.integers(1 << 20 + 1, 2**32 - 1)))
    return frame


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=_payloads())
def test_random_and_truncated_frames_leave_the_node_healthy(
    node: NodeProcess, payload: bytes
) -> None:
    with RawClient.unix(node.entry["socket"]) as c:
        c.read()
        c.send_raw(payload)
        c.sock.shutdown(socket.SHUT_WR)  # a truncated frame ends here
        while True:  # whatever comes back must be well-formed frames, then EOF
            try:
                frame = c.read()
            except EOFError:
                break
            assert frame["v"] == 1
            if frame.get("ok") is False:
                assert frame["error"]["code"] and frame["error"]["message"]


def test_the_node_is_healthy_after_the_fuzzing(node: NodeProcess) -> None:
    _healthy(node)
    status = node.cli_json("status")
    assert status["tracers"] == [] and status["traced_processes"] == 0
    assert status["streams"] == {"attach": 0, "reports": 0}
    assert node.proc.poll() is None


# -- limits ------------------------------------------------------------------------------------


def test_clients_over_max_clients_are_told_busy(tmp_path: Path) -> None:
    n = NodeProcess(tmp_path / "run", "small", "--max-clients", "2")
    try:
        n.wait_ready()
        path = n.entry["socket"]
        with RawClient.unix(path) as a, RawClient.unix(path) as b:
            # A connection takes a client slot with its first request; these two
            # follow the reports, so neither is idle and neither can be closed.
            for held in (a, b):
                held.read()
                assert held.request("reports", {"follow": True, "limit": 0})["ok"]
            with RawClient.unix(path) as c:
                assert c.read()["type"] == "welcome"  # connecting costs no slot
                frame = c.request("ps")
                assert frame["ok"] is False
                assert frame["error"]["code"] == "busy"
                assert "max_clients" in frame["error"]["message"]
                assert c.closed_by_peer()
        poll(lambda: n.cli("ps").returncode == 0, what="a slot after the others closed")
    finally:
        n.stop()


def test_a_client_that_stops_reading_never_blocks_the_node(tmp_path: Path) -> None:
    n = NodeProcess(tmp_path / "run", "slow", "--high-water", "4096")
    try:
        n.wait_ready()
        slow = RawClient.unix(n.entry["socket"])
        slow.read()
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reply = slow.request(
            "attach",
            {
                "target": "app.echo",
                "flags": ["receive"],
                "max_events": 100000,
                "rate": 100000,
                "duration": 60,
            },
        )
        assert reply["ok"], reply
        assert reply["result"]["limits"]["rate"] == 10000  # capped by the node's max_rate
        # The slow client reads nothing from here on; the node must keep going.
        n.command("flood 5000", deadline=20)
        assert n.cli("ps").returncode == 0
        status = n.cli_json("status")
        assert status["frames_dropped"] > 0
        assert status["streams"]["attach"] == 1
        slow.close()
        poll(
            lambda: n.cli_json("status")["streams"]["attach"] == 0,
            what="the attach to end on disconnect",
        )
        status = n.cli_json("status")
        assert status["tracers"] == [] and status["traced_processes"] == 0
    finally:
        n.stop()
