"""The control operations run in the node's own process, through `ControlServer.dispatch`.

The same handlers answer over the socket (test_cli_*.py and test_control_*.py
drive them from another process); here a test reads what each one returns, and
what a stream pushes, from a connection that records its frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from runtime_support import idle

import suptrace
from suptrace import ChildSpec, Down, Supervisor
from suptrace.core.links import death_future
from suptrace.core.runtime import process_of
from suptrace.node.control import ControlServer
from suptrace.node.control.connection import Connection
from suptrace.node.control.protocol import PROTOCOL


class Recording(Connection):
    """A connection whose frames (answers and stream items) a test reads."""

    def __init__(self, server: ControlServer) -> None:
        super().__init__(server, "unix", "in-process")
        self.frames: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    def send(self, obj: dict[str, Any]) -> bool:
        self.frames.append(obj)
        self.arrived.set()
        return True

    def send_stream(self, obj: dict[str, Any]) -> bool:
        return self.send(obj)

    async def frame(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first frame ``match`` accepts (waiting for it)."""
        seen = 0
        while True:
            for frame in self.frames[seen:]:
                if match(frame):
                    return frame
            seen = len(self.frames)
            self.arrived.clear()
            await self.arrived.wait()


async def _ask(
    control: ControlServer, op: str, conn: Connection | None = None, **args: Any
) -> dict[str, Any]:
    reply = await control.dispatch({"v": PROTOCOL, "id": 1, "op": op, "args": args}, conn)
    assert reply["ok"], reply
    result: dict[str, Any] = reply["result"]
    return result


async def _start(fn: Any, name: str) -> suptrace.Pid:
    return suptrace.spawn_link(fn, name=name)


def _tree() -> list[ChildSpec]:
    return [
        ChildSpec(id="a", start=(_start, (idle, "t.a"))),
        ChildSpec(id="b", start=(_start, (idle, "t.b"))),
    ]


async def test_read_ops_describe_the_node() -> None:
    async with asyncio.timeout(10), suptrace.Node("ops", log_reports=False) as node:
        control = node.control
        assert control is not None
        sup = await Supervisor.start_link(_tree(), name="t.sup")
        names = {row["name"] for row in (await _ask(control, "ps"))["processes"]}
        assert {"t.sup", "t.a", "t.b"} <= names
        info = await _ask(control, "info", target="t.sup")
        assert info["pid"] == str(sup)
        tree = await _ask(control, "tree")
        (root,) = tree["roots"]
        assert root["pid"] == str(sup)
        status = await _ask(control, "status")
        assert status["node"] == "ops" and status["limits"] == control.limits()


async def test_write_ops_change_the_node_when_it_allows_them() -> None:
    async with (
        asyncio.timeout(10),
        suptrace.Node("writes", control={"allow_write": True}, log_reports=False) as node,
    ):
        control = node.control
        assert control is not None
        await Supervisor.start_link(_tree(), name="t.sup")
        first = suptrace.whereis("t.a")
        assert first is not None
        await _ask(control, "terminate_child", supervisor="t.sup", child="a")
        assert not suptrace.is_alive(first)
        restarted = await _ask(control, "restart_child", supervisor="t.sup", child="a")
        assert restarted["pid"] == str(suptrace.whereis("t.a")) != str(first)
        # exit: the process dies with the reason given (seen by a monitor).
        target = suptrace.spawn(idle, name="t.loose")
        loop = asyncio.get_running_loop()
        watching: asyncio.Future[None] = loop.create_future()
        died: asyncio.Future[Any] = loop.create_future()

        async def watch() -> None:
            ref = suptrace.monitor(target)
            watching.set_result(None)
            down = await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
            died.set_result(down.reason)

        suptrace.spawn(watch)
        await watching
        await _ask(control, "exit", target="t.loose", reason="told to")
        assert await died == "told to"


async def test_attach_streams_events_to_its_connection_until_detached() -> None:
    async with asyncio.timeout(10), suptrace.Node("attach", log_reports=False) as node:
        control = node.control
        assert control is not None
        conn = Recording(control)
        target = suptrace.spawn(idle, name="t.traced")
        started = await _ask(control, "attach", conn, target="t.traced", flags=["receive"])
        assert started["pid"] == str(target) and started["stream"] == 1
        suptrace.send(target, "hello")
        event = await conn.frame(lambda f: f.get("stream") == "event")
        assert event["id"] == 1 and "hello" in str(event["data"])
        await _ask(control, "detach", conn, stream=1)
        end = await conn.frame(lambda f: f.get("stream") == "end")
        assert end["data"]["reason"] == "detached" and end["data"]["sent"] >= 1
        assert conn.streams == {}


async def test_reports_follow_streams_new_reports() -> None:
    async with asyncio.timeout(10), suptrace.Node("follow", log_reports=False) as node:
        control = node.control
        assert control is not None
        conn = Recording(control)
        answer = await _ask(control, "reports", conn, follow=True, kinds=["crash"])
        assert answer["stream"] == 1

        async def crash() -> None:
            raise RuntimeError("crashed for the stream")

        suptrace.spawn(crash, name="t.crasher")
        report = await conn.frame(lambda f: f.get("stream") == "report")
        assert "crashed for the stream" in str(report["data"])
        conn.stop_streams("done")
        end = await conn.frame(lambda f: f.get("stream") == "end")
        assert end["data"]["reason"] == "done"


async def test_top_remembers_the_last_counts_of_its_connection() -> None:
    async with asyncio.timeout(10), suptrace.Node("top", log_reports=False) as node:
        control = node.control
        assert control is not None
        conn, other = Recording(control), Recording(control)
        pid = suptrace.spawn(idle, name="t.idle")

        def row(result: dict[str, Any]) -> dict[str, Any]:
            rows = [r for r in result["processes"] if r["name"] == "t.idle"]
            assert len(rows) == 1, result["processes"]
            return rows[0]

        assert conn.top_counts is None
        first = await _ask(control, "top", conn)
        assert row(first)["messages_per_s"] is None  # no earlier refresh: no rate yet
        assert conn.top_counts is not None
        for n in range(5):
            suptrace.send(pid, n)
        second = await _ask(control, "top", conn)
        assert row(second)["messages_per_s"] > 0  # the 5 messages since the first refresh
        # Another connection has its own counts: its first refresh shows no rate.
        assert row(await _ask(control, "top", other))["messages_per_s"] is None
        # A third refresh with nothing sent since the second shows no traffic.
        assert row(await _ask(control, "top", conn))["messages_per_s"] == 0


async def test_hello_names_the_node_and_its_operations() -> None:
    async with asyncio.timeout(10), suptrace.Node("hello", log_reports=False) as node:
        control = node.control
        assert control is not None
        hello = await _ask(control, "hello")
        assert (hello["node"], hello["protocol"], hello["version"]) == (
            "hello",
            PROTOCOL,
            suptrace.__version__,
        )
        assert {"ps", "top", "doctor", "terminate_child"} <= set(hello["ops"])
        assert hello["allow_write"] is False and hello["limits"] == control.limits()


async def test_tombstones_and_doctor_answer_in_process() -> None:
    async with asyncio.timeout(10), suptrace.Node("stones", log_reports=False) as node:
        control = node.control
        assert control is not None

        async def crash() -> None:
            raise RuntimeError("gone")

        pid = suptrace.spawn(crash, name="t.gone")
        proc = process_of(pid)
        assert proc is not None
        await death_future(proc)
        stones = (await _ask(control, "tombstones"))["tombstones"]
        assert [s["name"] for s in stones] == ["t.gone"]
        stone = await _ask(control, "tombstone", name="t.gone")
        assert "gone" in stone["story"]
        missing = await control.dispatch(
            {"v": PROTOCOL, "id": 2, "op": "tombstone", "args": {"name": "t.never"}}, None
        )
        assert not missing["ok"] and missing["error"]["code"] == "not_found"
        doctor = await _ask(control, "doctor", samples=1)
        assert [(f["rule"], f["subject"]) for f in doctor["findings"]] == [
            ("vanished_name", "t.gone")
        ]
        assert doctor["checked"]["tombstones"] == 1
