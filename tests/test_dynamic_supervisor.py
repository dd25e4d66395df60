"""DynamicSupervisor (Elixir's, OTP's simple_one_for_one made friendlier):
max_children, extra_args, restarts, terminate_child by pid, parallel shutdown,
count_restarting_children, and the reports of each."""

from __future__ import annotations

from typing import Any

import pytest
from sup_support import (
    ExitLog,
    Lab,
    ReportLog,
    calls_then,
    exit_and_wait,
    exit_from,
    in_node,
    lab_child,
    stop_child_itself,
)

import suptrace
from suptrace import (
    ChildInfo,
    ChildNotFound,
    ChildSpec,
    DynamicSupervisor,
    MaxChildren,
    Pid,
    StartChildError,
    SupervisorError,
)


async def test_start_children_which_children_and_count_children() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await DynamicSupervisor.start_link(name="pool")
        p1 = await suptrace.start_child("pool", lab.spec("a"))
        p2 = await suptrace.start_child("pool", lab.spec("b", type="supervisor"))
        mods = lab.spec("a").module_names()
        assert await suptrace.which_children(sup) == [
            ChildInfo(None, p2, "supervisor", mods),
            ChildInfo(None, p1, "worker", mods),
        ]
        assert await suptrace.count_children(sup) == {
            "specs": 2,
            "active": 2,
            "supervisors": 1,
            "workers": 1,
        }
        assert log.since() == [("pool", "progress", "a"), ("pool", "progress", "b")]
        info = await suptrace.describe(sup)
        assert (info["intensity"], info["period"]) == (3, 5)  # Elixir's defaults

    await in_node(main)


async def test_max_children_refuses_without_starting_or_reporting() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await DynamicSupervisor.start_link(name="pool", max_children=2)
        await suptrace.start_child("pool", lab.spec("a"))
        await suptrace.start_child("pool", lab.spec("b"))
        mark = log.mark()
        with pytest.raises(MaxChildren, match="max_children=2"):
            await suptrace.start_child("pool", lab.spec("c"))
        assert lab.attempts == ["a", "b"]
        assert log.since(mark) == []
        # a slot frees up when a child is gone
        await suptrace.terminate_child("pool", lab.pid("a"))
        assert await suptrace.start_child("pool", lab.spec("c")) == lab.pid("c")

    await in_node(main)


async def test_extra_args_are_prepended_at_start_and_at_restart() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        calls: list[tuple[Any, ...]] = []

        async def start_conn(*args: Any) -> Pid:
            calls.append(args)
            return suptrace.spawn_link(lab_child, lab, "conn", "idle", suptrace.self_pid())

        await DynamicSupervisor.start_link(name="pool", extra_args=("db", 5432))
        spec = ChildSpec(id="conn", start=(start_conn, ("replica",)))
        pid = await suptrace.start_child("pool", spec)
        assert calls == [("db", 5432, "replica")]
        mark = log.mark()
        await exit_and_wait(pid, "boom")  # type: ignore[arg-type]
        await log.wait_progress("conn", count=2)
        assert calls == [("db", 5432, "replica")] * 2
        assert log.since(mark) == [
            ("pool", "child_terminated", "conn", "boom"),
            ("pool", "progress", "conn"),
        ]
        # the offender's start is the spec's own, without the extra arguments
        assert log.supervisor_reports(mark)[0].offender["start"] == (start_conn, ("replica",))

    await in_node(main)


async def test_children_are_restarted_by_restart_type() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await DynamicSupervisor.start_link(name="pool", intensity=5)
        perm = await suptrace.start_child(sup, lab.spec("perm"))
        trans = await suptrace.start_child(sup, lab.spec("trans", restart="transient"))
        temp = await suptrace.start_child(sup, lab.spec("temp", restart="temporary"))
        assert perm and trans and temp
        mark = log.mark()
        await exit_and_wait(perm, "boom")
        await log.wait_progress("perm", count=2)
        await stop_child_itself(trans, "normal")  # transient, normal: dropped silently
        await exit_and_wait(temp, "boom")  # temporary: reported, dropped
        children = await suptrace.which_children(sup)
        assert [c.pid for c in children] == [lab.pid("perm")]
        assert lab.pid("perm") != perm
        assert log.since(mark) == [
            ("pool", "child_terminated", "perm", "boom"),
            ("pool", "progress", "perm"),
            ("pool", "child_terminated", "temp", "boom"),
        ]

    await in_node(main)


async def test_terminate_child_by_pid() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await DynamicSupervisor.start_link(name="pool")
        a = await suptrace.start_child(sup, lab.spec("a"))
        b = await suptrace.start_child(sup, lab.spec("b"))
        assert a and b
        mark = log.mark()
        await suptrace.terminate_child(sup, a)
        assert exits.reason(a) == "shutdown"
        assert [c.pid for c in await suptrace.which_children(sup)] == [b]
        with pytest.raises(ChildNotFound):
            await suptrace.terminate_child(sup, a)  # not a child any more
        with pytest.raises(ChildNotFound):
            await suptrace.terminate_child(sup, suptrace.self_pid())  # never a child
        with pytest.raises(ChildNotFound, match="by pid"):
            await suptrace.terminate_child(sup, "b")  # children have no ids
        for op in (suptrace.restart_child, suptrace.delete_child):
            with pytest.raises(SupervisorError, match="not supported"):
                await op(sup, "b")
        assert (await suptrace.get_childspec(sup, b)).id == "b"
        assert log.since(mark) == []

    await in_node(main)


async def test_start_child_failure_and_ignore_store_nothing_and_report_nothing() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await DynamicSupervisor.start_link(name="pool")
        lab.mode["bad"] = ("exit", "no_db")
        with pytest.raises(StartChildError) as info:
            await suptrace.start_child(sup, lab.spec("bad"))
        assert info.value.reason == "no_db"
        lab.mode["skip"] = "ignore"
        assert await suptrace.start_child(sup, lab.spec("skip")) is None
        with pytest.raises(ValueError, match="significant"):
            await suptrace.start_child(sup, lab.spec("sig", restart="transient", significant=True))
        assert await suptrace.which_children(sup) == []
        assert log.since() == []

    await in_node(main)


async def test_parallel_shutdown_signals_every_child_before_waiting() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        lab.observer = suptrace.self_pid()
        sup = await DynamicSupervisor.start_link(name="pool")
        pids = []
        for cid in ("a", "b", "c"):
            lab.body[cid] = "trap_report"  # traps the shutdown signal and tells us
            pids.append(await suptrace.start_child(sup, lab.spec(cid, shutdown="infinity")))
        mark = log.mark()
        suptrace.exit(sup, "shutdown")
        # one at a time, the supervisor would wait for the first child forever
        got = {
            (
                await suptrace.receive(
                    lambda m: isinstance(m, tuple) and m[0] == "got_exit", timeout=2
                )
            )[1]
            for _ in pids
        }
        assert got == set(pids)
        assert all(suptrace.is_alive(p) for p in pids)  # type: ignore[arg-type]
        for pid in pids:
            suptrace.send(pid, ("stop", "shutdown"))  # type: ignore[arg-type]
        assert await exit_from(sup) == "shutdown"
        assert all(exits.reason(p) == "shutdown" for p in pids)  # type: ignore[arg-type]
        assert log.since(mark) == []

    await in_node(main)


async def test_parallel_shutdown_shares_one_timer_and_reports_kills() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await DynamicSupervisor.start_link(name="pool")
        lab.body["slow"] = "trap"
        slow = await suptrace.start_child(sup, lab.spec("slow", shutdown=0.05))
        fast = await suptrace.start_child(sup, lab.spec("fast", shutdown=0.05))
        brutal = await suptrace.start_child(sup, lab.spec("brutal", shutdown="brutal_kill"))
        mark = log.mark()
        suptrace.exit(sup, "shutdown")
        assert await exit_from(sup) == "shutdown"
        assert exits.reason(fast) == "shutdown"  # type: ignore[arg-type]
        assert exits.reason(brutal) == "killed"  # type: ignore[arg-type]
        assert exits.reason(slow) == "killed"  # type: ignore[arg-type]
        assert log.since(mark) == [("pool", "shutdown_error", "slow", "killed")]

    await in_node(main)


async def test_max_restart_intensity_ends_the_dynamic_supervisor() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await DynamicSupervisor.start_link(name="pool", intensity=1, period=3600)
        await suptrace.start_child(sup, lab.spec("a"))
        other = await suptrace.start_child(sup, lab.spec("b"))
        mark = log.mark()
        await exit_and_wait(lab.pid("a"), "boom")
        await log.wait_progress("a", count=2)
        suptrace.exit(lab.pid("a"), "boom")
        assert await exit_from(sup) == "shutdown"
        assert exits.reason(other) == "shutdown"  # type: ignore[arg-type]
        assert log.since(mark) == [
            ("pool", "child_terminated", "a", "boom"),
            ("pool", "progress", "a"),
            ("pool", "child_terminated", "a", "boom"),
            ("pool", "shutdown", "a", "reached_max_restart_intensity"),
        ]

    await in_node(main)


async def test_count_restarting_children() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await DynamicSupervisor.start_link(name="pool", intensity=10, period=3600)
        a = await suptrace.start_child(sup, lab.spec("a"))
        await suptrace.start_child(sup, lab.spec("b"))
        mark = log.mark()
        lab.script["a"].extend(["gate", "gate"])
        suptrace.exit(a, "boom")  # type: ignore[arg-type]
        (await lab.at_gate()).release(("exit", "fail_start"))
        gate = await lab.at_gate()
        counted, which, terminated = await calls_then(
            lambda: gate.release(("exit", "fail_start")),
            suptrace.count_children(sup),
            suptrace.which_children(sup),
            # terminating a restarting child (by its old pid) cancels the retry
            suptrace.terminate_child(sup, a),
        )
        assert counted == {"specs": 2, "active": 1, "supervisors": 0, "workers": 2}
        assert [c.pid for c in which] == [lab.pid("b"), "restarting"]
        assert terminated is None
        assert await suptrace.count_children(sup) == {
            "specs": 1,
            "active": 1,
            "supervisors": 0,
            "workers": 1,
        }
        assert lab.attempts.count("a") == 3
        assert log.since(mark) == [
            ("pool", "child_terminated", "a", "boom"),
            ("pool", "start_error", "a", "fail_start"),
            ("pool", "start_error", "a", "fail_start"),
        ]

    await in_node(main)


async def test_invalid_options_raise_value_error_naming_them() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="max_children"):
            await DynamicSupervisor.start_link(max_children=-1)
        with pytest.raises(ValueError, match="extra_args"):
            await DynamicSupervisor.start_link(extra_args="db")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="intensity"):
            await DynamicSupervisor.start_link(intensity=-1)
        with pytest.raises(ValueError, match="period"):
            await DynamicSupervisor.start_link(period=0)

    await in_node(main)


async def test_exit_from_unknown_pid_is_ignored() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await DynamicSupervisor.start_link(name="pool", intensity=0)
        await suptrace.start_child(sup, lab.spec("a"))
        mark = log.mark()

        me = suptrace.self_pid()

        async def stranger() -> None:
            suptrace.link(sup)
            suptrace.send(me, "linked")
            await suptrace.receive()

        pid = suptrace.spawn(stranger)
        await suptrace.receive(lambda m: m == "linked", timeout=2)
        await exit_and_wait(pid, "boom")  # by signal: no crash report
        assert [c.pid for c in await suptrace.which_children(sup)] == [lab.pid("a")]
        assert suptrace.is_alive(sup)
        assert log.since(mark) == []

    await in_node(main)


async def test_ignore_permanent_child_stores_nothing_and_shutdown_is_clean() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await DynamicSupervisor.start_link(name="pool")
        lab.mode["child1"] = "ignore"
        assert await suptrace.start_child(sup, lab.spec("child1")) is None
        lab.mode["child1"] = "ok"
        cpid2 = await suptrace.start_child(sup, lab.spec("child1"))
        assert [c.pid for c in await suptrace.which_children(sup)] == [cpid2]
        assert await suptrace.count_children(sup) == {
            "specs": 1,
            "active": 1,
            "supervisors": 0,
            "workers": 1,
        }
        suptrace.exit(sup, "shutdown")
        assert await exit_from(sup) == "shutdown"
        assert log.since() == [("pool", "progress", "child1")]

    await in_node(main)


async def test_restart_returning_ignore_drops_the_child() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await DynamicSupervisor.start_link(name="pool")
        pid = await suptrace.start_child(sup, lab.spec("c"))
        mark = log.mark()
        lab.mode["c"] = "ignore"
        await exit_and_wait(pid, "boom")  # type: ignore[arg-type]
        assert await suptrace.which_children(sup) == []
        assert log.since(mark) == [("pool", "child_terminated", "c", "boom")]

    await in_node(main)


async def test_escalation_restart_that_always_fails() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await DynamicSupervisor.start_link(name="pool", intensity=4, period=3600)
        c1 = await suptrace.start_child(sup, lab.spec("child1"))
        c2 = await suptrace.start_child(sup, lab.spec("child2"))
        mark = log.mark()
        lab.mode["child1"] = ("exit", "start_failed")
        suptrace.exit(c1, "abnormal")  # type: ignore[arg-type]
        assert await exit_from(sup) == "shutdown"
        assert log.since(mark) == [
            ("pool", "child_terminated", "child1", "abnormal"),
            *[("pool", "start_error", "child1", "start_failed")] * 4,
            ("pool", "shutdown", "child1", "reached_max_restart_intensity"),
        ]
        assert exits.reason(c2) == "shutdown"  # type: ignore[arg-type]

    await in_node(main)


async def test_non_shutdown_exit_while_stopping_keeps_its_reason() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()

        async def stubborn(sup: Pid) -> None:
            suptrace.trap_exit(True)
            await suptrace.receive(lambda m: isinstance(m, suptrace.ExitMsg) and m.pid == sup)
            raise suptrace.Exit("my_own_reason")

        async def start_stubborn() -> Pid:
            return suptrace.spawn_link(stubborn, suptrace.self_pid())

        sup = await DynamicSupervisor.start_link(name="pool")
        odd = await suptrace.start_child(sup, ChildSpec(id="odd", start=(start_stubborn, ())))
        fine = await suptrace.start_child(sup, lab.spec("fine"))
        mark = log.mark()
        suptrace.exit(sup, "shutdown")
        assert await exit_from(sup) == "shutdown"
        assert exits.reason(odd) == "my_own_reason"  # type: ignore[arg-type]
        assert exits.reason(fine) == "shutdown"  # type: ignore[arg-type]
        assert log.since(mark) == [
            ("crash", odd, "my_own_reason"),
            ("pool", "shutdown_error", "odd", "my_own_reason"),
        ]

    await in_node(main)
