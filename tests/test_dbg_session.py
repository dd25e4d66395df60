"""The CopyCat incident (reference/seeds/000), debugged the way its author did: dbg.

The tree: ``copycat.sup`` runs a repository (a GenServer whose ``handle_call``
never replies: the database stuck on a slow query) and ``copycat.import_sup``
(transient, intensity 3 / period 5) with an importer whose ``handle_info``
calls the repository with a small timeout. Tracing the import supervisor shows
exactly what the blog post's dbg output showed: the importer's exit with a
call timeout arriving, the restarts, the intensity breach, the name
disappearing, and the supervisor exiting ``shutdown``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from runtime_support import in_node
from trace_support import EventLog, Silent, subsequence

import suptrace
from suptrace import CallTimeout, ChildSpec, ExitMsg, GenServer, Supervisor, TraceEvent
from suptrace.observers.format import MARK

#: What the importer asks the repository (the seed's Mongo update, shortened).
UPDATE = (
    "update",
    "comment_topic_events",
    [{"_id": {"__struct__": "BSON.ObjectId", "value": bytes(range(12))}}],
    [{"$set": [("status", "propagated")]}],
    [("multi", False)],
)
#: Small, so the importer times out quickly; the seed used 5000 ms.
CALL_TIMEOUT = 0.02


class Repo(Silent):
    """CopyCat.EventHub.Repo while the collection is locked: never answers."""


class Importer(GenServer):
    """CopyCat.EventImporter: on each tick, ask the repository and wait."""

    async def init(self, source: str) -> None:
        self.source = source
        suptrace.send(suptrace.self_pid(), "tick")

    async def handle_info(self, msg: Any) -> None:
        if msg == "tick":
            # An uncaught CallTimeout crashes the importer: OTP's
            # {timeout, {gen_server, call, [...]}} exit.
            await suptrace.call("copycat.repo", UPDATE, timeout=CALL_TIMEOUT)
            suptrace.send(suptrace.self_pid(), "tick")


def copycat_tree() -> list[ChildSpec]:
    importers = [ChildSpec(id="survey", start=(Importer.start_link, ("survey",)))]
    return [
        ChildSpec(id="repo", start=(Repo.start_link, (), {"name": "copycat.repo"})),
        ChildSpec(
            id="imports",
            start=(
                Supervisor.start_link,
                (importers,),
                {"intensity": 3, "period": 5, "name": "copycat.import_sup"},
            ),
            restart="transient",
            type="supervisor",
        ),
    ]


async def _debug_incident(log: EventLog, sends: EventLog) -> dict[str, Any]:
    # dbg:tracer(), dbg:p(ImportSup, [all]) -- attached by name before the tree
    # starts, so nothing is missed; the name is followed as it is registered.
    tracer = suptrace.trace(
        "copycat.import_sup",
        ("send", "receive", "procs"),
        handler=log,
        max_events=None,
        rate=None,
    )
    sender = suptrace.trace(suptrace.self_pid(), ["send"], handler=sends)
    await Supervisor.start_link(copycat_tree(), intensity=3, period=5, name="copycat.sup")
    # A multi-megabyte message to the import supervisor (it ignores it): the
    # trace lines must stay short anyway.
    suptrace.send("copycat.import_sup", ("payload", "x" * 3_000_000, b"\x00" * 2_000_000))
    await log.wait_for(lambda e: e.kind == "exit")
    # The baby monitor from the blog post: which_children on the vanished supervisor.
    with pytest.raises(suptrace.NoProc) as gone:
        await suptrace.which_children("copycat.import_sup")
    tracer.stop()
    sender.stop()
    return {"noproc": str(gone.value), "stats": tracer.stats()}


async def test_dbg_shows_the_silent_death() -> None:
    log, sends = EventLog(), EventLog()
    result = await in_node(_debug_incident, log, sends)

    def label(e: TraceEvent) -> str | None:
        if e.kind == "receive" and isinstance(e.data["msg"], ExitMsg):
            reason = e.data["msg"].reason
            return "receive ExitMsg(CallTimeout)" if isinstance(reason, CallTimeout) else None
        if e.kind in ("child_terminated", "restart", "intensity", "unregister"):
            return e.kind
        if e.kind == "exit":
            return f"exit {e.data['reason']}"
        return None

    story = [x for x in (label(e) for e in log.events) if x is not None]
    expected = [
        *["receive ExitMsg(CallTimeout)", "child_terminated", "restart"] * 3,
        "receive ExitMsg(CallTimeout)",
        "child_terminated",
        "intensity",
        "unregister",
        "exit shutdown",
    ]
    assert story == expected
    assert subsequence(["trace", "spawn", "link"], [e.kind for e in log.events])
    # Every event is about the import supervisor, under its name.
    sup_pid = log.events[-1].pid
    assert all(e.pid == sup_pid for e in log.events)
    assert {e.name for e in log.events if e.kind != "exit"} == {"copycat.import_sup"}

    timeout = next(e for e in log.events if label(e) == "receive ExitMsg(CallTimeout)")
    reason = timeout.data["msg"].reason
    assert reason.dest == "copycat.repo" and reason.request == UPDATE
    assert reason.timeout == CALL_TIMEOUT
    intensity = next(e for e in log.events if e.kind == "intensity")
    assert intensity.data["restarts"] == 4 and intensity.data["intensity"] == 3
    assert intensity.data["child_id"] == "survey"
    unregister = next(e for e in log.events if e.kind == "unregister")
    assert unregister.data == {"name": "copycat.import_sup", "reason": "shutdown"}

    # NoProc for the vanished name tells the whole story.
    text = result["noproc"]
    assert "copycat.import_sup is gone" in text and "exited shutdown" in text
    assert "max restart intensity" in text and "transient" in text
    assert result["stats"]["dropped"] == 0

    _check_lines(log.events, sends.events)


#: HH:MM:SS.micro, then the process: "(<0.4.0> copycat.import_sup)" or "(<0.4.0>)".
LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{6} \(<0\.\d+\.0>( [\w.]+)?\) ")
#: No trace line may be longer than this, whatever the message.
MAX_LINE = 1000


def _check_lines(events: list[TraceEvent], sends: list[TraceEvent]) -> None:
    lines = [suptrace.format_event(e) for e in events]
    for line, event in zip(lines, events, strict=True):
        if event.kind == "trace":  # the tracer's own remark
            assert re.match(r"^\d\d:\d\d:\d\d\.\d{6} --- copycat.import_sup is now <0\.", line)
        else:
            assert LINE.match(line), line
        assert "\n" not in line and len(line) <= MAX_LINE, line[:200]
    receive = next(
        line
        for line, e in zip(lines, events, strict=True)
        if e.kind == "receive" and "ExitMsg" in line
    )
    # 15:56:46.523011 (<0.404.0> copycat.import_sup) << ExitMsg(<0.409.0>, CallTimeout(...))
    assert re.search(
        r"\(<0\.\d+\.0> copycat\.import_sup\) << ExitMsg\(<0\.\d+\.0>, CallTimeout\(", receive
    )
    by_kind = {e.kind: line for line, e in zip(lines, events, strict=True)}
    assert " restart 'survey' <0." in by_kind["restart"]
    assert " intensity reached: 4 restarts in 5s (max 3)" in by_kind["intensity"]
    assert by_kind["unregister"].endswith("unregister copycat.import_sup ('shutdown')")
    assert by_kind["exit"].endswith(" exit 'shutdown'")

    # The multi-megabyte message: cut, with the visible mark, on both sides.
    big_in = next(
        line
        for line, e in zip(lines, events, strict=True)
        if e.kind == "receive" and isinstance(e.data["msg"], tuple)
    )
    assert " << ('payload', '" in big_in and MARK in big_in and len(big_in) <= MAX_LINE
    big_out = next(suptrace.format_event(e) for e in sends if isinstance(e.data["msg"], tuple))
    sender, receiver = sends[0].pid, events[-1].pid
    # (<from>) <to> ! msg
    assert f"({sender}) {receiver} ! ('payload', '" in big_out
    assert MARK in big_out and len(big_out) <= MAX_LINE

    # The JSON form: one object a line, parseable, bounded.
    for event in [*events, *sends]:
        text = suptrace.event_to_json(event)
        assert "\n" not in text and len(text) <= 20 * MAX_LINE
        obj = json.loads(text)
        assert obj["kind"] == event.kind and obj["pid"] == str(event.pid)
        assert obj["ts"] == event.ts
