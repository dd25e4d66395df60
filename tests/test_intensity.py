"""Restart intensity (supervisor_SUITE multiple_restarts; otp-semantics §2.5):
the pure rule `add_restart`, its amortised twin `RestartWindow`, and a live
supervisor under a controlled clock (whole seconds of time.monotonic())."""

from __future__ import annotations

from itertools import accumulate
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sup_support import Lab, ReportLog, exit_and_wait, exit_from, in_node

import suptrace
import suptrace.behaviours.supervision as supervision_module
from suptrace import Supervisor, add_restart
from suptrace.behaviours.intensity import RestartWindow

# -- the pure rule ---------------------------------------------------------------------------


def test_first_restart_is_allowed_with_intensity_one() -> None:
    assert add_restart((), 10, 1, 5) == ((10,), True)


def test_intensity_zero_refuses_the_first_restart() -> None:
    assert add_restart((), 10, 0, 5) == ((10,), False)


def test_the_window_is_inclusive_in_whole_seconds() -> None:
    # a restart exactly `period` seconds old still counts...
    assert add_restart((10,), 15, 1, 5) == ((15, 10), False)
    # ...one second more and it has expired
    assert add_restart((10,), 16, 1, 5) == ((16,), True)


def test_the_max_r_plus_one_th_restart_in_the_window_gives_up() -> None:
    window: tuple[int, ...] = ()
    results = []
    for now in (0, 1, 2, 3):
        window, ok = add_restart(window, now, 3, 5)
        results.append(ok)
    assert results == [True, True, True, False]
    assert window == (3, 2, 1, 0)  # newest first


def test_multiple_restarts_timing_of_the_otp_suite() -> None:
    """T24 multiple_restarts: intensity 1, period 1, 2.1 s between two crashes."""
    window, ok = add_restart((), 100, 1, 1)
    assert ok
    window, ok = add_restart(window, 102, 1, 1)  # 2.1 s later: whole second 102
    assert (window, ok) == ((102,), True)
    assert add_restart(window, 102, 1, 1) == ((102, 102), False)  # a third one at once


def test_old_restarts_are_dropped_from_the_window() -> None:
    assert add_restart((9, 7, 3, 1), 10, 10, 3) == ((10, 9, 7), True)


def test_restart_window_matches_the_examples() -> None:
    w = RestartWindow(intensity=2, period=5)
    assert [w.add(t) for t in (0, 1, 2)] == [True, True, False]
    assert w.used(now=2) == 3
    assert w.used(now=6) == 2  # 0 has expired, 1 and 2 still count
    assert w.snapshot() == (2, 1, 0)
    w2 = RestartWindow(intensity=1, period=5)
    assert w2.add(10) and not w2.add(15)
    w3 = RestartWindow(intensity=1, period=5)
    assert w3.add(10) and w3.add(16)


@settings(deadline=None)
@given(
    intensity=st.integers(min_value=0, max_value=6),
    period=st.integers(min_value=1, max_value=10),
    start=st.integers(min_value=0, max_value=10**6),
    gaps=st.lists(st.integers(min_value=0, max_value=12), max_size=40),
)
def test_restart_window_agrees_with_add_restart(
    intensity: int, period: int, start: int, gaps: list[int]
) -> None:
    """For any non-decreasing sequence of whole-second timestamps (monotonic
    time never goes back), the deque gives the same verdicts and the same window."""
    window: tuple[int, ...] = ()
    fast = RestartWindow(intensity, period)
    for now in accumulate(gaps, initial=start):
        window, ok = add_restart(window, now, intensity, period)
        assert fast.add(now) is ok
        assert fast.snapshot() == window
        assert fast.used(now) == len(window)


# -- a live supervisor under a controlled clock ----------------------------------------------


class Clock:
    """Stands in for the `time` module inside suptrace.behaviours.supervision (the restart clock)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(1000.0)
    monkeypatch.setattr(supervision_module, "time", fake)
    return fake


async def test_multiple_restarts_window_expiry_live(clock: Clock) -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await Supervisor.start_link(
            [lab.spec("child1", shutdown="brutal_kill")], name="sup_test", intensity=1, period=1
        )
        mark = log.mark()
        await exit_and_wait(lab.pid("child1"), "abnormal")
        await log.wait_progress("child1", count=2)
        clock.now += 2.1  # the first restart has left the window
        await exit_and_wait(lab.pid("child1"), "abnormal")
        await log.wait_progress("child1", count=3)
        assert suptrace.is_alive(sup)
        assert (await suptrace.describe(sup))["restarts_in_window"] == 1
        # but one more within the period ends the supervisor
        suptrace.exit(lab.pid("child1"), "abnormal")
        assert await exit_from(sup) == "shutdown"
        assert log.since(mark) == [
            ("sup_test", "child_terminated", "child1", "abnormal"),
            ("sup_test", "progress", "child1"),
            ("sup_test", "child_terminated", "child1", "abnormal"),
            ("sup_test", "progress", "child1"),
            ("sup_test", "child_terminated", "child1", "abnormal"),
            ("sup_test", "shutdown", "child1", "reached_max_restart_intensity"),
        ]

    await in_node(main)


@pytest.mark.parametrize(
    ("elapsed", "survives"), [(0.99, False), (1.0, False), (1.99, False), (2.0, True)]
)
async def test_window_boundary_live(clock: Clock, elapsed: float, survives: bool) -> None:
    """Intensity 1, period 1, first restart at whole second 1000: a second restart
    at 1001.x is inside the inclusive window; at 1002 it has expired."""

    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await Supervisor.start_link([lab.spec("c")], name="sup", intensity=1, period=1)
        await exit_and_wait(lab.pid("c"), "boom")
        await log.wait_progress("c", count=2)
        clock.now = 1000.0 + elapsed
        mark = log.mark()
        if survives:
            await exit_and_wait(lab.pid("c"), "boom")
            await log.wait_progress("c", count=3)
            assert suptrace.is_alive(sup)
            expected: list[Any] = [
                ("sup", "child_terminated", "c", "boom"),
                ("sup", "progress", "c"),
            ]
        else:
            suptrace.exit(lab.pid("c"), "boom")
            assert await exit_from(sup) == "shutdown"
            expected = [
                ("sup", "child_terminated", "c", "boom"),
                ("sup", "shutdown", "c", "reached_max_restart_intensity"),
            ]
        assert log.since(mark) == expected

    await in_node(main)


async def test_intensity_breach_cause_names_the_window(clock: Clock) -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        lab = Lab()
        inner = suptrace.ChildSpec(
            id="inner",
            start=(
                Supervisor.start_link,
                ([lab.spec("w")],),
                {"name": "inner", "intensity": 2, "period": 5},
            ),
            type="supervisor",
            restart="transient",
        )
        log = ReportLog()
        await Supervisor.start_link([inner], name="top", intensity=1, period=5)
        for n in (2, 3):
            await exit_and_wait(lab.pid("w"), "boom")
            await log.wait_progress("w", count=n)
        suptrace.exit(lab.pid("w"), "boom")
        report = await log.wait_context("not_restarted")
        assert report.cause is not None
        assert "3 restarts in 5s, intensity 2" in report.cause["text"]

    await in_node(main)
