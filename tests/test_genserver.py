"""GenServer: callbacks, start/init rules, call/cast/reply/stop and the call
failure modes (SPEC §3, otp-semantics §3 and §2.2 for OTP >= 26 start)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any

import pytest
from runtime_support import down_of, echo, exit_from, in_node, mailbox_empty, never, ping

import suptrace
from suptrace import (
    IGNORE,
    NOREPLY,
    Caller,
    CallError,
    CallExit,
    CallTimeout,
    ExitMsg,
    GenServer,
    NoProc,
    Pid,
    RegistrationError,
    StartError,
)
from suptrace.core.terms import CastRequest


class Counter(GenServer):
    """Calls: "get", ("add", n), ("crash", exc), ("stop_me", reason), ("notify", pid).
    Casts: ("add", n), ("crash", exc). Infos are recorded."""

    async def init(self, start: int = 0, *, log: list[Any] | None = None) -> None:
        self.n = start
        self.infos: list[Any] = []
        self.log = log if log is not None else []
        self.log.append(("init", start))

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "get":
            return self.n
        if request == "infos":
            return list(self.infos)
        tag, arg = request
        if tag == "add":
            self.n += arg
            return self.n
        if tag == "crash":
            raise arg
        if tag == "exit":
            raise suptrace.Exit(arg)
        raise ValueError(f"unknown request {request!r}")

    async def handle_cast(self, msg: Any) -> None:
        tag, arg = msg
        if tag == "add":
            self.n += arg
        elif tag == "crash":
            raise arg

    async def handle_info(self, msg: Any) -> None:
        self.infos.append(msg)

    async def terminate(self, reason: Any) -> None:
        self.log.append(("terminate", reason))


class Parked(GenServer):
    """Never answers a call itself: keeps the caller and replies when told."""

    async def init(self, notify: Pid | None = None) -> None:
        self.waiting: list[Caller] = []
        self.notify = notify

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "count":
            return len(self.waiting)
        self.waiting.append(caller)
        if self.notify is not None:
            suptrace.send(self.notify, ("parked", request))
        return NOREPLY

    async def handle_cast(self, msg: Any) -> None:
        for caller in self.waiting:
            suptrace.reply(caller, msg)
        self.waiting.clear()


class Blocker(GenServer):
    """handle_call blocks forever (after telling ``notify`` it got there)."""

    async def init(self, notify: Pid) -> None:
        self.notify = notify

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        suptrace.send(self.notify, ("in_call", request))
        await never()


# -- start ----------------------------------------------------------------------------------


async def test_start_link_returns_after_init_linked_and_named() -> None:
    async def main() -> None:
        log: list[Any] = []
        pid = await Counter.start_link(5, name="counter", log=log)
        assert log == [("init", 5)]  # init has run when start_link returns
        assert type(pid) is Pid and suptrace.whereis("counter") == pid
        info = suptrace.process_info(pid)
        assert info is not None
        assert info["links"] == [suptrace.self_pid()]
        assert "Counter" in info["initial_call"]
        assert await suptrace.call("counter", "get") == 5

    await in_node(main)


async def test_start_is_not_linked() -> None:
    async def main() -> None:
        pid = await Counter.start(1)
        info = suptrace.process_info(pid)
        assert info is not None and info["links"] == []
        assert await suptrace.call(pid, ("add", 1)) == 2

    await in_node(main)


async def test_start_link_from_a_plain_task() -> None:
    async with asyncio.timeout(5), suptrace.Node("plain", log_reports=False):
        pid = await Counter.start_link(3, name="plain.counter")
        assert await suptrace.call("plain.counter", ("add", 4)) == 7
        suptrace.cast(pid, ("add", 1))
        assert await suptrace.call(pid, "get") == 8


async def test_init_exception_is_raised_and_trapping_caller_sees_no_exit_msg() -> None:
    boom = ValueError("bad config")

    class Broken(GenServer):
        async def init(self) -> None:
            raise boom

    async def main() -> None:
        suptrace.trap_exit(True)
        with pytest.raises(ValueError) as info:
            await Broken.start_link(name="broken")
        assert info.value is boom
        assert await mailbox_empty()  # OTP >= 26: the child's EXIT is consumed
        assert suptrace.whereis("broken") is None
        with pytest.raises(ValueError):
            await Broken.start()  # unlinked start raises too

    await in_node(main)


async def test_init_exception_kills_a_non_trapping_linked_caller_with_the_same_reason() -> None:
    boom = RuntimeError("init failed")

    class Broken(GenServer):
        async def init(self) -> None:
            raise boom

    async def starter() -> None:
        with contextlib.suppress(RuntimeError):
            await Broken.start_link()
        await never()  # dies here at the latest, from the link

    async def main() -> None:
        _pid, ref = suptrace.spawn_monitor(starter)
        assert (await down_of(ref)).reason is boom

    await in_node(main)


async def test_init_exit_gives_start_error_with_the_reason() -> None:
    class Refuses(GenServer):
        async def init(self) -> None:
            raise suptrace.Exit(("bad_arg", 1))

    async def main() -> None:
        exits: list[suptrace.TraceEvent] = []
        suptrace.add_event_handler(exits.append, kinds=["exit"])
        suptrace.trap_exit(True)
        with pytest.raises(StartError) as info:
            await Refuses.start_link()
        assert info.value.reason == ("bad_arg", 1)
        assert "Refuses" in str(info.value)
        assert await mailbox_empty()
        assert [e.data["reason"] for e in exits] == [("bad_arg", 1)]  # it exited with R

    await in_node(main)


async def test_init_ignore_returns_ignore_and_exits_normally() -> None:
    class Ignorer(GenServer):
        async def init(self) -> Any:
            return IGNORE

    async def main() -> None:
        exits: list[suptrace.TraceEvent] = []
        suptrace.add_event_handler(exits.append, kinds=["exit"])
        suptrace.trap_exit(True)
        suptrace.send(suptrace.self_pid(), "unrelated")
        assert await Ignorer.start_link(name="ignorer") is IGNORE
        assert [e.data["reason"] for e in exits] == ["normal"]
        assert await suptrace.receive(timeout=0) == "unrelated"  # other messages stay
        assert await mailbox_empty()  # no ExitMsg(normal) left behind
        assert suptrace.whereis("ignorer") is None
        assert await Ignorer.start() is IGNORE

    await in_node(main)


async def test_start_timeout_kills_the_child_and_spares_the_linked_caller() -> None:
    class Slow(GenServer):
        async def init(self) -> None:
            await never()

    async def starter(parent: Pid) -> None:
        try:
            await Slow.start_link(name="slow", timeout=0.05)
        except StartError as e:
            suptrace.send(parent, ("start_error", e.reason, suptrace.whereis("slow")))
        await suptrace.receive()  # still alive to answer

    async def main() -> None:
        me = suptrace.self_pid()
        pid, ref = suptrace.spawn_monitor(starter, me)
        assert await suptrace.receive(timeout=2) == ("start_error", "timeout", None)
        # OTP (proc_lib kill_flush) unlinks before killing: the caller lives on.
        assert suptrace.is_alive(pid)
        suptrace.send(pid, "done")
        assert (await down_of(ref)).reason == "normal"

        suptrace.trap_exit(True)
        with pytest.raises(StartError):
            await Slow.start_link(timeout=0.02)
        assert await mailbox_empty()  # no ExitMsg(killed) from the killed child

    await in_node(main)


async def test_start_of_a_server_killed_before_it_ran_fails_instead_of_hanging() -> None:
    async def main() -> None:
        def kill_on_spawn(event: suptrace.TraceEvent) -> None:
            suptrace.exit(event.pid, "kill")  # type: ignore[arg-type]

        stop = suptrace.add_event_handler(kill_on_spawn, kinds=["spawned"])
        try:
            async with asyncio.timeout(2):
                with pytest.raises(StartError) as info:
                    await Counter.start()
        finally:
            stop()
        assert info.value.reason == "killed"

    await in_node(main)


async def test_start_with_a_taken_name_raises_registration_error() -> None:
    async def main() -> None:
        holder = await Counter.start(name="only.one")
        with pytest.raises(RegistrationError, match=str(holder)):
            await Counter.start_link(name="only.one")
        assert await suptrace.call("only.one", "get") == 0
        assert await ping(suptrace.spawn(echo))

    await in_node(main)


# -- call, cast, info -----------------------------------------------------------------------


async def test_call_cast_and_info_are_handled_in_order() -> None:
    async def main() -> None:
        pid = await Counter.start_link(0)
        suptrace.cast(pid, ("add", 2))
        suptrace.send(pid, "plain message")
        assert await suptrace.call(pid, ("add", 3)) == 5
        assert await suptrace.call(pid, "infos") == ["plain message"]

    await in_node(main)


async def test_handle_info_gets_exit_msg_and_down() -> None:
    class Watcher(GenServer):
        async def init(self, target: Pid) -> None:
            suptrace.trap_exit(True)
            self.ref = suptrace.monitor(target)
            self.got: list[Any] = []

        async def handle_call(self, request: Any, caller: Caller) -> Any:
            if request == "got":
                return self.got
            suptrace.link(request)
            return "linked"

        async def handle_info(self, msg: Any) -> None:
            self.got.append(msg)

    async def main() -> None:
        target = suptrace.spawn(echo)
        other = suptrace.spawn(echo)
        pid = await Watcher.start(target)
        assert await suptrace.call(pid, other) == "linked"
        tref = suptrace.monitor(target)
        oref = suptrace.monitor(other)
        suptrace.exit(target, "shutdown")
        suptrace.exit(other, "boom")
        await down_of(tref)
        await down_of(oref)
        got = await suptrace.call(pid, "got")
        assert ExitMsg(other, "boom") in got
        assert any(
            type(m) is suptrace.Down and m.pid == target and m.reason == "shutdown" for m in got
        )
        assert suptrace.is_alive(pid)  # a non-parent ExitMsg is just information

    await in_node(main)


def test_call_default_timeout_is_five_seconds() -> None:
    assert inspect.signature(suptrace.call).parameters["timeout"].default == 5.0


async def test_call_default_timeout_is_carried_by_the_error() -> None:
    async def main() -> None:
        pid = await Counter.start()
        with pytest.raises(CallExit) as info:
            await suptrace.call(pid, ("exit", "normal"))
        assert info.value.timeout == 5.0

    await in_node(main)


async def test_call_timeout() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        pid = await Blocker.start(me, name="blocker")
        with pytest.raises(CallTimeout) as info:
            await suptrace.call("blocker", ("q", 1), timeout=0.05)
        err = info.value
        assert isinstance(err, TimeoutError) and isinstance(err, CallError)
        assert err.reason == "timeout"
        assert err.dest == "blocker" and err.request == ("q", 1) and err.timeout == 0.05
        assert "blocker" in str(err) and "timed out" in str(err)
        assert await suptrace.receive(timeout=1) == ("in_call", ("q", 1))
        assert suptrace.is_alive(pid)  # a client timeout does not affect the server
        suptrace.exit(pid, "kill")

    await in_node(main)


async def test_late_reply_is_dropped_and_server_still_runs_handle_call() -> None:
    class Sluggish(GenServer):
        async def init(self) -> None:
            self.done: list[Any] = []

        async def handle_call(self, request: Any, caller: Caller) -> Any:
            if request == "done":
                return self.done
            await asyncio.sleep(0.1)  # the subject: slower than the caller's timeout
            self.done.append(request)
            return ("late", request)

    async def main() -> None:
        pid = await Sluggish.start()
        with pytest.raises(CallTimeout):
            await suptrace.call(pid, "slow", timeout=0.02)
        # The server finished the request after the client gave up...
        assert await suptrace.call(pid, "done") == ["slow"]
        # ...and its reply never reached the caller's mailbox.
        assert await mailbox_empty()
        info = suptrace.process_info(suptrace.self_pid())
        assert info is not None and info["message_queue_len"] == 0

    await in_node(main)


async def test_late_reply_via_reply_is_dropped() -> None:
    async def main() -> None:
        pid = await Parked.start()
        with pytest.raises(CallTimeout):
            await suptrace.call(pid, "wait", timeout=0.02)
        suptrace.cast(pid, "too late")  # the server replies to the timed-out caller
        assert await suptrace.call(pid, "count") == 0  # the cast was handled
        assert await mailbox_empty()

    await in_node(main)


async def test_uncaught_call_timeout_crashes_the_caller_with_it() -> None:
    async def main() -> None:
        server = await Blocker.start(suptrace.self_pid(), name="stuck")

        async def client() -> None:
            await suptrace.call("stuck", "hello", timeout=0.02)

        _pid, ref = suptrace.spawn_monitor(client)
        reason = (await down_of(ref)).reason
        assert isinstance(reason, CallTimeout)
        assert reason.dest == "stuck" and reason.request == "hello" and reason.timeout == 0.02
        suptrace.exit(server, "kill")

    await in_node(main)


async def test_uncaught_call_exit_and_noproc_crash_the_caller_with_them() -> None:
    async def main() -> None:
        async def client(dest: Any, request: Any) -> None:
            await suptrace.call(dest, request)

        pid = await Counter.start()
        pid, ref = suptrace.spawn_monitor(client, pid, ("exit", "shutdown"))
        reason = (await down_of(ref)).reason
        assert isinstance(reason, CallExit) and reason.reason == "shutdown"
        pid, ref = suptrace.spawn_monitor(client, "gone.server", "get")
        reason = (await down_of(ref)).reason
        assert isinstance(reason, NoProc) and reason.dest == "gone.server"

    await in_node(main)


async def test_call_without_timeout_waits_for_a_late_reply() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        pid = await Parked.start(me)

        async def client() -> None:
            suptrace.send(me, ("answer", await suptrace.call(pid, "wait", timeout=None)))

        suptrace.spawn(client)
        await suptrace.receive(lambda m: m == ("parked", "wait"), timeout=1)
        suptrace.cast(pid, "eventually")
        assert await suptrace.receive(timeout=1) == ("answer", "eventually")

    await in_node(main)


async def test_call_to_unregistered_name_or_dead_pid_raises_noproc() -> None:
    async def main() -> None:
        with pytest.raises(NoProc) as info:
            await suptrace.call("nobody", "hi")
        assert info.value.reason == "noproc"
        assert info.value.dest == "nobody" and info.value.request == "hi"

        pid = await Counter.start()
        ref = suptrace.monitor(pid)
        suptrace.exit(pid, "kill")
        await down_of(ref)
        with pytest.raises(NoProc) as info:
            await suptrace.call(pid, "get", timeout=1)
        assert info.value.dest == pid and info.value.timeout == 1

    await in_node(main)


async def test_call_exit_when_handle_call_raises() -> None:
    boom = KeyError("missing")

    async def main() -> None:
        log: list[Any] = []
        pid = await Counter.start(log=log)
        ref = suptrace.monitor(pid)
        with pytest.raises(CallExit) as info:
            await suptrace.call(pid, ("crash", boom))
        assert info.value.reason is boom
        assert info.value.dest == pid and info.value.request == ("crash", boom)
        assert (await down_of(ref)).reason is boom  # the server crashed with it
        assert log[-1] == ("terminate", boom)  # terminate ran on the crash

    await in_node(main)


async def test_call_exit_normal_when_server_is_stopped_during_the_call() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        pid = await Parked.start(me)

        async def client() -> None:
            try:
                await suptrace.call(pid, "wait")
            except CallExit as e:
                suptrace.send(me, ("call_exit", e.reason))

        suptrace.spawn(client)
        await suptrace.receive(lambda m: m == ("parked", "wait"), timeout=1)
        await suptrace.stop(pid)
        assert await suptrace.receive(timeout=1) == ("call_exit", "normal")

    await in_node(main)


async def test_call_exit_killed_when_server_is_killed_during_the_call() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        pid = await Blocker.start(me)
        suptrace.spawn(call_and_report, me, pid)
        await suptrace.receive(lambda m: m == ("in_call", "anything"), timeout=1)
        suptrace.exit(pid, "kill")
        assert await suptrace.receive(timeout=1) == ("call_exit", "killed")

    await in_node(main)


async def call_and_report(report_to: Pid, server: Pid) -> None:
    try:
        await suptrace.call(server, "anything")
    except CallExit as e:
        suptrace.send(report_to, ("call_exit", e.reason))


async def test_noreply_then_reply_later() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        pid = await Parked.start(me)

        async def client(n: int) -> None:
            suptrace.send(me, ("answer", n, await suptrace.call(pid, n)))

        suptrace.spawn(client, 1)
        suptrace.spawn(client, 2)
        await suptrace.receive(lambda m: m == ("parked", 1), timeout=1)
        await suptrace.receive(lambda m: m == ("parked", 2), timeout=1)
        suptrace.cast(pid, "both answered")
        got = {await suptrace.receive(timeout=1), await suptrace.receive(timeout=1)}
        assert got == {("answer", 1, "both answered"), ("answer", 2, "both answered")}

    await in_node(main)


async def test_calling_self_raises_call_error_calling_self() -> None:
    class Narcissus(GenServer):
        async def handle_call(self, request: Any, caller: Caller) -> Any:
            try:
                await suptrace.call(suptrace.self_pid(), "me?")
            except CallError as e:
                return (type(e).__name__, e.reason)

    async def main() -> None:
        pid = await Narcissus.start(name="narcissus")
        assert await suptrace.call(pid, "go") == ("CallError", "calling_self")
        assert await suptrace.call("narcissus", "again") == ("CallError", "calling_self")

    await in_node(main)


async def test_call_from_a_plain_task() -> None:
    async with asyncio.timeout(5), suptrace.Node("plain", log_reports=False):
        pid = await Counter.start(10)
        assert await suptrace.call(pid, ("add", 1)) == 11
        with pytest.raises(CallTimeout):
            await suptrace.call(await Parked.start(), "x", timeout=0.01)


async def test_cast_to_dead_pid_is_silent() -> None:
    async def main() -> None:
        pid = await Counter.start()
        ref = suptrace.monitor(pid)
        suptrace.exit(pid, "kill")
        await down_of(ref)
        suptrace.cast(pid, ("add", 1))  # no exception
        assert await ping(suptrace.spawn(echo))

    await in_node(main)


async def test_callback_without_handler_crashes_the_server() -> None:
    class Mute(GenServer):
        pass

    async def main() -> None:
        pid = await Mute.start()
        with pytest.raises(CallExit) as info:
            await suptrace.call(pid, "hello")
        assert isinstance(info.value.reason, NotImplementedError)
        assert "handle_call" in str(info.value.reason)

    await in_node(main)


# -- stop and terminate ---------------------------------------------------------------------


async def test_stop_runs_terminate_and_waits_for_the_exit() -> None:
    async def main() -> None:
        log: list[Any] = []
        pid = await Counter.start(name="stoppable", log=log)
        ref = suptrace.monitor(pid)
        await suptrace.stop("stoppable")
        assert log == [("init", 0), ("terminate", "normal")]
        assert not suptrace.is_alive(pid)
        assert suptrace.whereis("stoppable") is None
        assert (await down_of(ref)).reason == "normal"

        pid = await Counter.start(log=log)
        ref = suptrace.monitor(pid)
        await suptrace.stop(pid, reason="shutdown")
        assert log[-1] == ("terminate", "shutdown")
        assert (await down_of(ref)).reason == "shutdown"

        with pytest.raises(NoProc):
            await suptrace.stop("stoppable")

    await in_node(main)


async def test_terminate_on_crash_in_cast() -> None:
    boom = ZeroDivisionError("cast crash")

    async def main() -> None:
        log: list[Any] = []
        pid = await Counter.start(log=log)
        ref = suptrace.monitor(pid)
        suptrace.cast(pid, ("crash", boom))
        assert (await down_of(ref)).reason is boom
        assert log[-1] == ("terminate", boom)

    await in_node(main)


async def test_terminate_on_exit_raised_in_a_callback() -> None:
    async def main() -> None:
        log: list[Any] = []
        pid = await Counter.start(log=log)
        ref = suptrace.monitor(pid)
        with pytest.raises(CallExit) as info:
            await suptrace.call(pid, ("exit", "shutdown"))
        assert info.value.reason == "shutdown"
        assert (await down_of(ref)).reason == "shutdown"
        assert log[-1] == ("terminate", "shutdown")

    await in_node(main)


class TrappingCounter(Counter):
    async def init(self, start: int = 0, *, log: list[Any] | None = None) -> None:
        suptrace.trap_exit(True)
        await super().init(start, log=log)


async def test_terminate_on_parent_exit_when_trapping() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        log: list[Any] = []

        async def parent() -> None:
            suptrace.send(me, await TrappingCounter.start_link(log=log))
            await suptrace.receive(lambda m: m == "die")
            raise suptrace.Exit("shutdown")

        p = suptrace.spawn(parent)
        server = await suptrace.receive(timeout=1)
        ref = suptrace.monitor(server)
        suptrace.send(p, "die")
        assert (await down_of(ref)).reason == "shutdown"
        assert log == [("init", 0), ("terminate", "shutdown")]

    await in_node(main)


async def test_no_terminate_on_parent_exit_when_not_trapping() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        log: list[Any] = []

        async def parent() -> None:
            suptrace.send(me, await Counter.start_link(log=log))
            await suptrace.receive(lambda m: m == "die")
            raise suptrace.Exit("shutdown")

        p = suptrace.spawn(parent)
        server = await suptrace.receive(timeout=1)
        ref = suptrace.monitor(server)
        suptrace.send(p, "die")
        assert (await down_of(ref)).reason == "shutdown"
        assert log == [("init", 0)]

    await in_node(main)


async def test_no_terminate_on_kill_even_when_trapping() -> None:
    async def main() -> None:
        log: list[Any] = []
        pid = await TrappingCounter.start(log=log)
        ref = suptrace.monitor(pid)
        suptrace.exit(pid, "kill")
        assert (await down_of(ref)).reason == "killed"
        assert log == [("init", 0)]

    await in_node(main)


async def test_exit_signal_from_the_parent_stops_a_trapping_server() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log: list[Any] = []
        pid = await TrappingCounter.start_link(log=log)
        suptrace.exit(pid, "shutdown")  # exit/2 from the parent counts as the parent's exit
        assert await exit_from(pid) == ExitMsg(pid, "shutdown")
        assert log[-1] == ("terminate", "shutdown")

    await in_node(main)


async def test_exit_signal_from_a_stranger_is_info_for_a_trapping_server() -> None:
    async def main() -> None:
        me = suptrace.self_pid()
        log: list[Any] = []
        pid = await TrappingCounter.start(log=log)  # its parent is us, but unlinked

        async def stranger() -> None:
            suptrace.exit(pid, "shutdown")
            suptrace.send(me, ("sent", suptrace.self_pid()))

        suptrace.spawn(stranger)
        _, spid = await suptrace.receive(timeout=1)
        infos = await suptrace.call(pid, "infos")
        assert infos == [ExitMsg(spid, "shutdown")]
        assert log == [("init", 0)]  # no terminate: still serving

    await in_node(main)


# -- system requests ------------------------------------------------------------------------


async def test_get_state_and_statistics() -> None:
    async def main() -> None:
        pid = await Counter.start(7, name="stats")
        suptrace.cast(pid, ("add", 1))
        suptrace.send(pid, "info")
        assert await suptrace.call(pid, "get") == 8
        state = await suptrace.get_state("stats")
        assert state["n"] == 8 and state["infos"] == ["info"]
        assert not any(k.startswith("_") for k in state)
        stats = await suptrace.statistics(pid)
        assert stats["calls"] == 1 and stats["casts"] == 1 and stats["infos"] == 1
        assert stats["messages_in"] >= 3 and stats["messages_out"] >= 1
        assert stats["start_time"] <= stats["current_time"]
        with pytest.raises(NoProc):
            await suptrace.get_state("no.such.server")

    await in_node(main)


async def test_cast_to_an_unregistered_name_is_dropped_like_otp() -> None:
    async def main() -> None:
        dead: list[suptrace.TraceEvent] = []
        suptrace.add_event_handler(dead.append, kinds=["dead_letter"])
        suptrace.cast("nobody.here", ("add", 1))  # gen_server:cast never fails
        assert [e.data["to"] for e in dead] == ["nobody.here"]

    await in_node(main)


async def test_the_caller_tells_who_asked_what_of_whom_and_for_how_long() -> None:
    """`Caller`'s documented attributes, as ``handle_call`` sees them."""

    class Keeper(GenServer):
        async def handle_call(self, request: Any, caller: Caller) -> Any:
            self.seen = (caller.pid, caller.dest, caller.request, caller.timeout, caller.waiting)
            return "ok"

    async def main() -> None:
        pid = await Keeper.start_link(name="keeper")
        assert await suptrace.call("keeper", ("job", 1), timeout=2.5) == "ok"
        state = await suptrace.get_state(pid)
        assert state["seen"] == (suptrace.self_pid(), "keeper", ("job", 1), 2.5, True)
        assert await suptrace.call(pid, "again", timeout=None) == "ok"
        assert (await suptrace.get_state(pid))["seen"][1:4] == (pid, "again", None)
        with pytest.raises(TypeError, match="call\\(\\) needs a Pid or a registered name"):
            await suptrace.call(42, "x")  # type: ignore[arg-type]

    await in_node(main)


async def test_a_callers_ref_is_made_once_and_repr_works_before_it() -> None:
    class Refs(GenServer):
        async def handle_call(self, request: Any, caller: Caller) -> Any:
            return repr(caller), caller.ref, caller.ref

    async def main() -> None:
        pid = await Refs.start_link()
        shown, first, again = await suptrace.call(pid, "ref")
        assert first is again and type(first) is suptrace.Ref
        assert shown == f"call('ref', from={suptrace.self_pid()})"
        # A Caller made by hand: its repr makes the ref, and shows the same one after.
        caller = Caller(suptrace.self_pid(), asyncio.get_running_loop().create_future())
        text = repr(caller)
        assert text == f"Caller({suptrace.self_pid()}, {caller.ref})" and caller.waiting

    await in_node(main)


async def test_a_cast_to_a_plain_process_arrives_as_a_cast_request() -> None:
    async def main() -> None:
        suptrace.cast(suptrace.self_pid(), {"sku": 7})
        got = await suptrace.receive(timeout=1)
        assert type(got) is CastRequest and got.msg == {"sku": 7}
        with pytest.raises(TypeError, match="cast\\(\\) needs a Pid or a registered name"):
            suptrace.cast(42, "x")  # type: ignore[arg-type]

    await in_node(main)
