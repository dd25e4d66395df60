"""A child between a failed restart and its retry (supervisor_SUITE
hanging_restart_loop, hanging_restart_loop_rest_for_one, count_restarting_children):
``"restarting"`` in which_children, not active in count_children, the admin errors,
and terminate_child cancelling the retry (otp-semantics §2.6).

Start attempts are held at a `Gate` so each admin request is queued while the
child is known to be restarting: no timing is involved.
"""

from __future__ import annotations

import pytest
from sup_support import ExitLog, Lab, ReportLog, calls_then, exit_and_wait, exit_from, in_node

import suptrace
from suptrace import AlreadyPresent, ChildInfo, ChildRestarting, Pid, Supervisor

FAIL = ("exit", "fail_start")


async def counts(sup: Pid | str) -> list[int]:
    got = await suptrace.count_children(sup)
    return [got["specs"], got["active"], got["supervisors"], got["workers"]]


async def test_hanging_restart_loop() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await Supervisor.start_link([], name="sup_test", intensity=8, period=10)
        child1 = lab.spec("child1", shutdown="brutal_kill")
        cpid1 = await suptrace.start_child("sup_test", child1)
        assert cpid1 is not None
        mark = log.mark()
        lab.mode["child1"] = "gate"
        suptrace.exit(cpid1, "error")
        (await lab.at_gate()).release(FAIL)  # the restart fails: a retry is due
        gate = await lab.at_gate()  # ...and the retry is under way
        modules = child1.module_names()
        results = await calls_then(
            lambda: gate.release(FAIL),
            suptrace.start_child("sup_test", child1),
            suptrace.restart_child("sup_test", "child1"),
            suptrace.delete_child("sup_test", "child1"),
            suptrace.which_children("sup_test"),
            counts("sup_test"),
            suptrace.terminate_child("sup_test", "child1"),
            suptrace.which_children("sup_test"),
        )
        assert isinstance(results[0], AlreadyPresent)
        assert isinstance(results[1], ChildRestarting)
        assert isinstance(results[2], ChildRestarting)
        assert results[3] == [ChildInfo("child1", "restarting", "worker", modules)]
        assert results[4] == [1, 0, 0, 1]
        assert results[5] is None  # terminate_child of a restarting child: ok
        assert results[6] == [ChildInfo("child1", None, "worker", modules)]
        assert exits.reason(cpid1) == "error"

        # the retry was cancelled: no third attempt
        lab.mode["child1"] = "ok"
        cpid2 = await suptrace.restart_child("sup_test", "child1")
        assert lab.attempts == ["child1"] * 4
        assert await suptrace.which_children("sup_test") == [
            ChildInfo("child1", cpid2, "worker", modules)
        ]
        assert await counts("sup_test") == [1, 1, 0, 1]
        assert log.since(mark) == [
            ("sup_test", "child_terminated", "child1", "error"),
            ("sup_test", "start_error", "child1", "fail_start"),
            ("sup_test", "start_error", "child1", "fail_start"),
            ("sup_test", "progress", "child1"),
        ]
        # the supervisor does not hang in a restart loop on its way down
        suptrace.exit(sup, "shutdown")
        assert await suptrace.receive(
            lambda m: isinstance(m, suptrace.ExitMsg) and m.pid == sup, timeout=2
        ) == suptrace.ExitMsg(sup, "shutdown")
        assert exits.reason(cpid2) == "killed"  # type: ignore[arg-type]
        assert suptrace.whereis("sup_test") is None
        assert len(log.reports) == mark + 4

    await in_node(main)


async def test_hanging_restart_loop_rest_for_one() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        specs = [lab.spec(c, shutdown="brutal_kill") for c in ("child1", "child2", "child3")]
        await Supervisor.start_link(
            [], name="sup_test", strategy="rest_for_one", intensity=8, period=10
        )
        for spec in specs:
            await suptrace.start_child("sup_test", spec)
        c1, c2, c3 = (lab.pid(c) for c in ("child1", "child2", "child3"))
        mark = log.mark()
        lab.mode["child2"] = "gate"
        suptrace.exit(c2, "error")
        (await lab.at_gate()).release(FAIL)
        gate = await lab.at_gate()
        mods = specs[0].module_names()
        results = await calls_then(
            lambda: gate.release(FAIL),
            suptrace.start_child("sup_test", specs[1]),
            suptrace.restart_child("sup_test", "child2"),
            suptrace.delete_child("sup_test", "child2"),
            suptrace.which_children("sup_test"),
            counts("sup_test"),
            suptrace.terminate_child("sup_test", "child2"),
            suptrace.which_children("sup_test"),
        )
        assert isinstance(results[0], AlreadyPresent)
        assert isinstance(results[1], ChildRestarting)
        assert isinstance(results[2], ChildRestarting)
        assert results[3] == [
            ChildInfo("child3", None, "worker", mods),
            ChildInfo("child2", "restarting", "worker", mods),
            ChildInfo("child1", c1, "worker", mods),
        ]
        assert results[4] == [3, 1, 0, 3]
        assert results[5] is None
        assert results[6] == [
            ChildInfo("child3", None, "worker", mods),
            ChildInfo("child2", None, "worker", mods),
            ChildInfo("child1", c1, "worker", mods),
        ]
        assert exits.reason(c3) == "killed"  # stopped by the rest_for_one restart

        lab.mode["child2"] = "ok"
        new2 = await suptrace.restart_child("sup_test", "child2")
        assert await suptrace.which_children("sup_test") == [
            ChildInfo("child3", None, "worker", mods),
            ChildInfo("child2", new2, "worker", mods),
            ChildInfo("child1", c1, "worker", mods),
        ]
        assert await counts("sup_test") == [3, 2, 0, 3]
        assert log.since(mark) == [
            ("sup_test", "child_terminated", "child2", "error"),
            ("sup_test", "start_error", "child2", "fail_start"),
            ("sup_test", "start_error", "child2", "fail_start"),
            ("sup_test", "progress", "child2"),
        ]

    await in_node(main)


async def test_retry_of_a_start_that_fails_without_awaiting_lets_requests_in() -> None:
    """A start function that fails at once must not keep the supervisor (and the
    whole loop) busy until the intensity runs out: the retry is a message to
    itself, and terminate_child gets in before it."""

    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await Supervisor.start_link([lab.spec("c")], name="sup", intensity=100, period=3600)
        mark = log.mark()
        lab.mode["c"] = FAIL
        suptrace.exit(lab.pid("c"), "boom")
        await log.wait_context("start_error")
        await suptrace.terminate_child("sup", "c")
        assert suptrace.is_alive(sup)
        assert log.since(mark) == [
            ("sup", "child_terminated", "c", "boom"),
            ("sup", "start_error", "c", "fail_start"),
        ]
        assert await suptrace.which_children("sup") == [
            ChildInfo("c", None, "worker", lab.spec("c").module_names())
        ]
        assert (await suptrace.describe("sup"))["restarts_in_window"] == 1

    await in_node(main)


async def test_each_retry_counts_against_the_intensity() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link([lab.spec("c")], name="sup", intensity=3, period=3600)
        mark = log.mark()
        lab.script["c"].extend(["gate", "gate"])
        await exit_and_wait(lab.pid("c"), "boom")
        (await lab.at_gate()).release(FAIL)
        gate = await lab.at_gate()
        [described] = await calls_then(lambda: gate.release("ok"), suptrace.describe("sup"))
        assert described["restarts_in_window"] == 2  # the exit and one retry
        await log.wait_progress("c", count=2)
        assert (await suptrace.describe("sup"))["restarts_in_window"] == 2
        assert log.since(mark) == [
            ("sup", "child_terminated", "c", "boom"),
            ("sup", "start_error", "c", "fail_start"),
            ("sup", "progress", "c"),
        ]

    await in_node(main)


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all"])
async def test_supervisor_shutdown_while_a_child_is_restarting(strategy: str) -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await Supervisor.start_link(
            [lab.spec("a"), lab.spec("b")], name="sup", strategy=strategy, intensity=5, period=3600
        )
        mark = log.mark()
        lab.script["b"].extend(["gate", "gate"])
        suptrace.exit(lab.pid("b"), "boom")
        (await lab.at_gate()).release(FAIL)
        gate = await lab.at_gate()  # the retry is under way...
        suptrace.exit(sup, "shutdown")  # ...when the parent asks the supervisor to stop
        gate.release(FAIL)
        assert await exit_from(sup) == "shutdown"
        assert exits.reason(lab.pid("a")) == "shutdown"
        assert lab.attempts.count("b") == 3  # start, restart, one retry: the next never ran
        if strategy == "one_for_one":
            assert lab.pids("a") == [lab.pid("a")]
            assert log.since(mark) == [
                ("sup", "child_terminated", "b", "boom"),
                ("sup", "start_error", "b", "fail_start"),
                ("sup", "start_error", "b", "fail_start"),
            ]
        else:  # each attempt restarts a first, then fails on b
            assert len(lab.pids("a")) == 3
            assert log.since(mark) == [
                ("sup", "child_terminated", "b", "boom"),
                ("sup", "progress", "a"),
                ("sup", "start_error", "b", "fail_start"),
                ("sup", "progress", "a"),
                ("sup", "start_error", "b", "fail_start"),
            ]

    await in_node(main)
