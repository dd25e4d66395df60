"""Nobody can jam the control socket: a real node in another process, real clients.

Clients that connect and say nothing, send half a frame or never authenticate
are closed after their deadline and cannot take the owner's slots; a request
whose client leaves is cancelled; floods of connections leave the owner's
`suptrace ps` answering; parsing is bounded in depth; every bad argument is a
``bad_args`` naming it, never ``internal`` and never a traceback in the node's log.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from node_scripts.harness import DEADLINE, NodeProcess, RawClient, poll

from suptrace.cli.client import Client
from suptrace.node.control.protocol import client_proof, encode_frame, read_cookie

#: Short deadlines, so that the tests wait for them without waiting long.
SHORT = {"auth_timeout": 1.0, "frame_timeout": 1.0, "idle_timeout": 2.0}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    base = tmp_path_factory.mktemp("jam")
    n = NodeProcess(
        base / "run",
        "jam",
        "--tcp",
        "127.0.0.1:0",
        "--cookie-file",
        str(base / "cookie"),
        "--control-json",
        json.dumps(SHORT),
    )
    n.wait_ready()
    n.cookie = base / "cookie"  # type: ignore[attr-defined]
    yield n
    assert n.stop() == 0
    err = "\n".join(n.err.rest(5))
    assert "Traceback" not in err and "RecursionError" not in err, err[-3000:]


def _status(node: NodeProcess) -> dict[str, Any]:
    return dict(node.cli_json("status"))


def _connections(node: NodeProcess) -> dict[str, Any]:
    return dict(_status(node)["connections"])


def _frames_until_eof(c: RawClient) -> list[dict[str, Any]]:
    frames = []
    while True:
        try:
            frames.append(c.read())
        except (EOFError, ConnectionError):
            return frames


def _raw(c: RawClient, body: bytes) -> None:
    c.send_raw(struct.pack(">I", len(body)) + body)


# -- deadlines --------------------------------------------------------------------------------


def test_a_unix_client_that_sends_nothing_is_closed_after_auth_timeout(node: NodeProcess) -> None:
    with RawClient.unix(node.entry["socket"]) as c:
        assert c.read()["type"] == "welcome"
        frames = _frames_until_eof(c)  # the node speaks last, then closes
    assert [f["error"]["code"] for f in frames] == ["timeout"]
    assert "auth_timeout" in frames[0]["error"]["message"]


def test_half_a_frame_is_closed_after_frame_timeout(node: NodeProcess) -> None:
    with RawClient.unix(node.entry["socket"]) as c:
        c.read()
        assert c.request("ps")["ok"]
        c.send_raw(struct.pack(">I", 100) + b'{"id": 2, "op"')  # ...and never the rest
        frames = _frames_until_eof(c)
    assert [f["error"]["code"] for f in frames] == ["timeout"]
    assert "frame_timeout" in frames[0]["error"]["message"]


def test_a_slow_header_is_half_a_frame_too(node: NodeProcess) -> None:
    with RawClient.unix(node.entry["socket"]) as c:
        c.read()
        c.send_raw(b"\x00\x00")
        frames = _frames_until_eof(c)
    assert frames and frames[0]["error"]["code"] == "timeout"


def test_an_idle_client_is_closed_after_idle_timeout(node: NodeProcess) -> None:
    with RawClient.unix(node.entry["socket"]) as c:
        c.read()
        assert c.request("ps")["ok"]
        frames = _frames_until_eof(c)
    assert [f["error"]["code"] for f in frames] == ["timeout"]
    assert "idle_timeout" in frames[0]["error"]["message"]


def test_a_client_with_a_stream_is_never_idle(node: NodeProcess) -> None:
    with RawClient.unix(node.entry["socket"]) as c:
        c.read()
        assert c.request("reports", {"follow": True, "limit": 0})["ok"]
        c.sock.settimeout(2 * SHORT["idle_timeout"] + 1)
        with pytest.raises(TimeoutError):
            c.read()  # nothing comes: the stream keeps the connection open
        assert c.request("ps")["ok"]


def test_tcp_without_auth_is_closed_after_auth_timeout(node: NodeProcess) -> None:
    with RawClient.tcp(node.entry["tcp"]) as c:
        welcome = c.read()
        assert welcome["auth"] == "hmac-sha256"
        frames = _frames_until_eof(c)
    assert [f["error"]["code"] for f in frames] == ["timeout"]
    assert "authenticate" in frames[0]["error"]["message"]


def test_before_auth_only_a_small_frame_is_read(node: NodeProcess) -> None:
    with RawClient.tcp(node.entry["tcp"]) as c:
        c.read()
        c.send_raw(struct.pack(">I", 100_000))
        frames = _frames_until_eof(c)
    assert frames[0]["error"]["code"] == "frame_too_large"
    assert "before authentication" in frames[0]["error"]["message"]


# -- parsing ----------------------------------------------------------------------------------


def test_a_frame_nested_100k_deep_gets_an_error_frame(node: NodeProcess) -> None:
    bomb = b'{"id": 1, "op": "ps", "args": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    with RawClient.unix(node.entry["socket"]) as c:
        c.read()
        _raw(c, bomb)
        frame = c.read()
        assert frame["ok"] is False and frame["error"]["code"] == "bad_frame"
        assert "deeply" in frame["error"]["message"]
        _raw(c, b"[" * 100_000)  # not even an object
        assert c.read()["error"]["code"] == "bad_frame"
        _raw(c, b'{"id": 2, "op": "ps", "args": {"x": ' + b"[" * 40 + b"]" * 40 + b"}}")
        assert "deeply" in c.read()["error"]["message"]
        assert c.request("ps")["ok"]  # the connection survives all three


def test_a_depth_bomb_before_auth_is_refused_cheaply(node: NodeProcess) -> None:
    with RawClient.tcp(node.entry["tcp"]) as c:
        c.read()
        _raw(c, b"[" * 4000)
        frames = _frames_until_eof(c)
    assert frames[0]["error"]["code"] == "unauthenticated"
    # 4,000 brackets are too deep for the parser on 3.11/3.12 ("nested too deeply"); on
    # 3.13 its limit is higher, and the cut frame is refused as malformed instead.
    message = frames[0]["error"]["message"]
    assert "deeply" in message or "not UTF-8 JSON" in message


NAN = float("nan")
INF = float("inf")

#: (op, args, the argument the error must name)
BAD_ARGS: list[tuple[str, dict[str, Any], str]] = [
    ("attach", {"target": "app.echo", "rate": NAN}, "rate"),
    ("attach", {"target": "app.echo", "rate": INF}, "rate"),
    ("attach", {"target": "app.echo", "max_events": NAN}, "max_events"),
    ("attach", {"target": "app.echo", "duration": -INF}, "duration"),
    ("attach", {"target": "app.echo", "duration": 1e300}, "duration"),
    ("attach", {"target": "app.echo", "term_limit": "many"}, "term_limit"),
    ("attach", {"target": "app.echo", "flags": [["send"]]}, "flags"),
    ("attach", {"target": "app.echo", "flags": "send"}, "flags"),
    ("attach", {"target": "app.echo", "call": [{"m": "f"}]}, "call"),
    ("attach", {"target": "app.echo", "follow_name": 1}, "follow_name"),
    ("attach", {"target": "app.echo", "set_on_spawn": "yes"}, "set_on_spawn"),
    ("attach", {"target": ["app.echo"]}, "target"),
    ("attach", {"target": "x" * 5000}, "target"),
    ("reports", {"kinds": [["crash"]]}, "kinds"),
    ("reports", {"kinds": [{"a": 1}]}, "kinds"),
    ("reports", {"kinds": "crash"}, "kinds"),
    ("reports", {"limit": NAN}, "limit"),
    ("reports", {"limit": 10**30}, "limit"),
    ("reports", {"follow": "yes"}, "follow"),
    ("detach", {"stream": [1]}, "stream"),
    ("detach", {"stream": {"a": 1}}, "stream"),
    ("ps", {"limit": INF}, "limit"),
    ("ps", {"system": "no"}, "system"),
    ("info", {"target": 42}, "target"),
    ("info", {"target": None}, "target"),
    ("tombstone", {"name": {}}, "name"),
    ("doctor", {"samples": NAN}, "samples"),
    ("doctor", {"interval": NAN}, "interval"),
    ("doctor", {"interval": INF}, "interval"),
    ("doctor", {"stuck_after": INF, "samples": 1}, "stuck_after"),
    ("doctor", {"mailbox_min": 1.5, "samples": 1}, "mailbox_min"),
]


@pytest.mark.parametrize(("op", "args", "named"), BAD_ARGS)
def test_bad_arguments_are_bad_args_naming_the_argument(
    node: NodeProcess, op: str, args: dict[str, Any], named: str
) -> None:
    with RawClient.unix(node.entry["socket"]) as c:
        c.read()
        frame = c.request(op, args)
        assert frame["ok"] is False, frame
        assert frame["error"]["code"] in ("bad_args", "not_found"), frame
        if frame["error"]["code"] == "bad_args":
            assert named in frame["error"]["message"], frame
        assert len(json.dumps(frame)) < 2000
        assert c.request("ps")["ok"]


def test_nan_rate_never_passes_the_rate_cap(node: NodeProcess) -> None:
    with RawClient.unix(node.entry["socket"]) as c:
        c.read()
        frame = c.request("attach", {"target": "all", "rate": NAN, "max_events": NAN})
        assert frame["error"]["code"] == "bad_args"
    assert _status(node)["tracers"] == []


_JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["app.echo", "all", "new", "<0.1.0>", "<0.>", "app.sup", "app:nothing"]),
)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_OPS = [
    "hello",
    "status",
    "ps",
    "info",
    "tree",
    "reports",
    "tombstones",
    "tombstone",
    "attach",
    "detach",
    "doctor",
    "terminate_child",
    "restart_child",
    "exit",
]
_KEYS = [
    "target",
    "name",
    "stream",
    "kinds",
    "limit",
    "follow",
    "system",
    "flags",
    "call",
    "rate",
    "max_events",
    "duration",
    "term_limit",
    "follow_name",
    "set_on_spawn",
    "samples",
    "stuck_after",
    "mailbox_min",
    "supervisor",
    "child",
    "reason",
]


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    op = draw(st.sampled_from(_OPS))
    args = draw(st.dictionaries(st.sampled_from(_KEYS), _JSON, max_size=5))
    if op == "doctor":  # a valid doctor samples for samples*interval seconds: keep it short
        args["interval"] = draw(st.sampled_from([0.01, NAN, INF, -1, "x", [1], None]))
    return op, args


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=_requests())
def test_fuzzed_requests_never_get_internal(
    node: NodeProcess, request: tuple[str, dict[str, Any]]
) -> None:
    op, args = request
    with RawClient.unix(node.entry["socket"]) as c:
        c.read()
        frame = c.request(op, args)
        if frame["ok"] is False:
            assert frame["error"]["code"] != "internal", frame
            assert frame["error"]["message"]
            assert len(frame["error"]["message"]) < 3000


def test_the_node_is_clean_after_the_fuzzing(node: NodeProcess) -> None:
    status = poll(
        lambda: (s := _status(node))["tracers"] == [] and s["streams"]["attach"] == 0 and s,
        what="every fuzzed attach to end with its connection",
    )
    assert status["traced_processes"] == 0
    assert status["errors"] >= 0


# -- leaving ----------------------------------------------------------------------------------


def test_a_request_is_cancelled_when_its_client_leaves(node: NodeProcess) -> None:
    before = _connections(node)["requests_cancelled"]
    c = RawClient.unix(node.entry["socket"])
    c.read()
    c.send("doctor", {"samples": 20, "interval": 10})  # would sample for 200 s
    poll(
        lambda: _connections(node)["requests_running"] >= 2,  # the doctor and this status
        what="the doctor request to run",
    )
    c.close()
    after = poll(
        lambda: (s := _connections(node))["requests_cancelled"] > before and s,
        what="the doctor request to be cancelled",
    )
    assert after["requests_running"] == 1  # only the status asking


def test_an_attach_ends_and_leaves_nothing_when_its_client_leaves(node: NodeProcess) -> None:
    c = RawClient.unix(node.entry["socket"])
    c.read()
    reply = c.request("attach", {"target": "app.echo", "flags": ["send", "receive"]})
    assert reply["ok"], reply
    status = _status(node)
    assert len(status["tracers"]) == 1 and status["traced_processes"] == 1
    c.close()
    poll(
        lambda: (s := _status(node))["tracers"] == [] and s["traced_processes"] == 0,
        what="the tracer to be removed",
    )


# -- crowds -----------------------------------------------------------------------------------


class Attack:
    """Hostile clients in threads until stopped: slowloris connections (half a
    header, then nothing) on Unix and TCP, and rapid connect/close."""

    def __init__(self, node: NodeProcess, kinds: tuple[str, ...], count: int = 100) -> None:
        self.node = node
        self.stop = threading.Event()
        self.connects = 0
        self.threads = [
            threading.Thread(target=self._run, args=(kind, count), daemon=True) for kind in kinds
        ]

    def _connect(self, kind: str) -> socket.socket:
        if kind.endswith("tcp"):
            host, _, port = self.node.entry["tcp"].rpartition(":")
            s = socket.create_connection((host, int(port)), timeout=5)
        else:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            s.connect(self.node.entry["socket"])
        self.connects += 1
        return s

    def _run(self, kind: str, count: int) -> None:
        held: list[socket.socket] = []
        while not self.stop.is_set():
            try:
                s = self._connect(kind)
            except OSError:
                continue  # a full backlog: knock again
            if kind.startswith("rapid"):
                s.close()
                continue
            try:
                s.sendall(b"\x00\x00")
            except OSError:
                s.close()
                continue
            held.append(s)
            if len(held) > count:
                held.pop(0).close()
        for s in held:
            s.close()

    def __enter__(self) -> Attack:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def _owner_client_answers(node: NodeProcess, times: int) -> list[float]:
    """How long the owner's client takes to connect, be admitted and get ``ps``."""
    took = []
    for _ in range(times):
        start = time.monotonic()
        with Client.unix(node.entry["socket"], node.name, timeout=DEADLINE) as client:
            result = client.request("ps")
        took.append(time.monotonic() - start)
        assert any(p["name"] == "app.echo" for p in result["processes"])
    return took


def _owner_ps_answers(node: NodeProcess, times: int) -> list[float]:
    took = []
    for _ in range(times):
        start = time.monotonic()
        result = node.cli("ps", "--json", timeout=DEADLINE)
        took.append(time.monotonic() - start)
        assert result.returncode == 0, result.stderr
        assert "app.echo" in result.stdout
    return took


@pytest.mark.parametrize(
    "kinds",
    [
        ("slow-unix", "slow-unix"),
        ("slow-tcp", "slow-tcp"),
        ("rapid-unix", "rapid-tcp"),
        ("slow-unix", "slow-tcp", "rapid-unix"),
    ],
    ids=["slowloris-unix", "unauthenticated-tcp", "rapid-connect", "all-at-once"],
)
def test_the_owner_ps_answers_during_an_attack(node: NodeProcess, kinds: tuple[str, ...]) -> None:
    with Attack(node, kinds) as attack:
        poll(lambda: attack.connects > 200, what="the attack to get going")
        took = _owner_ps_answers(node, 5)
        answered = _owner_client_answers(node, 10)
        assert attack.connects > 200
    print(f"{kinds}: connect + ps in-process took {[round(t, 3) for t in answered]} s")
    # The availability bound: the node lets its owner in and answers within 2 s, every time.
    assert max(answered) < 2.0, answered
    print(f"{kinds}: suptrace ps took {[round(t, 2) for t in took]} s")
    # Each `suptrace ps` is a fresh Python process; a generous bound, not a benchmark.
    assert max(took) < 10, took
    conns = poll(
        lambda: (c := _connections(node))["waiting"] == {"unix": 0, "tcp": 0} and c,
        what="the attackers' connections to be gone",
    )
    assert conns["admitted"] <= 1  # the status asking


def test_unauthenticated_peers_have_their_own_small_pool(node: NodeProcess) -> None:
    host, _, port = node.entry["tcp"].rpartition(":")
    held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(40)]
    try:
        waiting = _connections(node)["waiting"]["tcp"]
        assert waiting <= 16  # max_unauthenticated
        assert node.cli("ps").returncode == 0
    finally:
        for s in held:
            s.close()


def _authed_tcp(node: NodeProcess) -> RawClient:
    host, _, port = node.entry["tcp"].rpartition(":")
    c = RawClient(socket.create_connection((host, int(port)), timeout=DEADLINE))
    nonce = c.read()["nonce"]
    mine = "c" * 32
    proof = client_proof(read_cookie(node.cookie), nonce, mine)  # type: ignore[attr-defined]
    reply = c.request("auth", {"nonce": mine, "proof": proof})
    assert reply["ok"] or reply["error"]["code"] == "busy", reply
    return c


def test_one_peer_cannot_take_every_client_slot(tmp_path: Path) -> None:
    n = NodeProcess(
        tmp_path / "run",
        "fair",
        "--tcp",
        "127.0.0.1:0",
        "--cookie-file",
        str(tmp_path / "cookie"),
        "--max-clients",
        "4",
    )
    n.cookie = tmp_path / "cookie"  # type: ignore[attr-defined]
    held: list[RawClient] = []
    try:
        n.wait_ready()
        # TCP clients are one peer: they may hold 3 of the 4 slots (max_per_uid).
        for _ in range(3):
            c = _authed_tcp(n)
            held.append(c)
            assert c.request("reports", {"follow": True, "limit": 0})["ok"]
        extra = _authed_tcp(n)
        held.append(extra)
        frames = _frames_until_eof(extra)
        assert frames == [] or frames[0]["error"]["code"] == "busy"
        # ...and the owner on the Unix socket still gets in.
        assert n.cli("ps").returncode == 0
    finally:
        for c in held:
            c.close()
        n.stop()


def test_the_cli_waits_for_a_slot_instead_of_failing(tmp_path: Path) -> None:
    n = NodeProcess(tmp_path / "run", "queue", "--max-clients", "1")
    try:
        n.wait_ready()
        holder = RawClient.unix(n.entry["socket"])
        holder.read()
        assert holder.request("reports", {"follow": True, "limit": 0})["ok"]
        refused = holder.request("status")["result"]["refused"]
        done: list[Client] = []

        def ps() -> None:
            done.append(Client.unix(n.entry["socket"], "queue", timeout=DEADLINE))

        waiter = threading.Thread(target=ps)
        waiter.start()
        poll(
            lambda: holder.request("status")["result"]["refused"] > refused,
            what="the waiting client to be told busy",
        )
        holder.close()  # the slot frees: the waiting client gets it
        waiter.join(DEADLINE)
        assert done and done[0].hello["node"] == "queue"
        done[0].close()
    finally:
        n.stop()


def test_a_stalled_stream_costs_drops_told_at_the_end(tmp_path: Path) -> None:
    n = NodeProcess(tmp_path / "run", "stall", "--high-water", "4096")
    try:
        n.wait_ready()
        slow = RawClient.unix(n.entry["socket"])
        slow.read()
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        args = {"target": "app.echo", "flags": ["receive"], "max_events": 100000, "rate": 10000}
        reply = slow.request("attach", args)
        assert reply["ok"], reply
        stream = reply["result"]["stream"]
        n.command("flood 3000", deadline=30)  # the client reads nothing meanwhile
        assert n.cli("ps").returncode == 0  # ...and the node answers others
        slow.send("detach", {"stream": stream})
        events = 0
        while True:
            frame = slow.read()
            if frame.get("id") == stream and frame.get("stream") == "event":
                events += 1
            elif frame.get("id") == stream and frame.get("stream") == "end":
                end = frame["data"]
                break
        slow.close()
        assert end["reason"] == "detached"
        assert end["client_dropped"] > 0
        assert end["sent"] == events
        assert n.cli_json("status")["frames_dropped"] >= end["client_dropped"]
    finally:
        n.stop()


def test_a_pipelined_flood_is_answered_in_full(node: NodeProcess) -> None:
    frames = b"".join(
        encode_frame({"id": i, "op": "ps" if i % 2 else "nope", "args": {}}) for i in range(2000)
    )
    with RawClient.unix(node.entry["socket"]) as c:
        c.read()
        c.send_raw(frames)
        answers = {}
        while len(answers) < 2000:
            frame = c.read()
            answers[frame["id"]] = frame
    assert all(answers[i]["ok"] for i in range(1, 2000, 2))
    assert all(answers[i]["error"]["code"] == "unknown_op" for i in range(0, 2000, 2))


def test_requests_waiting_behind_max_inflight_are_cancelled_with_their_client(
    node: NodeProcess,
) -> None:
    before = _connections(node)["requests_cancelled"]
    c = RawClient.unix(node.entry["socket"])
    c.read()
    long = {"samples": 20, "interval": 10}
    c.send_raw(b"".join(encode_frame({"id": i, "op": "doctor", "args": long}) for i in range(6)))
    poll(
        lambda: _connections(node)["requests_running"] >= 5,  # 4 doctors (max_inflight) + status
        what="the doctors to run",
    )
    c.close()
    after = poll(
        lambda: (s := _connections(node))["requests_cancelled"] >= before + 4 and s,
        what="the doctors to be cancelled",
    )
    assert after["requests_running"] == 1


@st.composite
def _pre_auth(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "bytes", "auth"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "auth":
        args = draw(st.dictionaries(st.sampled_from(["nonce", "proof"]), _JSON, max_size=2))
        return encode_frame({"id": draw(_JSON), "op": "auth", "args": args})
    return encode_frame({"id": 1, "op": draw(st.sampled_from(_OPS)), "args": draw(_JSON)})


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=_pre_auth())
def test_fuzzed_frames_before_auth_are_refused_cleanly(node: NodeProcess, payload: bytes) -> None:
    with RawClient.tcp(node.entry["tcp"]) as c:
        c.read()
        c.send_raw(payload)
        c.sock.shutdown(socket.SHUT_WR)
        for frame in _frames_until_eof(c):
            assert frame["ok"] is False
            assert frame["error"]["code"] in (
                "unauthenticated",
                "bad_request",
                "bad_version",
                "frame_too_large",
                "timeout",
            ), frame
