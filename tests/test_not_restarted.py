"""Beyond OTP: the ``not_restarted`` report and the tombstone story (SPEC §5).

A child of type supervisor that exits ``normal``/``shutdown``/``Shutdown(_)``
under a transient or temporary spec vanishes silently in OTP, together with its
whole subtree (the dodos, CopyCat). suptrace says so, once, from the parent,
with the cause; and a call to the vanished name tells the story."""

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
from suptrace import (
    ChildSpec,
    DynamicSupervisor,
    NoProc,
    Pid,
    Supervisor,
    SupervisorReport,
    format_report,
)


def import_sup_spec(lab: Lab, restart: str, **flags: Any) -> ChildSpec:
    flags = {"name": "copycat.import_sup", "intensity": 2, "period": 5, **flags}
    return ChildSpec(
        id="imports",
        start=(Supervisor.start_link, ([lab.spec("survey"), lab.spec("invitation")],), flags),
        type="supervisor",
        restart=restart,  # type: ignore[arg-type]
    )


async def crash_until_intensity(lab: Lab, log: ReportLog) -> list[Any]:
    """Crash the survey importer three times: the import supervisor (intensity 2)
    gives up on the third. Returns the reports the import supervisor emitted."""
    for n in (1, 2):
        await exit_and_wait(lab.pid("survey"), ("timeout", n))
        await log.wait_progress("survey", count=n + 1)
    suptrace.exit(lab.pid("survey"), ("timeout", 3))
    await log.wait_context("shutdown")
    return [
        ("copycat.import_sup", "child_terminated", "survey", ("timeout", 1)),
        ("copycat.import_sup", "progress", "survey"),
        ("copycat.import_sup", "child_terminated", "survey", ("timeout", 2)),
        ("copycat.import_sup", "progress", "survey"),
        ("copycat.import_sup", "child_terminated", "survey", ("timeout", 3)),
        ("copycat.import_sup", "shutdown", "survey", "reached_max_restart_intensity"),
    ]


@pytest.mark.parametrize("restart", ["transient", "temporary"])
async def test_child_supervisor_reaching_max_intensity_is_reported_as_not_restarted(
    restart: str,
) -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("router"), import_sup_spec(lab, restart)],
            name="copycat.sup",
            intensity=3,
            period=5,
        )
        import_sup = suptrace.whereis("copycat.import_sup")
        assert import_sup is not None
        mark = log.mark()
        expected = await crash_until_intensity(lab, log)
        report = await log.wait_context("not_restarted")
        assert log.since(mark) == [
            *expected,
            ("copycat.sup", "not_restarted", "imports", "shutdown"),
        ]
        assert exits.reason(import_sup) == "shutdown"
        assert report.offender["pid"] == import_sup
        assert report.offender["restart_type"] == restart
        assert report.offender["child_type"] == "supervisor"
        assert report.cause is not None
        assert report.cause["cause"] == "reached_max_restart_intensity"
        assert report.cause["offender"]["id"] == "survey"
        assert report.cause["offender_reason"] == ("timeout", 3)
        assert report.rule is not None and restart in report.rule

        # the parent neither restarted nor counted it; the subtree is gone
        children = child_pids(await suptrace.which_children("copycat.sup"))
        if restart == "transient":
            assert children == {"imports": None, "router": lab.pid("router")}
        else:
            assert children == {"router": lab.pid("router")}
        assert (await suptrace.describe("copycat.sup"))["restarts_in_window"] == 0
        assert len(lab.pids("invitation")) == 1  # stopped with its supervisor, never again

        # the SASL text says what happened and why nothing will restart it
        text = format_report(report)
        assert "errorContext: not_restarted" in text
        assert "max restart intensity" in text and "cause offender: [pid=" in text
        assert "nothing will restart them" in text

        # ...and so does the next call to the vanished name
        with pytest.raises(NoProc) as info:
            await suptrace.which_children("copycat.import_sup")
        story = str(info.value)
        assert "copycat.import_sup is gone" in story
        assert "max restart intensity" in story
        assert "did not restart it" in story
        assert restart in story

    await in_node(main)


async def test_permanent_child_supervisor_is_restarted_with_a_child_terminated_report() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("router"), import_sup_spec(lab, "permanent")],
            name="copycat.sup",
            intensity=3,
            period=5,
        )
        old = suptrace.whereis("copycat.import_sup")
        mark = log.mark()
        expected = await crash_until_intensity(lab, log)
        await log.wait_progress("imports", count=2)
        assert log.since(mark) == [
            *expected,
            ("copycat.sup", "child_terminated", "imports", "shutdown"),
            ("copycat.import_sup", "progress", "survey"),
            ("copycat.import_sup", "progress", "invitation"),
            ("copycat.sup", "progress", "imports"),
        ]
        new = suptrace.whereis("copycat.import_sup")
        assert new is not None and new != old
        assert child_pids(await suptrace.which_children("copycat.sup"))["imports"] == new
        assert (await suptrace.describe("copycat.sup"))["restarts_in_window"] == 1

    await in_node(main)


@pytest.mark.parametrize(
    "reason", ["normal", "shutdown", suptrace.Shutdown("maintenance")], ids=str
)
async def test_transient_child_supervisor_stopped_on_purpose_is_reported_without_cause(
    reason: Any,
) -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [import_sup_spec(lab, "transient")], name="copycat.sup", intensity=3, period=5
        )
        mark = log.mark()
        await suptrace.stop("copycat.import_sup", reason)
        report = await log.wait_context("not_restarted")
        assert log.since(mark) == [("copycat.sup", "not_restarted", "imports", reason)]
        assert report.cause is None
        assert report.rule is not None and "transient" in report.rule
        assert "cause: unknown" in format_report(report)

    await in_node(main)


async def test_auto_shutdown_of_a_transient_child_supervisor_names_the_cause() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        inner = ChildSpec(
            id="batch",
            start=(
                Supervisor.start_link,
                ([lab.spec("job", restart="transient", significant=True)],),
                {"name": "batch_sup", "auto_shutdown": "any_significant"},
            ),
            type="supervisor",
            restart="transient",
        )
        await Supervisor.start_link([inner], name="top", intensity=3, period=5)
        mark = log.mark()
        suptrace.send(lab.pid("job"), ("stop", "normal"))
        report = await log.wait_context("not_restarted")
        # OTP is silent about the auto shutdown itself; only the parent speaks
        assert log.since(mark) == [("top", "not_restarted", "batch", "shutdown")]
        assert report.cause is not None and report.cause["cause"] == "auto_shutdown"
        assert report.cause["child_id"] == "job"

    await in_node(main)


async def test_transient_worker_exiting_normally_is_not_reported() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("w", restart="transient")], name="sup", intensity=3, period=5
        )
        mark = log.mark()
        await stop_child_itself(lab.pid("w"), "shutdown")
        assert child_pids(await suptrace.which_children("sup")) == {"w": None}
        assert log.since(mark) == []

    await in_node(main)


async def test_transient_child_supervisor_killed_is_restarted_not_reported_as_vanished() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [import_sup_spec(lab, "transient")], name="copycat.sup", intensity=3, period=5
        )
        old = suptrace.whereis("copycat.import_sup")
        assert old is not None
        mark = log.mark()
        await exit_and_wait(old, "kill")
        await log.wait_progress("imports", count=2)
        assert log.since(mark) == [
            ("copycat.sup", "child_terminated", "imports", "killed"),
            ("copycat.import_sup", "progress", "survey"),
            ("copycat.import_sup", "progress", "invitation"),
            ("copycat.sup", "progress", "imports"),
        ]
        assert not any(r.context == "not_restarted" for r in log.supervisor_reports())

    await in_node(main)


async def test_dynamic_supervisor_parent_reports_not_restarted_with_cause() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await DynamicSupervisor.start_link(name="pools")
        child: Pid | None = await suptrace.start_child("pools", import_sup_spec(lab, "transient"))
        assert child is not None
        mark = log.mark()
        expected = await crash_until_intensity(lab, log)
        report = await log.wait_context("not_restarted")
        assert log.since(mark) == [*expected, ("pools", "not_restarted", "imports", "shutdown")]
        assert isinstance(report, SupervisorReport)
        assert report.offender["pid"] == child and report.offender["child_type"] == "supervisor"
        assert report.cause is not None
        assert report.cause["cause"] == "reached_max_restart_intensity"
        assert report.cause["offender"]["id"] == "survey"
        assert report.rule is not None and "transient" in report.rule
        assert await suptrace.which_children("pools") == []
        with pytest.raises(NoProc, match="did not restart it"):
            await suptrace.count_children("copycat.import_sup")

    await in_node(main)


async def test_cause_of_an_escalation_by_failing_restarts_names_the_start_error() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [import_sup_spec(lab, "transient", intensity=1)], name="copycat.sup", intensity=3
        )
        lab.mode["survey"] = ("exit", "db_down")
        suptrace.exit(lab.pid("survey"), "boom")
        report = await log.wait_context("not_restarted")
        assert report.cause is not None
        assert report.cause["offender"]["id"] == "survey"
        assert report.cause["offender_reason"] == "db_down"
        assert "'survey' failed to restart: db_down" in report.cause["text"]

    await in_node(main)
