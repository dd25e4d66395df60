"""The event stream and the public hook API (`add_event_handler`, `add_report_handler`).

Every kind documented in `suptrace.core.events` is emitted where documented,
with the documented data keys; with nobody listening nothing is emitted at all;
a broken handler never harms the process that caused the event.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest
from runtime_support import idle, in_node, wait_dead
from trace_support import Echo, EventLog, Silent

import suptrace
from suptrace import ChildSpec, Down, Exit, ExitMsg, Pid, Supervisor
from suptrace.core.events import KINDS
from suptrace.core.runtime import Runtime, current_runtime

#: The data keys each kind must carry (from the schema in suptrace.core.events).
SCHEMA: dict[str, set[str]] = {
    "send": {"to", "msg"},
    "receive": {"from", "msg"},
    "dead_letter": {"to", "msg"},
    "spawn": {"child", "initial_call", "link"},
    "spawned": {"parent", "initial_call"},
    "exit": {
        "reason",
        "by_signal",
        "initial_call",
        "ancestors",
        "links",
        "message_queue_len",
        "messages_in",
        "messages_out",
    },
    "crash": {
        "reason",
        "by_signal",
        "initial_call",
        "ancestors",
        "links",
        "message_queue_len",
        "messages_in",
        "messages_out",
        "last_events",
    },
    "link": {"peer"},
    "unlink": {"peer"},
    "getting_linked": {"peer"},
    "monitor": {"target", "ref"},
    "demonitor": {"target", "ref"},
    "down": {"target", "ref", "reason"},
    "exit_signal": {"from", "reason", "action"},
    "register": {"name"},
    "unregister": {"name", "reason"},
    "call": {"to", "request", "ref"},
    "reply": {"to", "reply", "ref", "duration"},
    "call_timeout": {"to", "request", "timeout"},
    "restart": {"supervisor", "child_id", "old_pid", "new_pid", "reason"},
    "start_error": {"supervisor", "child_id", "reason"},
    "intensity": {"supervisor", "child_id", "restarts", "intensity", "period"},
    "not_restarted": {"supervisor", "child_id", "reason", "restart_type", "cause", "rule"},
    "child_terminated": {"supervisor", "child_id", "reason", "offender"},
    "shutdown_error": {"supervisor", "child_id", "reason", "offender"},
    "progress": {"supervisor", "started"},
}
#: A node where nothing subscribes to the event stream: no reports, no system
#: monitor, no OpenTelemetry bridge.
QUIET_NODE: dict[str, Any] = {
    "reports": False,
    "log_reports": False,
    "system_monitor": False,
    "telemetry": False,
}

#: Emitted by the system monitor, call tracing and tracers (tested in their own modules).
ELSEWHERE = {"long_schedule", "large_mailbox", "call_trace", "trace"}


def test_schema_covers_every_kind() -> None:
    assert set(SCHEMA) | ELSEWHERE == KINDS


async def _worker() -> None:
    while await suptrace.receive() != "quit":
        pass


async def _stubborn() -> None:
    """Traps exits and answers a shutdown with another reason (a shutdown_error)."""
    suptrace.trap_exit(True)
    msg = await suptrace.receive(lambda m: isinstance(m, ExitMsg))
    raise Exit(("stubborn", msg.reason))


async def _start_worker(name: str | None = None) -> Pid:
    return suptrace.spawn_link(_worker, name=name)


async def _start_stubborn() -> Pid:
    return suptrace.spawn_link(_stubborn)


def _start_broken() -> Pid:
    raise RuntimeError("cannot start")


async def test_every_kind_is_emitted_with_its_data_keys() -> None:
    log = EventLog()

    async def main() -> None:
        stop = suptrace.add_event_handler(log)
        # spawn / spawned / link / getting_linked / register
        pid = suptrace.spawn_link(_worker, name="w")
        suptrace.send(pid, "hello")  # send / receive
        suptrace.unlink(pid)  # unlink
        ref = suptrace.monitor(pid)  # monitor
        suptrace.demonitor(ref)  # demonitor
        suptrace.unregister("w")  # unregister (explicit: reason None)
        suptrace.register("w", pid)  # register
        ref = suptrace.monitor(pid)
        suptrace.send(pid, "quit")
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)  # exit / down
        suptrace.send(pid, "late")  # dead_letter
        victim = suptrace.spawn(idle)
        suptrace.exit(victim, "bye")  # exit_signal
        await wait_dead(victim)

        echo = await Echo.start()
        assert await suptrace.call(echo, "ping") == "ping"  # call / reply
        silent = await Silent.start()
        with pytest.raises(suptrace.CallTimeout):
            await suptrace.call(silent, "anyone?", timeout=0.01)  # call_timeout

        # Supervision: an inner supervisor (transient) whose worker crashes twice.
        inner_children = [ChildSpec(id="crasher", start=(_start_worker, ("crasher",)))]
        top = await Supervisor.start_link(
            [
                ChildSpec(
                    id="inner",
                    start=(Supervisor.start_link, (inner_children,), {"intensity": 1, "period": 5}),
                    restart="transient",
                    type="supervisor",
                ),
                ChildSpec(id="stubborn", start=(_start_stubborn, ())),
            ],
            intensity=5,
        )  # progress
        crasher = suptrace.whereis("crasher")
        assert crasher is not None
        suptrace.exit(crasher, "boom")  # child_terminated / restart
        await log.wait_for("restart")
        crasher = suptrace.whereis("crasher")
        assert crasher is not None
        suptrace.exit(crasher, "boom again")  # intensity / not_restarted
        await log.wait_for("not_restarted")
        await suptrace.terminate_child(top, "stubborn")  # shutdown_error
        with pytest.raises(suptrace.StartError):
            await Supervisor.start(
                [ChildSpec(id="broken", start=(_start_broken, ()))]
            )  # start_error
        stop()

    await in_node(main)

    seen = {e.kind for e in log.events}
    missing = set(SCHEMA) - seen
    assert not missing, f"kinds never emitted: {sorted(missing)}"
    for event in log.events:
        if event.kind in SCHEMA:
            keys = set(event.data)
            assert SCHEMA[event.kind] <= keys, (event.kind, sorted(keys))
        assert isinstance(event.ts, float)
        assert event.pid is None or isinstance(event.pid, Pid)


async def test_events_land_on_the_documented_process() -> None:
    log = EventLog()

    async def main() -> dict[str, Any]:
        suptrace.add_event_handler(log)
        me = suptrace.self_pid()
        pid = suptrace.spawn_link(_worker, name="w2")
        suptrace.send(pid, "hello")
        ref = suptrace.monitor(pid)
        suptrace.send(pid, "quit")
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        suptrace.send(pid, "late")
        return {"me": me, "pid": pid, "ref": ref}

    ids = await in_node(main)
    me, pid, ref = ids["me"], ids["pid"], ids["ref"]

    def one(kind: str, who: Pid) -> Any:
        found = [e for e in log.events if e.kind == kind and e.pid == who]
        assert found, f"no {kind} event on {who}"
        return found[0]

    assert one("spawn", me).data["child"] == pid and one("spawn", me).data["link"] is True
    assert one("spawned", pid).data["parent"] == me
    assert one("link", me).data["peer"] == pid
    assert one("getting_linked", pid).data["peer"] == me
    assert one("register", pid).data["name"] == "w2"
    assert one("send", me).data == {"to": pid, "msg": "hello"}
    assert one("receive", pid).data == {"from": me, "msg": "hello"}
    assert one("monitor", me).data == {"target": pid, "ref": ref}
    exit_event = one("exit", pid)
    assert exit_event.data["reason"] == "normal" and exit_event.data["by_signal"] is False
    assert exit_event.name == "w2"
    assert one("unregister", pid).data == {"name": "w2", "reason": "normal"}
    assert one("down", me).data == {"target": pid, "ref": ref, "reason": "normal"}
    assert one("dead_letter", me).data == {"to": pid, "msg": "late"}
    kinds = [e.kind for e in log.events if e.pid == pid]
    # the name is released before the death is announced
    assert kinds.index("unregister") < kinds.index("exit")


async def test_nothing_is_emitted_when_nobody_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    original = Runtime.emit

    def counting(self: Runtime, proc: Any, kind: str, data: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        original(self, proc, kind, data)

    monkeypatch.setattr(Runtime, "emit", counting)

    async def main() -> tuple[int, int]:
        rt = current_runtime()
        assert rt.hooks == () and rt.watch == frozenset()
        echo = await Echo.start_link(name="echo")
        sink_pid = suptrace.spawn_link(_worker)
        for i in range(200):
            suptrace.send(sink_pid, i)
            assert await suptrace.call("echo", i) == i
            suptrace.cast(echo, i)
        pid, ref = suptrace.spawn_monitor(_worker)
        suptrace.send(pid, "quit")
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        suptrace.send(pid, "dead letter")
        return calls, len(rt.procs)

    emitted, _ = await in_node(main, **QUIET_NODE)
    assert emitted == 0
    # The same workload with one listener does emit: the counter above is live.
    seen = EventLog()

    async def listened() -> None:
        suptrace.add_event_handler(seen, "send")
        suptrace.send(suptrace.spawn(_worker), "x")

    await in_node(listened, **QUIET_NODE)
    assert calls >= 1 and seen.kinds() == ["send"]


async def test_kinds_filter_and_unsubscribe() -> None:
    async def main() -> None:
        rt = current_runtime()
        before = (rt.hooks, rt.watch)
        sends = EventLog()
        procs = EventLog()
        stop_sends = suptrace.add_event_handler(sends, kinds=["send"])
        stop_procs = suptrace.add_event_handler(procs, kinds="spawn")
        assert "send" in rt.watch and "spawn" in rt.watch and "receive" not in rt.watch
        pid = suptrace.spawn(_worker)
        suptrace.send(pid, "a")
        assert sends.kinds() == ["send"] and procs.kinds() == ["spawn"]
        stop_sends()
        stop_sends()  # harmless twice
        suptrace.send(pid, "b")
        assert sends.kinds() == ["send"]
        stop_procs()
        suptrace.spawn(_worker)
        assert procs.kinds() == ["spawn"]
        assert (rt.hooks, rt.watch) == before

    await in_node(main, **QUIET_NODE)


async def test_unknown_kinds_are_refused() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match=r"unknown event kind.*'sned'"):
            suptrace.add_event_handler(print, kinds=["send", "sned"])
        with pytest.raises(ValueError, match="unknown event kind"):
            suptrace.add_event_handler(print, kinds="everything")
        with pytest.raises(TypeError, match="callable"):
            suptrace.add_event_handler("not a function")  # type: ignore[arg-type]

    await in_node(main)


async def test_a_raising_handler_does_not_break_the_process() -> None:
    from loguru import logger

    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")

    def broken(event: suptrace.TraceEvent) -> None:
        raise RuntimeError(f"observer bug on {event.kind}")

    async def main() -> tuple[int, list[str]]:
        rt = current_runtime()
        suptrace.add_event_handler(broken, ["send", "receive"])
        got = EventLog()
        suptrace.add_event_handler(got, ["send"])  # a later, healthy handler still gets events
        me = suptrace.self_pid()
        for i in range(5):
            suptrace.send(me, i)
        received = [await suptrace.receive() for _ in range(5)]
        assert received == [0, 1, 2, 3, 4]
        return rt.hook_errors, got.kinds()

    try:
        errors, kinds = await in_node(main)
    finally:
        logger.remove(sink)
    assert errors == 10  # 5 sends + 5 receives, each counted; the handler stays subscribed
    assert kinds == ["send"] * 5
    # Reported once, as a WARNING naming the handler, the event and the rule.
    assert len(warnings) == 1
    assert "test_a_raising_handler_does_not_break_the_process.<locals>.broken" in warnings[0]
    assert "observer bug on send" in warnings[0] and "'send' event" in warnings[0]
    assert "stays subscribed" in warnings[0]


async def test_report_handler_is_part_of_the_hook_api() -> None:
    from suptrace.node import hooks

    assert hooks.add_report_handler is suptrace.add_report_handler
    assert hooks.add_event_handler is suptrace.add_event_handler

    got: list[Any] = []

    async def main() -> None:
        stop = hooks.add_report_handler(got.append)

        async def crash() -> None:
            raise ValueError("bad input")

        _, ref = suptrace.spawn_monitor(crash)
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        stop()
        _, ref = suptrace.spawn_monitor(crash)
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)

    await in_node(main)
    assert [type(r).__name__ for r in got] == ["CrashReport"]


def test_hooks_subscriber_example_runs() -> None:
    """examples/hooks_subscriber.py: a restart counter built on the public hooks only."""
    path = Path(__file__).resolve().parent.parent / "examples" / "hooks_subscriber.py"
    module = runpy.run_path(str(path), run_name="hooks_subscriber_example")
    counts = module["demo"]()
    assert counts == {"restarts": {("demo.sup", "flaky"): 3}, "gave_up": ["demo.sup"]}
    source = path.read_text()
    assert "suptrace.core" not in source and "suptrace.observers" not in source
