"""A death is always complete, whatever the observers and the exit reason do.

Raising event, report and death handlers, call tracing of the runtime's own
clocks, and hostile exit reasons (a raising ``__str__``/``__repr__``, an int
too large for ``str()``, a 100 MB message, a list that contains itself): links
and monitors are signalled, the name is released with its tombstone, the crash
report and the supervisor report are emitted and the child is restarted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from loguru import logger
from runtime_support import in_node
from trace_support import EventLog

import suptrace
from suptrace import ChildSpec, CrashReport, Down, Exit, NoProc, Supervisor, SupervisorReport
from suptrace.core.runtime import current_runtime
from suptrace.node.control.shapes import event_json, report_json, tombstone_json
from suptrace.observers.format import format_event, short
from suptrace.observers.otel.spans import brief, reason_text
from suptrace.observers.reports import format_report

# -- hostile reasons --------------------------------------------------------------------------


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ refuses")


class BadStrArgs(Exception):
    """``str()`` raises, and the message is not a plain string either."""

    def __init__(self) -> None:
        super().__init__(1, 2)

    def __str__(self) -> str:
        raise RuntimeError("__str__ refuses")


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ refuses")


def _selfref() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    loop.append({"again": loop})
    return loop


class BadEq:
    """Like an array: ``==`` answers with something whose truth value raises."""

    def __eq__(self, other: object) -> Any:
        return self

    def __ne__(self, other: object) -> Any:
        return self

    def __bool__(self) -> bool:
        raise ValueError("the truth value is ambiguous")

    __hash__ = object.__hash__


HOSTILE: dict[str, Callable[[], BaseException]] = {
    "eq": lambda: Exit(BadEq()),
    "str": lambda: BadStr("x"),
    "str-args": BadStrArgs,
    "repr": lambda: Exit(BadRepr()),
    "bigint": lambda: Exit(10**5000),
    "huge": lambda: ValueError("m" * 100_000_000),
    "selfref": lambda: Exit(_selfref()),
}


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    yield lines
    logger.remove(sink)


class Reports:
    """Every report of the node, and a future per awaited condition."""

    def __init__(self) -> None:
        self.got: list[Any] = []
        self._waiters: list[tuple[Callable[[Any], bool], asyncio.Future[Any]]] = []

    def __call__(self, report: Any) -> None:
        self.got.append(report)
        for match, fut in list(self._waiters):
            if match(report) and not fut.done():
                fut.set_result(report)

    async def wait_for(self, match: Callable[[Any], bool]) -> Any:
        for report in self.got:
            if match(report):
                return report
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((match, fut))
        return await asyncio.wait_for(fut, 5)


async def victim() -> None:
    while True:
        msg = await suptrace.receive()
        if isinstance(msg, tuple) and msg[0] == "die":
            raise HOSTILE[msg[1]]()
        if msg == "crash":
            raise RuntimeError("told to crash")


async def start_victim() -> suptrace.Pid:
    return suptrace.spawn_link(victim, name="victim")


async def doomed(kind: str) -> None:
    raise HOSTILE[kind]()


async def _kill_supervised(reports: Reports, message: Any) -> tuple[suptrace.Pid, suptrace.Pid]:
    """Make the supervised victim die of ``message``; returns (old pid, restarted pid)."""
    old = suptrace.whereis("victim")
    assert old is not None
    ref = suptrace.monitor(old)
    suptrace.send(old, message)
    down = await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
    assert down.pid == old
    await suptrace.which_children("sup")  # the supervisor has handled the exit
    new = suptrace.whereis("victim")
    assert new is not None and new != old
    await reports.wait_for(
        lambda r: isinstance(r, SupervisorReport) and r.context == "child_terminated"
    )
    return old, new


@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_a_hostile_reason_is_reported_restarted_and_told(kind: str) -> None:
    logged: list[str] = []
    sink = logger.add(lambda m: logged.append(m.record["message"]), level="ERROR")

    async def main() -> None:
        reports = Reports()
        suptrace.add_report_handler(reports)
        await Supervisor.start_link(
            [ChildSpec(id="v", start=(start_victim, ()))], intensity=10, period=60, name="sup"
        )
        old, _ = await _kill_supervised(reports, ("die", kind))
        crash = await reports.wait_for(lambda r: isinstance(r, CrashReport) and r.pid == old)
        sup_report = await reports.wait_for(
            lambda r: isinstance(r, SupervisorReport) and r.context == "child_terminated"
        )
        for report in (crash, sup_report):
            assert len(format_report(report)) < 30_000
            assert len(json.dumps(report_json(report))) < 60_000

        # An unsupervised named process: the name's tombstone tells its story, bounded.
        _, ref = suptrace.spawn_monitor(doomed, kind, name="gone")
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        with pytest.raises(NoProc) as sent:
            suptrace.send("gone", "hello")
        with pytest.raises(NoProc) as called:
            await suptrace.call("gone", "hello", timeout=1)
        for err in (sent.value, called.value):
            text = str(err)
            assert "gone is gone" in text and len(text) < 4_000
            assert len(repr(err)) < 4_000
        stone = current_runtime().tombstones["gone"]
        assert len(stone.story()) < 2_000
        assert len(json.dumps(tombstone_json(stone))) < 20_000
        assert suptrace.process_info("gone") is None

    try:
        await in_node(main, log_reports=True)
    finally:
        logger.remove(sink)
    crash_lines = [line for line in logged if line.startswith("=CRASH REPORT")]
    assert len(crash_lines) == 2  # the supervised victim and "gone"
    assert all(len(line) < 30_000 for line in logged)


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_every_rendering_is_total_and_bounded(kind: str) -> None:
    exc = HOSTILE[kind]()
    reason = exc.reason if isinstance(exc, Exit) else exc
    for value in (reason, exc, [reason, {"k": reason}], (reason,)):
        assert len(short(value)) <= 500
        assert len(brief(value)) <= 500
        assert len(reason_text(value)) <= 800
    event = suptrace.TraceEvent(0.0, None, None, "exit", {"reason": reason, "msg": exc})
    assert len(format_event(event)) < 2_000
    assert len(json.dumps(event_json(event))) < 4_000
    err = NoProc("noproc", "x", request=reason, detail=short(reason))
    assert len(str(err)) < 4_000 and len(repr(err)) < 4_000
    assert len(repr(Exit(reason))) < 4_000


def test_a_wide_self_referential_value_is_cut_quickly() -> None:
    wide: list[Any] = []
    wide.extend([wide] * 12)
    text = short(wide, 100)
    assert len(text) <= 201 and text.startswith("[[[")


# -- observers that raise ---------------------------------------------------------------------


async def test_a_death_is_complete_when_every_observer_raises(warnings: list[str]) -> None:
    def broken_event_handler(event: suptrace.TraceEvent) -> None:
        raise RuntimeError(f"event handler bug on {event.kind}")

    def broken_report_handler(report: Any) -> None:
        raise RuntimeError("report handler bug")

    async def main() -> int:
        rt = current_runtime()
        # Every kind, so the exit, unregister, crash and down events all hit it.
        suptrace.add_event_handler(broken_event_handler)
        suptrace.add_report_handler(broken_report_handler)
        reports = Reports()
        suptrace.add_report_handler(reports)  # a later, healthy subscriber
        rt.death_hooks = (*rt.death_hooks, broken_death_hook)
        await Supervisor.start_link(
            [ChildSpec(id="v", start=(start_victim, ()))], intensity=10, period=60, name="sup"
        )
        for _ in range(3):
            old, new = await _kill_supervised(reports, "crash")
            assert suptrace.whereis("victim") == new  # the name was released and taken again
            assert old._proc is None  # the dead process is gone from the table
            await reports.wait_for(lambda r, o=old: isinstance(r, CrashReport) and r.pid == o)
        return rt.hook_errors

    def broken_death_hook(proc: Any, reason: Any) -> None:
        raise RuntimeError("death hook bug")

    errors = await in_node(main)
    assert errors > 10  # every failure counted...
    named = [w for w in warnings if "stays subscribed" in w]
    # ...and each handler reported once, by name.
    assert sum("broken_event_handler" in w for w in named) == 1
    assert sum("broken_report_handler" in w for w in named) == 1
    assert sum("broken_death_hook" in w for w in named) == 1


async def test_an_exploding_event_build_does_not_stop_the_death(
    warnings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when building the exit event itself fails, links, monitors and the name are done."""
    from suptrace.core.process import Process

    def exploding(self: Process, reason: Any) -> dict[str, Any]:
        raise RuntimeError("cannot build the exit event")

    async def main() -> None:
        rt = current_runtime()
        suptrace.add_event_handler(lambda e: None, ["exit"])

        async def child() -> None:
            raise RuntimeError("child dies")

        monkeypatch.setattr(Process, "_exit_data", exploding)
        pid = suptrace.spawn(child, name="exploding")
        ref = suptrace.monitor(pid)
        down = await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        assert isinstance(down.reason, RuntimeError)
        assert suptrace.whereis("exploding") is None and "exploding" in rt.tombstones
        assert pid._proc is None and pid.number not in rt.procs

    await in_node(main)
    assert any("cannot build the exit event" in w and "fully processed" in w for w in warnings)


# -- call tracing and the runtime -------------------------------------------------------------


@pytest.mark.parametrize("function", ["time:time", "time:monotonic"])
async def test_call_tracing_a_runtime_clock_never_recurses(function: str) -> None:
    log = EventLog()
    clock = function.split(":")[1]

    async def main() -> tuple[int, list[Any]]:
        rt = current_runtime()
        reports = Reports()
        suptrace.add_report_handler(reports)
        tracer = suptrace.trace_calls(function, handler=log, rate=None, max_events=None)
        await Supervisor.start_link(
            [ChildSpec(id="v", start=(start_victim, ()))], intensity=10, period=60, name="sup"
        )

        async def worker() -> float:
            return float(getattr(time, clock)())  # looked up now: the patched one

        pid, ref = suptrace.spawn_monitor(worker)
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        await log.wait_for(lambda e: e.pid == pid and e.data["phase"] == "return")
        old, _ = await _kill_supervised(reports, "crash")
        await reports.wait_for(lambda r: isinstance(r, CrashReport) and r.pid == old)
        tracer.stop()
        return rt.hook_errors, [e.pid for e in log.events]

    errors, pids = await in_node(main)
    assert errors == 0
    assert pids  # the processes' own calls are seen


async def test_builtins_are_refused_with_what_to_do() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="builtins are called by every module"):
            suptrace.trace_calls("builtins:len")
        assert len.__module__ == "builtins" and not hasattr(len, "__suptrace_original__")

    await in_node(main)


async def test_a_traced_function_the_tracer_uses_is_not_reported_twice() -> None:
    """What the runtime calls on its own behalf (here a hook in the step) is not traced."""
    import json as json_module

    log = EventLog()

    async def main() -> list[str]:
        suptrace.add_event_handler(lambda e: json_module.dumps([1]), ["send"])
        tracer = suptrace.trace_calls("json:dumps", handler=log, rate=None)
        me = suptrace.self_pid()
        json_module.dumps([2])  # the process's own call
        suptrace.send(me, "x")  # the hook's call: the runtime at work, not the process
        await suptrace.receive()
        tracer.stop()
        return [e.data["phase"] for e in log.events]

    assert await in_node(main) == ["call", "return"]


async def test_a_raising_watch_callback_does_not_stop_the_other_watchers(
    warnings: list[str],
) -> None:
    from suptrace.core.links import watch

    def broken_watch(ref: Any, pid: Any, reason: Any) -> None:
        raise RuntimeError("watch callback bug")

    async def main() -> tuple[Any, Any]:
        rt = current_runtime()
        pid = suptrace.spawn(victim)
        watch(rt.procs[pid.number], broken_watch)  # told first, fails first
        ref = suptrace.monitor(pid)
        suptrace.trap_exit(True)
        suptrace.link(pid)
        suptrace.exit(pid, "boom")
        down = await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        trapped = await suptrace.receive(lambda m: isinstance(m, suptrace.ExitMsg))
        return down.reason, trapped.reason

    assert await in_node(main) == ("boom", "boom")
    assert sum("broken_watch" in w for w in warnings) == 1


@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_a_hostile_reason_that_breaches_intensity_is_reported(kind: str) -> None:
    async def main() -> list[str]:
        reports = Reports()
        suptrace.add_report_handler(reports)
        sup = await Supervisor.start_link(
            [ChildSpec(id="v", start=(start_victim, ()), restart="permanent")],
            intensity=0,
            period=60,
            name="sup",
        )
        suptrace.trap_exit(True)
        ref = suptrace.monitor(sup)
        suptrace.send("victim", ("die", kind))
        down = await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        assert down.reason == "shutdown"
        await reports.wait_for(
            lambda r: isinstance(r, SupervisorReport) and r.context == "shutdown"
        )
        stone = current_runtime().tombstones["victim"]
        assert len(stone.story()) < 2_000
        return [format_report(r)[:40] for r in reports.got]

    texts = await in_node(main)
    assert any(t.startswith("=SUPERVISOR REPORT") for t in texts)


async def test_an_observer_raising_exit_does_not_stop_the_death(warnings: list[str]) -> None:
    def exits(event: suptrace.TraceEvent) -> None:
        raise Exit("observer wants out")

    async def main() -> Any:
        rt = current_runtime()
        suptrace.add_event_handler(exits, ["exit"])
        pid = suptrace.spawn(victim, name="quitter")
        ref = suptrace.monitor(pid)
        suptrace.send(pid, "crash")
        down = await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        assert suptrace.whereis("quitter") is None and "quitter" in rt.tombstones
        return down.reason

    reason = await in_node(main)
    assert isinstance(reason, RuntimeError)
    assert any("observer wants out" in w for w in warnings)


async def test_a_reason_with_a_hostile_eq_still_kills_linked_processes() -> None:
    async def main() -> tuple[Any, Any]:
        peer = suptrace.spawn(victim)  # linked below, not trapping: must die with the reason
        dying = suptrace.spawn(victim)
        watch_peer = suptrace.monitor(peer)
        watch_dying = suptrace.monitor(dying)

        me = suptrace.self_pid()

        async def link_them() -> None:
            suptrace.link(peer)
            suptrace.link(dying)
            suptrace.send(me, "linked")
            await suptrace.receive()

        middle = suptrace.spawn(link_them)
        watch_middle = suptrace.monitor(middle)
        await suptrace.receive(lambda m: m == "linked")
        suptrace.send(dying, ("die", "eq"))
        got = [
            await suptrace.receive(lambda m, r=r: isinstance(m, Down) and m.ref == r)
            for r in (watch_dying, watch_middle, watch_peer)
        ]
        assert all(isinstance(d.reason, BadEq) for d in got), [d.reason for d in got]
        return suptrace.is_alive(peer), suptrace.is_alive(middle)

    assert await in_node(main) == (False, False)
