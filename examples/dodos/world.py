"""A world with two species, each a supervisor of animal processes.

``world_sup`` (one_for_one) supervises two ``animals_sup`` instances (dynamic
supervisors allowing 5 restarts per second): ``dodos`` is a *transient* child,
``cockroaches`` a *permanent* one. Kill every dodo and the dodos supervisor
reaches its restart intensity, exits ``shutdown`` -- a normal exit for a
transient child -- and is never restarted. OTP says nothing; suptrace reports
``not_restarted`` and keeps a tombstone for the name ``dodos``.
"""

from __future__ import annotations

from typing import Any

import suptrace
from suptrace import ChildSpec, DynamicSupervisor, Pid, Supervisor

#: ``animals_sup``'s restart intensity: 5 restarts in 1 second, as in the post.
INTENSITY = 5
PERIOD = 1


async def animal(species: str) -> None:
    """An animal just lives until it is killed."""
    while True:
        await suptrace.receive()


async def start_animal(species: str) -> Pid:
    return suptrace.spawn_link(animal, species)


async def start_animals_sup(species: str) -> Pid:
    pid: Pid = await DynamicSupervisor.start_link(name=species, intensity=INTENSITY, period=PERIOD)
    return pid


async def start(name: str = "world_sup") -> Pid:
    """``world:start()``: the world supervisor and both species' supervisors."""
    children = [
        ChildSpec(
            id="dodos_sup",
            start=(start_animals_sup, ("dodos",)),
            restart="transient",
            type="supervisor",
        ),
        ChildSpec(
            id="cockroaches_sup",
            start=(start_animals_sup, ("cockroaches",)),
            restart="permanent",
            type="supervisor",
        ),
    ]
    pid: Pid = await Supervisor.start_link(children, strategy="one_for_one", name=name)
    return pid


async def add_animals(species: str, n: int) -> None:
    for _ in range(n):
        await suptrace.start_child(species, ChildSpec(id=species, start=(start_animal, (species,))))


async def all_animals(species: str) -> list[Any]:
    return [c.pid for c in await suptrace.which_children(species)]


async def kill_all(species: str) -> list[bool]:
    pids = await all_animals(species)
    for pid in pids:
        suptrace.exit(pid, "kill")
    return [True for _ in pids]


async def add_dodos(n: int) -> None:
    await add_animals("dodos", n)


async def add_cockroaches(n: int) -> None:
    await add_animals("cockroaches", n)


async def dodos() -> list[Any]:
    return await all_animals("dodos")


async def cockroaches() -> list[Any]:
    return await all_animals("cockroaches")


async def kill_dodos() -> list[bool]:
    return await kill_all("dodos")


async def kill_cockroaches() -> list[bool]:
    return await kill_all("cockroaches")
