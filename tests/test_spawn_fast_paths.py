"""What the short paths of spawn and death keep: a `Down` from a death is the
frozen `Down` users build, a local pid hashes like its parsed and unpickled
copies, siblings share their ancestors while names change under them, a process
gets its arguments (or none), and spawning works from a plain task and from a
loop callback, where no process or no task runs."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
from typing import Any

import pytest
from runtime_support import in_node, never

import suptrace
from suptrace import Down, Pid
from suptrace.core.runtime import current_runtime


async def test_a_down_from_a_death_is_a_frozen_down() -> None:
    async def main() -> None:
        async def work() -> None:
            return None

        pid, ref = suptrace.spawn_monitor(work)
        down = await suptrace.receive()
        assert type(down) is Down
        assert down == Down(ref, pid, "normal") and hash(down) == hash(Down(ref, pid, "normal"))
        assert repr(down) == repr(Down(ref, pid, "normal"))
        with pytest.raises(dataclasses.FrozenInstanceError):
            down.reason = "changed"  # type: ignore[misc]
        assert down.reason == "normal"
        assert dataclasses.replace(down, reason="other").reason == "other"
        match down:
            case Down(ref=r, pid=p, reason="normal"):
                assert (r, p) == (ref, pid)
            case _:
                pytest.fail("a Down from a death does not match the Down pattern")

    await in_node(main)


@pytest.mark.parametrize("watched", [False, True])
async def test_a_down_from_a_death_leaves_what_a_delivery_leaves(watched: bool) -> None:
    """A death's `Down` reaches a waiting watcher as any delivery does, traced or
    not: the watcher wakes, counts it and records it, and a hook on ``receive``
    sees it."""
    seen: list[Any] = []

    async def main() -> None:
        me = current_runtime().process(suptrace.self_pid())
        assert me is not None
        if watched:
            suptrace.add_event_handler(seen.append, kinds=["receive"])

        async def work() -> None:
            return None

        suptrace.send(suptrace.self_pid(), "first")  # the mailbox and recorder exist now
        assert await suptrace.receive() == "first"
        before = me.messages_in
        pid, ref = suptrace.spawn_monitor(work)
        down = await suptrace.receive()  # waiting when the Down comes
        assert down == Down(ref, pid, "normal")
        assert me.messages_in == before + 1
        assert me.recorder is not None
        last = me.recorder[-1]
        assert last[1:] == ("receive", pid, down)
        assert me.waiter is None and me.mailbox is not None and not me.mailbox

    await in_node(main)
    downs = [e for e in seen if e.kind == "receive" and "Down" in str(e.data.get("msg"))]
    assert len(downs) == (1 if watched else 0)


async def test_a_local_pid_hashes_like_its_parsed_and_unpickled_copies() -> None:
    async def main() -> None:
        pid = suptrace.spawn(never)
        parsed = Pid.parse(str(pid))
        unpickled = pickle.loads(pickle.dumps(pid))
        assert parsed == pid == unpickled
        assert hash(parsed) == hash(pid) == hash(unpickled)
        table = {pid: "live"}
        assert table[parsed] == table[unpickled] == "live"
        assert suptrace.is_alive(parsed) and suptrace.is_alive(unpickled)
        # Another serial is another pid, in a table too.
        other = Pid(pid.number, 1)
        assert other != pid and other not in table and Pid.parse(str(other)) == other
        assert hash(Pid.parse(str(other))) == hash(other)
        rt = current_runtime()
        assert rt.process(parsed) is rt.process(unpickled) is rt.procs[pid.number]
        assert rt.process(other) is None  # no process of this node has another serial
        assert rt.process(Pid.parse(f"<1.{pid.number}.0>")) is None  # another node's
        suptrace.exit(pid, "kill")

    await in_node(main)


async def test_siblings_get_their_parents_name_as_it_is_when_they_are_spawned() -> None:
    async def main() -> None:
        me = suptrace.self_pid()

        async def report(tag: str) -> None:
            info = suptrace.process_info(suptrace.self_pid())
            assert info is not None
            suptrace.send(me, (tag, info["ancestors"]))

        async def parent() -> None:
            suptrace.spawn(report, "first")
            suptrace.spawn(report, "second")
            await suptrace.receive()  # told to go on
            suptrace.register("the.parent", suptrace.self_pid())
            suptrace.spawn(report, "named")
            await suptrace.receive()
            suptrace.unregister("the.parent")
            suptrace.spawn(report, "unnamed again")
            await never()

        p = suptrace.spawn(parent)
        got = dict([await suptrace.receive(timeout=1), await suptrace.receive(timeout=1)])
        assert got == {"first": [p, me], "second": [p, me]}
        suptrace.send(p, "go")
        assert await suptrace.receive(timeout=1) == ("named", ["the.parent", me])
        suptrace.send(p, "go")
        assert await suptrace.receive(timeout=1) == ("unnamed again", [p, me])
        suptrace.exit(p, "kill")

    await in_node(main)


async def test_a_process_gets_its_arguments_or_none() -> None:
    async def main() -> None:
        me = suptrace.self_pid()

        async def bare() -> str:
            suptrace.send(me, "bare")
            return "done"

        async def with_args(a: Any, b: Any) -> None:
            suptrace.send(me, (a, b))

        suptrace.spawn(bare)
        assert await suptrace.receive(timeout=1) == "bare"
        suptrace.spawn(with_args, 1, (2,))
        assert await suptrace.receive(timeout=1) == (1, (2,))
        pid, ref = suptrace.spawn_monitor(with_args, "only one")  # a TypeError: its reason
        down = await suptrace.receive(lambda m: isinstance(m, Down), timeout=1)
        assert (down.ref, down.pid) == (ref, pid) and isinstance(down.reason, TypeError)

    await in_node(main)


async def test_spawning_from_a_plain_task_and_from_a_loop_callback() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        loop = asyncio.get_running_loop()

        async def hello(where: str) -> None:
            suptrace.send(me, where)

        async def plain_task() -> Pid:
            return suptrace.spawn(hello, "from a task")

        from_task = await asyncio.create_task(plain_task())
        assert await suptrace.receive(timeout=1) == "from a task"
        spawned: asyncio.Future[Pid] = loop.create_future()
        loop.call_soon(lambda: spawned.set_result(suptrace.spawn(hello, "from a callback")))
        from_callback = await spawned
        assert await suptrace.receive(timeout=1) == "from a callback"
        assert from_task != from_callback
        info = current_runtime()
        assert from_task not in info.procs and from_callback not in info.procs  # both done

    await in_node(main)


async def test_linking_again_after_spawn_link_adds_nothing() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        suptrace.trap_exit(True)

        async def child() -> None:
            suptrace.link(me)  # linked already, from this side
            suptrace.send(me, "linked")
            await suptrace.receive()

        pid = suptrace.spawn_link(child)
        suptrace.link(pid)  # and from the parent's side
        assert await suptrace.receive(timeout=1) == "linked"
        mine, its = suptrace.process_info(me), suptrace.process_info(pid)
        assert mine is not None and its is not None
        assert (mine["links"], its["links"]) == ([pid], [me])
        suptrace.exit(pid, "kill")
        assert await suptrace.receive(timeout=1) == suptrace.ExitMsg(pid, "killed")
        with pytest.raises(TimeoutError):
            await suptrace.receive(timeout=0)  # exactly one ExitMsg

    await in_node(main)
