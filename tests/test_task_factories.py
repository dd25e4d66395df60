"""A loop's task factory either works for processes or is refused at node start."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

import suptrace


@dataclass
class CountingFactory:
    """An unhashable (dataclass with eq) but working task factory."""

    made: int = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        self.made += 1
        return asyncio.Task(coro, loop=loop, **kwargs)


def test_an_unhashable_task_factory_runs_processes() -> None:
    factory = CountingFactory()

    async def main() -> Any:
        async def echo(parent: suptrace.Pid) -> None:
            suptrace.send(parent, ("echo", await suptrace.receive()))

        pid = suptrace.spawn(echo, suptrace.self_pid())
        suptrace.send(pid, "hi")
        return await suptrace.receive()

    async def outer() -> Any:
        asyncio.get_running_loop().set_task_factory(factory)
        async with suptrace.Node("factory", control=False, log_reports=False) as node:
            return await node.run_root(main)

    assert asyncio.run(outer()) == ("echo", "hi")
    assert factory.made >= 2  # the probe, then the processes


def test_a_failing_task_factory_is_refused_at_node_start() -> None:
    def broken(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no tasks today")

    async def outer() -> None:
        asyncio.get_running_loop().set_task_factory(broken)
        try:
            async with suptrace.Node("refused", control=False, log_reports=False):
                pass
        finally:
            asyncio.get_running_loop().set_task_factory(None)

    with pytest.raises(suptrace.NodeError, match=r"task factory .* failed .*no tasks today"):
        asyncio.run(outer())
