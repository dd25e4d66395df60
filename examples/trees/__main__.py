"""Replay the post, printing what iex printed: ``python -m examples.trees``."""

from __future__ import annotations

import suptrace
from examples.trees import tree


async def session(say: tree.Say = print) -> None:
    say("# Simple tree, one_for_one")
    sup = await tree.simple(say)
    say(repr(await suptrace.which_children(sup)))
    say("iex> Process.exit(pid_a, :kill)")
    await tree.kill_and_wait(sup, "ProcessA")
    await suptrace.stop(sup, "shutdown")

    say("# Simple tree, one_for_all")
    sup = await tree.simple(say, "one_for_all")
    say("iex> Process.exit(pid_a, :kill)")
    await tree.kill_and_wait(sup, "ProcessA")
    await suptrace.stop(sup, "shutdown")

    say("# Simple tree with C, rest_for_one")
    sup = await tree.simple(say, "rest_for_one", "ABC")
    say("iex> Process.exit(pid_b, :kill)")
    await tree.kill_and_wait(sup, "ProcessB")
    say("iex> Process.exit(pid_a, :kill)")
    await tree.kill_and_wait(sup, "ProcessA")
    await suptrace.stop(sup, "shutdown")

    say("# Self-termination: kill A four times (3 restarts in 5 s tolerated)")
    sup = await tree.simple(say)
    ref = suptrace.monitor(sup)
    for _ in range(3):
        await tree.kill_and_wait(sup, "ProcessA")
    suptrace.exit(await tree.pid_of(sup, "ProcessA"), "kill")
    down = await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)
    say(f"** (EXIT) supervisor exited with reason: {down.reason}")

    say("# Complex tree")
    sup = await tree.complex_tree(say)
    say("iex> Process.exit(pid_b, :kill)")
    await tree.kill_and_wait(sup, "ProcessB")
    say("iex> Process.exit(pid_c, :kill)")
    await tree.kill_and_wait(sup, "ProcessC")
    say("iex> Process.exit(pid_e, :kill)  # four times")
    pid_c = await tree.pid_of(sup, "ProcessC")
    for _ in range(3):
        await tree.kill_and_wait(pid_c, "ProcessE")
    ref = suptrace.monitor(pid_c)
    suptrace.exit(await tree.pid_of(pid_c, "ProcessE"), "kill")
    await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)
    while (await tree.pid_of(sup, "ProcessC")) == pid_c:
        pass
    await suptrace.stop(sup, "shutdown")


if __name__ == "__main__":
    suptrace.run(session, log_reports=False)
