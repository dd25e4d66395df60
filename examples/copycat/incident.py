"""Run the incident and collect what happened (used by ``__main__`` and the tests)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import suptrace
from examples.copycat import service


@dataclass
class Outcome:
    fixed: bool
    reports: list[Any] = field(default_factory=list)
    trace_lines: list[str] = field(default_factory=list)
    monitor_before: tuple[int, str] | None = None
    monitor_after: tuple[int, str] | None = None
    stats: service.Stats = field(default_factory=service.Stats)
    import_sup_alive_at_end: bool = False


async def run(
    fixed: bool = False, timing: service.Timing | None = None, trace: bool = True
) -> Outcome:
    """Start CopyCat, let the database be slow for a while, and see what is left.

    Returns once the story has played out: for the transient tree, when the
    import supervisor is gone for good; for the permanent one, when importers
    fetched again after the database recovered.
    """
    timing = timing or service.Timing()
    out = Outcome(fixed=fixed)
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()

    def on_report(report: Any) -> None:
        out.reports.append(report)
        if getattr(report, "context", None) == "not_restarted":
            ended.set()

    suptrace.add_report_handler(on_report)
    await service.start(timing, out.stats, fixed=fixed)
    out.monitor_before = await service.baby_monitor()
    if trace:
        # dbg.p(pid, [:all]) on the import supervisor, following its name across restarts.
        suptrace.trace(
            "copycat.import_sup",
            ("send", "receive", "procs"),
            handler=lambda e: out.trace_lines.append(suptrace.format_event(e)),
            max_events=500,
        )
    recovered = time.monotonic() + timing.slow_from + timing.slow_for
    loop.call_at(loop.time() + timing.slow_from + timing.slow_for, _mark_recovered, out.stats)
    if fixed:
        while out.stats.fetches_after_recovery < 5:
            await suptrace.call("copycat.sup", ("which_children",))
            await asyncio.sleep(timing.poll_interval)
    else:
        await ended.wait()
        # Give the (dead) importers every chance to show they really stopped.
        while time.monotonic() < recovered + 4 * timing.poll_interval:
            await asyncio.sleep(timing.poll_interval)
    out.monitor_after = await service.baby_monitor()
    out.import_sup_alive_at_end = suptrace.whereis("copycat.import_sup") is not None
    return out


def _mark_recovered(stats: service.Stats) -> None:
    stats.recovered_at = time.monotonic()
