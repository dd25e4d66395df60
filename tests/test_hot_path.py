"""The one way a message is posted (`post`) and the one way it is taken (`take`):
send, cast, call and a GenServer's system requests all leave the same traces
(counters, flight recorder, events), reach a process through a parsed pid, and
come out of the mailbox unwrapped when an instrument wraps them in envelopes."""

from __future__ import annotations

import sys
from typing import Any

from runtime_support import in_node

import suptrace
from suptrace import Down, Pid, TraceEvent
from suptrace.behaviours.requests import CallRequest, SystemRequest
from suptrace.core.links import death_future
from suptrace.core.mailbox import CastRequest, Envelope
from suptrace.core.process import Process
from suptrace.core.runtime import current_runtime
from suptrace.core.spawn import process_in_stack, start_process


class Store(suptrace.GenServer):
    """Keeps what it is cast and sent; answers calls with the list so far."""

    async def init(self) -> None:
        self.items: list[Any] = []

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        if request == "items":
            return list(self.items)
        return request

    async def handle_cast(self, msg: Any) -> None:
        self.items.append(("cast", msg))

    async def handle_info(self, msg: Any) -> None:
        self.items.append(("info", msg))


# -- the sender's side ------------------------------------------------------------------------


async def test_a_cast_is_in_the_senders_flight_recorder() -> None:
    async def main() -> tuple[list[TraceEvent], dict[str, Any]]:
        store = await Store.start()
        before = suptrace.process_info(suptrace.self_pid())
        assert before is not None
        suptrace.cast(store, {"sku": 7})
        await suptrace.call(store, "items")  # the cast was handled before this reply
        me = suptrace.process_info(suptrace.self_pid())
        assert me is not None
        me["messages_out"] -= before["messages_out"]
        return list(me["last_events"]), me

    events, me = await in_node(main)
    sends = [e for e in events if e.kind == "send"]
    assert len(sends) == 1
    [cast] = sends
    assert type(cast.data["msg"]) is CastRequest and cast.data["msg"].msg == {"sku": 7}
    assert repr(cast.data["msg"]) == "cast({'sku': 7})"
    assert [e.kind for e in events][-2:] == ["send", "call"]  # in order, then the call
    assert me["messages_out"] == 2  # the cast and the call, each counted once


async def test_a_cast_to_a_dead_pid_is_recorded_and_seen_as_a_dead_letter() -> None:
    async def main() -> tuple[list[TraceEvent], list[TraceEvent]]:
        seen: list[TraceEvent] = []
        current_runtime().add_event_handler(seen.append, ["dead_letter"])
        store = await Store.start()
        await suptrace.stop(store)
        suptrace.cast(store, "late")
        info = suptrace.process_info(suptrace.self_pid())
        assert info is not None
        return seen, list(info["last_events"])

    seen, events = await in_node(main)
    assert [type(e.data["msg"]) for e in seen] == [CastRequest]
    assert events[-1].kind == "send" and events[-1].data["msg"].msg == "late"


async def test_system_requests_are_traced_as_a_send_and_a_receive() -> None:
    async def main() -> tuple[Pid, Pid, list[TraceEvent], dict[str, Any]]:
        store = await Store.start()
        seen: list[TraceEvent] = []
        remove = current_runtime().add_event_handler(seen.append, ["send", "receive"])
        state = await suptrace.get_state(store)
        stats = await suptrace.statistics(store)
        remove()
        assert state == {"items": []}
        return suptrace.self_pid(), store, seen, stats

    me, store, seen, stats = await in_node(main)
    ops = [(e.kind, e.pid, e.data["msg"].op) for e in seen if type(e.data["msg"]) is SystemRequest]
    assert ops == [
        ("send", me, "get_state"),
        ("receive", store, "get_state"),
        ("send", me, "statistics"),
        ("receive", store, "statistics"),
    ]
    received = [e for e in seen if e.kind == "receive"]
    assert all(e.data["from"] == me for e in received)  # the requester, not "nobody"
    assert repr(received[0].data["msg"]) == "system(get_state)"
    assert stats["messages_in"] == 2  # the two requests reached its mailbox, once each


async def test_a_system_request_to_a_server_that_dies_meanwhile_fails_with_its_reason() -> None:
    class Slow(Store):
        async def handle_info(self, msg: Any) -> None:
            raise suptrace.Exit("gone")

    async def main() -> Any:
        slow = await Slow.start()
        suptrace.send(slow, "die")  # handled before the request: the server dies first
        try:
            await suptrace.get_state(slow)
        except suptrace.CallExit as e:
            return e.reason
        return None

    assert await in_node(main) == "gone"


async def test_a_parsed_pid_works_for_send_cast_and_call() -> None:
    async def main() -> list[Any]:
        store = await Store.start()
        parsed = Pid.parse(str(store))
        assert parsed._proc is None  # a value, without the runtime's handle
        suptrace.send(parsed, "sent")
        suptrace.cast(parsed, "cast")
        items: list[Any] = await suptrace.call(parsed, "items")
        assert await suptrace.get_state(parsed) == {"items": items}
        return items

    assert await in_node(main) == [("info", "sent"), ("cast", "cast")]


async def test_a_task_of_a_process_posts_as_that_process() -> None:
    async def main() -> tuple[Pid, list[Any], list[TraceEvent], int]:
        import asyncio

        store = await Store.start()
        seen: list[TraceEvent] = []
        current_runtime().add_event_handler(seen.append, ["receive"])
        me = suptrace.self_pid()
        proc = me._proc
        assert proc is not None
        before = proc.messages_out

        async def in_a_task() -> list[Any]:
            suptrace.cast(store, 1)
            return list(await suptrace.call(store, "items"))

        # A task of the root process counts (and is traced) as the process, as for send.
        items = await asyncio.get_running_loop().create_task(in_a_task())
        return me, items, seen, proc.messages_out - before

    me, items, seen, sent = await in_node(main)
    assert items == [("cast", 1)]
    [cast] = [e for e in seen if type(e.data["msg"]) is CastRequest]
    assert cast.data["from"] == me
    assert sent == 2  # the cast and the call, both the process's


async def test_queued_casts_are_left_alone_by_the_garbage_collector() -> None:
    """A cast waits in its mailbox as a tuple the collector stops tracking, not as an
    object every collection would traverse again; receivers still get a CastRequest."""
    import gc

    async def main() -> tuple[list[bool], list[Any]]:
        me = suptrace.self_pid()
        proc = me._proc
        assert proc is not None
        for i in range(3):
            suptrace.cast(me, i)  # untracked values: what is left to track is the envelope
        gc.collect()
        tracked = [gc.is_tracked(item) for item in proc.mailbox or ()]
        picked = await suptrace.receive(lambda m: isinstance(m, CastRequest) and m.msg == 1)
        rest = [await suptrace.receive(), await suptrace.receive(timeout=0)]
        return tracked, [picked, *rest]

    tracked, got = await in_node(main)
    assert tracked == [False, False, False]
    assert [type(m) for m in got] == [CastRequest] * 3
    assert [m.msg for m in got] == [1, 0, 2]


async def test_a_hook_added_later_sees_spawn_and_death_events() -> None:
    """Spawn and death skip their event checks while no hook wants their kinds: a
    hook added afterwards (for one of those kinds only) still gets every event."""

    async def child() -> None:
        await suptrace.receive()

    async def main() -> tuple[list[tuple[str, Any]], Pid, Pid]:
        rt = current_runtime()
        seen: list[TraceEvent] = []
        suptrace.spawn_monitor(child)  # before any hook: nobody sees it
        remove = rt.add_event_handler(seen.append, ["monitor", "unregister", "exit"])
        pid, ref = suptrace.spawn_monitor(child, name="watched")
        suptrace.send(pid, "go")
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        remove()
        return [(e.kind, e.pid) for e in seen], suptrace.self_pid(), pid

    got, me, pid = await in_node(main)
    assert got == [("monitor", me), ("unregister", pid), ("exit", pid)]


# -- the receiving side: one take, with an instrument's envelopes ------------------------------


class Stamps:
    """A real instrument: stamps each message with a number; records what comes back."""

    def __init__(self) -> None:
        self.n = 0
        self.handled: list[tuple[str, Any, Any]] = []
        self.calls = 0

    def capture(self, dest: Process, msg: Any, sender: Pid | None) -> Any:
        self.n += 1
        return ("ctx", self.n)

    def handle_begin(self, proc: Process, kind: str, msg: Any, ctx: Any) -> Any:
        self.handled.append((kind, msg, ctx))
        return kind

    def handle_end(self, token: Any, error: BaseException | None) -> None:
        pass

    def call_begin(self, proc: Process | None, server: Process, request: Any) -> Any:
        self.calls += 1
        return "call"

    def call_end(self, token: Any, error: BaseException | None) -> None:
        pass

    def call_refused(self, proc: Process | None, dest: Any, request: Any, error: BaseException) -> None:
        pass


async def test_receive_unwraps_envelopes_in_order_and_selectively() -> None:
    async def main() -> tuple[list[Any], Any, Any]:
        stamps = Stamps()
        rt = current_runtime()
        rt.instrument = stamps
        me = suptrace.self_pid()
        proc = me._proc
        assert proc is not None
        try:
            for msg in ("a", ("b", 1), "c"):
                suptrace.send(me, msg)
            assert all(type(item) is Envelope for item in proc.mailbox or ())
            picked = await suptrace.receive(lambda m: isinstance(m, tuple))
            inbound = proc.inbound
            rest = [await suptrace.receive(), await suptrace.receive(timeout=1)]
            return [picked, *rest], inbound, proc.inbound
        finally:
            rt.instrument = None

    got, after_selective, after_take = await in_node(main)
    assert got == [("b", 1), "a", "c"]  # bare messages, never envelopes
    assert after_selective == ("ctx", 2)  # the context that came with ("b", 1)
    assert after_take == ("ctx", 3)


async def test_a_genserver_gets_bare_messages_and_their_context() -> None:
    async def main() -> tuple[list[Any], list[tuple[str, Any, Any]], int]:
        stamps = Stamps()
        rt = current_runtime()
        store = await Store.start()
        rt.instrument = stamps
        try:
            suptrace.cast(store, "c1")
            suptrace.send(store, "i1")
            items: list[Any] = await suptrace.call(store, "items")
        finally:
            rt.instrument = None
        return items, stamps.handled, stamps.calls

    items, handled, calls = await in_node(main)
    assert items == [("cast", "c1"), ("info", "i1")]
    assert [(kind, type(msg), ctx) for kind, msg, ctx in handled] == [
        ("cast", CastRequest, ("ctx", 1)),
        ("info", str, ("ctx", 2)),
        ("call", CallRequest, ("ctx", 3)),
    ]
    assert calls == 1


# -- the named internal API --------------------------------------------------------------------


async def test_start_process_and_death_future() -> None:
    async def work(x: int) -> int:
        return x * 2

    async def main() -> tuple[Any, bool, bool, Any]:
        proc, ref = start_process(work, (21,), monitor=True, initial_call="tests:work")
        reason = await death_future(proc)
        down = await suptrace.receive(lambda m: isinstance(m, Down))
        return reason, down.ref == ref, proc.initial_call == "tests:work", proc.result

    assert await in_node(main) == ("normal", True, True, 42)


async def test_process_in_stack_finds_the_running_process() -> None:
    async def inner() -> Process | None:
        return process_in_stack(sys._getframe())

    async def main() -> tuple[bool, bool]:
        found = await inner()
        me = suptrace.self_pid()._proc
        return found is me, process_in_stack(None) is None

    assert await in_node(main) == (True, True)
