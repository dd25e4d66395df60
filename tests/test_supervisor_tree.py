"""Nested supervisors (supervisor_SUITE tree): a child supervisor restarts only
its own dead child, escalates when its restarts keep failing, and its parent
restarts the subtree from the original specs, without the dynamic children."""

from __future__ import annotations

from typing import Any

from sup_support import ExitLog, Lab, ReportLog, child_pids, exit_and_wait, exit_from, in_node

import suptrace
from suptrace import ChildSpec, Pid, Supervisor


def sub(name: str, children: list[ChildSpec], **flags: Any) -> ChildSpec:
    return ChildSpec(
        id=f"sup{name}",
        start=(Supervisor.start_link, (children,), {"name": name, **flags}),
        type="supervisor",
    )


async def counts(sup: Pid | str) -> list[int]:
    got = await suptrace.count_children(sup)
    return [got["specs"], got["active"], got["supervisors"], got["workers"]]


async def test_tree() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        top = await Supervisor.start_link(
            [], name="top", strategy="one_for_all", intensity=4, period=3600
        )
        flags = {"intensity": 4, "period": 3600}
        sup1 = await suptrace.start_child(
            top, sub("child1", [lab.spec("child1"), lab.spec("child2")], **flags)
        )
        sup2 = await suptrace.start_child(top, sub("child2", [], **flags))
        assert sup1 is not None and sup2 is not None
        assert sup1 == suptrace.whereis("child1") and sup2 == suptrace.whereis("child2")
        assert await counts(top) == [2, 2, 2, 0]
        assert child_pids(await suptrace.which_children(sup1)) == {
            "child2": lab.pid("child2"),
            "child1": lab.pid("child1"),
        }
        assert await counts(sup1) == [2, 2, 0, 2]
        assert await counts(sup2) == [0, 0, 0, 0]

        # dynamic children of the second child supervisor
        cpid3 = await suptrace.start_child(sup2, lab.spec("child3"))
        cpid4 = await suptrace.start_child(sup2, lab.spec("child4"))
        assert await counts(sup2) == [2, 2, 0, 2]

        # only the process that dies is restarted
        mark = log.mark()
        await exit_and_wait(cpid4, "abnormal")  # type: ignore[arg-type]
        await log.wait_progress("child4", count=2)
        assert child_pids(await suptrace.which_children(sup1)) == {
            "child2": lab.pid("child2"),
            "child1": lab.pid("child1"),
        }
        new4 = lab.pid("child4")
        assert new4 != cpid4
        assert child_pids(await suptrace.which_children(sup2)) == {"child4": new4, "child3": cpid3}
        assert log.since(mark) == [
            ("child2", "child_terminated", "child4", "abnormal"),
            ("child2", "progress", "child4"),
        ]

        # child3 dies and cannot be restarted: child2 escalates, and top restarts
        # the whole tree -- from the original specs, so without child3 and child4
        old_workers = [lab.pid("child1"), lab.pid("child2")]
        mark = log.mark()
        lab.mode["child3"] = ("exit", "error")
        suptrace.exit(cpid3, "go_bananas")  # type: ignore[arg-type]
        await log.wait_progress("supchild2", count=2)
        assert log.since(mark) == [
            ("child2", "child_terminated", "child3", "go_bananas"),
            # intensity 4, one restart (child4's) already in the window: the exit
            # and two retries are allowed, the third retry breaches
            *[("child2", "start_error", "child3", "error")] * 3,
            ("child2", "shutdown", "child3", "reached_max_restart_intensity"),
            ("top", "child_terminated", "supchild2", "shutdown"),
            ("child1", "progress", "child1"),
            ("child1", "progress", "child2"),
            ("top", "progress", "supchild1"),
            ("top", "progress", "supchild2"),
        ]
        assert exits.reason(sup2) == "shutdown"
        assert exits.reason(new4) == "shutdown"
        assert exits.reason(sup1) == "shutdown"
        assert exits.order(old_workers) == list(reversed(old_workers))
        new_sup1, new_sup2 = suptrace.whereis("child1"), suptrace.whereis("child2")
        assert new_sup1 not in (None, sup1) and new_sup2 not in (None, sup2)
        assert child_pids(await suptrace.which_children(top)) == {
            "supchild2": new_sup2,
            "supchild1": new_sup1,
        }
        assert await counts(top) == [2, 2, 2, 0]
        assert [c.id for c in await suptrace.which_children("child1")] == ["child2", "child1"]
        assert await counts("child1") == [2, 2, 0, 2]
        assert await suptrace.which_children("child2") == []
        assert await counts("child2") == [0, 0, 0, 0]

    await in_node(main)


async def test_escalation_reaches_the_root_through_permanent_supervisors() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        inner = sub("inner", [lab.spec("w")], intensity=0, period=3600)
        top = await Supervisor.start_link([inner], name="top", intensity=0, period=3600)
        inner_pid = suptrace.whereis("inner")
        mark = log.mark()
        suptrace.exit(lab.pid("w"), "boom")
        assert await exit_from(top) == "shutdown"
        assert log.since(mark) == [
            ("inner", "child_terminated", "w", "boom"),
            ("inner", "shutdown", "w", "reached_max_restart_intensity"),
            ("top", "child_terminated", "supinner", "shutdown"),
            ("top", "shutdown", "supinner", "reached_max_restart_intensity"),
        ]
        [*_, last] = log.supervisor_reports(mark)
        assert last.offender["pid"] == inner_pid and last.offender["child_type"] == "supervisor"

    await in_node(main)
