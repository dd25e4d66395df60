"""Process A, B, C... as in the post: workers that print when they start and then idle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import suptrace
from suptrace import ChildSpec, Pid, Supervisor

#: Elixir's default restart tolerance, used by the post: 3 restarts in 5 seconds.
INTENSITY = 3
PERIOD = 5

Say = Callable[[str], None]


async def _idle() -> None:
    await asyncio.Event().wait()  # Process.sleep(1_000_000): live until killed


def worker(letter: str, say: Say) -> ChildSpec:
    async def start_link() -> Pid:
        say(f'"Starting process {letter}."')
        return suptrace.spawn_link(_idle)

    return ChildSpec(id=f"Process{letter}", start=(start_link, ()), modules=(f"Process{letter}",))


def supervisor(letter: str, children: list[ChildSpec], say: Say) -> ChildSpec:
    async def start_link() -> Pid:
        say(f'"Starting process {letter}."')
        pid: Pid = await Supervisor.start_link(
            children, strategy="one_for_one", intensity=INTENSITY, period=PERIOD
        )
        return pid

    return ChildSpec(
        id=f"Process{letter}",
        start=(start_link, ()),
        type="supervisor",
        modules=(f"Process{letter}",),
    )


async def simple(say: Say, strategy: str = "one_for_one", letters: str = "AB") -> Pid:
    """SimpleSupervisor.start(): one supervisor, a worker per letter."""
    pid: Pid = await Supervisor.start(
        [worker(letter, say) for letter in letters],
        strategy=strategy,
        intensity=INTENSITY,
        period=PERIOD,
    )
    return pid


async def complex_tree(say: Say) -> Pid:
    """ComplexSupervisor.start(): A, B, and C supervising D and E."""
    c_children = [worker("D", say), worker("E", say)]
    pid: Pid = await Supervisor.start(
        [worker("A", say), worker("B", say), supervisor("C", c_children, say)],
        strategy="one_for_one",
        intensity=INTENSITY,
        period=PERIOD,
    )
    return pid


async def pid_of(sup: Pid, child_id: str) -> Pid:
    for child in await suptrace.which_children(sup):
        if child.id == child_id and isinstance(child.pid, Pid):
            return child.pid
    raise LookupError(f"{child_id} is not running under {sup}")


async def kill_and_wait(sup: Pid, child_id: str) -> None:
    """``Process.exit(pid, :kill)``, then wait until the supervisor restarted it."""
    old = await pid_of(sup, child_id)
    ref = suptrace.monitor(old)
    suptrace.exit(old, "kill")
    await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)
    while True:  # the supervisor restarts it while handling the EXIT; ask it after that
        children = {c.id: c.pid for c in await suptrace.which_children(sup)}
        if children.get(child_id) not in (old, None, "restarting"):
            return
