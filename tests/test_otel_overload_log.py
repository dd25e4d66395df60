"""A full export queue is overload: counted at once, logged at most once a minute with
the count since the last line, never called an outage (the guard's clock is driven
by the test)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from loguru import logger

from suptrace.observers.otel import guard as guard_module
from suptrace.observers.otel.guard import OVERLOAD_LOG_INTERVAL, ExportGuard


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(guard_module, "time", fake)
    return fake


@pytest.fixture
def lines() -> Iterator[list[str]]:
    got: list[str] = []
    sink = logger.add(lambda m: got.append(str(m.record["message"])), level="WARNING")
    try:
        yield got
    finally:
        logger.remove(sink)


def _export(guard: ExportGuard, count: int = 10) -> None:
    assert guard.run(count, lambda: True)


def test_overload_is_logged_once_a_minute_with_the_count(clock: Clock, lines: list[str]) -> None:
    guard = ExportGuard("traces", "localhost:4317")
    guard.overload(5)
    assert guard.overload_dropped == 5 and guard.dropped == 5 and not lines
    _export(guard)  # the slow export in flight ends: the first line
    assert len(lines) == 1
    assert "is full: 5 spans dropped. This is overload" in lines[0]
    assert "overload, not an outage" in lines[0]

    for step in (10, 20):  # more drops within the minute: counted, not logged
        clock.now += step
        guard.overload(3)
        _export(guard)
    assert len(lines) == 1 and guard.overload_dropped == 11

    clock.now += OVERLOAD_LOG_INTERVAL  # a minute after the first line
    _export(guard)
    assert len(lines) == 2
    assert "6 spans dropped since the last report (11 in all)" in lines[1]
    assert guard.state == "ok" and guard.outages == 0  # never an outage
    assert guard.snapshot()["overload_dropped"] == 11


def test_an_export_that_never_ends_still_gets_its_line(clock: Clock, lines: list[str]) -> None:
    guard = ExportGuard("logs", "localhost:4317")
    guard.overload(1)  # no export ends after this one
    clock.now += OVERLOAD_LOG_INTERVAL - 1
    guard.overload(1)
    assert not lines
    clock.now += 1
    guard.overload(1)  # a minute of drops with no report: the drop itself reports
    assert len(lines) == 1
    assert "is full: 3 log records dropped. This" in lines[0]


def test_no_drops_no_line(clock: Clock, lines: list[str]) -> None:
    guard = ExportGuard("metrics", "localhost:4317")
    guard.overload(0)
    _export(guard)
    clock.now += 10 * OVERLOAD_LOG_INTERVAL
    _export(guard)
    assert lines == [] and guard.overload_dropped == 0


class RacingLock:
    """The guard's lock, with another thread's drop landing right after a release."""

    def __init__(self, guard: ExportGuard) -> None:
        self.inner = threading.Lock()
        self.guard = guard
        self.armed = False

    def __enter__(self) -> None:
        self.inner.acquire()

    def __exit__(self, *exc: object) -> None:
        self.inner.release()
        if self.armed:
            self.armed = False
            self.guard.overload(7)  # the loop thread, between the release and the line


def test_a_line_counts_what_it_reports_at_one_moment(clock: Clock, lines: list[str]) -> None:
    guard = ExportGuard("traces", "localhost:4317")
    guard.overload(5)
    _export(guard)
    clock.now += OVERLOAD_LOG_INTERVAL
    guard.overload(6)
    racing = RacingLock(guard)
    guard._lock = racing  # type: ignore[assignment]
    racing.armed = True
    guard._report_overload()
    assert "6 spans dropped since the last report (11 in all)" in lines[1]
    assert guard.overload_dropped == 18  # the late drop is counted, for the next line
