"""A server started unlinked (`start`, not `start_link`) is its own parent, as OTP's
``gen:start(..., nolink)`` makes it: a trapping one gets its starter's exit signals
(and those sent from outside any process) in ``handle_info`` and keeps serving; node
shutdown still stops it with ``terminate`` (otp-semantics "GenServer")."""

from __future__ import annotations

from typing import Any

from runtime_support import exit_from, in_node, never

import suptrace
from suptrace import ChildSpec, Down, ExitMsg, GenServer, Pid, Supervisor


class Trapper(GenServer):
    """Traps exits, keeps what handle_info got, records terminate."""

    async def init(self, log: list[Any]) -> None:
        suptrace.trap_exit(True)
        self.log = log
        self.infos: list[Any] = []

    async def handle_info(self, msg: Any) -> None:
        self.infos.append(msg)

    async def handle_call(self, request: Any, caller: Any) -> Any:
        return self.infos

    async def terminate(self, reason: Any) -> None:
        self.log.append(("terminate", reason))


async def test_exit_from_the_starter_is_info_for_a_trapping_unlinked_server() -> None:
    async def main() -> None:
        log: list[Any] = []
        me = suptrace.self_pid()
        pid = await Trapper.start(log)
        suptrace.exit(pid, "shutdown")  # from its starter: in OTP, not its parent
        assert await suptrace.call(pid, "infos", timeout=1) == [ExitMsg(me, "shutdown")]
        assert log == [] and suptrace.is_alive(pid)

    await in_node(main)


async def test_a_server_started_by_a_plain_task_takes_its_exit_signal_as_info() -> None:
    """A plain task is no process: its exit signal comes from outside any process, the
    name the node also stops processes in. The server must not take it for the node's."""
    log: list[Any] = []
    async with suptrace.Node("plain-starter", control=False, log_reports=False) as node:
        pid = await Trapper.start(log)  # from this task, not a process
        suptrace.exit(pid, "shutdown")
        [info] = await suptrace.call(pid, "infos", timeout=1)
        assert type(info) is ExitMsg and info.reason == "shutdown"
        assert info.pid == node.runtime.outside_pid
        assert log == [] and suptrace.is_alive(pid)
        linked = await Trapper.start_link(log)  # linked to nobody: its own parent too
        suptrace.exit(linked, "shutdown")
        assert len(await suptrace.call(linked, "infos", timeout=1)) == 1
    # The node still stops both, in its own name.
    assert log == [("terminate", "shutdown"), ("terminate", "shutdown")]


async def test_a_later_link_to_the_starter_brings_its_death_as_info() -> None:
    async def main() -> None:
        log: list[Any] = []
        me = suptrace.self_pid()

        async def starter() -> None:
            pid = await Trapper.start(log)
            suptrace.link(pid)
            suptrace.send(me, pid)
            await never()

        spid = suptrace.spawn(starter)
        pid = await suptrace.receive(lambda m: type(m) is Pid, timeout=1)
        ref = suptrace.monitor(spid)
        suptrace.exit(spid, "crashed")
        await suptrace.receive(lambda m: type(m) is Down and m.ref == ref, timeout=1)
        assert await suptrace.call(pid, "infos", timeout=1) == [ExitMsg(spid, "crashed")]
        assert log == []

    await in_node(main)


async def test_a_linked_server_still_stops_on_its_starters_exit() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log: list[Any] = []
        pid = await Trapper.start_link(log)
        suptrace.exit(pid, "shutdown")
        assert await exit_from(pid) == ExitMsg(pid, "shutdown")
        assert log == [("terminate", "shutdown")]

    await in_node(main)


async def test_node_shutdown_stops_an_unlinked_server_whose_starter_lives() -> None:
    log: list[Any] = []

    async def starter(me: Pid) -> None:
        suptrace.send(me, await Trapper.start(log))
        await never()  # still alive when the node shuts down

    async def main() -> None:
        suptrace.spawn(starter, suptrace.self_pid())
        await suptrace.receive(timeout=1)

    # A kill after shutdown_timeout would skip terminate: the test deadline is far off.
    await in_node(main, shutdown_timeout=3.0)
    assert log == [("terminate", "shutdown")]


async def _worker() -> Pid:
    return suptrace.spawn_link(never)


async def test_exit_from_the_starter_leaves_an_unlinked_supervisor_running() -> None:
    async def main() -> None:
        sup = await Supervisor.start([ChildSpec(id="w", start=(_worker, ()))])
        [child] = await suptrace.which_children(sup)
        suptrace.exit(sup, "shutdown")  # OTP: an unexpected EXIT, ignored by the supervisor
        # The supervisor answers after the signal: it is still there, with its child.
        assert await suptrace.which_children(sup) == [child]
        assert suptrace.is_alive(sup) and suptrace.is_alive(child.pid)

    await in_node(main)


async def test_node_shutdown_takes_an_unlinked_supervisor_down_as_a_top_level_tree() -> None:
    restarts: list[Any] = []
    exits: dict[Pid, Any] = {}
    pids: list[Pid] = []

    async def starter(me: Pid) -> None:
        sup = await Supervisor.start([ChildSpec(id="w", start=(_worker, ()))])
        [child] = await suptrace.which_children(sup)
        suptrace.send(me, (sup, child.pid))
        await never()

    async def main() -> None:
        suptrace.add_event_handler(lambda e: restarts.append(e), kinds=["restart"])
        suptrace.add_event_handler(
            lambda e: exits.__setitem__(e.pid, e.data["reason"]), kinds=["exit"]
        )
        suptrace.spawn(starter, suptrace.self_pid())
        pids.extend(await suptrace.receive(timeout=1))

    await in_node(main, shutdown_timeout=3.0)
    sup, child = pids
    # The supervisor stops its child itself (no restart), then exits as told.
    assert restarts == []
    assert exits[child] == "shutdown" and exits[sup] == "shutdown"
