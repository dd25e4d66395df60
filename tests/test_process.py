"""Processes: spawn, exit reasons, mailboxes and selective receive, process_info,
kill semantics and bad input (SPEC §2, otp-semantics §1)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from runtime_support import (
    down_of,
    echo,
    idle,
    in_node,
    mailbox_empty,
    never,
    ping,
    wait_dead,
)

import suptrace
from suptrace import Down, NodeError, NoProc, Pid, TraceEvent

# -- spawn and exit reasons -----------------------------------------------------------------


async def test_spawn_returns_pid_at_once_and_starts_on_next_iteration() -> None:
    async def main() -> None:
        ran: list[Pid] = []

        async def child() -> None:
            ran.append(suptrace.self_pid())

        pid = suptrace.spawn(child)
        assert type(pid) is Pid
        assert ran == []  # spawn is synchronous; the child has not run yet
        assert suptrace.is_alive(pid)
        assert await wait_dead(pid) == "normal"
        assert ran == [pid]  # self_pid() inside is the pid spawn returned

    await in_node(main)


async def test_spawn_passes_arguments() -> None:
    async def main() -> None:
        me = suptrace.self_pid()

        async def child(a: int, b: str) -> None:
            suptrace.send(me, (a, b))

        suptrace.spawn(child, 1, "two")
        assert await suptrace.receive(timeout=1) == (1, "two")

    await in_node(main)


async def test_exit_reasons_return_exit_and_exception() -> None:
    boom = ValueError("boom")

    async def returns() -> int:
        return 42

    async def exits() -> None:
        raise suptrace.Exit(("custom", 1))

    async def crashes() -> None:
        raise boom

    async def main() -> None:
        assert await wait_dead(suptrace.spawn(returns)) == "normal"
        assert await wait_dead(suptrace.spawn(exits)) == ("custom", 1)
        assert await wait_dead(suptrace.spawn(crashes)) is boom  # the instance itself

    await in_node(main)


async def test_exit_is_not_swallowed_by_except_exception() -> None:
    async def careful() -> None:
        try:
            raise suptrace.Exit("shutdown")
        except Exception:  # must not catch a deliberate exit
            await never()

    async def main() -> None:
        assert await wait_dead(suptrace.spawn(careful)) == "shutdown"

    await in_node(main)


def test_pid_values_print_like_erlang_and_compare() -> None:
    a, b = Pid(7), Pid(8)
    assert repr(a) == "<0.7.0>" and str(b) == "<0.8.0>"
    assert a < b and b > a and a <= Pid(7) and a == Pid(7) and a != b
    assert len({a, Pid(7), b}) == 2
    assert Pid.parse("<0.7.0>") == a
    with pytest.raises(ValueError, match="not a pid"):
        Pid.parse("seven")


def test_ref_values_are_unique_and_hashable() -> None:
    r1, r2 = suptrace.Ref(), suptrace.Ref()
    assert r1 != r2 and len({r1, r2, r1}) == 2
    assert repr(r1).startswith("#Ref<")


# -- mailbox and receive --------------------------------------------------------------------


async def test_receive_takes_messages_in_arrival_order() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        for i in range(5):
            suptrace.send(me, i)
        assert [await suptrace.receive() for _ in range(5)] == [0, 1, 2, 3, 4]

    await in_node(main)


async def test_selective_receive_keeps_the_others_in_order() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        for msg in ["a", 1, "b", 2, "c"]:
            suptrace.send(me, msg)
        assert await suptrace.receive(lambda m: isinstance(m, int)) == 1
        assert await suptrace.receive(lambda m: m == 2) == 2
        assert [await suptrace.receive(timeout=0) for _ in range(3)] == ["a", "b", "c"]
        assert await mailbox_empty()

    await in_node(main)


async def test_selective_receive_waits_past_non_matching_arrivals() -> None:
    async def main() -> None:
        me = suptrace.self_pid()

        async def sender() -> None:
            for msg in ["x", "y", ("wanted", 1), "z"]:
                suptrace.send(me, msg)

        suptrace.spawn(sender)
        got = await suptrace.receive(lambda m: isinstance(m, tuple), timeout=1)
        assert got == ("wanted", 1)
        rest = [await suptrace.receive(timeout=1) for _ in range(3)]
        assert rest == ["x", "y", "z"]

    await in_node(main)


async def test_receive_timeout_raises_timeout_error() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        suptrace.send(me, "not this one")
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await suptrace.receive(lambda m: m == "never sent", timeout=0.05)
        assert time.monotonic() - start >= 0.04
        assert await suptrace.receive(timeout=0) == "not this one"  # still queued

    await in_node(main)


async def test_receive_timeout_zero_only_polls() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        with pytest.raises(TimeoutError):
            await suptrace.receive(timeout=0)
        suptrace.send(me, "here")
        with pytest.raises(TimeoutError):
            await suptrace.receive(lambda m: m == "elsewhere", timeout=0)
        assert await suptrace.receive(timeout=0) == "here"

    await in_node(main)


async def test_message_order_is_preserved_per_sender() -> None:
    async def main() -> None:
        me = suptrace.self_pid()

        async def sender(tag: str) -> None:
            # Two senders take turns (a baton passes between them), so their
            # messages reach the receiver interleaved, in bursts of seven.
            peer = await suptrace.receive()
            for i in range(50):
                if i % 7 == 0:
                    await suptrace.receive(lambda m: m == "baton")
                suptrace.send(me, (tag, i))
                if i % 7 == 6 or i == 49:
                    suptrace.send(peer, "baton")

        a = suptrace.spawn(sender, "a")
        b = suptrace.spawn(sender, "b")
        suptrace.send(a, b)
        suptrace.send(b, a)
        suptrace.send(a, "baton")
        got = [await suptrace.receive(timeout=1) for _ in range(100)]
        for tag in "ab":
            assert [i for t, i in got if t == tag] == list(range(50))
        assert [t for t, _ in got[:21]] == ["a"] * 7 + ["b"] * 7 + ["a"] * 7  # interleaved

    await in_node(main)


async def test_send_to_dead_pid_is_dropped_and_seen_as_dead_letter() -> None:
    async def main() -> None:
        letters: list[TraceEvent] = []
        stop = suptrace.add_event_handler(letters.append, kinds=["dead_letter"])
        pid = suptrace.spawn(idle)
        ref = suptrace.monitor(pid)
        suptrace.exit(pid, "kill")
        assert (await down_of(ref)).reason == "killed"
        suptrace.send(pid, "hello?")  # no exception
        stop()
        assert [(e.kind, e.data["to"], e.data["msg"]) for e in letters] == [
            ("dead_letter", pid, "hello?")
        ]
        assert letters[0].pid == suptrace.self_pid()  # the sender

    await in_node(main)


async def test_send_to_unregistered_name_raises_noproc() -> None:
    async def main() -> None:
        with pytest.raises(NoProc) as info:
            suptrace.send("nobody.here", "hi")
        assert info.value.reason == "noproc" and info.value.dest == "nobody.here"
        assert "nobody.here" in str(info.value)
        assert await ping(suptrace.spawn(echo))  # the node keeps running

    await in_node(main)


# -- trap_exit, is_alive, process_info ------------------------------------------------------


async def test_trap_exit_returns_previous_value() -> None:
    async def main() -> None:
        assert suptrace.trap_exit(True) is False
        assert suptrace.trap_exit(True) is True
        assert suptrace.trap_exit(False) is True
        assert suptrace.trap_exit(False) is False

    await in_node(main)


async def test_spawn_with_trap_exit_flag() -> None:
    async def main() -> None:
        pid = suptrace.spawn(echo, trap_exit=True)
        info = suptrace.process_info(pid)
        assert info is not None and info["trap_exit"] is True
        suptrace.exit(pid, "shutdown")  # trapped: becomes a message, the process lives
        assert await ping(pid)
        suptrace.exit(pid, "kill")
        plain = suptrace.spawn(echo)
        suptrace.exit(plain, "shutdown")
        # Doomed but not yet finished: the monitor still sees the real exit reason.
        assert await wait_dead(plain) == "shutdown"

    await in_node(main)


async def test_is_alive() -> None:
    async def main() -> None:
        pid = suptrace.spawn(idle)
        assert suptrace.is_alive(pid)
        assert suptrace.is_alive(suptrace.self_pid())
        ref = suptrace.monitor(pid)
        suptrace.exit(pid, "kill")
        assert not suptrace.is_alive(pid)  # doomed at once
        await down_of(ref)
        assert not suptrace.is_alive(pid)

    await in_node(main)


SPEC_INFO_KEYS = {
    "pid",
    "registered_name",
    "status",
    "message_queue_len",
    "links",
    "monitors",
    "monitored_by",
    "trap_exit",
    "initial_call",
    "ancestors",
    "current_stacktrace",
    "messages_in",
    "messages_out",
}


async def wait_for_go_here() -> None:
    """A named function so the stack trace test can look for it."""
    await suptrace.receive(lambda m: m == "go")


async def test_process_info_reports_spec_keys() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        other = suptrace.spawn(idle)

        async def subject() -> None:
            suptrace.monitor(other)
            suptrace.send(me, "ready")
            await wait_for_go_here()

        pid = suptrace.spawn(subject, name="info.subject", link=True, trap_exit=True)
        assert await suptrace.receive(timeout=1) == "ready"
        suptrace.send(pid, "junk 1")
        suptrace.send(pid, "junk 2")
        ref = suptrace.monitor(pid)

        info = suptrace.process_info(pid)
        assert info is not None
        assert info.keys() >= SPEC_INFO_KEYS
        assert info["pid"] == pid
        assert info["registered_name"] == "info.subject"
        assert info["status"] == "waiting"
        assert info["message_queue_len"] == 2
        assert info["links"] == [me]
        assert info["monitors"] == [other]
        assert info["monitored_by"] == [me]
        assert info["trap_exit"] is True
        assert "subject" in info["initial_call"]
        assert info["ancestors"] == [me]
        assert info["messages_in"] == 2
        assert info["messages_out"] == 1
        stack = "\n".join(info["current_stacktrace"])
        assert "wait_for_go_here" in stack and "receive" in stack
        by_name = suptrace.process_info("info.subject")
        assert by_name is not None and by_name["pid"] == pid

        mine = suptrace.process_info(me)
        assert mine is not None and mine["status"] == "running"
        assert mine["links"] == [pid] and mine["monitors"] == [pid]
        watched = suptrace.process_info(other)
        assert watched is not None and watched["monitored_by"] == [pid]

        suptrace.send(pid, "go")
        assert (await down_of(ref)).reason == "normal"
        assert suptrace.process_info(pid) is None
        assert suptrace.process_info("info.subject") is None

    await in_node(main)


async def test_process_info_ancestors_follow_names() -> None:
    async def main() -> None:
        me = suptrace.self_pid()

        async def grandchild() -> None:
            info = suptrace.process_info(suptrace.self_pid())
            assert info is not None
            suptrace.send(me, info["ancestors"])

        async def child() -> None:
            suptrace.spawn(grandchild)
            await never()

        suptrace.spawn(child, name="the.child")
        assert await suptrace.receive(timeout=1) == ["the.child", me]

    await in_node(main)


# -- kill -----------------------------------------------------------------------------------


async def test_kill_wins_even_when_cancelled_error_is_caught() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        trace: list[str] = []

        async def stubborn() -> None:
            suptrace.send(me, "ready")
            try:
                await never()
            except asyncio.CancelledError:
                trace.append("caught")
            await never()  # the next await: the kill arrives again here
            trace.append("survived")

        pid = suptrace.spawn(stubborn)
        await suptrace.receive(lambda m: m == "ready", timeout=1)
        ref = suptrace.monitor(pid)
        suptrace.exit(pid, "kill")
        assert (await down_of(ref)).reason == "killed"
        assert trace == ["caught"]

    await in_node(main)


async def test_kill_is_redelivered_at_every_await_and_overrides_a_normal_return() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        caught = 0

        async def very_stubborn() -> str:
            nonlocal caught
            suptrace.send(me, "ready")
            for _ in range(3):
                try:
                    await never()
                except asyncio.CancelledError:
                    caught += 1
            return "I am fine"

        pid = suptrace.spawn(very_stubborn)
        await suptrace.receive(lambda m: m == "ready", timeout=1)
        ref = suptrace.monitor(pid)
        suptrace.exit(pid, "kill")
        assert (await down_of(ref)).reason == "killed"
        assert caught == 3

    await in_node(main)


async def test_kill_wins_over_an_exit_whose_cancellation_was_swallowed() -> None:
    async def main() -> None:
        me = suptrace.self_pid()

        async def deaf() -> None:
            suptrace.send(me, "ready")
            try:
                await never()
            except asyncio.CancelledError:
                suptrace.send(me, "ignored a cancellation")
            await never()

        pid = suptrace.spawn(deaf)
        await suptrace.receive(lambda m: m == "ready", timeout=1)
        ref = suptrace.monitor(pid)
        suptrace.exit(pid, "shutdown")
        assert await suptrace.receive(timeout=1) == "ignored a cancellation"
        assert not suptrace.is_alive(pid)  # doomed, yet its code still runs
        suptrace.exit(pid, "kill")  # what a supervisor does after its shutdown timeout
        assert (await down_of(ref)).reason == "killed"

    await in_node(main)


async def test_process_killed_before_it_ran_still_dies_and_notifies() -> None:
    async def main() -> None:
        ran: list[str] = []

        async def child() -> None:
            ran.append("ran")

        suptrace.trap_exit(True)
        pid = suptrace.spawn_link(child)
        ref = suptrace.monitor(pid)
        suptrace.exit(pid, "kill")
        down = await suptrace.receive(lambda m: type(m) is Down, timeout=1)
        assert down == Down(ref, pid, "killed")
        assert await suptrace.receive(timeout=1) == suptrace.ExitMsg(pid, "killed")
        assert ran == []

        pid2 = suptrace.spawn(child)
        ref2 = suptrace.monitor(pid2)
        suptrace.exit(pid2, "shutdown")
        assert (await down_of(ref2)).reason == "shutdown"
        assert ran == []

    await in_node(main)


# -- bad input ------------------------------------------------------------------------------


def plain_function() -> None:
    """Not a coroutine function: spawning it is a mistake."""


async def test_spawning_a_non_coroutine_function_names_it() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="plain_function"):
            suptrace.spawn(plain_function)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="async def"):
            suptrace.spawn_link(plain_function)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not callable"):
            suptrace.spawn(42)  # type: ignore[arg-type]
        assert await ping(suptrace.spawn(echo))

    await in_node(main)


async def test_spawning_a_coroutine_object_explains_the_fix() -> None:
    async def work() -> None:
        pass

    async def main() -> None:
        coro = work()
        try:
            with pytest.raises(TypeError, match="coroutine object") as info:
                suptrace.spawn(coro)  # type: ignore[arg-type]
            assert "spawn(fn, arg1, arg2)" in str(info.value)
        finally:
            coro.close()
        assert await ping(suptrace.spawn(echo))

    await in_node(main)


async def test_process_functions_outside_a_process_raise_node_error() -> None:
    async with asyncio.timeout(5), suptrace.Node("outside") as node:
        with pytest.raises(NodeError, match="inside a suptrace process"):
            await suptrace.receive(timeout=0)
        with pytest.raises(NodeError, match="inside a suptrace process"):
            suptrace.self_pid()
        with pytest.raises(NodeError, match="inside a suptrace process"):
            suptrace.link(Pid(1))
        with pytest.raises(NodeError, match="inside a suptrace process"):
            suptrace.monitor(Pid(1))
        with pytest.raises(NodeError, match="inside a suptrace process"):
            suptrace.trap_exit(True)

        async def main() -> str:
            assert await ping(suptrace.spawn(echo))
            return "still running"

        assert await node.run_root(main) == "still running"


def test_spawn_and_call_outside_a_node_raise_node_error() -> None:
    async def work() -> None:
        pass

    with pytest.raises(NodeError, match=r"suptrace\.run\(main\)"):
        suptrace.spawn(work)
    with pytest.raises(NodeError, match="running suptrace node"):
        suptrace.send("somebody", "hi")
    with pytest.raises(NodeError, match="running suptrace node"):
        suptrace.whereis("somebody")
    with pytest.raises(NodeError, match="running suptrace node"):
        asyncio.run(suptrace.call("somebody", "hi"))

    async def main() -> Any:
        return await ping(suptrace.spawn(echo))

    assert suptrace.run(main) is True  # nothing was left broken


async def test_spawn_after_node_shutdown_is_refused() -> None:
    async with suptrace.Node("closing") as node:
        pass
    assert node.runtime.closing

    async def work() -> None:
        pass

    with pytest.raises(NodeError):
        suptrace.spawn(work)
