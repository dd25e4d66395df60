"""A failed restart's ``start_error`` report names the pid that died, as OTP's does:
``supervisor:restart/3`` reports the child record that still holds the dead pid
(``{restarting, Pid}`` on a retry); a one_for_all or rest_for_one restart has
cleared the pids of the group it stopped, so its report names none."""

from __future__ import annotations

from typing import Any

from sup_support import Lab, ReportLog, exit_and_wait, in_node

import suptrace
from suptrace import DynamicSupervisor, Supervisor, SupervisorReport


def start_errors(log: ReportLog) -> list[tuple[Any, Any]]:
    return [
        (r.offender["pid"], r.reason)
        for r in log.supervisor_reports()
        if isinstance(r, SupervisorReport) and r.context == "start_error"
    ]


async def test_one_for_one_start_error_names_the_dead_pid_on_each_attempt() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link([lab.spec("a")], intensity=5, name="sup")
        dead = lab.pid("a")
        lab.script["a"].extend([("exit", "boom"), ("exit", "again")])  # then "ok"
        await exit_and_wait(dead, "crash")
        await log.wait_progress("a", count=2)  # the second retry succeeded
        assert start_errors(log) == [(dead, "boom"), (dead, "again")]

    await in_node(main)


async def test_dynamic_supervisor_start_error_names_the_dead_pid() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await DynamicSupervisor.start_link(intensity=5)
        dead: Any = await suptrace.start_child(sup, lab.spec("w"))
        lab.script["w"].extend([("exit", "boom"), ("exit", "again")])
        await exit_and_wait(dead, "crash")
        await log.wait_progress("w", count=2)
        assert start_errors(log) == [(dead, "boom"), (dead, "again")]

    await in_node(main)


async def test_one_for_all_start_error_names_no_pid() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("a"), lab.spec("b")], strategy="one_for_all", intensity=5
        )
        lab.script["b"].append(("exit", "boom"))
        await exit_and_wait(lab.pid("a"), "crash")
        await log.wait_progress("b", count=2)
        assert start_errors(log) == [(None, "boom")]

    await in_node(main)
