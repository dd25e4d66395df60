"""Text and JSON forms of events: dbg-like, one event a line, bounded whatever the term."""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

import pytest

from suptrace import CallTimeout, Down, ExitMsg, Pid, Ref, Shutdown, TraceEvent
from suptrace.core.events import KINDS
from suptrace.observers.format import (
    MARK,
    event_to_json,
    format_event,
    format_ts,
    short,
    term_to_json,
)

TS = 1487736694.937453  # the seed's {1487,736694,937453}
A, B = Pid(404), Pid(409)
MB = 1 << 20


def ev(kind: str, data: dict[str, Any], pid: Pid | None = A, name: str | None = None) -> TraceEvent:
    return TraceEvent(TS, pid, name, kind, data)


def line(kind: str, data: dict[str, Any], **kw: Any) -> str:
    return format_event(ev(kind, data, **kw), utc=True)


class Huge:
    """A term whose repr is several megabytes, with newlines."""

    def __repr__(self) -> str:
        return "Huge(\n" + "y" * (3 * MB) + "\n)"


class Broken:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


BIG_TERMS: list[Any] = [
    "x" * (4 * MB),
    b"\x00" * (4 * MB),
    bytearray(4 * MB),
    list(range(MB)),
    {i: "v" * 1000 for i in range(10_000)},
    ("nested", [[["deep" * 100_000] * 50] * 50]),
    Huge(),
    ValueError("e" * (2 * MB)),
    ExitMsg(B, CallTimeout("timeout", "copycat.repo", ("update", "z" * MB), 5.0)),
]


# -- short ----------------------------------------------------------------------------------


@pytest.mark.parametrize("term", BIG_TERMS, ids=lambda t: type(t).__name__)
def test_short_is_bounded_and_marks_the_cut(term: Any) -> None:
    started = time.perf_counter()
    text = short(term, 200)
    assert len(text) <= 2 * 200 + len(MARK)
    assert MARK in text or "..." in text
    assert time.perf_counter() - started < 1.0  # never a multi-second repr


def test_short_leaves_small_terms_alone() -> None:
    assert short(("job", 1)) == "('job', 1)"
    assert short("ok") == "'ok'"
    assert short(B) == "<0.409.0>"
    assert short(ValueError("bad input")) == "ValueError('bad input')"
    assert short(b"abc") == "b'abc'"


def test_short_survives_a_broken_repr() -> None:
    assert "repr failed" in short(Broken())
    assert "repr failed" in short([Broken()])


def test_runtime_messages_read_like_dbg() -> None:
    assert short(ExitMsg(B, "shutdown")) == "ExitMsg(<0.409.0>, 'shutdown')"
    ref = Ref(7)
    assert short(Down(ref, B, "normal")) == "Down(#Ref<0.7>, <0.409.0>, 'normal')"
    assert short(Shutdown(("failed", 1))) == "Shutdown(('failed', 1))"
    text = short(ExitMsg(B, CallTimeout("timeout", "repo", "q", 5.0)))
    assert text.startswith("ExitMsg(<0.409.0>, CallTimeout('timeout', dest='repo'")


# -- timestamps -------------------------------------------------------------------------------


def test_timestamps_have_microseconds() -> None:
    assert format_ts(TS, utc=True) == "04:11:34.937453"
    assert format_ts(0.0000004, utc=True) == "00:00:00.000000"
    # Rounding carries into the seconds instead of printing :01.000000.
    assert format_ts(1.9999996, utc=True) == "00:00:02.000000"
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{6}", format_ts(time.time()))


# -- lines ------------------------------------------------------------------------------------


def test_receive_and_send_lines() -> None:
    assert (
        line("receive", {"from": B, "msg": ExitMsg(B, "shutdown")}, name="copycat.import_sup")
        == "04:11:34.937453 (<0.404.0> copycat.import_sup) << ExitMsg(<0.409.0>, 'shutdown')"
    )
    assert line("send", {"to": B, "msg": "hi"}) == "04:11:34.937453 (<0.404.0>) <0.409.0> ! 'hi'"
    assert line("dead_letter", {"to": "gone.name", "msg": 1}).startswith(
        "04:11:34.937453 (<0.404.0>) gone.name ! 1  (dead letter"
    )


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        ("exit", {"reason": "shutdown"}, "(<0.404.0>) exit 'shutdown'"),
        ("spawn", {"child": B, "initial_call": "m:f", "link": True}, "spawn <0.409.0> m:f"),
        ("spawned", {"parent": B, "initial_call": "m:f"}, "spawned by <0.409.0> as m:f"),
        ("link", {"peer": B}, "link <0.409.0>"),
        ("unlink", {"peer": B}, "unlink <0.409.0>"),
        ("getting_linked", {"peer": B}, "getting_linked <0.409.0>"),
        ("monitor", {"target": B, "ref": Ref(3)}, "monitor <0.409.0> #Ref<0.3>"),
        ("down", {"target": B, "ref": Ref(3), "reason": "normal"}, "down <0.409.0> 'normal'"),
        (
            "exit_signal",
            {"from": B, "reason": "kill", "action": "die"},
            "exit signal from <0.409.0> 'kill' -> die",
        ),
        ("register", {"name": "copycat.sup"}, "register copycat.sup"),
        ("unregister", {"name": "a.b", "reason": "shutdown"}, "unregister a.b ('shutdown')"),
        ("call", {"to": B, "request": "get", "ref": Ref(1)}, "call <0.409.0> 'get'"),
        (
            "call_timeout",
            {"to": B, "request": "get", "timeout": 5.0},
            "call_timeout <0.409.0> 'get' after 5.0s",
        ),
        (
            "restart",
            {"supervisor": "s", "child_id": "w", "old_pid": A, "new_pid": B, "reason": "boom"},
            "restart 'w' <0.404.0> -> <0.409.0> ('boom')",
        ),
        (
            "intensity",
            {
                "supervisor": "s",
                "child_id": "w",
                "restarts": 4,
                "intensity": 3,
                "period": 5,
                "child_reason": "boom",
            },
            "intensity reached: 4 restarts in 5s (max 3); offender 'w' 'boom'",
        ),
        ("child_terminated", {"child_id": "w", "reason": "boom"}, "child_terminated 'w' 'boom'"),
        ("start_error", {"child_id": "w", "reason": "boom"}, "start_error 'w' 'boom'"),
        ("shutdown_error", {"child_id": "w", "reason": "boom"}, "shutdown_error 'w' 'boom'"),
        (
            "not_restarted",
            {"child_id": "imports", "reason": "shutdown", "restart_type": "transient"},
            "not_restarted 'imports' 'shutdown' (transient)",
        ),
        ("progress", {"started": {"id": "w", "pid": B}}, "started 'w' as <0.409.0>"),
        ("large_mailbox", {"size": 12000, "limit": 10000}, "large_mailbox: 12000 messages"),
        (
            "long_schedule",
            {"duration": 0.25, "stack": ["a.py:1 in f", "b.py:9 in g"]},
            "long_schedule: held the loop 0.250s without awaiting at b.py:9 in g",
        ),
        (
            "call_trace",
            {"function": "m:f", "phase": "return", "value": 3},
            "return m:f 3",
        ),
    ],
)
def test_every_kind_has_a_line(kind: str, data: dict[str, Any], expected: str) -> None:
    text = line(kind, data)
    assert text.startswith("04:11:34.937453 (<0.404.0>) ")
    assert expected in text, text


def test_reply_line_shows_the_duration() -> None:
    text = line("reply", {"to": B, "reply": 42, "ref": Ref(1), "duration": 0.0012345})
    assert text.endswith("reply <0.409.0> 42 in 1.234ms") or text.endswith("in 1.235ms")


def test_trace_note_and_unknown_kind() -> None:
    assert line("trace", {"note": "--- x is now <0.9.0> ---"}).endswith("--- x is now <0.9.0> ---")
    assert "mystery {'a': 1}" in line("mystery", {"a": 1})


def test_events_without_a_pid() -> None:
    assert line("dead_letter", {"to": B, "msg": 1}, pid=None).startswith(
        "04:11:34.937453 (None) <0.409.0> ! 1"
    )


#: No line may be longer than this, whatever the event carries.
MAX_LINE = 3000


@pytest.mark.parametrize("term", BIG_TERMS, ids=lambda t: type(t).__name__)
def test_lines_stay_one_bounded_line_for_any_term(term: Any) -> None:
    for kind in sorted(KINDS):
        data = {
            key: term
            for key in (
                "msg",
                "to",
                "from",
                "reason",
                "request",
                "reply",
                "child_id",
                "name",
                "initial_call",
                "note",
                "value",
                "function",
                "peer",
                "target",
                "timeout",
                "child_reason",
                "restart_type",
                "phase",
                "size",
            )
        }
        data["started"] = {"id": term, "pid": term}
        data["stack"] = [term]
        text = format_event(ev(kind, data, name="n" * 5000), utc=True)
        assert "\n" not in text and "\r" not in text, kind
        assert len(text) <= MAX_LINE, (kind, len(text))


def test_newlines_in_terms_are_escaped() -> None:
    class Multi:
        def __repr__(self) -> str:
            return "line one\nline two\r"

    text = line("receive", {"from": B, "msg": Multi()})
    assert text.endswith("<< line one\\nline two\\r")


# -- JSON -------------------------------------------------------------------------------------


def test_event_to_json_round_trips_plain_values() -> None:
    event = ev("send", {"to": B, "msg": {"job": [1, 2.5, None, True, "x"]}}, name="n")
    obj = json.loads(event_to_json(event))
    assert obj == {
        "ts": TS,
        "pid": "<0.404.0>",
        "name": "n",
        "kind": "send",
        "data": {"to": "<0.409.0>", "msg": {"job": [1, 2.5, None, True, "x"]}},
    }


@pytest.mark.parametrize("term", BIG_TERMS, ids=lambda t: type(t).__name__)
def test_event_to_json_is_bounded_and_parses(term: Any) -> None:
    text = event_to_json(ev("receive", {"from": B, "msg": term, "reason": term}))
    assert "\n" not in text and len(text) <= 20_000
    obj = json.loads(text)
    assert obj["kind"] == "receive"


def test_json_special_values() -> None:
    data: dict[Any, Any] = {"a": math.nan, "b": math.inf, (1, 2): Ref(5)}
    obj = json.loads(event_to_json(ev("x", data)))
    assert obj["data"]["a"] == "nan" and obj["data"]["b"] == "inf"
    # non-string keys become text; refs and pids print as Erlang does
    assert term_to_json({(1, 2): Ref(5)}) == {"(1, 2)": "#Ref<0.5>"}
    nested = term_to_json([[[[[[["deep"]]]]]]])
    assert json.dumps(nested)  # cut to a repr below the depth limit, still JSON


def test_json_last_events_are_objects() -> None:
    inner = ev("receive", {"from": B, "msg": "job"})
    obj = json.loads(event_to_json(ev("exit", {"reason": "boom", "last_events": [inner]})))
    assert obj["data"]["last_events"] == [
        {
            "ts": TS,
            "pid": "<0.404.0>",
            "name": None,
            "kind": "receive",
            "data": {"from": "<0.409.0>", "msg": "job"},
        }
    ]


# -- totality: user data whose text forms misbehave -------------------------------------------


class _RaisingLen(list):  # type: ignore[type-arg]
    def __len__(self) -> int:
        raise RuntimeError("__len__ refuses")


class _RaisingKey:
    def __repr__(self) -> str:
        raise ValueError("no repr")

    def __hash__(self) -> int:
        return 1


class _HugeRepr:
    def __repr__(self) -> str:
        return "r" * 1_000_000


class _NotAString:
    def __repr__(self) -> Any:
        return 42


@pytest.mark.parametrize(
    "value",
    [
        _RaisingLen([1, 2]),
        {_RaisingKey(): 1},
        [_RaisingKey()] * 30,
        _HugeRepr(),
        _NotAString(),
        b"\x00" * 5_000_000,
        -(10**5000),
        True,
        {"nested": [[[[[[[[["deep"]]]]]]]]]},
    ],
    ids=["len", "dict-key", "many", "huge-repr", "not-a-string", "bytes", "bigint", "bool", "deep"],
)
def test_short_and_safe_forms_are_total_and_bounded(value: Any) -> None:
    from suptrace.core.saferepr import reason_text, safe_repr, safe_str
    from suptrace.observers.format import term_to_json

    for text in (short(value, 50), safe_repr(value, 50), safe_str(value, 50), reason_text(value, 50)):
        assert isinstance(text, str) and len(text) <= 101
    assert len(json.dumps(term_to_json(value, 50))) < 5_000
