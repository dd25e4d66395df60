"""``traces="failures"``: handlings recorded as raw records, spans and ids made on demand.

A cast or plain message handled outside a sampled trace costs a raw record; its
`Pending` span (and its random trace and span ids) is made only when something
needs it: the handler reading its current span, a failure exporting it, a
message it sends that the receiver links to. These tests pin what that must not
change: the ids a handler saw are the exported ones, timings are the handling's,
the sampled share is exported whole, and unsampled healthy traffic draws no id.
Real OTLP gRPC receiver, nodes configured by the ``OTEL_*`` variables.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from opentelemetry import trace
from otlp_receivers import GrpcReceiver, spans_named

import suptrace
from suptrace.cli.view import Dump, SpanRec
from suptrace.node.parts import current_parts


async def run_node(main: Any, *args: Any, **opts: Any) -> Any:
    opts.setdefault("log_reports", False)
    opts.setdefault("control", False)
    async with suptrace.Node("otel-records", **opts) as node:
        assert node.telemetry is not None
        return await node.run_root(main, *args)


def current_ids() -> tuple[str, str, bool]:
    sc = trace.get_current_span().get_span_context()
    return f"{sc.trace_id:032x}", f"{sc.span_id:016x}", sc.trace_flags.sampled


def trace_of(dump: Dump, trace_id: str) -> list[SpanRec]:
    return [s for s in dump.spans if s.trace_id == trace_id]


@pytest.fixture
def sample(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    value = str(getattr(request, "param", "0"))
    monkeypatch.setenv("SUPTRACE_TRACES_SAMPLE", value)
    monkeypatch.delenv("SUPTRACE_TRACES", raising=False)
    return value


class Worker(suptrace.GenServer):
    """Casts: ``("look", k)`` notes its ids, ``("quiet", k)`` does nothing,
    ``("forward", k)`` casts on to ``peer``, ``("call", k)`` calls ``peer``,
    ``"crash"`` raises."""

    async def init(self, seen: dict[str, Any], peer: str | None = None) -> None:
        self.seen = seen
        self.peer = peer

    async def handle_cast(self, msg: Any) -> None:
        if msg == "crash":
            self.seen["crash"] = current_ids()
            raise RuntimeError("the worker exploded")
        what, key = msg
        if what == "look":
            self.seen[key] = current_ids()
        elif what == "forward":
            self.seen[key] = current_ids()
            assert self.peer is not None
            suptrace.cast(self.peer, ("look", f"{key}>"))
        elif what == "call":
            self.seen[key] = current_ids()
            assert self.peer is not None
            await suptrace.call(self.peer, ("echo", key))

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        self.seen[f"call:{request[1]}"] = current_ids()
        return request


def bridge_tail() -> Any:
    telemetry = current_parts("the test").telemetry
    assert telemetry is not None and telemetry.bridge is not None
    return telemetry.bridge.tail


async def quiet_then_crash(seen: dict[str, Any]) -> dict[str, Any]:
    suptrace.trap_exit(True)
    pid = await Worker.start_link(seen, name="worker")
    before = time.time_ns()
    suptrace.cast(pid, ("look", "looked"))
    for i in range(5):
        suptrace.cast(pid, ("quiet", i))
    # Before the failure: nothing of the quiet handlings was made, no id drawn.
    await suptrace.call(pid, ("echo", "sync"))
    proc = pid._proc
    assert proc is not None
    ring = list(proc.instrument_state.ring)
    quiet = [r for r in ring if type(r) is tuple and r[0][3].msg[0] == "quiet"]
    unmade = sum(1 for r in quiet if r[0][2] is None)
    ref = suptrace.monitor(pid)
    suptrace.cast(pid, "crash")
    await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)
    return {"quiet": len(quiet), "unmade": unmade, "before": before, "after": time.time_ns()}


async def test_a_failure_exports_the_ids_the_handlers_saw_and_their_times(
    grpc_receiver: GrpcReceiver, sample: str
) -> None:
    seen: dict[str, Any] = {}
    out = await run_node(quiet_then_crash, seen)
    assert out["quiet"] == 5 and out["unmade"] == 5
    dump = grpc_receiver.dump()
    # The handling that looked at its span was exported with the ids it saw, not sampled.
    trace_id, span_id, sampled = seen["looked"]
    assert not sampled
    (looked,) = trace_of(dump, trace_id)
    assert looked.span_id == span_id and looked.name == "process worker"
    # The quiet ones got their spans only when the failure exported them: one trace
    # each, their times those of the handling (inside the run, start before end).
    quiet = [
        s
        for s in spans_named(dump, "process worker")
        if s.attributes.get("suptrace.message", "").startswith("('quiet'")
    ]
    assert len(quiet) == 5
    assert len({s.trace_id for s in quiet}) == 5
    for s in quiet:
        assert out["before"] <= s.start <= s.end <= out["after"]
        assert s.parent_id == "" and s.kind.endswith("CONSUMER")
    # Recorded in order: each quiet handling starts after the previous one ended.
    ordered = sorted(quiet, key=lambda s: s.start)
    for a, b in itertools.pairwise(ordered):
        assert a.end <= b.start
    (crashed,) = trace_of(dump, seen["crash"][0])[:1]
    assert crashed.failed


async def forward_then_crash(seen: dict[str, Any]) -> None:
    suptrace.trap_exit(True)
    second = await Worker.start_link(seen, name="second")
    first = await Worker.start_link(seen, "second", name="first")
    suptrace.cast(first, ("forward", "sent"))
    await suptrace.call(first, ("echo", "sync"))
    await suptrace.call(second, ("echo", "sync"))
    ref = suptrace.monitor(second)
    suptrace.cast(second, "crash")
    await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)
    del first


async def test_a_message_sent_from_a_handling_links_to_its_ids(
    grpc_receiver: GrpcReceiver, sample: str
) -> None:
    """The receiver's span links to the sender's handling with the ids the sender saw,
    and the failure brings the sender's trace along."""
    seen: dict[str, Any] = {}
    await run_node(forward_then_crash, seen)
    dump = grpc_receiver.dump()
    sender_trace, sender_span, _ = seen["sent"]
    receiver_trace, _, _ = seen["sent>"]
    assert receiver_trace != sender_trace  # a cast starts a trace of its own
    (received,) = trace_of(dump, receiver_trace)
    assert (sender_trace, sender_span) in [(t, s) for t, s, _ in received.links]
    (sender,) = trace_of(dump, sender_trace)
    assert sender.name == "process first" and sender.span_id == sender_span


async def sampled_chain(seen: dict[str, Any]) -> None:
    await Worker.start_link(seen, name="server")
    client = await Worker.start_link(seen, "server", name="client")
    suptrace.cast(client, ("call", "chain"))
    await suptrace.call(client, ("echo", "sync"))


@pytest.mark.parametrize("sample", ["1"], indirect=True)
async def test_a_sampled_cast_is_exported_with_its_whole_chain(
    grpc_receiver: GrpcReceiver, sample: str
) -> None:
    seen: dict[str, Any] = {}
    await run_node(sampled_chain, seen)
    dump = grpc_receiver.dump()
    trace_id, span_id, sampled = seen["chain"]
    assert sampled  # what the handler's children and its traceparent carry
    spans = {s.name: s for s in trace_of(dump, trace_id)}
    assert set(spans) == {"process client", "call server", "process server"}
    assert spans["process client"].span_id == span_id
    assert spans["call server"].parent_id == span_id
    assert spans["process server"].parent_id == spans["call server"].span_id
    assert spans["process server"].span_id == seen["call:chain"][1]


async def quiet_traffic(n: int) -> dict[str, int]:
    pid = await Worker.start_link({}, name="quiet")
    for i in range(n):
        suptrace.cast(pid, ("quiet", i))
    await suptrace.call(pid, ("echo", "sync"))
    proc = pid._proc
    assert proc is not None
    tail = bridge_tail()
    ring = list(proc.instrument_state.ring)
    return {
        # The call's handling is a span of its own (calls are not raw records).
        "raw": sum(1 for r in ring if type(r) is tuple),
        "made": sum(1 for r in ring if type(r) is tuple and r[0][2] is not None),
        "selected": len(tail.selected),
        "evicted": tail.evicted,
    }


async def test_unsampled_healthy_traffic_makes_no_span_and_draws_no_id(
    grpc_receiver: GrpcReceiver, sample: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from suptrace.observers.otel import state

    drawn: list[str] = []
    real_trace_id = state.new_trace_id

    def counting() -> int:
        drawn.append("trace")
        return real_trace_id()

    monkeypatch.setattr(state, "new_trace_id", counting)
    out = await run_node(quiet_traffic, 500)
    assert out["raw"] == 15 and out["made"] == 0 and out["selected"] == 0
    assert drawn == []
    assert out["evicted"] >= 500 - 16
    assert spans_named(grpc_receiver.dump(), "process quiet") == []


class Grabber(suptrace.GenServer):
    """``"grab"`` waits, inside the handler, for a plain ``"ping"`` (selective receive)."""

    async def init(self, seen: dict[str, Any]) -> None:
        self.seen = seen

    async def handle_cast(self, msg: Any) -> None:
        if msg == "grab":
            await suptrace.receive(lambda m: m == "ping", timeout=5)
        else:
            self.seen[msg[1]] = current_ids()

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        return request


class Pinger(suptrace.GenServer):
    async def handle_cast(self, msg: Any) -> None:
        suptrace.send(msg, "ping")  # from a handling: the message carries its context


async def grab_then_bare(seen: dict[str, Any]) -> None:
    grabber = await Grabber.start_link(seen, name="grabber")
    pinger = await Pinger.start_link(name="pinger")
    suptrace.cast(grabber, "grab")
    suptrace.cast(grabber, ("look", "bare"))  # from outside any handling: no context
    suptrace.cast(pinger, grabber)
    assert await suptrace.call(grabber, "sync") == "sync"


@pytest.mark.parametrize("sample", ["1"], indirect=True)
async def test_a_message_without_context_never_takes_an_earlier_ones(
    grpc_receiver: GrpcReceiver, sample: str
) -> None:
    """A message sent from outside any handling carries no context (no envelope): the
    context a selective receive took inside the previous handler is not its own."""
    seen: dict[str, Any] = {}
    await run_node(grab_then_bare, seen)
    (bare,) = trace_of(grpc_receiver.dump(), seen["bare"][0])
    assert bare.links == []


class Waiter(suptrace.GenServer):
    """``"wait"`` takes a ``"ping"`` out of its mailbox inside the handling (a selective
    receive); ``"next"`` does nothing."""

    async def handle_cast(self, msg: Any) -> None:
        if msg == "wait":
            await suptrace.receive(lambda m: m == "ping")

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        return request


async def test_a_message_received_inside_a_handling_leaves_no_context_to_the_next(
    grpc_receiver: GrpcReceiver, sample: str
) -> None:
    """The context a selective receive took inside a handler is that message's only: the
    next cast, sent from outside any span, is recorded with no link."""

    async def main() -> Any:
        waiter = await Waiter.start_link()
        pinger = await Pinger.start_link()
        suptrace.cast(waiter, "next")  # the first handling attaches the server's span
        suptrace.cast(waiter, "wait")
        suptrace.cast(pinger, waiter)
        suptrace.cast(waiter, "next")
        assert await suptrace.call(waiter, "sync") == "sync"
        state = waiter._proc.instrument_state  # type: ignore[union-attr]
        return [(t[0][3], t[0][4]) for t in state.ring if type(t) is tuple]

    records = await run_node(main)
    assert [msg.msg for msg, _ in records] == ["next", "wait", "next"], records
    assert records[-1][1] is None, "the next cast was linked to the ping's sender"


async def casts_through_a_broken_bridge(n: int) -> dict[str, Any]:
    pid = await Worker.start_link({}, name="sturdy")
    ref = suptrace.monitor(pid)
    for i in range(n):
        suptrace.cast(pid, ("quiet", i))
    assert await suptrace.call(pid, ("echo", "after")) == ("echo", "after")
    telemetry = current_parts("the test").telemetry
    assert telemetry is not None and telemetry.bridge is not None
    # The server is alive: no Down came for it.
    with pytest.raises(TimeoutError):
        await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref, timeout=0)
    return {"alive": suptrace.is_alive(pid), "errors": telemetry.bridge.errors}


@pytest.mark.parametrize("sample", ["1"], indirect=True)
async def test_a_failing_sample_in_the_server_loop_never_kills_the_server(
    grpc_receiver: GrpcReceiver, sample: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server loop records casts itself and hands the sampled ones to the bridge:
    a bridge failure there is logged and counted, the handling goes on."""
    from suptrace.observers.otel.state import BridgeState

    def broken(self: Any, token: Any, sampled: bool = False) -> Any:
        raise RuntimeError("a bug in the bridge")

    monkeypatch.setattr(BridgeState, "_pend", broken)
    out = await run_node(casts_through_a_broken_bridge, 5)
    assert out["alive"]
    assert out["errors"] >= 5  # every cast was sampled, every sample failed
