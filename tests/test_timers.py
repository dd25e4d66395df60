"""Timers: send_after / cancel_timer as erlang:send_after / cancel_timer (SPEC §2,
"Added in the second round"). Tests order on timer expiry order (the loop fires
an earlier deadline first), never on sleeping."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from runtime_support import in_node, wait_dead

import suptrace
from suptrace import TimerRef, TraceEvent
from suptrace.core.runtime import process_of


def timers_held(pid: suptrace.Pid) -> int:
    """How many pending timers the process holds (they die with it)."""
    proc = pid._proc
    assert proc is not None
    return sum(type(key) is TimerRef for key in proc.monitored_by or ())


async def test_message_arrives_after_the_delay_and_is_traced_as_a_send_by_the_setter() -> None:
    events: list[TraceEvent] = []

    async def main() -> None:
        suptrace.add_event_handler(events.append, kinds=["send", "receive"])
        me = suptrace.self_pid()
        ref = suptrace.send_after(0.02, me, "tick")
        assert isinstance(ref, TimerRef) and repr(ref).startswith("#TimerRef<0.")
        assert timers_held(me) == 1
        assert await suptrace.receive(timeout=2.0) == "tick"
        assert timers_held(me) == 0
        sends = [e for e in events if e.kind == "send"]
        assert [(e.pid, e.data["to"], e.data["msg"]) for e in sends] == [(me, me, "tick")]
        info = suptrace.process_info(me)
        assert info is not None and info["messages_out"] == 1 and info["messages_in"] == 1
        # ... and the setter's flight recorder has the send, then its own receive
        proc = process_of(me)
        assert proc is not None
        recent = [(e.kind, e.data.get("msg")) for e in proc.recent_events()]
        assert recent[-2:] == [("send", "tick"), ("receive", "tick")]
        assert suptrace.cancel_timer(ref) is None  # already fired: OTP's false

    await in_node(main)


async def test_timers_fire_in_deadline_order() -> None:
    async def main() -> list[str]:
        me = suptrace.self_pid()
        for delay, label in [(0.06, "c"), (0.02, "a"), (0.04, "b")]:
            suptrace.send_after(delay, me, label)
        return [await suptrace.receive(timeout=2.0) for _ in range(3)]

    assert await in_node(main) == ["a", "b", "c"]


async def test_cancel_returns_seconds_left_then_none_and_the_message_never_comes() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        ref = suptrace.send_after(0.03, me, "cancelled")
        left = suptrace.cancel_timer(ref)
        assert left is not None and 0 < left <= 0.031  # (uvloop's clock ticks in ms)
        assert suptrace.cancel_timer(ref) is None
        suptrace.send_after(0.06, me, "later")  # fires after the cancelled one would have
        assert await suptrace.receive(timeout=2.0) == "later"
        assert timers_held(me) == 0  # nothing left behind

    await in_node(main)


async def test_a_name_is_resolved_at_expiry() -> None:
    async def main() -> None:
        me = suptrace.self_pid()

        async def relay() -> None:
            suptrace.send(me, ("relayed", await suptrace.receive()))

        suptrace.send_after(0.03, "relay", "hello")  # nobody holds the name yet
        suptrace.spawn(relay, name="relay")
        assert await suptrace.receive(timeout=2.0) == ("relayed", "hello")

    await in_node(main)


async def test_a_name_nobody_holds_at_expiry_drops_the_message_as_a_dead_letter() -> None:
    dead: list[TraceEvent] = []

    async def main() -> None:
        suptrace.add_event_handler(dead.append, kinds="dead_letter")
        me = suptrace.self_pid()
        suptrace.send_after(0.02, "nobody", "lost")
        suptrace.send_after(0.04, me, "after")
        assert await suptrace.receive(timeout=2.0) == "after"
        assert [(e.pid, e.data["to"], e.data["msg"]) for e in dead] == [(me, "nobody", "lost")]

    await in_node(main)


async def test_a_timer_dies_with_the_process_that_set_it() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        refs: list[TimerRef] = []

        async def setter() -> None:
            refs.append(suptrace.send_after(0.03, me, "from the dead"))

        assert await wait_dead(suptrace.spawn(setter)) == "normal"
        suptrace.send_after(0.06, me, "mine")
        assert await suptrace.receive(timeout=2.0) == "mine"  # the dead setter's never came
        assert suptrace.cancel_timer(refs[0]) is None

    await in_node(main)


async def test_a_timer_set_outside_a_process_outlives_the_task() -> None:
    async with suptrace.Node("timers", control=False, log_reports=False):
        got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def sink() -> None:
            got.set_result(await suptrace.receive())

        pid = suptrace.spawn(sink)

        async def plain() -> TimerRef:
            return suptrace.send_after(0.01, pid, "from outside")

        await asyncio.create_task(plain())  # the task is gone; its timer is not
        assert await asyncio.wait_for(got, 2.0) == "from outside"


async def test_a_timer_to_a_dead_pid_is_dropped() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        gone = suptrace.spawn(asyncio.sleep, 0)
        await wait_dead(gone)
        suptrace.send_after(0.01, gone, "nobody home")
        suptrace.send_after(0.03, me, "done")
        assert await suptrace.receive(timeout=2.0) == "done"

    await in_node(main)


@pytest.mark.parametrize("delay", [-1, -0.001, math.nan, math.inf, -math.inf])
async def test_bad_delays_raise_value_error_naming_the_argument(delay: float) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="delay must be a finite number of seconds >= 0"):
            suptrace.send_after(delay, suptrace.self_pid(), "x")
        assert timers_held(suptrace.self_pid()) == 0  # nothing armed

    await in_node(main)


async def test_bad_types_raise_type_error() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        with pytest.raises(TypeError, match="delay must be a number of seconds, got '1'"):
            suptrace.send_after("1", me, "x")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="delay must be a number"):
            suptrace.send_after(True, me, "x")
        with pytest.raises(TypeError, match="needs a Pid or a registered name"):
            suptrace.send_after(1, 42, "x")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="needs the TimerRef that send_after\\(\\) returned"):
            suptrace.cancel_timer(suptrace.Ref())  # type: ignore[arg-type]
        assert suptrace.send_after(0, me, "zero is fine") is not None
        assert await suptrace.receive(timeout=2.0) == "zero is fine"

    await in_node(main)


def test_cancel_timer_of_another_nodes_timer_is_a_clear_error() -> None:
    async def first() -> TimerRef:
        async with suptrace.Node("first", control=False, log_reports=False):
            return suptrace.send_after(60, "someone", "x")

    foreign = asyncio.run(first())

    async def second() -> None:
        async with suptrace.Node("second", control=False, log_reports=False):
            with pytest.raises(ValueError, match="belongs to node 'first'"):
                suptrace.cancel_timer(foreign)

    asyncio.run(second())


def test_send_after_outside_a_node_is_a_clear_error() -> None:
    with pytest.raises(suptrace.NodeError, match="needs a running suptrace node"):
        suptrace.send_after(1, "x", "y")
