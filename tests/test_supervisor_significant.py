"""Significant children and auto_shutdown (supervisor_SUITE significant group):
what triggers an automatic shutdown, what does not, and that it is silent
(otp-semantics §2.8)."""

from __future__ import annotations

from typing import Any

import pytest
from sup_support import (
    ExitLog,
    Lab,
    ReportLog,
    child_pids,
    exit_and_wait,
    exit_from,
    in_node,
    stop_child_itself,
)

import suptrace
from suptrace import ChildSpec, Pid, Shutdown, Supervisor


async def start(lab: Lab, specs: list[ChildSpec], auto_shutdown: str, **kw: Any) -> Pid:
    kw.setdefault("strategy", "one_for_one")
    pid: Pid = await Supervisor.start_link(
        specs, name="sup", intensity=5, period=3600, auto_shutdown=auto_shutdown, **kw
    )
    return pid


async def end_a_child(pid: Pid, how: str) -> None:
    if how == "kill":
        await exit_and_wait(pid, "kill")
    elif how == "abnormal":
        await stop_child_itself(pid, "abnormal")
    else:
        await stop_child_itself(pid, how)


@pytest.mark.parametrize("restart", ["temporary", "transient"])
@pytest.mark.parametrize("auto_shutdown", ["any_significant", "all_significant"])
async def test_nonsignificant_children_never_trigger(restart: str, auto_shutdown: str) -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await start(lab, [lab.spec("c", restart=restart)], auto_shutdown)
        mark = log.mark()
        await stop_child_itself(lab.pid("c"), "normal")
        assert await suptrace.count_children(sup) == {
            "specs": 0 if restart == "temporary" else 1,
            "active": 0,
            "supervisors": 0,
            "workers": 0 if restart == "temporary" else 1,
        }
        assert suptrace.is_alive(sup)
        assert log.since(mark) == []

    await in_node(main)


@pytest.mark.parametrize("how", ["kill", "abnormal", "normal", "shutdown"])
async def test_significant_temporary_any_exit_triggers_any_significant(how: str) -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await start(
            lab,
            [lab.spec("a"), lab.spec("sig", restart="temporary", significant=True), lab.spec("b")],
            "any_significant",
        )
        sig, a, b = lab.pid("sig"), lab.pid("a"), lab.pid("b")
        mark = log.mark()
        await end_a_child(sig, how)
        assert await exit_from(sup) == "shutdown"
        assert exits.order([a, b]) == [b, a]
        assert exits.reason(a) == exits.reason(b) == "shutdown"
        expected: list[Any] = []
        if how == "abnormal":
            expected.append(("crash", sig, "abnormal"))
        if how in ("kill", "abnormal"):  # a temporary child's abnormal exit is reported...
            expected.append(("sup", "child_terminated", "sig", exits.reason(sig)))
        assert log.since(mark) == expected  # ...the automatic shutdown is not
        assert len(lab.started) == 3

    await in_node(main)


async def test_terminate_child_of_a_significant_child_does_not_trigger() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await start(
            lab,
            [
                lab.spec("sig", restart="temporary", significant=True),
                lab.spec("t", restart="transient", significant=True),
            ],
            "any_significant",
        )
        mark = log.mark()
        await suptrace.terminate_child(sup, "sig")
        await suptrace.terminate_child(sup, "t")
        assert child_pids(await suptrace.which_children(sup)) == {"t": None}
        assert suptrace.is_alive(sup)
        assert log.since(mark) == []

    await in_node(main)


async def test_all_significant_waits_for_the_last_significant_child() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await start(
            lab,
            [
                lab.spec("s1", restart="temporary", significant=True),
                lab.spec("plain"),
                lab.spec("s2", restart="transient", significant=True),
            ],
            "all_significant",
        )
        mark = log.mark()
        await stop_child_itself(lab.pid("s1"), "normal")
        assert suptrace.is_alive(sup)
        assert child_pids(await suptrace.which_children(sup)) == {
            "s2": lab.pid("s2"),
            "plain": lab.pid("plain"),
        }
        await stop_child_itself(lab.pid("s2"), Shutdown("done"))
        assert await exit_from(sup) == "shutdown"
        assert exits.reason(lab.pid("plain")) == "shutdown"
        assert log.since(mark) == []

    await in_node(main)


async def test_all_significant_ignores_significant_specs_without_pid() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await start(
            lab,
            [
                lab.spec("s1", restart="transient", significant=True),
                lab.spec("s2", restart="transient", significant=True),
            ],
            "all_significant",
        )
        await suptrace.terminate_child(sup, "s1")  # s1 keeps its spec, without a pid
        mark = log.mark()
        await stop_child_itself(lab.pid("s2"), "normal")
        assert await exit_from(sup) == "shutdown"
        assert log.since(mark) == []

    await in_node(main)


async def test_all_significant_counts_a_restarting_significant_child_as_present() -> None:
    """OTP keeps ``{restarting, Pid}`` as the pid of a child between a failed
    restart and its retry: it is not ``undefined``, so it still counts."""

    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await start(
            lab,
            [
                lab.spec("s1", restart="transient", significant=True),
                lab.spec("s2", restart="transient", significant=True),
            ],
            "all_significant",
        )
        s1 = lab.pid("s1")
        mark = log.mark()
        lab.script["s1"].append("gate")
        suptrace.exit(s1, "boom")  # abnormal: restarted, and the restart waits at the gate
        gate = await lab.at_gate()
        await stop_child_itself(lab.pid("s2"), "normal")  # its EXIT is queued meanwhile
        gate.release(("exit", "fail_start"))  # s1 is now restarting; then s2's EXIT
        await log.wait_progress("s1", count=2)  # the retry succeeds
        assert suptrace.is_alive(sup)
        assert child_pids(await suptrace.which_children(sup)) == {"s2": None, "s1": lab.pid("s1")}
        assert log.since(mark) == [
            ("sup", "child_terminated", "s1", "boom"),
            ("sup", "start_error", "s1", "fail_start"),
            ("sup", "progress", "s1"),
        ]

    await in_node(main)


@pytest.mark.parametrize("reason", ["normal", "shutdown", Shutdown("x"), "abnormal"], ids=str)
async def test_significant_transient_only_normal_exits_trigger(reason: Any) -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await start(
            lab, [lab.spec("sig", restart="transient", significant=True)], "any_significant"
        )
        sig = lab.pid("sig")
        mark = log.mark()
        await stop_child_itself(sig, reason)
        if reason == "abnormal":
            await log.wait_progress("sig", count=2)
            assert suptrace.is_alive(sup)
            assert log.since(mark) == [
                ("crash", sig, "abnormal"),
                ("sup", "child_terminated", "sig", "abnormal"),
                ("sup", "progress", "sig"),
            ]
        else:
            assert await exit_from(sup) == "shutdown"
            assert log.since(mark) == []

    await in_node(main)


@pytest.mark.parametrize("restart", ["transient", "temporary"])
@pytest.mark.parametrize("auto_shutdown", ["any_significant", "all_significant"])
async def test_significant_bystander_stopped_by_a_sibling_restart_does_not_trigger(
    restart: str, auto_shutdown: str
) -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await start(
            lab,
            [lab.spec("worker"), lab.spec("sig", restart=restart, significant=True)],
            auto_shutdown,
            strategy="one_for_all",
        )
        sig = lab.pid("sig")
        mark = log.mark()
        await exit_and_wait(lab.pid("worker"), "die")
        await log.wait_progress("worker", count=2)
        assert exits.reason(sig) == "shutdown"
        assert suptrace.is_alive(sup)
        children = child_pids(await suptrace.which_children(sup))
        expected: list[Any] = [
            ("sup", "child_terminated", "worker", "die"),
            ("sup", "progress", "worker"),
        ]
        if restart == "transient":
            expected.append(("sup", "progress", "sig"))
            assert children == {"sig": lab.pid("sig"), "worker": lab.pid("worker")}
        else:
            assert children == {"worker": lab.pid("worker")}
        assert log.since(mark) == expected

    await in_node(main)


async def test_significant_escalation_of_a_transient_child_supervisor() -> None:
    """A transient, significant child supervisor reaching its intensity exits
    ``shutdown`` -- a normal exit -- so its any_significant parent shuts down too."""

    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        child_sup = ChildSpec(
            id="child_sup",
            start=(Supervisor.start_link, ([lab.spec("w")],), {"name": "inner", "intensity": 0}),
            type="supervisor",
            restart="transient",
            significant=True,
        )
        sup = await start(lab, [lab.spec("other"), child_sup], "any_significant")
        inner = suptrace.whereis("inner")
        mark = log.mark()
        suptrace.exit(lab.pid("w"), "boom")
        assert await exit_from(sup) == "shutdown"
        assert exits.reason(inner) == "shutdown"  # type: ignore[arg-type]
        assert exits.reason(lab.pid("other")) == "shutdown"
        assert log.since(mark) == [
            ("inner", "child_terminated", "w", "boom"),
            ("inner", "shutdown", "w", "reached_max_restart_intensity"),
            # beyond OTP: the subtree did not come back (and the parent followed it)
            ("sup", "not_restarted", "child_sup", "shutdown"),
        ]

    await in_node(main)
