"""Restart strategies (supervisor_SUITE restart_one_for_one / one_for_all /
rest_for_one groups, order_of_children): the right children restarted in the
right order, the (MaxR+1)-th restart ending the supervisor, escalation of a
restart that always fails, and a sibling failing its restart (otp-semantics
§2.3, §2.5, §2.6)."""

from __future__ import annotations

from typing import Any

import pytest
from sup_support import ExitLog, Lab, ReportLog, child_pids, exit_and_wait, exit_from, in_node

import suptrace
from suptrace import Pid, Supervisor


async def start_sup(lab: Lab, ids: list[str], strategy: str, intensity: int, **kw: Any) -> Pid:
    pid: Pid = await Supervisor.start_link(
        [lab.spec(i) for i in ids],
        name="sup",
        strategy=strategy,
        intensity=intensity,
        period=3600,
        **kw,
    )
    return pid


# -- the right set, in the right order -------------------------------------------------------


async def test_one_for_one_restarts_only_the_dead_child() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        await start_sup(lab, ["c1", "c2", "c3"], "one_for_one", 2)
        p1, p2, p3 = (lab.pid(c) for c in ("c1", "c2", "c3"))
        mark = log.mark()
        await exit_and_wait(p2, "die")
        await log.wait_progress("c2", count=2)
        assert child_pids(await suptrace.which_children("sup")) == {
            "c3": p3,
            "c2": lab.pid("c2"),
            "c1": p1,
        }
        assert lab.pid("c2") != p2
        assert exits.order([p1, p3]) == []
        assert log.since(mark) == [
            ("sup", "child_terminated", "c2", "die"),
            ("sup", "progress", "c2"),
        ]

    await in_node(main)


async def test_one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        await start_sup(lab, ["c1", "c2", "c3"], "one_for_all", 2)
        p1, p2, p3 = (lab.pid(c) for c in ("c1", "c2", "c3"))
        mark = log.mark()
        await exit_and_wait(p2, "die")
        await log.wait_progress("c3", count=2)
        assert exits.order([p1, p2, p3]) == [p2, p3, p1]
        assert exits.reason(p1) == exits.reason(p3) == "shutdown"
        assert lab.started[3:] == [(c, lab.pid(c)) for c in ("c1", "c2", "c3")]
        children = child_pids(await suptrace.which_children("sup"))
        assert children == {c: lab.pid(c) for c in ("c3", "c2", "c1")}
        assert not {p1, p2, p3} & set(children.values())
        assert log.since(mark) == [
            ("sup", "child_terminated", "c2", "die"),
            ("sup", "progress", "c1"),
            ("sup", "progress", "c2"),
            ("sup", "progress", "c3"),
        ]
        # one incident counts once, however many children it restarts
        assert (await suptrace.describe("sup"))["restarts_in_window"] == 1

    await in_node(main)


async def test_one_for_all_also_starts_children_that_had_no_pid() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("c1"), lab.spec("c2", restart="transient")],
            name="sup",
            strategy="one_for_all",
            intensity=2,
            period=3600,
        )
        await suptrace.terminate_child("sup", "c2")
        mark = log.mark()
        await exit_and_wait(lab.pid("c1"), "die")
        await log.wait_progress("c2", count=2)
        assert len(lab.pids("c2")) == 2
        assert child_pids(await suptrace.which_children("sup")) == {
            "c2": lab.pid("c2"),
            "c1": lab.pid("c1"),
        }
        assert log.since(mark) == [
            ("sup", "child_terminated", "c1", "die"),
            ("sup", "progress", "c1"),
            ("sup", "progress", "c2"),
        ]

    await in_node(main)


async def test_rest_for_one_restarts_the_dead_child_and_those_after_it() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        await start_sup(lab, ["c1", "c2", "c3", "c4"], "rest_for_one", 2)
        p1, p2, p3, p4 = (lab.pid(c) for c in ("c1", "c2", "c3", "c4"))
        mark = log.mark()
        await exit_and_wait(p2, "die")
        await log.wait_progress("c4", count=2)
        assert exits.order([p1, p2, p3, p4]) == [p2, p4, p3]
        assert lab.started[4:] == [(c, lab.pid(c)) for c in ("c2", "c3", "c4")]
        assert child_pids(await suptrace.which_children("sup"))["c1"] == p1
        assert log.since(mark) == [
            ("sup", "child_terminated", "c2", "die"),
            ("sup", "progress", "c2"),
            ("sup", "progress", "c3"),
            ("sup", "progress", "c4"),
        ]

    await in_node(main)


async def test_order_of_children() -> None:
    """supervisor_SUITE order_of_children: ids that do not sort alphabetically."""

    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        ids = ["ch7", "ch3", "ch10", "ch2", "ch5"]
        sup = await start_sup(lab, ids, "rest_for_one", 2)
        which = await suptrace.which_children("sup")
        assert [c.id for c in which] == list(reversed(ids))
        by_pid = sorted(which, key=lambda c: c.pid)  # type: ignore[arg-type,return-value]
        assert [c.id for c in by_pid] == ids  # started in list order
        pids = [lab.pid(i) for i in ids]

        await exit_and_wait(pids[2], "kill")  # ch10
        await log.wait_progress("ch5", count=2)
        assert exits.order(pids[3:]) == [pids[4], pids[3]]
        which2 = sorted(await suptrace.which_children("sup"), key=lambda c: c.pid)  # type: ignore[arg-type,return-value]
        assert [c.id for c in which2] == ids
        new = [lab.pid(i) for i in ids]
        assert new[:2] == pids[:2] and not set(new[2:]) & set(pids)

        suptrace.exit(sup, "shutdown")
        assert await exit_from(sup) == "shutdown"
        assert exits.order(new) == list(reversed(new))

    await in_node(main)


# -- restart intensity -----------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
async def test_max_r_plus_one_restart_ends_the_supervisor_with_shutdown(strategy: str) -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await start_sup(lab, ["c1", "c2", "c3"], strategy, 2)
        mark = log.mark()
        crashed = []
        for n in (2, 3):  # two restarts: within intensity 2
            crashed.append(lab.pid("c2"))
            await exit_and_wait(lab.pid("c2"), ("crash", n))
            await log.wait_progress("c2", count=n)
        assert suptrace.is_alive(sup)
        last = lab.pid("c2")
        survivors = [lab.pid("c3"), lab.pid("c1")]
        suptrace.exit(last, ("crash", 4))
        assert await exit_from(sup) == "shutdown"
        assert exits.reason(sup) == "shutdown"
        # the offender is deleted; the others stop in reverse start order
        assert exits.order(survivors) == survivors
        assert all(exits.reason(p) == "shutdown" for p in survivors)
        restarted = {
            "one_for_one": ["c2"],
            "one_for_all": ["c1", "c2", "c3"],
            "rest_for_one": ["c2", "c3"],
        }[strategy]
        expected: list[Any] = []
        for n in (2, 3):
            expected.append(("sup", "child_terminated", "c2", ("crash", n)))
            expected.extend(("sup", "progress", c) for c in restarted)
        expected += [
            ("sup", "child_terminated", "c2", ("crash", 4)),
            ("sup", "shutdown", "c2", "reached_max_restart_intensity"),
        ]
        assert log.since(mark) == expected
        shutdown = log.supervisor_reports(mark)[-1]
        assert shutdown.offender["pid"] == last
        assert suptrace.whereis("sup") is None

    await in_node(main)


async def test_intensity_zero_gives_up_on_the_first_restart() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await start_sup(lab, ["c1"], "one_for_one", 0)
        mark = log.mark()
        suptrace.exit(lab.pid("c1"), "boom")
        assert await exit_from(sup) == "shutdown"
        assert log.since(mark) == [
            ("sup", "child_terminated", "c1", "boom"),
            ("sup", "shutdown", "c1", "reached_max_restart_intensity"),
        ]
        assert len(lab.started) == 1

    await in_node(main)


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
async def test_escalation_restart_that_always_fails(strategy: str) -> None:
    """*_escalation: intensity 4 and a child whose restart always fails: 1
    child_terminated, 4 start_error and 1 shutdown report, then the supervisor
    exits shutdown and takes its other child with it."""

    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await start_sup(lab, ["child1", "child2"], strategy, 4)
        c1, c2 = lab.pid("child1"), lab.pid("child2")
        mark = log.mark()
        lab.mode["child1"] = ("exit", "start_failed")
        suptrace.exit(c1, "abnormal")
        assert await exit_from(sup) == "shutdown"
        assert log.since(mark) == [
            ("sup", "child_terminated", "child1", "abnormal"),
            *[("sup", "start_error", "child1", "start_failed")] * 4,
            ("sup", "shutdown", "child1", "reached_max_restart_intensity"),
        ]
        assert lab.attempts.count("child1") == 1 + 4
        assert exits.reason(c2) == "shutdown"
        assert lab.pids("child2") == [c2]  # never started again: child1 fails first

    await in_node(main)


async def test_one_for_all_other_child_fails_restart() -> None:
    """The restarted child1 is stopped with shutdown when child2 fails to restart,
    and the retry restarts both (T24 one_for_all_other_child_fails_restart)."""

    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await start_sup(lab, ["child1", "child2"], "one_for_all", 3)
        c1, c2 = lab.pid("child1"), lab.pid("child2")
        mark = log.mark()
        lab.script["child2"].extend([("exit", "no_way"), ("exit", "no_way")])
        await exit_and_wait(c1, "die")
        await log.wait_progress("child2", count=2)
        c1_runs = lab.pids("child1")
        assert len(c1_runs) == 4 and len(lab.pids("child2")) == 2
        assert exits.order([c2, *c1_runs[1:3]]) == [c2, c1_runs[1], c1_runs[2]]
        assert all(exits.reason(p) == "shutdown" for p in (c2, c1_runs[1], c1_runs[2]))
        assert log.since(mark) == [
            ("sup", "child_terminated", "child1", "die"),
            ("sup", "progress", "child1"),
            ("sup", "start_error", "child2", "no_way"),
            ("sup", "progress", "child1"),
            ("sup", "start_error", "child2", "no_way"),
            ("sup", "progress", "child1"),
            ("sup", "progress", "child2"),
        ]
        assert child_pids(await suptrace.which_children("sup")) == {
            "child2": lab.pid("child2"),
            "child1": lab.pid("child1"),
        }
        # three restarts (the exit and two retries) within intensity 3
        assert suptrace.is_alive(sup)
        assert (await suptrace.describe("sup"))["restarts_in_window"] == 3

    await in_node(main)


async def test_rest_for_one_other_child_fails_restart() -> None:
    """When child2 fails to restart, the retry does not restart child1 again."""

    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await start_sup(lab, ["child1", "child2"], "rest_for_one", 3)
        mark = log.mark()
        lab.script["child2"].append(("exit", "no_way"))
        await exit_and_wait(lab.pid("child1"), "die")
        await log.wait_progress("child2", count=2)
        assert len(lab.pids("child1")) == 2
        assert log.since(mark) == [
            ("sup", "child_terminated", "child1", "die"),
            ("sup", "progress", "child1"),
            ("sup", "start_error", "child2", "no_way"),
            ("sup", "progress", "child2"),
        ]
        assert child_pids(await suptrace.which_children("sup")) == {
            "child2": lab.pid("child2"),
            "child1": lab.pids("child1")[1],
        }

    await in_node(main)


async def test_rest_for_one_failed_restart_leaves_later_children_down() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await start_sup(lab, ["c1", "c2", "c3"], "rest_for_one", 2)
        lab.script["c2"].append(("exit", "no_way"))
        mark = log.mark()
        await exit_and_wait(lab.pid("c2"), "die")
        # the retry restarts c2 and then c3
        await log.wait_progress("c3", count=2)
        assert log.since(mark) == [
            ("sup", "child_terminated", "c2", "die"),
            ("sup", "start_error", "c2", "no_way"),
            ("sup", "progress", "c2"),
            ("sup", "progress", "c3"),
        ]

    await in_node(main)
