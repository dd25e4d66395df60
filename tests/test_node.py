"""Nodes: suptrace.run, `async with Node()` embedding, and the shutdown that
stops processes in reverse start order and kills those that ignore it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from runtime_support import echo, idle, in_node, never, ping

import suptrace
from suptrace import Caller, ExitMsg, GenServer, Pid, TraceEvent

# -- run ------------------------------------------------------------------------------------


def test_run_returns_main_result() -> None:
    async def main(a: int, b: int) -> tuple[int, Pid]:
        pid = suptrace.spawn(echo)
        assert await ping(pid)
        return a + b, suptrace.self_pid()

    total, pid = suptrace.run(main, 40, 2, log_reports=False)
    assert total == 42 and type(pid) is Pid


def test_run_reraises_main_exception() -> None:
    class Boom(Exception):
        pass

    async def main() -> None:
        raise Boom("main failed")

    with pytest.raises(Boom, match="main failed"):
        suptrace.run(main, log_reports=False)


def test_run_raises_exit_for_other_abnormal_reasons() -> None:
    async def main() -> None:
        raise suptrace.Exit(("stopped", 1))

    with pytest.raises(suptrace.Exit) as info:
        suptrace.run(main, log_reports=False)
    assert info.value.reason == ("stopped", 1)


def test_run_stops_what_main_left_running() -> None:
    exits: list[TraceEvent] = []
    pids: list[Pid] = []

    async def main() -> str:
        suptrace.add_event_handler(exits.append, kinds=["exit"])
        pids.append(suptrace.spawn(idle))
        pids.append(suptrace.spawn(echo, name="left.over"))
        return "done"

    assert suptrace.run(main, log_reports=False) == "done"
    reasons = {e.pid: e.data["reason"] for e in exits}
    assert reasons[pids[0]] == "shutdown" and reasons[pids[1]] == "shutdown"
    assert not any(suptrace.is_alive(p) for p in pids)


def test_run_with_a_node_name() -> None:
    async def main() -> str:
        from suptrace.core.runtime import current_runtime

        return current_runtime().name

    assert suptrace.run(main, node="named.node", log_reports=False) == "named.node"


# -- embedding ------------------------------------------------------------------------------


class Adder(GenServer):
    async def handle_call(self, request: Any, caller: Caller) -> Any:
        return sum(request)


async def test_async_with_node_embeds_in_the_running_loop() -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5), suptrace.Node("embedded", log_reports=False) as node:
        assert node.name == "embedded" and node.runtime.loop is loop
        pid = await Adder.start_link(name="adder")
        assert await suptrace.call("adder", [1, 2, 3]) == 6
        worker = suptrace.spawn(idle, name="worker")
        assert node.pid_of("worker") == worker
        assert suptrace.registered() == ["adder", "worker"]
    assert not suptrace.is_alive(pid) and not suptrace.is_alive(worker)
    assert node.runtime.closing
    with pytest.raises(suptrace.NodeError):
        suptrace.spawn(idle)


async def test_node_reraises_an_error_from_its_body_after_shutting_down() -> None:
    pids: list[Pid] = []
    with pytest.raises(KeyError):
        async with suptrace.Node("failing", log_reports=False):
            pids.append(suptrace.spawn(idle))
            raise KeyError("in the body")
    assert not suptrace.is_alive(pids[0])


async def test_node_runtime_outside_the_block_is_an_error() -> None:
    node = suptrace.Node("idle")
    with pytest.raises(suptrace.NodeError, match="is not running"):
        _ = node.runtime


# -- shutdown -------------------------------------------------------------------------------


class Recorder(GenServer):
    """Traps exits and records its terminate reason in a shared list."""

    async def init(self, tag: str, log: list[Any]) -> None:
        suptrace.trap_exit(True)
        self.tag = tag
        self.log = log

    async def terminate(self, reason: Any) -> None:
        self.log.append((self.tag, reason))


async def trap_and_record(tag: str, log: list[Any], ready: Pid | None = None) -> None:
    """A plain trapping process: records the first exit signal it gets, then exits with it."""
    suptrace.trap_exit(True)
    if ready is not None:
        suptrace.send(ready, ("ready", tag))
    msg = await suptrace.receive(lambda m: type(m) is ExitMsg)
    log.append((tag, msg.reason))
    raise suptrace.Exit(msg.reason)


async def test_shutdown_terminates_gen_servers_in_reverse_start_order() -> None:
    log: list[Any] = []

    async def main() -> None:
        for tag in ["first", "second", "third"]:
            await Recorder.start(tag, log)

    started = time.monotonic()
    await in_node(main, shutdown_timeout=2.0)
    assert log == [("third", "shutdown"), ("second", "shutdown"), ("first", "shutdown")]
    assert time.monotonic() - started < 2.0  # nobody waited out the shutdown timeout


async def test_shutdown_of_gen_servers_started_outside_any_process() -> None:
    log: list[Any] = []
    started = time.monotonic()
    async with suptrace.Node("plain", shutdown_timeout=2.0, log_reports=False):
        for tag in ["a", "b", "c"]:
            await Recorder.start_link(tag, log)
    assert log == [("c", "shutdown"), ("b", "shutdown"), ("a", "shutdown")]
    assert time.monotonic() - started < 2.0


async def test_shutdown_stops_plain_processes_in_reverse_start_order() -> None:
    log: list[Any] = []
    exits: list[TraceEvent] = []

    async def main() -> None:
        me = suptrace.self_pid()
        suptrace.add_event_handler(exits.append, kinds=["exit"])
        for tag in ["t1", "t2"]:
            suptrace.spawn(trap_and_record, tag, log, me)
            await suptrace.receive(lambda m, tag=tag: m == ("ready", tag), timeout=1)
        suptrace.spawn(idle, name="n3")  # does not trap: dies at once
        suptrace.spawn(trap_and_record, "t4", log, me)
        await suptrace.receive(lambda m: m == ("ready", "t4"), timeout=1)

    await in_node(main)
    assert log == [("t4", "shutdown"), ("t2", "shutdown"), ("t1", "shutdown")]
    assert exits[0].data["initial_call"].endswith(".main")  # main returned first
    assert len(exits) == 5
    names = [e.name for e in exits]
    assert names[1:] == [None, "n3", None, None]  # t4, n3, t2, t1
    assert [e.data["reason"] for e in exits[1:]] == ["shutdown"] * 4


async def test_shutdown_takes_a_subtree_down_with_its_top_process() -> None:
    exits: list[TraceEvent] = []

    async def subtree_top(parent: Pid) -> None:
        child = suptrace.spawn_link(idle)
        suptrace.send(parent, ("child", child))
        await never()

    async def main() -> list[Pid]:
        me = suptrace.self_pid()
        suptrace.add_event_handler(exits.append, kinds=["exit"])
        top = suptrace.spawn(subtree_top, me)
        _, child = await suptrace.receive(timeout=1)
        return [top, child]

    top, child = await in_node(main)
    reasons = {e.pid: e.data["reason"] for e in exits}
    assert reasons[top] == "shutdown" and reasons[child] == "shutdown"


async def test_shutdown_kills_a_process_that_ignores_it_after_the_timeout() -> None:
    exits: list[TraceEvent] = []
    log: list[Any] = []

    async def deaf() -> None:
        suptrace.trap_exit(True)
        while True:
            log.append(await suptrace.receive())  # ExitMsg(shutdown) is ignored

    async def main() -> Pid:
        suptrace.add_event_handler(exits.append, kinds=["exit"])
        pid = suptrace.spawn(deaf)
        return pid

    started = time.monotonic()
    pid = await in_node(main, shutdown_timeout=0.2)
    elapsed = time.monotonic() - started
    assert [e.data["reason"] for e in exits if e.pid == pid] == ["killed"]
    assert [type(m) for m in log] == [ExitMsg] and log[0].reason == "shutdown"
    assert 0.2 <= elapsed < 2.0


async def test_shutdown_kills_a_process_that_swallows_cancellation() -> None:
    exits: list[TraceEvent] = []
    caught: list[str] = []

    async def swallower() -> None:
        while True:
            try:
                await never()
            except asyncio.CancelledError:
                caught.append("cancel")
                if len(caught) > 3:
                    raise

    async def main() -> Pid:
        suptrace.add_event_handler(exits.append, kinds=["exit"])
        return suptrace.spawn(swallower)

    pid = await in_node(main, shutdown_timeout=0.1)
    assert [e.data["reason"] for e in exits if e.pid == pid] == ["killed"]
    assert len(caught) >= 2  # once for shutdown, again for the kill


async def test_shutdown_runs_terminate_of_a_server_whose_parent_already_died() -> None:
    log: list[Any] = []

    async def starter() -> None:
        await Recorder.start("orphan", log)  # unlinked: outlives its parent

    async def main() -> None:
        _pid, ref = suptrace.spawn_monitor(starter)
        await suptrace.receive(lambda m: type(m) is suptrace.Down and m.ref == ref, timeout=1)

    started = time.monotonic()
    await in_node(main, shutdown_timeout=2.0)
    assert log == [("orphan", "shutdown")]
    assert time.monotonic() - started < 2.0
