"""A pid is a value: one parsed from its text or unpickled names the same live process
as the original (is_alive, send, monitor, link, unlink, exit, process_info, call, cast,
send_after); a pid of another node or of a dead process behaves as a dead pid, as in OTP.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest
from runtime_support import echo, idle, in_node, ping, wait_dead
from trace_support import EventLog

import suptrace
from suptrace import Down, ExitMsg, Pid


def parsed(pid: Pid) -> Pid:
    return Pid.parse(str(pid))


def unpickled(pid: Pid) -> Pid:
    return pickle.loads(pickle.dumps(pid))


COPIES = pytest.mark.parametrize("copy", [parsed, unpickled], ids=["parsed", "unpickled"])


class Adder(suptrace.GenServer):
    async def init(self) -> None:
        self.total = 0

    async def handle_call(self, request: int, caller: object) -> int:
        self.total += request
        return self.total

    async def handle_cast(self, msg: int) -> None:
        self.total += msg


@COPIES
async def test_a_copy_of_a_live_pid_is_alive_and_gets_messages(copy: Callable[[Pid], Pid]) -> None:
    async def main() -> None:
        pid = suptrace.spawn(echo)
        other = copy(pid)
        assert other == pid and other is not pid
        assert suptrace.is_alive(other)
        assert await ping(other)  # send to the copy reaches the process
        suptrace.send_after(0, other, (suptrace.self_pid(), "ping"))
        assert await suptrace.receive(lambda m: m == ("pong", pid), timeout=1)
        info = suptrace.process_info(other)
        assert info is not None and info["pid"] == pid

    await in_node(main)


@COPIES
async def test_monitor_and_exit_through_a_copy(copy: Callable[[Pid], Pid]) -> None:
    async def main() -> None:
        pid = suptrace.spawn(idle)
        ref = suptrace.monitor(copy(pid))
        suptrace.exit(copy(pid), "bye")
        down = await suptrace.receive(lambda m: type(m) is Down and m.ref == ref, timeout=1)
        assert down.reason == "bye"  # a real monitor: the real reason, not noproc
        assert not suptrace.is_alive(copy(pid))
        assert suptrace.process_info(copy(pid)) is None

    await in_node(main)


@COPIES
async def test_link_and_unlink_through_a_copy(copy: Callable[[Pid], Pid]) -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        pid = suptrace.spawn(idle)
        suptrace.link(copy(pid))
        info = suptrace.process_info(pid)
        assert info is not None and suptrace.self_pid() in info["links"]
        suptrace.unlink(copy(pid))
        info = suptrace.process_info(pid)
        assert info is not None and suptrace.self_pid() not in info["links"]  # both sides forget
        suptrace.link(copy(pid))
        suptrace.exit(pid, "gone")
        msg = await suptrace.receive(lambda m: type(m) is ExitMsg, timeout=1)
        assert msg == ExitMsg(pid, "gone")

    await in_node(main)


@COPIES
async def test_call_and_cast_through_a_copy(copy: Callable[[Pid], Pid]) -> None:
    async def main() -> None:
        pid = await Adder.start_link()
        suptrace.cast(copy(pid), 2)
        assert await suptrace.call(copy(pid), 3, timeout=1) == 5

    await in_node(main)


@COPIES
async def test_a_copy_of_a_dead_pid_is_dead(copy: Callable[[Pid], Pid]) -> None:
    async def main() -> None:
        pid = suptrace.spawn(idle)
        suptrace.exit(pid, "kill")
        await wait_dead(pid)
        dead = copy(pid)
        assert not suptrace.is_alive(dead)
        suptrace.send(dead, "lost")  # dropped, as to the original
        ref = suptrace.monitor(dead)
        assert await suptrace.receive(timeout=1) == Down(ref, dead, "noproc")
        with pytest.raises(suptrace.NoProc):
            suptrace.link(dead)
        with pytest.raises(suptrace.NoProc):
            await suptrace.call(dead, 1, timeout=1)

    await in_node(main)


async def test_a_pid_of_another_node_names_no_local_process() -> None:
    async def first() -> bytes:
        return pickle.dumps(suptrace.spawn(idle))

    data = await in_node(first)

    async def second() -> None:
        local = suptrace.spawn(idle)
        while local.number < pickle.loads(data).number:  # the same number lives here too
            local = suptrace.spawn(idle)
        foreign = pickle.loads(data)
        assert foreign == local  # equal as values...
        assert suptrace.is_alive(local) and not suptrace.is_alive(foreign)  # ...not the same process
        assert suptrace.process_info(foreign) is None
        ref = suptrace.monitor(foreign)
        assert await suptrace.receive(timeout=1) == Down(ref, foreign, "noproc")
        remote_text = Pid.parse(str(local).replace("<0.", "<1.", 1))  # Erlang's remote form
        assert not suptrace.is_alive(remote_text)
        # A pid pickled here and unpickled here again is still this node's.
        assert suptrace.is_alive(pickle.loads(pickle.dumps(pickle.loads(pickle.dumps(local)))))

    await in_node(second)


async def test_a_pid_outliving_its_node_names_no_process_of_a_later_one() -> None:
    """Numbers start again in each node: a pid kept after its node ended (the object
    itself, or pickled outside any node) must not reach the later node's process."""

    async def first() -> Pid:
        pid = suptrace.spawn(idle)
        suptrace.exit(pid, "kill")
        await wait_dead(pid)
        return pid

    old = await in_node(first)
    kept = [old, pickle.loads(pickle.dumps(old))]  # the second pickled between the nodes

    async def second() -> None:
        local = suptrace.spawn(idle)
        while local.number < old.number:  # the same number lives here now
            local = suptrace.spawn(idle)
        assert local == old
        for pid in kept:
            assert not suptrace.is_alive(pid)
            assert suptrace.process_info(pid) is None
            suptrace.send(pid, "for the old process")  # dropped
        proc = local._proc
        assert proc is not None and not proc.mailbox

    await in_node(second)


@COPIES
async def test_trace_through_a_copy(copy: Callable[[Pid], Pid]) -> None:
    received = EventLog()

    async def main() -> None:
        pid = suptrace.spawn(echo)
        tracer = suptrace.trace(copy(pid), ["receive"], handler=received)
        assert await ping(pid)
        event = await received.wait_for("receive")
        assert event.pid == pid and event.data["msg"][1] == "ping"
        tracer.stop()

    await in_node(main)


@COPIES
async def test_an_event_about_a_copy_names_the_process(copy: Callable[[Pid], Pid]) -> None:
    """An unlink made through a copy of the pid reads as one made through the pid: the
    formatted event names the registered process either way."""
    events: list[suptrace.TraceEvent] = []

    async def main() -> list[str]:
        suptrace.add_event_handler(events.append, kinds=["unlink"])
        pid = suptrace.spawn(idle)
        suptrace.register("worker", pid)
        suptrace.link(pid)
        suptrace.unlink(pid)
        suptrace.link(pid)
        suptrace.unlink(copy(pid))
        return [suptrace.format_event(e) for e in events]

    original, through_copy = await in_node(main)
    assert original.endswith(" worker") and through_copy.endswith(" worker")
    assert original.split(")", 1)[1] == through_copy.split(")", 1)[1]
