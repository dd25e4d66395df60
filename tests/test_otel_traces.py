"""Spans, links and span events, exported over OTLP to real receivers (SPEC §7).

Each test runs a scenario from `otlp_receivers` in a node configured only by
the standard ``OTEL_*`` variables (``telemetry`` left at ``auto``) with
``traces="all"`` (every span), then reads what the gRPC or HTTP receiver got
once the node has shut down and flushed. The ``"failures"`` mode has its own
tests in ``test_otel_failures.py``.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from otlp_receivers import (
    GrpcReceiver,
    HttpReceiver,
    call_chain,
    dodos,
    kill_busy,
    spans_named,
)

import suptrace
from suptrace.cli.view import Dump, SpanRec


async def run_node(main: Any, *args: Any, **opts: Any) -> Any:
    opts.setdefault("log_reports", False)
    opts.setdefault("control", False)
    opts.setdefault("traces", "all")
    async with suptrace.Node("otel-test", **opts) as node:
        assert node.telemetry is not None
        return await node.run_root(main, *args)


def one(spans: list[SpanRec], **attrs: Any) -> SpanRec:
    found = [s for s in spans if all(s.attributes.get(k) == v for k, v in attrs.items())]
    assert len(found) == 1, (attrs, [(s.name, s.kind, s.attributes) for s in spans])
    return found[0]


def by_id(dump: Dump) -> dict[str, SpanRec]:
    return {s.span_id: s for s in dump.spans}


# -- calls: one trace, CLIENT -> SERVER -> CLIENT ... -----------------------------------


def check_call_chain(dump: Dump) -> None:
    msg = "'hello'"
    call_a = one(spans_named(dump, "call a", "CLIENT"), **{"suptrace.message": msg})
    serve_a = one(spans_named(dump, "process a", "SERVER"), **{"suptrace.message": msg})
    call_b = one(spans_named(dump, "call b", "CLIENT"), **{"suptrace.message": msg})
    serve_b = one(spans_named(dump, "process b", "SERVER"), **{"suptrace.message": msg})
    call_c = one(spans_named(dump, "call c", "CLIENT"), **{"suptrace.message": msg})
    serve_c = one(spans_named(dump, "process c", "SERVER"), **{"suptrace.message": msg})
    chain = [call_a, serve_a, call_b, serve_b, call_c, serve_c]
    # One trace, each span the child of the one before it.
    assert {s.trace_id for s in chain} == {call_a.trace_id}
    assert call_a.parent_id == ""
    for parent, child in itertools.pairwise(chain):
        assert child.parent_id == parent.span_id, (parent.name, child.name)
    # Messaging semantic conventions.
    assert serve_b.attributes["messaging.system"] == "suptrace"
    assert serve_b.attributes["messaging.operation.type"] == "process"
    assert serve_b.attributes["messaging.destination.name"] == "b"
    assert serve_b.attributes["messaging.message.id"].startswith("#Ref<")
    assert call_b.attributes["suptrace.caller.name"] == "a"
    assert all(not s.failed for s in chain)
    # The server side ran inside the client side.
    assert call_a.start <= serve_a.start <= serve_a.end <= call_a.end


def check_cast_links(dump: Dump) -> None:
    ids = by_id(dump)
    note = "('note', 1)"
    at_a = one(spans_named(dump, "process a", "CONSUMER"), **{"suptrace.message": note})
    at_b = one(spans_named(dump, "process b", "CONSUMER"), **{"suptrace.message": note})
    at_c = one(spans_named(dump, "process c", "CONSUMER"), **{"suptrace.message": note})
    assert at_a.attributes["messaging.operation.name"] == "handle_cast"
    # Each hop is its own trace, linked to the span that sent the message.
    assert at_b.parent_id == "" and at_c.parent_id == ""
    assert [link[1] for link in at_b.links] == [at_a.span_id]
    assert [link[1] for link in at_c.links] == [at_b.span_id]
    assert at_b.links[0][0] == at_a.trace_id
    # main sent the first cast outside any span: nothing to link to.
    assert at_a.links == [] and at_a.parent_id == ""
    assert at_b.links[0][1] in ids


def check_call_failure(dump: Dump) -> None:
    crash = "'crash'"
    serve_c = one(spans_named(dump, "process c", "SERVER"), **{"suptrace.message": crash})
    assert serve_c.failed and "RuntimeError: c exploded" in serve_c.status_message
    exc = [a for name, _t, a in serve_c.events if name == "exception"]
    assert exc and exc[0]["exception.type"] == "RuntimeError"
    call_c = one(spans_named(dump, "call c", "CLIENT"), **{"suptrace.message": crash})
    assert call_c.failed
    (exc_event,) = [a for name, _t, a in call_c.events if name == "exception"]
    assert exc_event["exception.type"].endswith("CallExit")
    call_a = one(spans_named(dump, "call a", "CLIENT"), **{"suptrace.message": crash})
    assert call_a.failed and call_a.parent_id == ""
    # c's exit: a zero-length ERROR span, the child of the handling that crashed.
    (exit_c,) = [s for s in spans_named(dump, "exit c") if s.failed]
    exits = [a for name, _t, a in exit_c.events if name == "exit"]
    assert exits and exits[0]["suptrace.exit.reason_class"] == "RuntimeError"
    assert exit_c.parent_id == serve_c.span_id and exit_c.trace_id == call_a.trace_id
    assert exit_c.start == exit_c.end


async def test_call_chain_is_one_trace_over_grpc(grpc_receiver: GrpcReceiver) -> None:
    result = await run_node(call_chain)
    assert result["answer"] == ("c", "hello")
    assert isinstance(result["failed"], suptrace.CallExit)
    dump = grpc_receiver.dump()
    check_call_chain(dump)
    check_cast_links(dump)
    check_call_failure(dump)
    assert grpc_receiver.counts["traces"] >= 1 and grpc_receiver.counts["metrics"] >= 1


async def test_call_chain_is_one_trace_over_http(http_receiver: HttpReceiver) -> None:
    await run_node(call_chain)
    dump = http_receiver.dump()
    check_call_chain(dump)
    check_cast_links(dump)
    check_call_failure(dump)
    # The crash reports arrived as log records, correlated with a trace.
    crashes = [r for r in dump.logs if r["event_name"] == "suptrace.crash_report"]
    assert {r["attributes"]["suptrace.process.name"] for r in crashes} >= {"c"}
    assert all(r["trace_id"] for r in crashes)


# -- supervision: exits, restarts, breaches as events with ERROR status --------------------


async def test_dodos_restarts_and_breach_are_span_events(grpc_receiver: GrpcReceiver) -> None:
    result = await run_node(dodos, 3)
    assert result["kinds"] == ["restart"] * 3 + ["not_restarted"]
    assert result["dodos"] is None and result["world"] is not None
    dump = grpc_receiver.dump()

    # Each crash: an ERROR exit span under the failed handling of the meteor.
    ids = by_id(dump)
    crashed = [s for s in spans_named(dump, "exit dodo") if s.failed]
    assert len(crashed) == 4
    for ex in crashed:
        (exit_event,) = [a for name, _t, a in ex.events if name == "exit"]
        assert exit_event["suptrace.exit.reason_class"] == "RuntimeError"
        assert "meteor strike" in ex.status_message
        handling = ids[ex.parent_id]
        assert handling.name == "process dodo" and handling.failed
    # Every dodo's exit links to the supervisor's span that spawned it: its init for the
    # first (the tree's start), its handling of the crash before for the restarted ones.
    spawned = [
        ids[link[1]].name
        for ex in sorted(crashed, key=lambda s: s.start)
        for link in ex.links
        if link[2].get("suptrace.link") == "spawned_during"
    ]
    assert spawned == ["init dodos"] + ["process dodos"] * 3
    (init,) = spans_named(dump, "init dodos", "INTERNAL")
    assert [name for name, _t, _a in init.events] == ["spawn"]  # the first dodo
    # Each dodo's own start is a child of the supervisor's span that started it.
    starts = sorted(spans_named(dump, "init dodo"), key=lambda s: s.start)
    assert [ids[s.parent_id].name for s in starts] == ["init dodos"] + ["process dodos"] * 3
    assert starts[0].parent_id == init.span_id

    # The supervisor's handlings of the exits carry the supervision events.
    handlings = spans_named(dump, "process dodos", "CONSUMER")
    names = [name for s in handlings for name, _t, _a in s.events]
    assert names.count("restart") == 3
    assert names.count("child_terminated") == 4
    assert names.count("intensity") == 1
    assert names.count("spawn") == 3
    breaking = [s for s in handlings if any(n == "intensity" for n, _t, _a in s.events)]
    assert len(breaking) == 1 and breaking[0].failed
    assert "max restart intensity" in breaking[0].status_message
    (breach,) = [a for name, _t, a in breaking[0].events if name == "intensity"]
    assert breach["suptrace.child.id"] == "dodo"
    assert breach["suptrace.intensity"] == 3
    # ... linked to the exit of the dodo whose exit signal it handled.
    linked = {link[1] for link in breaking[0].links}
    assert linked & {s.span_id for s in crashed}
    # dodos itself exited "shutdown" (normal).
    (dodos_exit,) = spans_named(dump, "exit dodos")
    assert dodos_exit.attributes["suptrace.exit.reason"] == "shutdown"
    assert not dodos_exit.failed

    (gone,) = [
        (s, a)
        for s in spans_named(dump, "process world", "CONSUMER")
        for name, _t, a in s.events
        if name == "not_restarted"
    ]
    assert gone[1]["suptrace.child.id"] == "dodos"
    assert "max restart intensity" in gone[1]["suptrace.cause"]
    assert gone[0].failed

    # Reports as log records (SASL contexts in attributes).
    contexts = [
        r["attributes"].get("suptrace.context")
        for r in dump.logs
        if r["event_name"] == "suptrace.supervisor_report"
    ]
    assert contexts.count("child_terminated") == 4
    assert contexts.count("shutdown") == 1
    assert contexts.count("not_restarted") == 1


async def test_spans_of_a_killed_process_end(http_receiver: HttpReceiver) -> None:
    result = await run_node(kill_busy)
    assert result["reason"] == suptrace.KILLED
    dump = http_receiver.dump()
    (handling,) = spans_named(dump, "process busy", "CONSUMER")
    assert handling.end >= handling.start > 0
    assert handling.failed and "killed" in handling.status_message
    (ex,) = spans_named(dump, "exit busy")
    assert ex.end > 0 and ex.failed and ex.parent_id == handling.span_id
    assert ex.attributes["suptrace.exit.reason"] == "killed"
    assert ex.attributes["suptrace.exit.by_signal"] is True


async def test_sampler_from_environment_is_honoured(
    grpc_receiver: GrpcReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    await run_node(call_chain)
    dump = grpc_receiver.dump()
    assert dump.spans == []
    assert dump.metrics["suptrace.call.duration"]["points"]
