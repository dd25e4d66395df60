"""Replay the post's shell session: ``python -m examples.dodos``.

Each line prints what the Erlang shell printed; suptrace's reports go to the
log as they happen. At the end the dodos are extinct -- and this time the log
says why.
"""

from __future__ import annotations

import suptrace
from examples.dodos import world


async def until_restarted(species: str, old: suptrace.Pid) -> None:
    """Wait until the supervisor registered as ``species`` is a new process."""
    while suptrace.whereis(species) in (None, old):
        ref = suptrace.monitor("world_sup")
        suptrace.demonitor(ref)  # a round trip through the scheduler
        await suptrace.call("world_sup", ("which_children",))


async def session() -> None:
    print("1> world:start().")
    await world.start()
    print("2> world:add_dodos(10).\nok")
    await world.add_dodos(10)
    print("3> world:add_cockroaches(7).\nok")
    await world.add_cockroaches(7)
    print("5> world:dodos().")
    print(await world.dodos())

    old = suptrace.whereis("cockroaches")
    print("10> world:kill_cockroaches().")
    ref = suptrace.monitor("cockroaches")
    print(await world.kill_cockroaches())
    await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)
    assert old is not None
    await until_restarted("cockroaches", old)
    print("11> world:cockroaches().")
    print(await world.cockroaches())
    print("12> world:add_cockroaches(3).\nok")
    await world.add_cockroaches(3)
    print("13> world:cockroaches().")
    print(await world.cockroaches())

    print("16> world:kill_dodos().")
    ref = suptrace.monitor("dodos")
    print(await world.kill_dodos())
    down = await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)
    print(f"(the dodos supervisor exited: {down.reason!r})")
    print("17> world:dodos().")
    try:
        print(await world.dodos())
    except suptrace.NoProc as e:
        print(f"** exception: {e}")
    print("18> world:add_dodos(1).")
    try:
        await world.add_dodos(1)
    except suptrace.NoProc as e:
        print(f"** exception: {e}")


if __name__ == "__main__":
    suptrace.run(session)
