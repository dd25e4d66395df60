"""What a supervisor does when a child exits (supervisor_SUITE normal/shutdown/
abnormal termination, temporary_bystander, child_unlink): the restart-type x
exit-reason table of otp-semantics §2.4, with the exact reports of §5."""

from __future__ import annotations

from typing import Any

import pytest
from sup_support import (
    ExitLog,
    Lab,
    ReportLog,
    child_pids,
    exit_and_wait,
    in_node,
    stop_child_itself,
)

import suptrace
from suptrace import Shutdown, Supervisor

NORMAL_LIKE = ["normal", "shutdown", Shutdown("app_stop")]


async def _exit_by_itself(restart: str, reason: Any) -> None:
    suptrace.trap_exit(True)
    log, lab = ReportLog(), Lab()
    await Supervisor.start_link(
        [lab.spec("c", restart=restart), lab.spec("other")], name="sup", intensity=2, period=3600
    )
    old, other = lab.pid("c"), lab.pid("other")
    mark = log.mark()
    await stop_child_itself(old, reason)
    # The EXIT reached the supervisor before this call: it is handled first.
    children = child_pids(await suptrace.which_children("sup"))
    assert children["other"] == other
    restarted = restart == "permanent" or (restart == "transient" and reason not in NORMAL_LIKE)
    abnormal = reason not in NORMAL_LIKE
    expected: list[Any] = []
    if abnormal:
        expected.append(("crash", old, reason))  # it crashed by its own hand
    if restarted or abnormal:
        expected.append(("sup", "child_terminated", "c", reason))
    if restarted:
        expected.append(("sup", "progress", "c"))
    assert log.since(mark) == expected
    if restarted:
        assert children["c"] == lab.pid("c") != old
    elif restart == "transient":
        assert children["c"] is None  # the spec stays, without a pid
    else:
        assert "c" not in children  # temporary: the spec is gone
    info = await suptrace.describe("sup")
    assert info["restarts_in_window"] == (1 if restarted else 0)  # only restarts count


@pytest.mark.parametrize("reason", [*NORMAL_LIKE, "abnormal"], ids=repr)
async def test_permanent_child_is_always_reported_and_restarted(reason: Any) -> None:
    await in_node(_exit_by_itself, "permanent", reason)


@pytest.mark.parametrize("reason", [*NORMAL_LIKE, "abnormal"], ids=repr)
async def test_transient_child_is_restarted_only_after_an_abnormal_exit(reason: Any) -> None:
    await in_node(_exit_by_itself, "transient", reason)


@pytest.mark.parametrize("reason", [*NORMAL_LIKE, "abnormal"], ids=repr)
async def test_temporary_child_is_never_restarted_and_reported_only_if_abnormal(
    reason: Any,
) -> None:
    await in_node(_exit_by_itself, "temporary", reason)


@pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
async def test_killed_child_is_abnormal_for_every_restart_type(restart: str) -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("c", restart=restart)], name="sup", intensity=2, period=3600
        )
        old = lab.pid("c")
        mark = log.mark()
        assert await exit_and_wait(old, "kill") == "killed"
        children = child_pids(await suptrace.which_children("sup"))
        if restart == "temporary":
            assert log.since(mark) == [("sup", "child_terminated", "c", "killed")]
            assert children == {}
        else:
            await log.wait_progress("c", count=2)
            assert log.since(mark) == [
                ("sup", "child_terminated", "c", "killed"),
                ("sup", "progress", "c"),
            ]
            assert children == {"c": lab.pid("c")}
        [report] = log.supervisor_reports(mark)
        assert report.offender["pid"] == old and report.offender["restart_type"] == restart

    await in_node(main)


async def test_child_terminated_report_carries_the_offender() -> None:
    boom = RuntimeError("lost connection")

    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("db", shutdown=2.5)], name="sup", intensity=2, period=3600
        )
        old = lab.pid("db")
        mark = log.mark()
        await exit_and_wait(old, boom)
        await log.wait_progress("db", count=2)
        assert log.since(mark) == [
            ("sup", "child_terminated", "db", repr(boom)),
            ("sup", "progress", "db"),
        ]
        report = log.supervisor_reports(mark)[0]
        assert report.reason is boom
        assert report.supervisor == "sup"
        assert report.offender == {
            "pid": old,
            "id": "db",
            "start": (lab.start, ("db",)),
            "restart_type": "permanent",
            "shutdown": 2.5,
            "child_type": "worker",
            "significant": False,
        }
        started = log.reports[-1].started  # type: ignore[union-attr]
        assert started["pid"] == lab.pid("db") and started["id"] == "db"

    await in_node(main)


async def test_restart_returning_ignore_leaves_the_child_without_pid() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link([lab.spec("c")], name="sup", intensity=2, period=3600)
        mark = log.mark()
        lab.mode["c"] = "ignore"
        await exit_and_wait(lab.pid("c"), "boom")
        assert child_pids(await suptrace.which_children("sup")) == {"c": None}
        assert await suptrace.count_children("sup") == {
            "specs": 1,
            "active": 0,
            "supervisors": 0,
            "workers": 1,
        }
        assert log.since(mark) == [("sup", "child_terminated", "c", "boom")]

    await in_node(main)


async def test_exit_from_unknown_pid_and_stray_messages_are_ignored_silently() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await Supervisor.start_link([lab.spec("c")], name="sup", intensity=0, period=3600)
        mark = log.mark()

        async def stranger() -> None:
            suptrace.link(sup)
            raise suptrace.Exit("stranger_danger")

        stray = suptrace.spawn(stranger)
        suptrace.send(sup, "unexpected message")
        assert await exit_and_wait(stray, "normal") == "stranger_danger"
        assert child_pids(await suptrace.which_children("sup")) == {"c": lab.pid("c")}
        assert suptrace.is_alive(sup)
        # only the stranger's own crash report: the supervisor says nothing
        assert log.since(mark) == [("crash", stray, "stranger_danger")]

    await in_node(main)


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
async def test_temporary_bystander_is_stopped_and_not_restarted(strategy: str) -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("perm"), lab.spec("tmp", restart="temporary")],
            name="sup",
            strategy=strategy,
            intensity=2,
            period=300,
        )
        perm, tmp = lab.pid("perm"), lab.pid("tmp")
        mark = log.mark()
        await exit_and_wait(perm, "die")
        await log.wait_progress("perm", count=2)
        assert exits.reason(tmp) == "shutdown"
        assert child_pids(await suptrace.which_children("sup")) == {"perm": lab.pid("perm")}
        assert lab.pids("tmp") == [tmp]  # never started again
        # the bystander's stop is part of the restart: no report for it
        assert log.since(mark) == [
            ("sup", "child_terminated", "perm", "die"),
            ("sup", "progress", "perm"),
        ]

    await in_node(main)


async def test_child_unlink_cannot_hang_the_supervisor() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("naughty"), lab.spec("other")], name="sup", intensity=2, period=3600
        )
        naughty = lab.pid("naughty")
        me = suptrace.self_pid()
        suptrace.send(naughty, ("unlink", me))
        await suptrace.receive(lambda m: m == ("unlinked", naughty), timeout=2)
        mark = log.mark()
        # the supervisor waits on a monitor, not on an EXIT that will never come
        await suptrace.terminate_child("sup", "naughty")
        assert exits.reason(naughty) == "shutdown"
        assert child_pids(await suptrace.which_children("sup"))["naughty"] is None

        # and the same on supervisor shutdown
        second = await suptrace.restart_child("sup", "naughty")
        assert second is not None
        suptrace.send(second, ("unlink", me))
        await suptrace.receive(lambda m: m == ("unlinked", second), timeout=2)
        sup = suptrace.whereis("sup")
        assert sup is not None
        suptrace.exit(sup, "shutdown")
        assert await suptrace.receive(
            lambda m: isinstance(m, suptrace.ExitMsg) and m.pid == sup, timeout=2
        ) == suptrace.ExitMsg(sup, "shutdown")
        # reverse order of the child list (a restart keeps a child's place)
        assert exits.order([second, lab.pid("other")]) == [lab.pid("other"), second]
        assert exits.reason(second) == "shutdown"
        assert log.since(mark) == [("sup", "progress", "naughty")]

    await in_node(main)
