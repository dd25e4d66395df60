"""The control server's option table and its dispatch, in one process.

Every option is one field of `ControlOptions`; these tests hold the derived
parts to it: each bad value is refused naming its option, the defaults are
what ``limits()`` (``hello``, ``status``) reports, and a request dispatched in
process is answered with the very frame the socket sends.
"""

from __future__ import annotations

import asyncio
import math
import socket
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

import suptrace
from suptrace.node.control import ControlServer
from suptrace.node.control.handlers import OPS, WRITE_OPS
from suptrace.node.control.options import ControlOptions, Option
from suptrace.node.control.protocol import HEADER, PROTOCOL, decode_body, encode_frame

#: Values no option of a kind takes.
BAD: dict[str, list[Any]] = {
    "int": [0, -1, True, "16", 1.5, None],
    "number": [0, -0.5, math.nan, math.inf, True, "5", None],
    "bool": ["yes", 1, None],
    "text": [5, b"name"],
    "path": [5, ""],
    "address": ["nonsense", "host:port", (1, 2, 3), 3.5],
}


def _specs() -> list[tuple[str, Option, Any]]:
    return [(f.name, f.metadata["option"], f.default) for f in fields(ControlOptions)]


def test_every_option_has_a_kind_a_doc_and_a_place_in_the_server_docs() -> None:
    doc = ControlServer.__doc__ or ""
    for name, spec, _default in _specs():
        assert spec.kind in BAD, name
        assert spec.doc.strip(), name
        assert f"``{name}``" in doc, name


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        (name, bad)
        for name, spec, _default in _specs()
        for bad in BAD[spec.kind]
        if not (bad is None and spec.optional)
    ],
)
def test_a_bad_value_is_refused_naming_its_option(name: str, bad: Any) -> None:
    extra: dict[str, Any] = {}
    if name in ("certfile", "keyfile"):  # TLS options need each other and tcp
        extra = {"tcp": True, "certfile": "c.pem", "keyfile": "k.pem"}
    with pytest.raises(ValueError, match=rf"control option {name} ") as info:
        ControlServer(**{**extra, name: bad})
    assert repr(bad) in str(info.value)  # says what it got


def test_an_unknown_option_is_a_type_error_naming_it_and_the_closest_one() -> None:
    with pytest.raises(TypeError, match=r"'max_client' \(did you mean max_clients\?\)"):
        ControlServer(max_client=4)
    with pytest.raises(TypeError, match="unknown control option 'colour'; the options are: "):
        suptrace.Node("x", control={"colour": "blue"})


def test_tls_options_go_together_and_with_tcp() -> None:
    with pytest.raises(ValueError, match="certfile and keyfile go together"):
        ControlServer(tcp=True, keyfile="k.pem")
    with pytest.raises(ValueError, match="need tcp"):
        ControlServer(certfile="c.pem", keyfile="k.pem")
    opts = ControlServer(tcp="[::1]:7000", certfile="c.pem", keyfile="k.pem").options
    assert opts.tcp == ("::1", 7000) and opts.certfile == Path("c.pem")


def test_the_defaults_are_what_limits_reports() -> None:
    limits = ControlServer().limits()
    reported = {name: default for name, spec, default in _specs() if spec.reported}
    assert list(limits) == list(reported)  # every reported option, in the table's order
    for name, default in reported.items():
        if name == "max_per_uid":
            assert default is None and limits[name] == 12  # 3/4 of max_clients
        else:
            assert limits[name] == default and type(limits[name]) is type(default), name
    # What the README promises.
    assert (limits["max_clients"], limits["max_pending"], limits["max_unauthenticated"]) == (
        16,
        64,
        16,
    )
    assert (limits["auth_timeout"], limits["frame_timeout"], limits["idle_timeout"]) == (
        5.0,
        5.0,
        30.0,
    )
    assert limits["max_frame"] == 1 << 20 and limits["accept_rate"] == 500.0


def test_limits_report_each_option_as_given() -> None:
    for name, spec, default in _specs():
        if not spec.reported:
            continue
        value = 3 if default is None else default * 2
        limits = ControlServer(**{name: value}).limits()
        assert limits[name] == value, name
    assert ControlServer(max_clients=8).limits()["max_per_uid"] == 6
    # A hard limit below the high water mark is raised to it (nothing would be dropped first).
    assert ControlServer(high_water=100, hard_limit=10).options.hard_limit == 100


def test_numbers_are_kept_as_floats_and_paths_as_paths(tmp_path: Path) -> None:
    opts = ControlOptions(op_timeout=3, runtime_dir=str(tmp_path), tcp=7000)
    assert opts.op_timeout == 3.0 and isinstance(opts.op_timeout, float)
    assert opts.runtime_dir == tmp_path and opts.tcp == ("127.0.0.1", 7000)


def test_the_ops_table_names_the_write_ops() -> None:
    assert {"terminate_child", "restart_child", "exit"} == WRITE_OPS
    assert {name for name, op in OPS.items() if op.writes} == WRITE_OPS
    assert all(op.name == name for name, op in OPS.items())


# -- dispatch in process and over the socket ------------------------------------------------


def _over_socket(path: str, request: dict[str, Any]) -> dict[str, Any]:
    """One request over a fresh blocking connection (from a thread: the node keeps running)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)

        def read() -> dict[str, Any]:
            data = b""
            while len(data) < HEADER.size:
                chunk = s.recv(HEADER.size - len(data))
                assert chunk, "the node closed the connection"
                data += chunk
            (size,) = HEADER.unpack(data)
            body = b""
            while len(body) < size:
                chunk = s.recv(size - len(body))
                assert chunk, "the node closed the connection"
                body += chunk
            return decode_body(body)

        assert read()["type"] == "welcome"
        s.sendall(encode_frame(request))
        return read()


REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("unknown op", {"op": "launch", "args": {}}),
    ("bad args: wrong type", {"op": "info", "args": {"target": 5}}),
    ("bad args: missing", {"op": "info", "args": {}}),
    ("bad args: NaN", {"op": "ps", "args": {"limit": math.nan}}),
    ("bad args: a value out of its set", {"op": "top", "args": {"sort": "q"}}),
    ("a write on a read-only node", {"op": "exit", "args": {"target": "x", "reason": "y"}}),
    ("an unknown process", {"op": "info", "args": {"target": "nobody"}}),
    ("bad version", {"v": 99, "op": "ps", "args": {}}),
    ("args not an object", {"op": "ps", "args": [1]}),
    ("a read op", {"op": "hello", "args": {}}),
]


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "run"
    monkeypatch.setenv("SUPTRACE_RUNTIME_DIR", str(path))
    return path


async def test_dispatch_in_process_answers_with_the_frame_the_socket_sends(run_dir: Path) -> None:
    async with suptrace.Node("dispatch", log_reports=False) as node:
        control = node.control
        assert control is not None and control.path is not None
        for n, (what, request) in enumerate(REQUESTS):
            request = {"v": PROTOCOL, "id": n, **request}
            wire = await asyncio.to_thread(_over_socket, str(control.path), request)
            here = await control.dispatch(request)
            assert decode_body(encode_frame(here)[HEADER.size :]) == wire, what
            if what != "a read op":
                assert wire["ok"] is False and wire["id"] == n, what


async def test_dispatch_names_the_bad_argument_and_the_known_ops(run_dir: Path) -> None:
    async with suptrace.Node("dispatch-args", control={"allow_write": True}) as node:
        control = node.control
        assert control is not None
        unknown = await control.dispatch({"v": PROTOCOL, "id": 1, "op": "launch"})
        assert unknown["error"]["code"] == "unknown_op"
        assert ", ".join(sorted(OPS)) in unknown["error"]["message"]
        bad = await control.dispatch(
            {"v": PROTOCOL, "id": 2, "op": "exit", "args": {"target": "x", "reason": 7}}
        )
        assert bad["error"] == {
            "code": "bad_args",
            "message": "argument 'reason' must be a string, got int 7",
        }
        hello = await control.dispatch({"v": PROTOCOL, "id": 3, "op": "hello"})
        assert hello["ok"] and hello["result"]["limits"] == control.options.limits()
        assert hello["result"]["allow_write"] is True and hello["result"]["ops"] == sorted(OPS)
