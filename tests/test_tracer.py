"""trace(): targets, flags, following a name, the safety limits, and clean removal."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from runtime_support import in_node
from trace_support import EventLog, hook_state, sink, traced_procs

import suptrace
from suptrace import ChildSpec, Down, NoProc, Pid, Supervisor, TraceEvent
from suptrace.core.runtime import current_runtime, maybe_process
from suptrace.observers.tracer import running_tracers


async def _worker() -> None:
    while await suptrace.receive() != "quit":
        pass


async def _parent(reply_to: Pid) -> None:
    """Spawns a child (and tells who), then waits."""
    child = suptrace.spawn(_worker)
    suptrace.send(reply_to, ("child", child))
    await _worker()


async def _stop_and_wait(pid: Pid) -> None:
    ref = suptrace.monitor(pid)
    suptrace.send(pid, "quit")
    await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)


# -- targets and flags -------------------------------------------------------------------


async def test_trace_a_pid_with_flags() -> None:
    sends, receives, procs = EventLog(), EventLog(), EventLog()

    async def main() -> None:
        pid = suptrace.spawn(_worker)
        me = suptrace.self_pid()
        t_send = suptrace.trace(me, ["send"], handler=sends)
        t_recv = suptrace.trace(pid, "receive", handler=receives)
        t_procs = suptrace.trace(pid, ["procs"], handler=procs)
        suptrace.send(pid, "hello")
        await _stop_and_wait(pid)
        await procs.wait_for("exit")
        for t in (t_send, t_recv, t_procs):
            t.stop()

    await in_node(main)
    assert [(e.kind, e.data["msg"]) for e in sends.events] == [("send", "hello"), ("send", "quit")]
    assert [e.data["msg"] for e in receives.events] == ["hello", "quit"]
    assert {e.kind for e in receives.events} == {"receive"}
    assert procs.kinds()[-1] == "exit" and "receive" not in procs.kinds()


async def test_bad_arguments_are_refused() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        with pytest.raises(ValueError, match="unknown trace flag 'sends'"):
            suptrace.trace(me, ["sends"])
        bad_limits: list[dict[str, Any]] = [
            {"max_events": 0},
            {"rate": -1},
            {"duration": 0},
            {"buffer": 0},
        ]
        for bad in bad_limits:
            with pytest.raises(ValueError):
                suptrace.trace(me, **bad)
        with pytest.raises(TypeError, match="target"):
            suptrace.trace(42)  # type: ignore[arg-type]
        assert not traced_procs() and not running_tracers(current_runtime())

    await in_node(main)


async def test_trace_a_registered_name() -> None:
    log = EventLog()

    async def main() -> None:
        pid = suptrace.spawn(_worker, name="named")
        tracer = suptrace.trace("named", ["receive"], handler=log)
        suptrace.send("named", "by name")
        await log.wait_for("receive")
        assert log.events[0].pid == pid and log.events[0].name == "named"
        tracer.stop()

    await in_node(main)


async def test_trace_all_sees_every_process() -> None:
    log = EventLog()

    async def main() -> None:
        a = suptrace.spawn(_worker)
        b = suptrace.spawn(_worker)
        tracer = suptrace.trace("all", ["receive"], handler=log)
        suptrace.send(a, "to a")
        suptrace.send(b, "to b")
        await log.wait_for(lambda e: e.data["msg"] == "to b")
        tracer.stop()
        assert {(e.pid, e.data["msg"]) for e in log.events} == {(a, "to a"), (b, "to b")}

    await in_node(main)


async def test_trace_new_only_sees_processes_spawned_later() -> None:
    log = EventLog()

    async def main() -> None:
        old = suptrace.spawn(_worker)
        tracer = suptrace.trace("new", ["receive"], handler=log)
        new = suptrace.spawn(_worker)
        suptrace.send(old, "old")
        suptrace.send(new, "new")
        await log.wait_for("receive")
        tracer.stop()
        assert [(e.pid, e.data["msg"]) for e in log.events] == [(new, "new")]

    await in_node(main)


async def test_set_on_spawn_follows_the_spawn_tree() -> None:
    on, off = EventLog(), EventLog()

    async def run(log: EventLog, flag: bool) -> None:
        me = suptrace.self_pid()
        parent = suptrace.spawn(_parent, me)
        # Traced before it first runs, so before it spawns its child.
        tracer = suptrace.trace(parent, ["receive"], handler=log, set_on_spawn=flag)
        _, child = await suptrace.receive(lambda m: isinstance(m, tuple) and m[0] == "child")
        suptrace.send(child, "to child")
        suptrace.send(parent, "to parent")
        await log.wait_for(lambda e: e.data["msg"] == "to parent")
        tracer.stop()

    async def main_on() -> None:
        await run(on, True)

    async def main_off() -> None:
        await run(off, False)

    await in_node(main_on)
    await in_node(main_off)
    assert "to child" in [e.data["msg"] for e in on.events]
    assert "to child" not in [e.data["msg"] for e in off.events]


async def test_following_a_name_across_restarts() -> None:
    log = EventLog()

    async def start_named() -> Pid:
        return suptrace.spawn_link(_worker, name="followed")

    async def main() -> None:
        sup = await Supervisor.start_link(
            [ChildSpec(id="w", start=(start_named, ()))], intensity=5, period=5
        )
        first = suptrace.whereis("followed")
        assert first is not None
        tracer = suptrace.trace("followed", ["receive", "procs"], handler=log)
        suptrace.exit(first, "boom")
        await log.wait_for("trace")
        second = suptrace.whereis("followed")
        assert second is not None and second != first
        suptrace.send("followed", "after the restart")
        await log.wait_for(lambda e: e.kind == "receive" and e.pid == second)
        tracer.stop()
        assert sup

        note = next(e for e in log.events if e.kind == "trace")
        assert note.data["pid"] == second and note.data["old_pid"] == first
        assert str(second) in note.data["note"] and str(first) in note.data["note"]
        kinds = [(e.kind, e.pid) for e in log.events]
        assert kinds.index(("exit", first)) < kinds.index(("trace", second))
        assert ("receive", second) in kinds

    await in_node(main)


async def test_follow_name_false_stops_when_the_process_exits() -> None:
    async def main() -> str:
        pid = suptrace.spawn(_worker, name="once")
        tracer = suptrace.trace("once", ["procs"], follow_name=False, handler=EventLog())
        await _stop_and_wait(pid)
        return await asyncio.wait_for(tracer.wait(), 2)

    assert await in_node(main) == "target_exited"


async def test_a_pid_trace_ends_when_the_process_exits() -> None:
    async def main() -> str:
        pid = suptrace.spawn(_worker)
        tracer = suptrace.trace(pid, ["procs"], handler=EventLog())
        await _stop_and_wait(pid)
        return await asyncio.wait_for(tracer.wait(), 2)

    assert await in_node(main) == "target_exited"


# -- missing targets ----------------------------------------------------------------------


async def test_dead_pid_raises_noproc() -> None:
    async def main() -> None:
        pid = suptrace.spawn(_worker)
        await _stop_and_wait(pid)
        before = hook_state()
        with pytest.raises(NoProc, match="not alive"):
            suptrace.trace(pid)
        assert hook_state() == before

    await in_node(main)


async def test_vanished_name_without_follow_tells_the_tombstone_story() -> None:
    async def main() -> None:
        pid = suptrace.spawn(_worker, name="copycat.import_sup")
        ref = suptrace.monitor(pid)  # before the exit: a doomed process gives an early Down
        suptrace.exit(pid, "shutdown")
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        with pytest.raises(NoProc) as info:
            suptrace.trace("copycat.import_sup", follow_name=False)
        text = str(info.value)
        assert "copycat.import_sup is gone" in text and "exited shutdown" in text
        with pytest.raises(NoProc, match="no process is registered under this name"):
            suptrace.trace("never.registered", follow_name=False)
        # With follow_name (the default) a missing name is awaited, not an error.
        tracer = suptrace.trace("never.registered", handler=EventLog())
        assert tracer.active
        tracer.stop()

    await in_node(main)


# -- limits -------------------------------------------------------------------------------


async def test_max_events_stops_the_tracer() -> None:
    log = EventLog()

    async def main() -> dict[str, Any]:
        me = suptrace.self_pid()
        target = suptrace.spawn(sink)
        tracer = suptrace.trace(me, ["send"], max_events=10, handler=log)
        for i in range(100):
            suptrace.send(target, i)
        # Unhooked at once, inside this very step: later sends build no events.
        assert me._proc is not None and not me._proc.tracers
        assert await asyncio.wait_for(tracer.wait(), 2) == "max_events"
        return tracer.stats()

    stats = await in_node(main)
    assert stats["stop_reason"] == "max_events"
    assert stats["accepted"] == stats["delivered"] == 10
    assert [e.data["msg"] for e in log.events] == list(range(10))


async def test_duration_stops_the_tracer() -> None:
    async def main() -> tuple[str, float]:
        started = time.monotonic()
        tracer = suptrace.trace(suptrace.self_pid(), duration=0.05, handler=EventLog())
        reason = await asyncio.wait_for(tracer.wait(), 2)
        return reason, time.monotonic() - started

    reason, took = await in_node(main)
    assert reason == "duration" and took >= 0.04


async def test_rate_limit_is_checked_before_events_are_built() -> None:
    log = EventLog()

    async def main() -> tuple[dict[str, Any], int, int]:
        rt = current_runtime()
        built = 0
        emit = rt.emit

        def counting_emit(proc: Any, kind: str, data: dict[str, Any]) -> None:
            nonlocal built
            built += 1
            emit(proc, kind, data)

        rt.emit = counting_emit  # type: ignore[method-assign]
        target = suptrace.spawn(sink)
        tracer = suptrace.trace(
            suptrace.self_pid(), ["send"], rate=10, max_events=None, handler=log
        )
        for i in range(100):
            suptrace.send(target, i)
        await log.wait_for(lambda e: e.data["msg"] == 9)
        first_second = built
        # The next second (its timer is driven by hand here: no sleeping in tests).
        tracer._resume()
        for i in range(100, 200):
            suptrace.send(target, i)
        await log.wait_for(lambda e: e.data["msg"] == 109)
        tracer.stop()
        return tracer.stats(), first_second, built

    stats, first_second, built = await in_node(main)
    # All 100 sends fall in one second: 10 are traced, the other 90 never become events.
    assert first_second == 10
    assert built == 20 and stats["accepted"] == 20 and stats["rate_pauses"] == 2
    assert [e.data["msg"] for e in log.events] == [*range(10), *range(100, 110)]
    assert "paused the trace 2 time(s)" in suptrace.Tracer.summary.__get__(_Stats(stats))()


async def test_a_rate_limited_trace_of_all_builds_no_events_over_its_cap() -> None:
    log = EventLog()

    async def main() -> tuple[dict[str, Any], int]:
        rt = current_runtime()
        built = 0
        emit = rt.emit

        def counting_emit(proc: Any, kind: str, data: dict[str, Any]) -> None:
            nonlocal built
            built += 1
            emit(proc, kind, data)

        rt.emit = counting_emit  # type: ignore[method-assign]
        tracer = suptrace.trace("all", ["all"], rate=50, max_events=None, handler=log)
        target = suptrace.spawn(sink)
        for i in range(1000):
            suptrace.send(target, i)
        await log.wait_for(lambda _e: len(log.events) >= 50)
        assert not rt.watch & {"send", "receive"}  # unhooked until the second ends
        tracer.stop()
        return tracer.stats(), built

    stats, built = await in_node(main, log_reports=False)
    assert stats["accepted"] == 50 and stats["rate_pauses"] == 1
    assert built == 50  # 2,000 would-be events (sends and receives): only the quota was built


class _Stats:
    """Feeds saved stats to Tracer.summary (which only reads stats())."""

    def __init__(self, stats: dict[str, Any]) -> None:
        self._stats = stats

    def stats(self) -> dict[str, Any]:
        return self._stats


async def test_full_buffer_drops_and_counts() -> None:
    log = EventLog()

    async def main() -> dict[str, Any]:
        target = suptrace.spawn(sink)
        tracer = suptrace.trace(
            suptrace.self_pid(), ["send"], rate=None, max_events=None, buffer=5, handler=log
        )
        for i in range(50):  # one step: the handler cannot run until we await
            suptrace.send(target, i)
        await log.wait_for(lambda e: e.data["msg"] == 4)
        suptrace.send(target, "after the drain")
        await log.wait_for(lambda e: e.data["msg"] == "after the drain")
        tracer.stop()
        return tracer.stats()

    stats = await in_node(main)
    assert stats["dropped_buffer"] == 45 and stats["accepted"] == 6
    assert [e.data["msg"] for e in log.events] == [0, 1, 2, 3, 4, "after the drain"]


# -- never blocks, never traces itself ----------------------------------------------------


async def test_a_slow_handler_never_runs_inside_the_traced_process() -> None:
    calls: list[tuple[Any, float]] = []

    def slow(event: TraceEvent) -> None:
        calls.append((maybe_process(), time.monotonic()))
        time.sleep(0.002)  # the subject under test: a handler that takes its time

    async def main() -> None:
        me = suptrace.self_pid()
        target = suptrace.spawn(sink)
        tracer = suptrace.trace(me, ["send"], handler=slow, max_events=None, rate=None)
        for i in range(20):
            suptrace.send(target, i)
            assert calls == []  # the send returned without waiting for the handler
        ref = suptrace.monitor(target)
        suptrace.exit(target, "kill")
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        tracer.stop()
        await tracer.wait()  # a backlog over Tracer.FINAL_SLICE is delivered in slices
        assert tracer.stats()["delivered"] == 20

    await in_node(main)
    assert len(calls) == 20
    # The handler ran from a loop callback, outside any process.
    assert {who for who, _ in calls} == {None}


async def test_the_tracer_never_traces_itself() -> None:
    log = EventLog()

    async def main() -> dict[str, Any]:
        target = suptrace.spawn(sink)
        listener = suptrace.spawn(_worker)

        def chatty(event: TraceEvent) -> None:
            log(event)
            # A handler that sends, to a traced process, from outside any process:
            # none of it may come back to this tracer as events.
            suptrace.send(listener, ("seen", event.kind))

        tracer = suptrace.trace("all", ["send", "receive"], handler=chatty, max_events=None)
        suptrace.send(target, "one")
        await log.wait_for(lambda e: e.kind == "receive" and e.data["msg"] == "one")
        ref = suptrace.monitor(listener)
        suptrace.send(listener, "quit")
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        await log.wait_for(lambda e: e.kind == "receive" and isinstance(e.data["msg"], Down))
        tracer.stop()
        return tracer.stats()

    stats = await in_node(main)
    # main's two sends, the two receives they caused and main's Down: nothing from
    # the handler, although the listener did get its messages.
    seen = sorted((e.kind, str(e.data["msg"])[:4]) for e in log.events)
    assert seen == [
        ("receive", "Down"),
        ("receive", "one"),
        ("receive", "quit"),
        ("send", "one"),
        ("send", "quit"),
    ]
    assert stats["suppressed"] >= 3 and stats["delivered"] == 5


async def test_the_handler_sends_are_not_attributed_to_the_traced_process() -> None:
    log = EventLog()

    async def main() -> None:
        me = suptrace.self_pid()
        target = suptrace.spawn(sink)

        def handler(event: TraceEvent) -> None:
            log(event)
            suptrace.send(target, "from the handler")

        tracer = suptrace.trace(me, ["send"], handler=handler, max_events=None)
        suptrace.send(target, "from main")
        await log.wait_for("send")
        suptrace.send(target, "again")
        await log.wait_for(lambda e: e.data["msg"] == "again")
        tracer.stop()
        assert me._proc is not None and me._proc.messages_out == 2

    await in_node(main)
    assert [e.data["msg"] for e in log.events] == ["from main", "again"]


# -- clean removal ------------------------------------------------------------------------


async def test_stop_removes_every_trace_hook() -> None:
    async def main() -> None:
        rt = current_runtime()
        before = hook_state(rt)
        named = suptrace.spawn(_worker, name="t.named")
        other = suptrace.spawn(_worker)
        tracers = [
            suptrace.trace(other, ["all"], handler=EventLog(), set_on_spawn=True),
            suptrace.trace("t.named", handler=EventLog()),
            suptrace.trace("t.later", handler=EventLog()),
            suptrace.trace("all", handler=EventLog(), max_events=None),
            suptrace.trace("new", handler=EventLog()),
            suptrace.trace_calls("json:dumps", handler=EventLog()),
        ]
        news = [suptrace.spawn(_worker) for _ in range(3)]
        assert traced_procs(rt) and hook_state(rt) != before
        for tracer in tracers:
            tracer.stop()
        assert traced_procs(rt) == []
        assert hook_state(rt) == before
        assert not running_tracers(rt)
        assert named and news

    await in_node(main)


async def test_node_shutdown_stops_tracers_and_removes_hooks() -> None:
    import json

    original = json.dumps
    tracers: list[suptrace.Tracer] = []
    async with asyncio.timeout(5), suptrace.Node("t", log_reports=False) as node:
        rt = node.runtime

        async def main() -> None:
            pid = suptrace.spawn(_worker, name="survivor")
            tracers.append(suptrace.trace(pid, ["all"], handler=EventLog()))
            tracers.append(suptrace.trace("new", handler=EventLog()))
            tracers.append(suptrace.trace("all", handler=EventLog()))
            tracers.append(suptrace.trace_calls("json:dumps", handler=EventLog()))
            suptrace.spawn(_worker)  # still running when the node stops

        await node.run_root(main)
        assert json.dumps is not original
    # The pid trace may end first, when its process is shut down.
    assert tracers[0].stop_reason in ("target_exited", "node_stopped")
    assert [t.stop_reason for t in tracers[1:]] == ["node_stopped"] * 3
    assert json.dumps is original
    # Reports detach too when the node closes: nothing at all is left hooked.
    assert hook_state(rt) == ((), frozenset(), ())
    assert rt.procs == {} and not running_tracers(rt)


# -- overload -----------------------------------------------------------------------------

#: Messages sent in the overload test. 1,000,000 takes about 1.2 s untraced on the
#: 2-core development machine; the whole test (three runs) stays under 10 s.
FLOOD = 1_000_000


async def _flood(mode: str) -> tuple[float, dict[str, Any] | None]:
    async def main() -> tuple[float, dict[str, Any] | None]:
        target = suptrace.spawn(sink)
        me = suptrace.self_pid()
        tracer = None
        if mode == "max_events":
            tracer = suptrace.trace(me, ["send"], max_events=1000, handler=lambda e: None)
        elif mode == "rate":
            tracer = suptrace.trace(
                me, ["send"], max_events=None, rate=1000, handler=lambda e: None
            )
        send = suptrace.send
        started = time.perf_counter()
        for i in range(FLOOD):
            send(target, i)
        took = time.perf_counter() - started
        ref = suptrace.monitor(target)
        suptrace.exit(target, "kill")
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        if tracer is None:
            return took, None
        if mode == "rate":
            tracer.stop()
        await asyncio.wait_for(tracer.wait(), 5)
        return took, tracer.stats()

    async with (
        asyncio.timeout(30),
        # Nothing else listening: no reports, no system monitor, no telemetry bridge.
        suptrace.Node(
            "flood",
            reports=False,
            system_monitor=False,
            telemetry=False,
            control=False,
        ) as node,
    ):
        return await node.run_root(main)


async def test_overload_a_million_sends() -> None:
    plain, _ = await _flood("none")
    capped, capped_stats = await _flood("max_events")
    rated, rated_stats = await _flood("rate")
    print(
        f"\n{FLOOD:,} sends: untraced {plain:.2f}s; max_events=1000 {capped:.2f}s "
        f"({capped / plain:.2f}x); rate=1000/s {rated:.2f}s ({rated / plain:.2f}x)"
    )
    assert capped_stats is not None and rated_stats is not None
    assert capped_stats["stop_reason"] == "max_events"
    assert capped_stats["accepted"] == capped_stats["delivered"] == 1000
    # Over the rate: the tracer pauses until the second ends (the sends in between are
    # never turned into events), at most one quota per second started.
    assert rated_stats["rate_pauses"] >= 1
    assert rated_stats["accepted"] <= 1000 * (rated + 1)
    assert rated_stats["accepted"] <= 1000 * rated_stats["rate_pauses"]


async def test_delivery_is_sliced_and_a_slow_handler_costs_drops_not_stalls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from suptrace.observers import tracer as tracer_module

    # A clock where every handler call takes a whole second: far over Tracer.SLICE.
    ticks = iter(range(10**6))
    monkeypatch.setattr(tracer_module, "_perf", lambda: float(next(ticks)))
    order: list[Any] = []

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()

        def slow_handler(event: TraceEvent) -> None:
            order.append(event.data["msg"])
            # Something else wants the loop: it must run before the next event is handed over.
            loop.call_soon(order.append, "loop")

        target = suptrace.spawn(sink)
        tracer = suptrace.trace(
            suptrace.self_pid(), ["send"], handler=slow_handler, buffer=3, rate=None
        )
        for i in range(10):
            suptrace.send(target, i)  # 3 fit in the buffer, 7 find it full
        while tracer.delivered < 3:
            await asyncio.sleep(0)
        tracer.stop()
        return tracer.stats()

    stats = await in_node(main)
    assert order[:5] == [0, "loop", 1, "loop", 2]  # one event per slice, the loop in between
    assert stats["slices_yielded"] == 2
    assert stats["dropped_buffer"] == 7 and stats["delivered"] == 3


async def test_stop_delivers_a_big_backlog_in_slices_then_wakes_waiters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from suptrace.observers import tracer as tracer_module

    ticks = iter(range(10**6))  # every handler call "takes" a second: one event per slice
    monkeypatch.setattr(tracer_module, "_perf", lambda: float(next(ticks)))
    order: list[Any] = []

    async def main() -> tuple[int, str, dict[str, Any]]:
        loop = asyncio.get_running_loop()

        def slow_handler(event: TraceEvent) -> None:
            order.append(event.data["msg"])
            loop.call_soon(order.append, "loop")

        target = suptrace.spawn(sink)
        tracer = suptrace.trace(suptrace.self_pid(), ["send"], handler=slow_handler, rate=None)
        for i in range(5):
            suptrace.send(target, i)
        tracer.stop()  # the backlog is not handed over in one go...
        at_stop = tracer.delivered
        reason = await tracer.wait()  # ...and the waiters wake once all of it is
        return at_stop, reason, tracer.stats()

    at_stop, reason, stats = await in_node(main)
    assert at_stop == 1 and reason == "stopped"
    assert stats["delivered"] == 5 and stats["slices_yielded"] == 4
    assert order[:5] == [0, "loop", 1, "loop", 2]
