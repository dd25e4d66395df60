"""SASL-style reports from supervisors (SPEC §5, otp-semantics §5): their
fields, their text layout, their order, their log levels, the history, and the
places where OTP logs nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sup_support import ANY, Lab, ReportLog, exit_and_wait, exit_from, in_node

import suptrace
from suptrace import (
    ChildSpec,
    CrashReport,
    ProgressReport,
    Supervisor,
    SupervisorReport,
    format_report,
)

OFFENDER_KEYS = {"pid", "id", "start", "restart_type", "shutdown", "child_type", "significant"}


async def test_reports_are_frozen_dataclasses_with_otp_offender_keys() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("c", shutdown="brutal_kill")], name="sup", intensity=2, period=3600
        )
        old = lab.pid("c")
        await exit_and_wait(old, "boom")
        await log.wait_progress("c", count=2)
        first, terminated, restarted = log.reports
        assert isinstance(first, ProgressReport) and isinstance(restarted, ProgressReport)
        assert isinstance(terminated, SupervisorReport)
        assert set(first.started) == OFFENDER_KEYS == set(terminated.offender)
        assert terminated.offender["pid"] == old and restarted.started["pid"] == lab.pid("c")
        assert terminated.offender["shutdown"] == "brutal_kill"
        assert (terminated.cause, terminated.rule) == (None, None)
        sup = suptrace.whereis("sup")
        assert terminated.pid == sup and first.pid == sup  # emitted by the supervisor
        with pytest.raises(AttributeError):
            terminated.context = "other"  # type: ignore[misc]
        assert suptrace.report_history()[-3:] == log.reports

    await in_node(main)


async def test_text_layout_follows_sasl() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("importer")], name="copycat.sup", intensity=2, period=3600
        )
        old = lab.pid("importer")
        await exit_and_wait(old, ("timeout", ("call", "db", 5000)))
        await log.wait_progress("importer", count=2)
        progress, terminated, _ = log.reports
        text = format_report(terminated)
        lines = text.splitlines()
        assert lines[0].startswith("=SUPERVISOR REPORT==== ") and lines[0].endswith(" ===")
        assert lines[1:4] == [
            "    supervisor: copycat.sup",
            "    errorContext: child_terminated",
            "    reason: ('timeout', ('call', 'db', 5000))",
        ]
        assert lines[4].startswith("    offender: [pid=" + str(old) + ", id='importer', start=")
        assert (
            "restart_type=permanent, shutdown=5.0, child_type=worker, significant=False]"
            in lines[4]
        )
        ptext = format_report(progress)
        assert ptext.splitlines()[0].startswith("=PROGRESS REPORT==== ")
        assert "    supervisor: copycat.sup" in ptext and "    started: [pid=" in ptext

    await in_node(main)


async def test_a_child_crashing_by_itself_gives_crash_then_supervisor_reports() -> None:
    failure = ZeroDivisionError("division by zero")

    async def divide() -> None:
        raise failure

    async def start_divider() -> suptrace.Pid:
        return suptrace.spawn_link(divide)

    async def main() -> None:
        suptrace.trap_exit(True)
        log = ReportLog()
        spec = ChildSpec(id="div", start=(start_divider, ()), restart="transient")
        sup = await Supervisor.start_link([spec], name="sup", intensity=1, period=3600)
        assert await exit_from(sup) == "shutdown"
        assert log.since() == [
            ("sup", "progress", "div"),
            ("crash", ANY, repr(failure)),
            ("sup", "child_terminated", "div", repr(failure)),
            ("sup", "progress", "div"),
            ("crash", ANY, repr(failure)),
            ("sup", "child_terminated", "div", repr(failure)),
            ("sup", "shutdown", "div", "reached_max_restart_intensity"),
        ]
        crash = log.reports[1]
        assert isinstance(crash, CrashReport) and crash.reason is failure
        assert crash.links == (sup,) and crash.ancestors[0] == "sup"
        assert "=CRASH REPORT====" in format_report(crash)
        assert "ZeroDivisionError" in format_report(crash)

    await in_node(main)


async def test_no_report_where_otp_logs_none() -> None:
    """Transient normal exit, API start failure, auto shutdown, a supervisor's
    own shutdown exit, an EXIT from an unknown pid: all silent."""

    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await Supervisor.start_link(
            [
                lab.spec("t", restart="transient"),
                lab.spec("sig", restart="temporary", significant=True),
            ],
            name="sup",
            intensity=2,
            period=3600,
            auto_shutdown="any_significant",
        )
        mark = log.mark()
        suptrace.send(lab.pid("t"), ("stop", "normal"))
        lab.mode["api"] = ("exit", "nope")
        with pytest.raises(suptrace.StartChildError):
            await suptrace.start_child(sup, lab.spec("api"))

        async def stranger() -> None:
            suptrace.link(sup)
            suptrace.send(me, "linked")
            await suptrace.receive()

        me = suptrace.self_pid()
        stray = suptrace.spawn(stranger)
        await suptrace.receive(lambda m: m == "linked", timeout=2)
        await exit_and_wait(stray, "boom")
        suptrace.send(lab.pid("sig"), ("stop", "normal"))  # auto shutdown
        assert await exit_from(sup) == "shutdown"
        assert log.since(mark) == []

    await in_node(main)


async def test_log_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    """ERROR for supervisor and crash reports, WARNING for not_restarted; with
    log_progress, INFO for progress, DEBUG for a start requested through the admin
    API (current OTP)."""
    from loguru import logger

    levels: list[tuple[str, str]] = []

    def sink(message: Any) -> None:
        record = message.record
        report = record["extra"].get("suptrace_report")
        if report is not None:
            kind = getattr(report, "context", type(report).__name__)
            levels.append((kind, record["level"].name))

    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        inner = ChildSpec(
            id="inner",
            start=(Supervisor.start_link, ([lab.spec("w")],), {"name": "inner", "intensity": 0}),
            type="supervisor",
            restart="transient",
        )
        sup = await Supervisor.start_link([inner], name="top", intensity=2, period=3600)
        await suptrace.start_child(sup, lab.spec("api"))
        await suptrace.terminate_child(sup, "api")
        await suptrace.restart_child(sup, "api")
        suptrace.exit(lab.pid("w"), "boom")
        await log.wait_context("not_restarted")

    handler = logger.add(sink, level="DEBUG")
    try:
        await in_node(main, log_reports=True, log_progress=True)
    finally:
        logger.remove(handler)
    assert levels == [
        ("ProgressReport", "INFO"),  # w, at inner's init
        ("ProgressReport", "INFO"),  # inner, at top's init
        ("ProgressReport", "DEBUG"),  # start_child
        ("ProgressReport", "DEBUG"),  # restart_child
        ("child_terminated", "ERROR"),
        ("shutdown", "ERROR"),
        ("not_restarted", "WARNING"),
    ]
