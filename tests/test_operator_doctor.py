"""Restart counts kept by supervisors, the doctor rules that read them and the
call timeouts by destination, the quiet report log and readable offenders -- all
in-process, on the runtime and on plain data (no CLI subprocess)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections import deque
from typing import Any

import pytest
from sup_support import Lab, ReportLog, exit_and_wait, in_node

import suptrace
from suptrace import ChildSpec, CrashReport, DynamicSupervisor, Supervisor, SupervisorReport
from suptrace.core.runtime import current_runtime
from suptrace.node.control import diagnose, processes, shapes, trees
from suptrace.node.control.doctor import (
    check_call_timeouts,
    check_restart_loops,
    restart_key,
    summarize_reasons,
)
from suptrace.node.parts import parts_of
from suptrace.observers.reports import Reports, format_report, start_text

# -- restart counts -------------------------------------------------------------------------


def _children(desc: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    return {c["id"]: c for c in desc["children"]}


async def test_a_supervisor_counts_each_childs_restarts_total_and_in_its_window() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await Supervisor.start_link(
            [lab.spec("a"), lab.spec("b"), lab.spec("c")],
            strategy="rest_for_one",
            intensity=10,
            period=3600,
        )
        for n in range(3):
            await exit_and_wait(lab.pid("a"), "boom")
            await log.wait_progress("c", count=2 + n)  # a's exit restarts b and c too
        await exit_and_wait(lab.pid("b"), "bang")
        await log.wait_progress("c", count=5)
        kids = _children(await suptrace.describe(sup))
        # Each restart counts against the child whose exit caused it, as the intensity does.
        assert [(kids[c]["restarts"], kids[c]["restarts_window"]) for c in "abc"] == [
            (3, 3),
            (1, 1),
            (0, 0),
        ]
        rt = current_runtime()
        rows = {r["pid"]: r for r in processes.ps(rt, False, 100)["processes"]}
        assert (
            rows[str(lab.pid("a"))]["restarts"],
            rows[str(lab.pid("a"))]["restarts_window"],
        ) == (
            3,
            3,
        )
        assert rows[str(sup)]["restarts"] == 0  # nothing supervises the supervisor
        # The window only counts restarts within the period: age a's restart times.
        child = sup._proc.behaviour.by_id["a"]  # type: ignore[union-attr]
        child.restart_times = deque([int(time.monotonic()) - 3601] * 3)
        assert sup._proc.behaviour.restarts_of(lab.pid("a")) == (3, 0)  # type: ignore[union-attr]

    await in_node(main)


async def test_a_supervisor_restarted_by_its_parent_shows_it_in_inspect_data() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        inner = ChildSpec(
            id="inner",
            start=(Supervisor.start_link, ([lab.spec("w")],), {"name": "inner", "intensity": 0}),
            type="supervisor",
        )
        await Supervisor.start_link([inner], name="top", intensity=10, period=3600)
        for n in range(2):
            await exit_and_wait(lab.pid("w"), "boom")
            await log.wait_progress("inner", count=2 + n)
        rt = current_runtime()
        info = await processes.info(rt, "inner", 1.0, 50)
        assert (info["restarts"], info["restarts_window"], info["restarted_by"]) == (2, 2, "top")
        [root] = (await trees.tree(rt, None, 1.0))["roots"]
        entry = _children(root)["inner"]
        assert (entry["restarts"], entry["restarts_window"]) == (2, 2)
        assert entry["start"] == "Supervisor.start_link(1 child, name='inner', intensity=0)"
        assert _children(entry["tree"])["w"]["restarts"] == 0  # a new inner, a new count

    await in_node(main)


async def test_a_dynamic_supervisor_counts_restarts_per_child() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        dyn = await DynamicSupervisor.start_link(intensity=10, period=3600)
        await suptrace.start_child(dyn, lab.spec("x"))
        await suptrace.start_child(dyn, lab.spec("y"))
        for n in range(2):
            await exit_and_wait(lab.pid("x"), "boom")
            await log.wait_progress("x", count=1 + n)  # restarts only (the API start is DEBUG)
        kids = {c["id"]: c for c in (await suptrace.describe(dyn))["children"]}
        assert (kids["x"]["restarts"], kids["x"]["restarts_window"]) == (2, 2)
        assert kids["y"]["restarts"] == 0
        row = next(
            r
            for r in processes.ps(current_runtime(), False, 100)["processes"]
            if r["pid"] == str(lab.pid("x"))
        )
        assert row["restarts"] == 2

    await in_node(main)


# -- doctor rules on data -------------------------------------------------------------------


def _tree(**child: Any) -> dict[str, Any]:
    return {
        "name": "app.sup",
        "pid": "<0.2.0>",
        "intensity": 10,
        "period": 60,
        "children": [{"id": "survey", "id_text": "survey", "type": "worker", **child}],
    }


def test_restart_loop_rule_names_the_child_its_count_and_why_it_died() -> None:
    reasons = {
        restart_key("app.sup", "survey"): [("ValueError", "ValueError('row 3')")] * 4
        + [("timeout", "'timeout'")]
    }
    [f] = check_restart_loops(_tree(restarts=66, restarts_window=5), reasons)
    assert (f["severity"], f["rule"], f["subject"]) == ("error", "restart_loop", "app.sup / survey")
    assert "restarted 66 times by app.sup, 5 of them in the last 60s" in f["message"]
    assert "ValueError x4 (last: ValueError('row 3')), timeout x1" in f["message"]
    assert "Why it matters" in f["message"] and "fix the cause" in f["hint"]
    # Long ago and no longer looping: a warning. Below the thresholds: nothing.
    [old] = check_restart_loops(_tree(restarts=7, restarts_window=0))
    assert old["severity"] == "warning"
    assert check_restart_loops(_tree(restarts=4, restarts_window=2)) == []
    assert check_restart_loops(_tree(restarts=3, restarts_window=3))[0]["severity"] == "error"


def test_restart_loop_rule_for_a_supervisor_restarted_by_its_parent() -> None:
    root = _tree()
    root["children"] = [
        {
            "id": "import_sup",
            "id_text": "import_sup",
            "type": "supervisor",
            "restarts": 4,
            "restarts_window": 1,
            "tree": {"name": "import_sup", "pid": "<0.9.0>", "children": []},
        }
    ]
    reasons = {
        restart_key("app.sup", "import_sup"): [("shutdown", "'shutdown'")] * 4,
        restart_key("import_sup", "survey"): [("OSError", "OSError('disk full')")] * 2,
    }
    [f] = check_restart_loops(root, reasons, {"import_sup": ["survey", "survey", "ledger"]})
    assert f["subject"] == "app.sup / import_sup"
    assert "restarted 4 times by app.sup" in f["message"]
    assert "because of survey, ledger, which exited with: OSError x2" in f["message"]
    assert "exited with: shutdown" not in f["message"] and "whole subtree" in f["message"]
    assert "--name import_sup" in f["hint"]


def test_summarize_reasons_keeps_it_short() -> None:
    many = [(f"E{i}", f"E{i}()") for i in range(6)]
    assert summarize_reasons(many).endswith("and 3 other kind(s)")


def test_call_timeout_rule_rate_callers_and_thresholds() -> None:
    row = {
        "destination": "db",
        "timeouts": 36,
        "recent": 36,
        "calls": 103,
        "callers": {"poller": 30, "<0.77.0>": 6},
        "timeout": 5.0,
    }
    [f] = check_call_timeouts([row])
    assert (f["severity"], f["rule"], f["subject"]) == ("error", "call_timeouts", "db")
    assert "36 of the 103 calls it received (35%)" in f["message"]
    assert "callers: poller (30), <0.77.0> (6)" in f["message"]
    assert "suptrace attach db --flags calls" in f["hint"]
    assert check_call_timeouts([{**row, "calls": 400, "recent": 36}])[0]["severity"] == "warning"
    assert check_call_timeouts([{**row, "timeouts": 2, "recent": 2}]) == []  # too few
    assert check_call_timeouts([{**row, "calls": 100_000}]) == []  # a rare timeout
    # A destination that is not a GenServer (calls unknown): still said, as a warning.
    assert check_call_timeouts([{**row, "calls": None}])[0]["severity"] == "warning"


# -- the rules on a running node ------------------------------------------------------------


class Db(suptrace.GenServer):
    async def init(self) -> None:
        self.n = 0

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        self.n += 1
        return suptrace.NOREPLY if self.n % 3 == 0 else "rows"


async def _poll(n: int) -> int:
    lost = 0
    for i in range(n):
        try:
            await suptrace.call("db", i, timeout=0.05)
        except suptrace.CallTimeout:
            lost += 1
    return lost


async def test_doctor_on_the_runtime_finds_the_loop_and_the_timeouts() -> None:
    async def main() -> dict[str, Any]:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("survey"), ChildSpec(id="db", start=(Db.start_link, (), {"name": "db"}))],
            name="app.sup",
            intensity=20,
            period=3600,
        )
        for n in range(5):
            await exit_and_wait(lab.pid("survey"), ("corrupt", n))
            await log.wait_progress("survey", count=2 + n)
        _, ref = suptrace.spawn_monitor(_poll, 12, name="poller")
        down = await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)
        assert down.reason == "normal"
        rt = current_runtime()
        parts = parts_of(rt)
        assert parts is not None and parts.call_timeouts is not None
        dest = parts.call_timeouts.by_dest["db"]
        assert (dest.total, dict(dest.callers)) == (4, {"poller": 4})
        return await diagnose.doctor(
            rt,
            parts.reports,
            samples=1,
            interval=0.1,
            stuck_after=60,
            mailbox_min=10,
            timeout=1.0,
            call_timeouts=parts.call_timeouts,
            telemetry=parts.telemetry,
        )

    result = await in_node(main)
    found = {(f["rule"], f["subject"]): f for f in result["findings"]}
    loop = found[("restart_loop", "app.sup / survey")]
    assert "restarted 5 times" in loop["message"] and "tuple x5" in loop["message"]
    slow = found[("call_timeouts", "db")]
    assert "4 of the 12 calls it received (33%)" in slow["message"]
    assert result["checked"]["call_destinations"] == 1


# -- the report log ------------------------------------------------------------------------


def _capture(**node_opts: Any) -> list[Any]:
    """Run a small crash-and-restart scenario with a loguru sink; the records it got."""
    from loguru import logger

    records: list[Any] = []
    handler = logger.add(lambda m: records.append(m.record), level="DEBUG", filter="suptrace")

    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link([lab.spec("w")], name="sup", intensity=5, period=60)
        await exit_and_wait(lab.pid("w"), "boom")
        await log.wait_progress("w", count=2)
        await suptrace.start_child("sup", lab.spec("api"))

    try:
        suptrace.run(main, control=False, system_monitor=False, **node_opts)
    finally:
        logger.remove(handler)
    return [r for r in records if r["extra"].get("suptrace_report") is not None]


def test_progress_reports_are_kept_but_not_logged_unless_asked() -> None:
    kinds = [type(r["extra"]["suptrace_report"]).__name__ for r in _capture()]
    assert kinds == ["SupervisorReport"]  # the child_terminated; no progress
    logged = [
        (type(r["extra"]["suptrace_report"]).__name__, r["level"].name)
        for r in _capture(log_progress=True)
    ]
    assert logged == [
        ("ProgressReport", "INFO"),
        ("SupervisorReport", "ERROR"),
        ("ProgressReport", "INFO"),
        ("ProgressReport", "DEBUG"),
    ]


def test_report_records_name_their_subject_not_the_logging_code() -> None:
    [record] = _capture()
    # Still under "suptrace" for filters; the location fields say what the report is about.
    assert record["name"] == "suptrace.reports"
    assert (
        f"{record['name']}:{record['function']}:{record['line']}"
        == "suptrace.reports:supervisor:sup"
    )
    # Still an int for sinks that need one: stdlib logging's %(lineno)d.
    import logging

    stdlib = logging.LogRecord("suptrace", 40, "f.py", record["line"], "m", None, None)
    assert logging.Formatter("%(lineno)d").format(stdlib) == "0"


def test_bad_crash_report_form_is_refused() -> None:
    with pytest.raises(ValueError, match="crash_report must be 'short' or 'full'"):
        suptrace.Node(crash_report="long")
    with pytest.raises(ValueError, match="crash_report"):
        Reports(crash_report="tiny")


_DEFAULT_HANDLER = textwrap.dedent(
    """
    import sys, suptrace

    def parse(row):
        return int(row)

    async def main():
        async def importer():
            for row in ["1", "2", "x"]:
                parse(row)
        pid, ref = suptrace.spawn_monitor(importer, name="importer.survey")
        await suptrace.receive(lambda m: isinstance(m, suptrace.Down))

    suptrace.run(main, control=False, system_monitor=False, crash_report=sys.argv[1])
    """
)


@pytest.mark.parametrize("form", ["short", "full"])
def test_loguru_default_handler_prints_a_readable_crash_report(form: str) -> None:
    """What loguru's own stderr handler prints (the handler a user gets without
    configuring anything)."""
    result = subprocess.run(
        [sys.executable, "-c", _DEFAULT_HANDLER, form], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "| ERROR    | suptrace.reports:crash:importer.survey - =CRASH REPORT====" in lines[0]
    assert not any("suptrace.observers.reports" in line for line in lines)
    assert "    error: ValueError(\"invalid literal for int() with base 10: 'x'\")" in lines
    if form == "short":
        assert len(lines) <= 10, lines
        assert any(
            line.startswith("      raised at <string>:") and "in parse" in line for line in lines
        )
        assert lines[-1] == "    (full report: suptrace reports --full)"
    else:
        assert "      traceback (most recent call last):" in lines
        assert any("in importer" in line for line in lines) and len(lines) > 10


# -- readable offenders ----------------------------------------------------------------------


async def _start_importer(name: str) -> suptrace.Pid:
    raise AssertionError("not started in these tests")


def test_offender_starts_read_as_calls_in_text_and_json() -> None:
    kids = [ChildSpec(id=n, start=(_start_importer, (n,))) for n in ("survey", "ledger")]
    sup_start = (Supervisor.start_link, (kids,), {"name": "import_sup"})
    assert start_text(sup_start) == "Supervisor.start_link(2 children, name='import_sup')"
    assert start_text((_start_importer, ("survey",))) == "_start_importer('survey')"
    report = SupervisorReport(
        "app.sup",
        "child_terminated",
        "shutdown",
        {"pid": None, "id": "import_sup", "start": sup_start, "restart_type": "permanent"},
    )
    text = format_report(report)
    assert "start=Supervisor.start_link(2 children, name='import_sup')" in text
    assert "ChildSpec(" not in text and "<function" not in text
    data = shapes.report_json(report)
    assert data["offender"]["start"] == "Supervisor.start_link(2 children, name='import_sup')"
    assert data["line"].endswith("child_terminated app.sup/'import_sup': 'shutdown'")


def test_crash_report_forms() -> None:
    try:
        int("x")
    except ValueError as exc:
        reason = exc
    report = CrashReport(
        pid=suptrace.Pid(42),
        name="importer.survey",
        reason=reason,
        initial_call="importer:run",
    )
    short = format_report(report, "short").splitlines()
    assert short[0].startswith("=CRASH REPORT==== ") and len(short) <= 10
    assert short[1] == f"    crasher: importer.survey {report.pid} running importer:run"
    assert short[3].startswith("      raised at test_operator_doctor.py:")
    assert "traceback" in format_report(report) and "traceback" not in "\n".join(short)
    assert format_report(report, "line").split(" ", 1)[1].startswith("crash importer.survey <")


async def test_counting_timeouts_adds_no_event_to_a_call_that_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only an expired call emits (``call_timeout``); answered calls emit nothing."""
    from suptrace.core.runtime import Runtime

    kinds: list[str] = []
    original = Runtime.emit

    def counting(self: Runtime, proc: Any, kind: str, data: dict[str, Any]) -> None:
        kinds.append(kind)
        original(self, proc, kind, data)

    monkeypatch.setattr(Runtime, "emit", counting)

    async def main() -> int:
        await Db.start_link(name="db")
        kinds.clear()
        return await _poll(30)

    assert await in_node(main, system_monitor=False) == 10
    assert kinds == ["call_timeout"] * 10


def test_logger_disable_still_silences_the_reports() -> None:
    script = "from loguru import logger; logger.disable('suptrace')\n" + _DEFAULT_HANDLER
    result = subprocess.run(
        [sys.executable, "-c", script, "short"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
