"""The flight recorder: each process keeps its last few events, with no tracer attached,
for crash reports, tombstones and process_info."""

from __future__ import annotations

from typing import Any

import pytest
from runtime_support import in_node
from trace_support import Echo

import suptrace
from suptrace import CrashReport, Down, Pid
from suptrace.core.runtime import current_runtime
from suptrace.observers.tracer import running_tracers


async def _crasher(echo: Pid, peer: Pid) -> None:
    """Receives a job, tells a peer, asks a server, then fails."""
    job = await suptrace.receive()
    suptrace.send(peer, ("working on", job))
    await suptrace.call(echo, ("lookup", job))
    raise RuntimeError(f"cannot handle {job}")


async def _crash_once(name: str | None = None) -> tuple[Pid, list[CrashReport]]:
    reports: list[CrashReport] = []
    suptrace.add_report_handler(lambda r: reports.append(r) if isinstance(r, CrashReport) else None)
    echo = await Echo.start()
    me = suptrace.self_pid()
    pid = suptrace.spawn(_crasher, echo, me, name=name)
    ref = suptrace.monitor(pid)
    suptrace.send(pid, "job-7")
    await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
    assert not running_tracers(current_runtime())  # no tracer was ever attached
    return pid, reports


async def test_crash_report_carries_the_last_events() -> None:
    async def main() -> tuple[Pid, list[CrashReport]]:
        return await _crash_once()

    pid, reports = await in_node(main)
    [report] = [r for r in reports if r.pid == pid]
    kinds = [e.kind for e in report.last_events]
    assert kinds == ["receive", "send", "call"]
    received, sent, called = report.last_events
    assert received.data["msg"] == "job-7"
    assert sent.data["msg"] == ("working on", "job-7")
    assert called.data["request"] == ("lookup", "job-7")
    assert all(e.pid == pid for e in report.last_events)
    assert received.ts <= sent.ts <= called.ts
    assert "last events (3):" in suptrace.format_report(report)
    assert "<< 'job-7'" in suptrace.format_report(report)


async def test_tombstones_keep_the_last_events() -> None:
    async def main() -> dict[str, Any]:
        pid, _ = await _crash_once(name="doomed")
        stone = current_runtime().tombstones["doomed"]
        return {"pid": pid, "stone_pid": stone.pid, "kinds": [e.kind for e in stone.last_events]}

    got = await in_node(main)
    assert got["stone_pid"] == got["pid"]
    assert got["kinds"] == ["receive", "send", "call"]


async def test_flight_recorder_zero_turns_it_off() -> None:
    async def main() -> dict[str, Any]:
        pid, reports = await _crash_once(name="unrecorded")
        rt = current_runtime()
        me = suptrace.self_pid()
        suptrace.send(me, "x")
        await suptrace.receive()
        assert me._proc is not None
        return {
            "size": rt.recorder_size,
            "recorder": me._proc.recorder,
            "report_events": [r.last_events for r in reports if r.pid == pid],
            "stone_events": rt.tombstones["unrecorded"].last_events,
            "info_events": suptrace.process_info(me)["last_events"],  # type: ignore[index]
        }

    got = await in_node(main, flight_recorder=0)
    assert got == {
        "size": 0,
        "recorder": None,
        "report_events": [()],
        "stone_events": [],
        "info_events": [],
    }


async def test_the_recorder_is_bounded_by_its_size() -> None:
    async def main() -> dict[str, Any]:
        me = suptrace.self_pid()
        for i in range(10):
            suptrace.send(me, i)
        for _ in range(10):
            await suptrace.receive()
        proc = me._proc
        assert proc is not None and proc.recorder is not None
        info = suptrace.process_info(me)
        assert info is not None
        return {
            "maxlen": proc.recorder.maxlen,
            "events": [(e.kind, e.data["msg"]) for e in proc.recent_events()],
            "info": len(info["last_events"]),
        }

    got = await in_node(main, flight_recorder=4)
    assert got["maxlen"] == 4 and got["info"] == 4
    # send and receive alternate per message: the last four are messages 8 and 9.
    assert got["events"] == [("send", 8), ("receive", 8), ("send", 9), ("receive", 9)]


async def test_exit_signals_are_recorded() -> None:
    async def main() -> list[Any]:
        async def victim() -> None:
            await suptrace.receive()

        pid = suptrace.spawn(victim, name="victim")
        ref = suptrace.monitor(pid)
        suptrace.exit(pid, "stop now")
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        stone = current_runtime().tombstones["victim"]
        return [(e.kind, e.data) for e in stone.last_events]

    events = await in_node(main)
    assert len(events) == 1
    kind, data = events[0]
    assert kind == "exit_signal" and data["reason"] == "stop now" and data["action"] == "die"


def test_bad_sizes_are_refused() -> None:
    for bad in (-1, 1.5, True, "16"):
        with pytest.raises(ValueError, match="flight_recorder"):
            suptrace.Node(flight_recorder=bad)  # type: ignore[arg-type]
