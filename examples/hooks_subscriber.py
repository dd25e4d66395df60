"""A third-party subscriber built only on suptrace's public hooks.

`RestartCounter` is what a metrics library or a health endpoint would ship: it
counts restarts per (supervisor, child id) from the event stream
(`suptrace.add_event_handler`, kind ``"restart"``) and remembers which
supervisors gave up after reaching their restart intensity (a
`suptrace.SupervisorReport` with context ``"shutdown"``, from
`suptrace.add_report_handler`). It imports nothing but ``suptrace`` itself.

Run: python examples/hooks_subscriber.py
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import suptrace


class RestartCounter:
    """Restarts per (supervisor, child id), and the supervisors that gave up."""

    def __init__(self) -> None:
        self.restarts: Counter[tuple[Any, Any]] = Counter()
        self.gave_up: list[Any] = []

    def install(self) -> Callable[[], None]:
        """Subscribe in the current node; returns the function that unsubscribes."""
        stop_events = suptrace.add_event_handler(self._on_event, kinds=["restart"])
        stop_reports = suptrace.add_report_handler(self._on_report)

        def uninstall() -> None:
            stop_events()
            stop_reports()

        return uninstall

    # Handlers run inside the runtime: they only count, never block or await.
    def _on_event(self, event: suptrace.TraceEvent) -> None:
        self.restarts[(event.data["supervisor"], event.data["child_id"])] += 1

    def _on_report(self, report: Any) -> None:
        if isinstance(report, suptrace.SupervisorReport) and report.context == "shutdown":
            self.gave_up.append(report.supervisor)


# -- a small demonstration -------------------------------------------------------------------


async def flaky() -> None:
    """A worker that crashes when told to."""
    while True:
        if await suptrace.receive() == "crash":
            raise RuntimeError("flaky worker crashed")


async def start_flaky() -> suptrace.Pid:
    return suptrace.spawn_link(flaky, name="flaky")


async def crash_four_times(counter: RestartCounter) -> dict[str, Any]:
    uninstall = counter.install()
    spec = suptrace.ChildSpec(id="flaky", start=(start_flaky, ()))
    sup = await suptrace.Supervisor.start([spec], intensity=3, period=5, name="demo.sup")
    sup_ref = suptrace.monitor(sup)
    for _ in range(4):
        suptrace.send("flaky", "crash")
        if suptrace.is_alive(sup):
            # A call is answered after the supervisor handled the crash (its mailbox is in order).
            with contextlib.suppress(suptrace.CallError):  # it may give up meanwhile
                await suptrace.which_children("demo.sup")
    await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == sup_ref)
    uninstall()
    return {"restarts": dict(counter.restarts), "gave_up": list(counter.gave_up)}


def demo() -> dict[str, Any]:
    """Crash a worker four times under a supervisor allowing three restarts."""
    return suptrace.run(crash_four_times, RestartCounter(), log_reports=False)


if __name__ == "__main__":
    result = demo()
    for (sup, child), n in result["restarts"].items():
        print(f"{sup} restarted {child!r} {n} times")
    for sup in result["gave_up"]:
        print(f"{sup} gave up: reached its maximum restart intensity")
