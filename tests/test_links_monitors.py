"""Exit signals over links and exit/2, link/unlink rules and monitors
(otp-semantics §1: PROC 857-985, ERL 1939-1972, 3134-3200, 12769ff)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from runtime_support import (
    down_of,
    echo,
    exit_from,
    idle,
    in_node,
    mailbox_empty,
    never,
    ping,
)

import suptrace
from suptrace import Down, ExitMsg, NoProc, Pid, Shutdown

# -- helpers --------------------------------------------------------------------------------


async def link_then_exit(peer: Pid, reason: Any) -> None:
    """Link to ``peer``, then end with ``reason`` (an exception instance is raised)."""
    suptrace.link(peer)
    if isinstance(reason, BaseException):
        raise reason
    raise suptrace.Exit(reason)


async def link_then_wait(peer: Pid, reason: Any, parent: Pid) -> None:
    """Link to ``peer``, tell ``parent``, and end with ``reason`` when told "go"."""
    suptrace.link(peer)
    suptrace.send(parent, ("linked", suptrace.self_pid()))
    await suptrace.receive(lambda m: m == "go")
    raise suptrace.Exit(reason)


async def forward_all(to: Pid) -> None:
    """Forward every message (ExitMsg included) to ``to``."""
    while True:
        suptrace.send(to, ("fwd", await suptrace.receive()))


async def forwarded(timeout: float = 2.0) -> Any:
    msg = await suptrace.receive(lambda m: isinstance(m, tuple) and m[0] == "fwd", timeout=timeout)
    return msg[1]


ABNORMAL = [
    pytest.param("shutdown", id="shutdown"),
    pytest.param(Shutdown("reason"), id="Shutdown(term)"),
    pytest.param(("custom", 1), id="custom-term"),
    pytest.param("killed", id="killed"),
    pytest.param(RuntimeError("crash"), id="exception"),
]

# -- link propagation -----------------------------------------------------------------------


async def test_normal_exit_of_linked_peer_is_ignored_by_non_trapping_process() -> None:
    async def main() -> None:
        victim = suptrace.spawn(echo)
        vref = suptrace.monitor(victim)
        peer = suptrace.spawn(link_then_exit, victim, "normal")
        assert (await down_of(suptrace.monitor(peer))).reason == "normal"
        assert await ping(victim)  # unaffected
        info = suptrace.process_info(victim)
        assert info is not None and info["links"] == []  # the link is gone with the peer
        suptrace.exit(victim, "kill")
        assert (await down_of(vref)).reason == "killed"

    await in_node(main)


async def test_normal_exit_of_linked_peer_reaches_trapping_process_as_exit_msg() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        peer = suptrace.spawn_link(idle)
        suptrace.exit(peer, "normal")  # ignored by the non-trapping peer
        assert await mailbox_empty() and suptrace.is_alive(peer)
        peer2 = suptrace.spawn_link(link_then_exit, suptrace.self_pid(), "normal")
        assert await exit_from(peer2) == ExitMsg(peer2, "normal")
        suptrace.exit(peer, "kill")
        assert await exit_from(peer) == ExitMsg(peer, "killed")

    await in_node(main)


@pytest.mark.parametrize("reason", ABNORMAL)
async def test_abnormal_exit_kills_non_trapping_linked_peer_with_same_reason(reason: Any) -> None:
    async def main() -> None:
        victim = suptrace.spawn(idle)
        vref = suptrace.monitor(victim)
        suptrace.spawn(link_then_exit, victim, reason)
        down = await down_of(vref)
        assert down.reason is reason or down.reason == reason
        if isinstance(reason, BaseException):
            assert down.reason is reason  # the very exception instance travels

    await in_node(main)


@pytest.mark.parametrize("reason", ABNORMAL)
async def test_abnormal_exit_reaches_trapping_linked_peer_as_exit_msg(reason: Any) -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        peer = suptrace.spawn(link_then_exit, suptrace.self_pid(), reason)
        msg = await exit_from(peer)
        assert msg.reason is reason or msg.reason == reason
        assert suptrace.is_alive(suptrace.self_pid())

    await in_node(main)


async def test_exit_signal_propagates_along_a_chain_of_links() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        a = suptrace.spawn(idle)
        b = suptrace.spawn(link_then_wait, a, "boom", me)
        await suptrace.receive(lambda m: m == ("linked", b))
        c = suptrace.spawn(link_then_wait, b, "unused", me)
        await suptrace.receive(lambda m: m == ("linked", c))
        refs = {p: suptrace.monitor(p) for p in (a, c)}
        suptrace.send(b, "go")
        assert (await down_of(refs[a])).reason == "boom"
        assert (await down_of(refs[c])).reason == "boom"

    await in_node(main)


# -- kill -----------------------------------------------------------------------------------


async def test_exit_kill_kills_even_a_trapping_process_and_peers_see_killed() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        suptrace.trap_exit(True)
        target = suptrace.spawn_link(idle, trap_exit=True)
        # A non-trapping process linked to the target dies with "killed" too.
        bystander = suptrace.spawn(link_then_wait, target, "unused", me)
        await suptrace.receive(lambda m: m == ("linked", bystander))
        ref = suptrace.monitor(target)
        bref = suptrace.monitor(bystander)
        suptrace.exit(target, "kill")
        assert await down_of(ref) == Down(ref, target, "killed")
        assert await exit_from(target) == ExitMsg(target, "killed")
        assert (await down_of(bref)).reason == "killed"

    await in_node(main)


async def test_peer_that_exited_with_kill_propagates_kill_which_is_trappable() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        peer = suptrace.spawn(link_then_exit, suptrace.self_pid(), "kill")
        # Through a link, "kill" stays "kill" and can be trapped.
        assert await exit_from(peer) == ExitMsg(peer, "kill")
        assert suptrace.is_alive(suptrace.self_pid())

        victim = suptrace.spawn(idle)
        vref = suptrace.monitor(victim)
        suptrace.spawn(link_then_exit, victim, "kill")
        assert (await down_of(vref)).reason == "kill"  # not "killed"

    await in_node(main)


async def test_exit_kill_to_self_dies_killed() -> None:
    async def suicide() -> None:
        suptrace.trap_exit(True)
        suptrace.exit(suptrace.self_pid(), "kill")
        await never()

    async def main() -> None:
        _pid, ref = suptrace.spawn_monitor(suicide)
        assert (await down_of(ref)).reason == "killed"

    await in_node(main)


# -- exit/2 with other reasons --------------------------------------------------------------


async def test_exit_normal_to_non_trapping_other_process_has_no_effect() -> None:
    async def main() -> None:
        pid = suptrace.spawn(echo)
        suptrace.exit(pid, "normal")
        assert await ping(pid)
        assert suptrace.is_alive(pid)

    await in_node(main)


async def test_exit_normal_to_trapping_process_is_an_exit_msg_from_the_sender() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        pid = suptrace.spawn(forward_all, me, trap_exit=True)
        suptrace.exit(pid, "normal")
        assert await forwarded() == ExitMsg(me, "normal")
        suptrace.exit(pid, "shutdown")
        assert await forwarded() == ExitMsg(me, "shutdown")
        assert suptrace.is_alive(pid)
        suptrace.exit(pid, "kill")

    await in_node(main)


@pytest.mark.parametrize("reason", ["shutdown", ("custom", 2)])
async def test_exit_with_other_reason_kills_non_trapping_process(reason: Any) -> None:
    async def main() -> None:
        pid = suptrace.spawn(idle)
        ref = suptrace.monitor(pid)
        suptrace.exit(pid, reason)
        assert (await down_of(ref)).reason == reason

    await in_node(main)


async def test_exit_self_normal_while_not_trapping_ends_the_process_normal() -> None:
    after: list[str] = []

    async def quitter() -> None:
        suptrace.exit(suptrace.self_pid(), "normal")
        after.append("still running")
        await never()

    async def main() -> None:
        suptrace.trap_exit(True)
        pid = suptrace.spawn_link(quitter)
        assert await exit_from(pid) == ExitMsg(pid, "normal")
        assert after == []

    await in_node(main)


async def test_exit_self_while_trapping_is_a_message_to_self() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        suptrace.trap_exit(True)
        suptrace.exit(me, "normal")
        suptrace.exit(me, "shutdown")
        assert await suptrace.receive(timeout=0) == ExitMsg(me, "normal")
        assert await suptrace.receive(timeout=0) == ExitMsg(me, "shutdown")

    await in_node(main)


async def test_exit_to_a_dead_process_is_ignored() -> None:
    async def main() -> None:
        pid, ref = suptrace.spawn_monitor(idle)
        suptrace.exit(pid, "kill")
        await down_of(ref)
        suptrace.exit(pid, "kill")  # no error
        assert await ping(suptrace.spawn(echo))

    await in_node(main)


async def test_exit_from_outside_any_process_comes_from_the_node() -> None:
    async with asyncio.timeout(5), suptrace.Node("plain") as node:
        ready = asyncio.Event()
        pids: list[Pid] = []

        async def trapper() -> Any:
            suptrace.trap_exit(True)
            pids.append(suptrace.self_pid())
            ready.set()
            return await suptrace.receive()

        root = asyncio.create_task(node.run_root(trapper))
        await ready.wait()
        suptrace.exit(pids[0], "shutdown")  # sent from this plain task
        assert await root == ExitMsg(node.runtime.outside_pid, "shutdown")

        ready.clear()
        root = asyncio.create_task(node.run_root(idle_after_ready, ready, pids))
        await ready.wait()
        suptrace.exit(pids[1], "shutdown")
        with pytest.raises(suptrace.Exit) as info:
            await root
        assert info.value.reason == "shutdown"


async def idle_after_ready(ready: asyncio.Event, pids: list[Pid]) -> None:
    pids.append(suptrace.self_pid())
    ready.set()
    await idle()


# -- link/unlink rules ----------------------------------------------------------------------


async def test_link_to_dead_pid_raises_noproc_when_not_trapping() -> None:
    async def main() -> None:
        pid, ref = suptrace.spawn_monitor(idle)
        suptrace.exit(pid, "kill")
        await down_of(ref)
        with pytest.raises(NoProc) as info:
            suptrace.link(pid)
        assert info.value.reason == "noproc" and info.value.dest == pid
        mine = suptrace.process_info(suptrace.self_pid())
        assert mine is not None and mine["links"] == []
        assert await ping(suptrace.spawn(echo))  # still fine

    await in_node(main)


async def test_link_to_dead_pid_gives_exit_msg_noproc_when_trapping() -> None:
    async def main() -> None:
        pid, ref = suptrace.spawn_monitor(idle)
        suptrace.exit(pid, "kill")
        await down_of(ref)
        suptrace.trap_exit(True)
        suptrace.link(pid)  # no exception
        assert await suptrace.receive(timeout=0) == ExitMsg(pid, "noproc")

    await in_node(main)


async def test_link_is_bidirectional() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        suptrace.trap_exit(True)
        peer = suptrace.spawn(idle)
        suptrace.link(peer)
        peer_info = suptrace.process_info(peer)
        assert peer_info is not None and peer_info["links"] == [me]
        suptrace.exit(peer, "shutdown")
        assert await exit_from(peer) == ExitMsg(peer, "shutdown")

        victim = suptrace.spawn(idle)
        vref = suptrace.monitor(victim)

        async def link_and_die() -> None:
            suptrace.link(victim)  # the caller links; the callee dies from the caller's exit
            raise suptrace.Exit("boom")

        suptrace.spawn(link_and_die)
        assert (await down_of(vref)).reason == "boom"

    await in_node(main)


async def test_link_to_self_or_twice_does_nothing_more() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        suptrace.link(me)
        info = suptrace.process_info(me)
        assert info is not None and info["links"] == []

        peer = suptrace.spawn(echo)
        suptrace.link(peer)
        suptrace.link(peer)
        info = suptrace.process_info(me)
        assert info is not None and info["links"] == [peer]
        # Links are not counted: one unlink removes the link entirely.
        suptrace.unlink(peer)
        info = suptrace.process_info(me)
        assert info is not None and info["links"] == []
        peer_info = suptrace.process_info(peer)
        assert peer_info is not None and peer_info["links"] == []

        suptrace.trap_exit(True)
        suptrace.link(peer)
        suptrace.link(peer)
        suptrace.exit(peer, "kill")
        assert await exit_from(peer) == ExitMsg(peer, "killed")
        assert await mailbox_empty()  # exactly one ExitMsg

    await in_node(main)


async def test_unlink_stops_propagation() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        victim = suptrace.spawn(echo)
        vref = suptrace.monitor(victim)

        async def link_unlink_die() -> None:
            suptrace.link(victim)
            suptrace.unlink(victim)
            raise suptrace.Exit("boom")

        _pid, ref = suptrace.spawn_monitor(link_unlink_die)
        assert (await down_of(ref)).reason == "boom"
        assert await ping(victim)

        # Either side may unlink: here the process that did not create the link does.
        async def unlinks_when_told() -> None:
            _, peer = await suptrace.receive(lambda m: m[0] == "unlink")
            suptrace.unlink(peer)
            suptrace.send(me, "unlinked")
            await echo()

        async def linked_waiter(target: Pid) -> None:
            suptrace.link(target)
            suptrace.send(me, "linked")
            await suptrace.receive(lambda m: m == "go")
            raise suptrace.Exit("boom")

        victim2 = suptrace.spawn(unlinks_when_told)
        waiter, wref = suptrace.spawn_monitor(linked_waiter, victim2)
        await suptrace.receive(lambda m: m == "linked")
        suptrace.send(victim2, ("unlink", waiter))
        await suptrace.receive(lambda m: m == "unlinked")
        assert suptrace.process_info(waiter)["links"] == []  # type: ignore[index]
        suptrace.send(waiter, "go")
        assert (await down_of(wref)).reason == "boom"
        assert await ping(victim2)
        suptrace.exit(victim, "kill")
        assert (await down_of(vref)).reason == "killed"

    await in_node(main)


async def test_unlink_after_exit_msg_arrived_leaves_it_in_the_mailbox() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        peer = suptrace.spawn_link(idle)
        ref = suptrace.monitor(peer)
        suptrace.exit(peer, "kill")
        # Links are signalled before monitors: once Down is here, so is the ExitMsg.
        await down_of(ref)
        suptrace.unlink(peer)
        assert await suptrace.receive(timeout=0) == ExitMsg(peer, "killed")

    await in_node(main)


async def test_spawn_link_is_atomic_child_crashing_at_once_kills_the_parent() -> None:
    boom = RuntimeError("child crashed at once")

    async def child() -> None:
        raise boom

    async def parent() -> None:
        suptrace.spawn_link(child)
        await never()

    async def main() -> None:
        _pid, ref = suptrace.spawn_monitor(parent)
        assert (await down_of(ref)).reason is boom

    await in_node(main)


async def test_spawn_with_link_flag_links() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        pid = suptrace.spawn(exits_with, "boom", link=True)
        assert await exit_from(pid) == ExitMsg(pid, "boom")
        info = suptrace.process_info(suptrace.self_pid())
        assert info is not None and info["links"] == []

    await in_node(main)


async def exits_with(reason: Any) -> None:
    raise suptrace.Exit(reason)


# -- monitors -------------------------------------------------------------------------------


async def test_monitor_gives_down_with_the_exit_reason() -> None:
    boom = ValueError("x")

    async def crash() -> None:
        await suptrace.receive(lambda m: m == "go")
        raise boom

    async def main() -> None:
        pid = suptrace.spawn(crash)
        ref = suptrace.monitor(pid)
        info = suptrace.process_info(suptrace.self_pid())
        assert info is not None and info["monitors"] == [pid]
        suptrace.send(pid, "go")
        down = await down_of(ref)
        assert down == Down(ref, pid, boom) and down.reason is boom
        info = suptrace.process_info(suptrace.self_pid())
        assert info is not None and info["monitors"] == []

    await in_node(main)


async def test_monitor_of_dead_pid_gives_immediate_down_noproc() -> None:
    async def main() -> None:
        pid, ref = suptrace.spawn_monitor(idle)
        suptrace.exit(pid, "kill")
        await down_of(ref)
        ref2 = suptrace.monitor(pid)
        assert await suptrace.receive(timeout=0) == Down(ref2, pid, "noproc")

    await in_node(main)


async def test_monitor_of_unregistered_name_gives_immediate_down_noproc() -> None:
    async def main() -> None:
        ref = suptrace.monitor("no.such.name")
        assert await suptrace.receive(timeout=0) == Down(ref, "no.such.name", "noproc")  # type: ignore[arg-type]

    await in_node(main)


async def test_monitor_by_registered_name() -> None:
    async def main() -> None:
        pid = suptrace.spawn(idle, name="watched")
        ref = suptrace.monitor("watched")
        suptrace.exit(pid, "shutdown")
        assert await down_of(ref) == Down(ref, pid, "shutdown")

    await in_node(main)


async def test_monitors_are_one_way() -> None:
    async def main() -> None:
        me = suptrace.self_pid()

        async def watcher(target: Pid) -> None:
            suptrace.monitor(target)
            suptrace.send(me, "watching")
            await idle()

        target = suptrace.spawn(echo)
        w = suptrace.spawn(watcher, target)
        await suptrace.receive(lambda m: m == "watching")
        wref = suptrace.monitor(w)
        suptrace.exit(w, "boom")  # the watcher dies: the target is unaffected
        assert (await down_of(wref)).reason == "boom"
        assert await ping(target)
        info = suptrace.process_info(target)
        assert info is not None and info["monitored_by"] == []  # the dead watcher's monitor went

        # The target dying abnormally does not kill a (non-trapping) watcher.
        w2 = suptrace.spawn(watcher, target)
        await suptrace.receive(lambda m: m == "watching")
        tref = suptrace.monitor(target)
        suptrace.exit(target, "boom")
        await down_of(tref)
        assert suptrace.is_alive(w2)
        suptrace.exit(w2, "kill")

    await in_node(main)


async def test_each_monitor_call_is_independent() -> None:
    async def main() -> None:
        pid = suptrace.spawn(idle)
        r1 = suptrace.monitor(pid)
        r2 = suptrace.monitor(pid)
        r3 = suptrace.monitor(pid)
        assert len({r1, r2, r3}) == 3
        suptrace.demonitor(r2)
        suptrace.exit(pid, "shutdown")
        assert await down_of(r1) == Down(r1, pid, "shutdown")
        assert await down_of(r3) == Down(r3, pid, "shutdown")
        assert await mailbox_empty()  # nothing for r2

    await in_node(main)


async def test_demonitor_flush_drops_a_queued_down() -> None:
    async def main() -> None:
        pid = suptrace.spawn(idle)
        r1 = suptrace.monitor(pid)
        r2 = suptrace.monitor(pid)
        r3 = suptrace.monitor(pid)
        suptrace.exit(pid, "kill")
        await down_of(r3)  # Downs arrive in monitor order: r1's and r2's are queued now
        suptrace.demonitor(r1)  # without flush the Down stays
        suptrace.demonitor(r2, flush=True)
        assert await suptrace.receive(timeout=0) == Down(r1, pid, "killed")
        assert await mailbox_empty()

    await in_node(main)


async def test_demonitor_flush_keeps_other_messages() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        pid = suptrace.spawn(idle)
        ref = suptrace.monitor(pid)
        suptrace.send(me, "before")
        suptrace.exit(pid, "kill")
        last = suptrace.monitor(pid)  # dead already: its noproc Down queues after the other
        await down_of(last)
        suptrace.send(me, "after")
        suptrace.demonitor(ref, flush=True)
        assert [await suptrace.receive(timeout=0) for _ in range(2)] == ["before", "after"]
        assert await mailbox_empty()

    await in_node(main)


async def test_spawn_monitor_returns_pid_and_ref() -> None:
    async def work() -> int:
        return 1

    async def main() -> None:
        pid, ref = suptrace.spawn_monitor(work)
        assert await down_of(ref) == Down(ref, pid, "normal")

    await in_node(main)
