"""DynamicSupervisor shutdown: children are signalled together, and each one that
does not stop is killed after its own ``shutdown``, not after the longest of its
siblings' (otp-semantics "Stopping")."""

from __future__ import annotations

from typing import Any

from sup_support import ExitLog, Lab, ReportLog, exit_from, in_node

import suptrace
from suptrace import DynamicSupervisor, Pid, TraceEvent


async def test_each_child_is_killed_after_its_own_shutdown() -> None:
    signals: list[TraceEvent] = []

    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        suptrace.add_event_handler(signals.append, kinds=["exit_signal"])
        sup = await DynamicSupervisor.start_link(name="pool")
        lab.body["quick"] = lab.body["patient"] = "trap"  # both ignore the shutdown signal
        quick: Any = await suptrace.start_child(sup, lab.spec("quick", shutdown=0.1))
        patient: Any = await suptrace.start_child(sup, lab.spec("patient", shutdown=3.0))
        ref = suptrace.monitor(quick)
        suptrace.exit(sup, "shutdown")
        # The quick child's kill comes while the patient one is still given its time.
        down = await suptrace.receive(lambda m: type(m) is suptrace.Down and m.ref == ref, timeout=2.5)
        assert down.reason == "killed"
        assert suptrace.is_alive(patient)
        suptrace.send(patient, ("stop", "shutdown"))  # then it stops within its shutdown
        assert await exit_from(sup) == "shutdown"
        assert exits.reason(patient) == "shutdown"
        assert [(r.offender["id"], r.reason) for r in log.supervisor_reports()] == [
            ("quick", "killed")
        ]

        def signal_ts(pid: Pid, reason: str) -> float:
            [ts] = [e.ts for e in signals if e.pid == pid and e.data["reason"] == reason]
            return ts

        waited = signal_ts(quick, "killed") - signal_ts(quick, "shutdown")
        # Killed after its own 0.1 s (timer slack allowed), far from its sibling's 3.0 s.
        assert 0.09 <= waited < 2.0, waited

    await in_node(main)
