"""Stopping children (supervisor_SUITE sup_stop group, sup_stop_race): shutdown
specs, reverse order, and the shutdown_error report for an unexpected exit
reason (otp-semantics §2.7)."""

from __future__ import annotations

from typing import Any

import pytest
from sup_support import ExitLog, Lab, ReportLog, child_pids, exit_from, in_node

import suptrace
from suptrace import ChildSpec, Exit, ExitMsg, Pid, Supervisor


async def test_sup_stop_infinity_children_exit_shutdown() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await Supervisor.start_link([], name="sup_test", intensity=2, period=3600)
        c1 = await suptrace.start_child(
            sup, lab.spec("child1", shutdown="infinity", type="supervisor")
        )
        c2 = await suptrace.start_child(sup, lab.spec("child2", shutdown="infinity"))
        assert c1 is not None and c2 is not None
        mark = log.mark()
        suptrace.exit(sup, "shutdown")
        assert await exit_from(sup) == "shutdown"
        assert exits.order([c1, c2]) == [c2, c1]
        assert exits.reason(c1) == exits.reason(c2) == "shutdown"
        assert log.since(mark) == []

    await in_node(main)


async def test_sup_stop_timeout_kills_a_child_that_does_not_stop_and_reports_it() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        lab.body["child2"] = "trap"  # ignores the shutdown signal
        sup = await Supervisor.start_link([], name="sup_test", intensity=2, period=3600)
        c1 = await suptrace.start_child(sup, lab.spec("child1", shutdown=1.0))
        c2 = await suptrace.start_child(sup, lab.spec("child2", shutdown=0.05))
        mark = log.mark()
        suptrace.exit(sup, "shutdown")
        assert await exit_from(sup) == "shutdown"
        assert exits.order([c1, c2]) == [c2, c1]  # type: ignore[list-item]
        assert exits.reason(c1) == "shutdown"  # type: ignore[arg-type]
        assert exits.reason(c2) == "killed"  # type: ignore[arg-type]
        assert log.since(mark) == [("sup_test", "shutdown_error", "child2", "killed")]
        [report] = log.supervisor_reports(mark)
        assert report.offender["pid"] == c2 and report.offender["shutdown"] == 0.05

    await in_node(main)


async def test_sup_stop_brutal_kill_children_exit_killed_without_a_report() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        lab.body["child2"] = "trap"  # trapping does not help against brutal_kill
        sup = await Supervisor.start_link([], name="sup_test", intensity=2, period=3600)
        c1 = await suptrace.start_child(sup, lab.spec("child1", shutdown=1.0))
        c2 = await suptrace.start_child(sup, lab.spec("child2", shutdown="brutal_kill"))
        mark = log.mark()
        suptrace.exit(sup, "shutdown")
        assert await exit_from(sup) == "shutdown"
        assert exits.reason(c1) == "shutdown"  # type: ignore[arg-type]
        assert exits.reason(c2) == "killed"  # type: ignore[arg-type]
        assert log.since(mark) == []

    await in_node(main)


async def test_stop_api_stops_the_supervisor_and_its_children() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await Supervisor.start_link(
            [lab.spec("a"), lab.spec("b")], name="sup", intensity=2, period=3600
        )
        mark = log.mark()
        await suptrace.stop("sup", "shutdown")
        assert exits.order([lab.pid("a"), lab.pid("b")]) == [lab.pid("b"), lab.pid("a")]
        assert exits.reason(sup) == "shutdown"
        assert log.since(mark) == []

    await in_node(main)


async def test_nested_tree_stops_depth_first_in_reverse_order() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sub = ChildSpec(
            id="sub",
            start=(Supervisor.start_link, ([lab.spec("w2"), lab.spec("w3")],), {"name": "sub"}),
            type="supervisor",
        )
        top = await Supervisor.start_link(
            [lab.spec("w1"), sub, lab.spec("w4")], name="top", intensity=2, period=3600
        )
        sub_pid = suptrace.whereis("sub")
        assert sub_pid is not None
        w1, w2, w3, w4 = (lab.pid(w) for w in ("w1", "w2", "w3", "w4"))
        mark = log.mark()
        suptrace.exit(top, "shutdown")
        assert await exit_from(top) == "shutdown"
        assert exits.order([w1, w2, w3, w4, sub_pid]) == [w4, w3, w2, sub_pid, w1]
        assert exits.reason(sub_pid) == "shutdown"
        assert log.since(mark) == []

    await in_node(main)


@pytest.mark.parametrize(
    ("restart", "reason", "reported"),
    [
        ("permanent", "normal", True),
        ("permanent", suptrace.Shutdown("x"), True),
        ("permanent", "other", True),
        ("transient", "normal", False),
        ("transient", suptrace.Shutdown("x"), False),
        ("transient", "other", True),
        ("temporary", "normal", False),
        ("temporary", "other", True),
    ],
    ids=str,
)
async def test_unexpected_exit_reason_on_terminate_child_is_a_shutdown_error(
    restart: str, reason: Any, reported: bool
) -> None:
    """SNEW: permanent children must exit ``shutdown``; transient/temporary may
    also exit ``normal`` or ``Shutdown(_)``. Anything else is a shutdown_error."""

    async def stubborn(sup: Pid) -> None:
        suptrace.trap_exit(True)
        await suptrace.receive(lambda m: isinstance(m, ExitMsg) and m.pid == sup)
        raise Exit(reason)

    async def start_stubborn() -> Pid:
        return suptrace.spawn_link(stubborn, suptrace.self_pid())

    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits = ReportLog(), ExitLog()
        spec = ChildSpec(id="stubborn", start=(start_stubborn, ()), restart=restart)  # type: ignore[arg-type]
        await Supervisor.start_link([spec], name="sup", intensity=2, period=3600)
        pid = child_pids(await suptrace.which_children("sup"))["stubborn"]
        mark = log.mark()
        await suptrace.terminate_child("sup", "stubborn")
        assert exits.reason(pid) == reason  # terminate_child returns once it is dead
        expected: list[Any] = []
        if reason not in ("normal", suptrace.Shutdown("x")):
            expected.append(("crash", pid, reason))
        if reported:
            expected.append(("sup", "shutdown_error", "stubborn", reason))
        assert log.since(mark) == expected

    await in_node(main)


async def test_sup_stop_race_children_exiting_on_their_own_keep_their_reasons() -> None:
    """While the supervisor stops its children, two of them exit by their own
    hand; it still exits shutdown and reports only the unexpected reason."""

    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()

        async def relay(sup: Pid) -> None:
            suptrace.trap_exit(True)
            msg = await suptrace.receive(lambda m: isinstance(m, ExitMsg) and m.pid == sup)
            # both peers exit by themselves before the supervisor gets to them
            suptrace.send(lab.pid("c1"), ("stop", "own_reason"))
            suptrace.send(lab.pid("c2"), ("stop", "normal"))
            raise Exit(msg.reason)

        async def start_relay() -> Pid:
            return suptrace.spawn_link(relay, suptrace.self_pid())

        sup = await Supervisor.start_link(
            [
                lab.spec("c1"),
                lab.spec("c2", restart="transient"),
                ChildSpec(id="relay", start=(start_relay, ())),
            ],
            name="sup",
            intensity=2,
            period=3600,
        )
        relay_pid = child_pids(await suptrace.which_children("sup"))["relay"]
        c1, c2 = lab.pid("c1"), lab.pid("c2")
        mark = log.mark()
        suptrace.exit(sup, "shutdown")
        assert await exit_from(sup) == "shutdown"
        assert exits.reason(relay_pid) == "shutdown"
        assert exits.reason(c1) == "own_reason"
        assert exits.reason(c2) == "normal"
        assert log.since(mark) == [
            ("crash", c1, "own_reason"),
            ("sup", "shutdown_error", "c1", "own_reason"),
        ]
        assert lab.pids("c1") == [c1] and lab.pids("c2") == [c2]  # nothing restarted

    await in_node(main)


async def test_terminate_child_with_timeout_kills_and_reports() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        lab.body["slow"] = "trap"
        await Supervisor.start_link(
            [lab.spec("slow", shutdown=0.05)], name="sup", intensity=2, period=3600
        )
        pid = lab.pid("slow")
        mark = log.mark()
        await suptrace.terminate_child("sup", "slow")
        assert exits.reason(pid) == "killed"
        assert log.since(mark) == [("sup", "shutdown_error", "slow", "killed")]
        assert child_pids(await suptrace.which_children("sup")) == {"slow": None}

    await in_node(main)
