"""A task a process creates with plain asyncio is not that process (SPEC §2,
"Added in the second round"): no pid, no mailbox; it sends, casts and calls
like any plain task, including calls to the process that created it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from runtime_support import in_node

import suptrace
from suptrace import NodeError


class Server(suptrace.GenServer):
    """Answers calls; on "spawn_helper" its helper task calls the server itself."""

    async def init(self) -> None:
        self.helper: asyncio.Task[Any] | None = None
        self.casts: list[Any] = []

    async def handle_cast(self, msg: Any) -> None:
        self.casts.append(msg)

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        if request == "ping":
            return "pong"
        if request == "casts":
            return self.casts
        if request == "helper_calls_me":
            me = suptrace.self_pid()

            async def helper() -> Any:
                return await suptrace.call(me, "ping", timeout=2.0)

            self.helper = asyncio.create_task(helper(), name="helper")
            return "started"
        if request == "helper_result":
            assert self.helper is not None
            return await self.helper
        raise ValueError(request)


async def test_self_pid_in_a_created_task_names_the_process_and_suggests_spawn_link() -> None:
    async def main() -> str:
        me = suptrace.self_pid()

        async def helper() -> None:
            await asyncio.sleep(0)  # (an eager task factory names the task after its first step)
            suptrace.self_pid()

        with pytest.raises(NodeError) as err:
            await asyncio.create_task(helper(), name="my-helper")
        text = str(err.value)
        assert str(me) in text and "'my-helper'" in text and "spawn_link" in text
        assert suptrace.self_pid() == me  # the process itself is unharmed
        return text

    await in_node(main)


async def test_receive_in_a_created_task_never_takes_the_process_messages() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        suptrace.send(me, "for the process")

        async def helper() -> Any:
            return await suptrace.receive(timeout=0)

        with pytest.raises(NodeError, match="receive\\(\\) was called from task"):
            await asyncio.create_task(helper())
        # TaskGroup and gather make tasks too: same rule.
        with pytest.raises(ExceptionGroup) as group:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(helper())
        assert isinstance(group.value.exceptions[0], NodeError)
        results = await asyncio.gather(helper(), return_exceptions=True)
        assert isinstance(results[0], NodeError)
        assert await suptrace.receive(timeout=0) == "for the process"

    await in_node(main)


async def test_process_only_operations_refuse_a_created_task() -> None:
    async def main() -> None:
        async def helper() -> list[str]:
            refused = []
            for name, op in [
                ("trap_exit", lambda: suptrace.trap_exit(True)),
                ("monitor", lambda: suptrace.monitor("nobody")),
                ("spawn_monitor", lambda: suptrace.spawn_monitor(asyncio.sleep, 0)),
            ]:
                try:
                    op()
                except NodeError as e:
                    assert "a task is not a process" in str(e)
                    refused.append(name)
            return refused

        assert await asyncio.create_task(helper()) == ["trap_exit", "monitor", "spawn_monitor"]
        assert suptrace.process_info(suptrace.self_pid())["trap_exit"] is False  # type: ignore[index]

    await in_node(main)


async def test_a_created_task_calls_the_server_that_created_it() -> None:
    async def main() -> None:
        pid = await Server.start_link()
        assert await suptrace.call(pid, "helper_calls_me") == "started"
        # The call from the helper is served after this one: the server is free then.
        assert await suptrace.call(pid, "helper_result") == "pong"

    await in_node(main)


async def test_a_process_still_cannot_call_itself() -> None:
    async def main() -> None:
        with pytest.raises(suptrace.CallError) as err:
            await suptrace.call(suptrace.self_pid(), "x", timeout=1.0)
        assert err.value.reason == "calling_self"

    await in_node(main)


async def test_send_and_cast_from_a_created_task_reach_their_target() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        server = await Server.start_link()

        async def helper() -> Any:
            suptrace.send(me, "sent by helper")
            suptrace.cast(server, "cast by helper")
            return await suptrace.call(server, "ping")

        assert await asyncio.create_task(helper()) == "pong"
        assert await suptrace.receive(timeout=1.0) == "sent by helper"
        assert await suptrace.call(server, "casts") == ["cast by helper"]

    await in_node(main)


async def test_spawn_link_from_a_created_task_does_not_link_the_creator() -> None:
    async def main() -> None:
        async def crash() -> None:
            await suptrace.receive()
            raise RuntimeError("child crash")

        async def helper() -> suptrace.Pid:
            return suptrace.spawn_link(crash)  # a plain task: nobody to link to

        child = await asyncio.create_task(helper())
        ref = suptrace.monitor(child)
        suptrace.send(child, "go")
        down = await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)
        assert isinstance(down.reason, RuntimeError)
        assert suptrace.process_info(suptrace.self_pid())["links"] == []  # type: ignore[index]
        # Had the creator been linked, the crash would have killed it before here.

    await in_node(main)


async def test_connection_handler_of_a_server_started_in_a_genserver_calls_it() -> None:
    """The case a real service hits: asyncio.start_server inside a GenServer."""

    class Front(suptrace.GenServer):
        async def init(self) -> None:
            self.hits = 0
            self.server = await asyncio.start_server(self.client, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]

        async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            count = await suptrace.call(suptrace.whereis("front"), "hit")  # type: ignore[arg-type]
            writer.write(f"{count}\n".encode())
            await writer.drain()
            writer.close()

        async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
            if request == "port":
                return self.port
            self.hits += 1
            return self.hits

        async def terminate(self, reason: Any) -> None:
            self.server.close()

    async def main() -> None:
        await Front.start_link(name="front")
        port = await suptrace.call("front", "port")
        for expected in (b"1\n", b"2\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hello\n")
            assert await reader.readline() == expected
            writer.close()
            await writer.wait_closed()

    await in_node(main)


async def test_exit_from_a_created_task_signals_the_process_not_the_task() -> None:
    async def main() -> None:
        async def victim() -> None:
            suptrace.trap_exit(True)
            me = suptrace.self_pid()

            async def helper() -> None:
                suptrace.exit(me, "from helper")  # a signal, not a raise in the helper

            await asyncio.create_task(helper())
            msg = await suptrace.receive(timeout=2.0)
            suptrace.send(parent, msg)

        parent = suptrace.self_pid()
        suptrace.spawn(victim)
        msg = await suptrace.receive(timeout=2.0)
        assert isinstance(msg, suptrace.ExitMsg) and msg.reason == "from helper"

    await in_node(main)


# -- task factories ------------------------------------------------------------------------


async def _factory_story() -> tuple[list[str], Any]:
    """spawn returns before the child runs; a child that never awaits is still
    linked and monitored; identity holds in tasks the factory makes."""
    ran: list[str] = []

    async def no_await() -> str:
        ran.append("child")
        return "done"

    async def main() -> tuple[list[str], Any]:
        _pid, ref = suptrace.spawn_monitor(no_await)
        ran.append("after spawn")
        down = await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)

        async def helper() -> None:
            suptrace.self_pid()

        with pytest.raises(NodeError):
            await asyncio.create_task(helper())
        return ran, down.reason

    return await in_node(main)


async def test_processes_work_under_a_custom_task_factory() -> None:
    loop = asyncio.get_running_loop()
    made: list[Any] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kw)
        made.append(task)
        return task

    loop.set_task_factory(factory)
    try:
        assert await _factory_story() == (["after spawn", "child"], "normal")
    finally:
        loop.set_task_factory(None)
    assert made  # processes went through the application's factory


@pytest.mark.skipif(not hasattr(asyncio, "eager_task_factory"), reason="Python 3.12+")
async def test_processes_start_on_the_next_iteration_under_an_eager_task_factory() -> None:
    loop = asyncio.get_running_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    try:
        # Without care the child would run (and die) inside spawn_monitor.
        assert await _factory_story() == (["after spawn", "child"], "normal")

        async def plain() -> str:
            return "eager"

        task = asyncio.create_task(plain())
        assert task.done()  # plain tasks keep the application's eager start
    finally:
        loop.set_task_factory(None)
