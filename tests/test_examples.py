"""The seed stories, run as examples: each asserts what the story describes and
what suptrace reports where OTP stayed silent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import suptrace
from examples.copycat import incident, service
from examples.dodos import world
from examples.trees import __main__ as trees_session

ROOT = Path(__file__).resolve().parents[1]


def contexts(reports: list[Any], supervisor: Any) -> list[str]:
    return [
        r.context
        for r in reports
        if isinstance(r, suptrace.SupervisorReport) and r.supervisor == supervisor
    ]


# -- CopyCat -------------------------------------------------------------------------------


def test_copycat_incident_import_supervisor_vanishes_and_suptrace_says_why() -> None:
    out = suptrace.run(incident.run, False, log_reports=False)
    # The incident: importing stopped for good, the baby monitor fails with noproc.
    assert out.monitor_before == (200, '{"running_importers": 5}')
    assert out.monitor_after is not None and out.monitor_after[0] == 500
    assert not out.import_sup_alive_at_end
    assert out.stats.fetches_after_recovery == 0
    # What SASL printed: child_terminated x4 and the intensity shutdown in the import supervisor...
    assert contexts(out.reports, "copycat.import_sup")[:5] == ["child_terminated"] * 4 + [
        "shutdown"
    ]
    # ...and what SASL never said: the parent did not restart it, and why.
    [nr] = [r for r in out.reports if getattr(r, "context", None) == "not_restarted"]
    assert nr.supervisor == "copycat.sup"
    assert nr.offender["id"] == "import_sup" and nr.offender["restart_type"] == "transient"
    assert nr.reason == "shutdown"
    assert nr.cause is not None and nr.cause["cause"] == "reached_max_restart_intensity"
    assert isinstance(nr.cause["offender_reason"], suptrace.CallTimeout)
    assert "transient" in (nr.rule or "")
    # The baby monitor's error tells the tombstone's story.
    body = out.monitor_after[1]
    assert "copycat.import_sup is gone" in body
    assert "max restart intensity" in body
    assert "transient, so its parent copycat.sup did not restart it" in body
    # The dbg session: ExitMsg carrying the call timeout, the intensity breach, the unregister.
    lines = out.trace_lines
    timeout_exit = next(
        i for i, ln in enumerate(lines) if "<< ExitMsg(" in ln and "CallTimeout" in ln
    )
    breach = next(i for i, ln in enumerate(lines) if "intensity reached" in ln)
    unreg = next(i for i, ln in enumerate(lines) if "unregister copycat.import_sup" in ln)
    assert timeout_exit < breach < unreg
    # Crash reports carry the importer's last events (its flight recorder).
    crash = next(r for r in out.reports if isinstance(r, suptrace.CrashReport))
    assert any(e.kind == "call" for e in crash.last_events)


def test_copycat_fixed_permanent_import_supervisor_keeps_importing() -> None:
    out = suptrace.run(incident.run, True, log_reports=False)
    assert out.monitor_after == (200, '{"running_importers": 5}')
    assert out.import_sup_alive_at_end
    assert out.stats.fetches_after_recovery >= 5
    # The parent reported the import supervisor's exit and restarted it: no silence.
    parent = contexts(out.reports, "copycat.sup")
    assert "child_terminated" in parent and "not_restarted" not in parent
    restarted = [
        r
        for r in out.reports
        if isinstance(r, suptrace.SupervisorReport)
        and r.supervisor == "copycat.sup"
        and r.context == "child_terminated"
    ]
    assert all(r.reason == "shutdown" and r.offender["id"] == "import_sup" for r in restarted)


def test_copycat_spec_is_visible_without_running() -> None:
    [import_sup] = [c for c in service.SPEC if c.id == "import_sup"]
    assert import_sup.restart == "transient" and import_sup.type == "supervisor"


# -- Dodos ---------------------------------------------------------------------------------


def test_dodos_go_extinct_cockroaches_survive() -> None:
    async def scenario() -> dict[str, Any]:
        reports: list[Any] = []
        suptrace.add_report_handler(reports.append)
        await world.start()
        await world.add_dodos(10)
        await world.add_cockroaches(7)
        assert len(await world.dodos()) == 10

        old = suptrace.whereis("cockroaches")
        ref = suptrace.monitor("cockroaches")
        await world.kill_cockroaches()
        await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)
        while suptrace.whereis("cockroaches") in (None, old):
            await suptrace.which_children("world_sup")
        await world.add_cockroaches(3)
        cockroaches = await world.cockroaches()

        ref = suptrace.monitor("dodos")
        await world.kill_dodos()
        down = await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)
        errors = []
        for op in (world.dodos(), world.add_dodos(1)):
            try:
                await op
            except suptrace.NoProc as e:
                errors.append(str(e))
        return {
            "reports": reports,
            "cockroaches": cockroaches,
            "dodos_reason": down.reason,
            "errors": errors,
            "world": await suptrace.which_children("world_sup"),
        }

    out = suptrace.run(scenario, log_reports=False)
    assert len(out["cockroaches"]) == 3
    assert out["dodos_reason"] == "shutdown"
    assert len(out["errors"]) == 2 and all("dodos is gone" in e for e in out["errors"])
    dodos_sup = {c.id: c.pid for c in out["world"]}["dodos_sup"]
    assert dodos_sup is None  # the spec stays, with no process: extinct
    reports = out["reports"]
    # Cockroaches: 6 kills tolerated-then-breach, and world_sup restarts them (permanent).
    assert contexts(reports, "cockroaches")[:7] == ["child_terminated"] * 6 + ["shutdown"]
    world_ctx = contexts(reports, "world_sup")
    assert world_ctx == ["child_terminated", "not_restarted"]
    [nr] = [r for r in reports if getattr(r, "context", None) == "not_restarted"]
    assert nr.offender["id"] == "dodos_sup"
    assert nr.cause is not None and nr.cause["cause"] == "reached_max_restart_intensity"
    assert nr.cause["offender_reason"] == "killed"


def test_dodos_session_runs_as_a_script() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "examples.dodos"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "** exception: no process dodos: dodos is gone" in proc.stdout
    assert "errorContext: not_restarted" in proc.stderr


# -- Trees ---------------------------------------------------------------------------------


def test_trees_print_what_the_post_printed() -> None:
    lines: list[str] = []
    suptrace.run(trees_session.session, lines.append, log_reports=False)
    text = "\n".join(lines)

    def after(marker: str, count: int) -> list[str]:
        i = lines.index(marker)
        return lines[i + 1 : i + 1 + count]

    assert lines[1:3] == ['"Starting process A."', '"Starting process B."']
    assert "ProcessB" in lines[3].split("ProcessA")[0]  # which_children lists B before A
    one_for_one = lines.index("# Simple tree, one_for_all")
    assert lines[one_for_one - 1] == '"Starting process A."'
    assert after("iex> Process.exit(pid_b, :kill)", 2) == [
        '"Starting process B."',
        '"Starting process C."',
    ]
    i = lines.index("# Self-termination: kill A four times (3 restarts in 5 s tolerated)")
    assert lines[i + 1 : i + 7] == [
        '"Starting process A."',
        '"Starting process B."',
        '"Starting process A."',
        '"Starting process A."',
        '"Starting process A."',
        "** (EXIT) supervisor exited with reason: shutdown",
    ]
    assert text.endswith('"Starting process C."\n"Starting process D."\n"Starting process E."')
