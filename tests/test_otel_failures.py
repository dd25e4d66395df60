"""``traces="failures"``: complete traces for failures, a parent-based sample of the rest.

Real OTLP receivers (gRPC and HTTP), nodes configured by the standard ``OTEL_*``
variables only: spans exported over OTLP default to the "failures" mode. Each
test records, inside the handlers, the trace id the running code saw, and checks
that the exported trace carries the same one.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from opentelemetry import trace
from otlp_receivers import GrpcReceiver, HttpReceiver, dodos, metric_total, spans_named

import suptrace
from suptrace.cli.view import Dump, SpanRec
from suptrace.core.runtime import current_runtime
from suptrace.node.parts import current_parts


async def run_node(main: Any, *args: Any, **opts: Any) -> Any:
    opts.setdefault("log_reports", False)
    opts.setdefault("control", False)
    async with suptrace.Node("otel-failures", **opts) as node:
        assert node.telemetry is not None
        return await node.run_root(main, *args)


def current_ids() -> tuple[str, str]:
    sc = trace.get_current_span().get_span_context()
    return f"{sc.trace_id:032x}", f"{sc.span_id:016x}"


def trace_of(dump: Dump, trace_id: str) -> list[SpanRec]:
    return [s for s in dump.spans if s.trace_id == trace_id]


def chain(spans: list[SpanRec]) -> list[str]:
    """The names from the root down, following parent ids (exit spans aside)."""
    by_parent = {s.parent_id: s for s in spans if not s.name.startswith("exit ")}
    out, node = [], by_parent.get("")
    while node is not None:
        out.append(node.name)
        node = by_parent.get(node.span_id)
    return out


class Hop(suptrace.GenServer):
    """Forwards calls to ``nxt``; the last hop crashes on "crash", stalls on "stall"."""

    async def init(self, me: str, nxt: str | None, seen: dict[str, tuple[str, str]]) -> None:
        self.me = me
        self.nxt = nxt
        self.seen = seen

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        self.seen[f"{self.me}:{request}"] = current_ids()
        if self.nxt is not None:
            if request == "stall":
                try:
                    return await suptrace.call(self.nxt, request, timeout=0.05)
                except suptrace.CallTimeout:
                    return "timed out"
            return await suptrace.call(self.nxt, request)
        if request == "crash":
            raise RuntimeError("the last hop exploded")
        if request == "stall":
            await asyncio.sleep(0.3)  # longer than the caller's 50 ms timeout
        return request

    async def handle_cast(self, msg: Any) -> None:
        self.seen[f"{self.me}:cast"] = current_ids()


@pytest.fixture
def no_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """No healthy trace is sampled: whatever arrives, a failure selected."""
    monkeypatch.setenv("SUPTRACE_TRACES_SAMPLE", "0")
    monkeypatch.delenv("SUPTRACE_TRACES", raising=False)


async def three_hops(seen: dict[str, tuple[str, str]]) -> None:
    suptrace.trap_exit(True)
    await Hop.start_link("c", None, seen, name="c")
    await Hop.start_link("b", "c", seen, name="b")
    await Hop.start_link("a", "b", seen, name="a")
    await Hop.start("bystander", None, seen, name="bystander")


async def crash_scenario(seen: dict[str, tuple[str, str]]) -> None:
    await three_hops(seen)
    for i in range(50):  # healthy traffic, sampled out
        suptrace.cast("bystander", i)
    assert await suptrace.call("bystander", "hi") == "hi"
    assert await suptrace.call("a", "hello") == "hello"
    c = suptrace.whereis("c")
    assert c is not None
    ref = suptrace.monitor(c)
    with pytest.raises(suptrace.CallExit):
        await suptrace.call("a", "crash")
    await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_a_crash_exports_the_call_chain_that_led_to_it(
    protocol: str, no_sample: None, request: pytest.FixtureRequest
) -> None:
    receiver: GrpcReceiver | HttpReceiver = request.getfixturevalue(f"{protocol}_receiver")
    seen: dict[str, tuple[str, str]] = {}
    await run_node(crash_scenario, seen)
    dump = receiver.dump()
    trace_id, _ = seen["c:crash"]
    # The trace every hop saw while handling "crash" is the exported one, whole.
    assert seen["a:crash"][0] == seen["b:crash"][0] == trace_id
    spans = trace_of(dump, trace_id)
    assert chain(spans) == [
        "call a",
        "process a",
        "call b",
        "process b",
        "call c",
        "process c",
    ]
    by_name = {s.name: s for s in spans}
    # b and a were linked to c: their crashes exited them too, under their handlings.
    for hop in "abc":
        assert by_name[f"exit {hop}"].parent_id == by_name[f"process {hop}"].span_id
    # The ids the handlers ran with are the exported spans' ids.
    assert by_name["process a"].span_id == seen["a:crash"][1]
    assert by_name["process c"].span_id == seen["c:crash"][1]
    assert by_name["process c"].failed
    assert "RuntimeError: the last hop exploded" in by_name["process c"].status_message
    assert by_name["call c"].failed and by_name["call a"].failed
    assert by_name["exit c"].attributes["suptrace.exit.reason_class"] == "RuntimeError"
    assert by_name["process b"].attributes["suptrace.message"] == "'crash'"
    # The spans ended with the work they measure: the server side inside the client side.
    assert by_name["call a"].start <= by_name["process a"].start <= by_name["process c"].end
    assert by_name["process a"].end <= by_name["call a"].end
    # c's recent handling came along, as complete traces of their own: the earlier call.
    hello = trace_of(dump, seen["c:hello"][0])
    assert chain(hello) == ["call a", "process a", "call b", "process b", "call c", "process c"]
    # Healthy traffic elsewhere was recorded but not exported.
    assert spans_named(dump, "process bystander") == []


async def timeout_scenario(seen: dict[str, tuple[str, str]]) -> Any:
    await three_hops(seen)
    answer = await suptrace.call("b", "stall")  # b -> c times out after 50 ms; c still works
    assert await suptrace.call("c", "sync") == "sync"  # queued behind the stalled call
    return answer


async def test_a_call_timeout_exports_both_sides(
    grpc_receiver: GrpcReceiver, no_sample: None
) -> None:
    seen: dict[str, tuple[str, str]] = {}
    assert await run_node(timeout_scenario, seen) == "timed out"
    dump = grpc_receiver.dump()
    trace_id = seen["b:stall"][0]
    assert seen["c:stall"][0] == trace_id
    spans = trace_of(dump, trace_id)
    # main's call, b's handling, b's timed-out call, and c's late handling: one trace.
    assert chain(spans) == ["call b", "process b", "call c", "process c"]
    by_name = {s.name: s for s in spans}
    assert by_name["call c"].failed
    (exc,) = [a for n, _t, a in by_name["call c"].events if n == "exception"]
    assert exc["exception.type"].endswith("CallTimeout")
    assert not by_name["process b"].failed and not by_name["process c"].failed
    assert by_name["process c"].end > by_name["call c"].end  # exported when it ended
    # The healthy calls around it were not.
    assert spans_named(dump, "call c", "CLIENT") == [by_name["call c"]]
    assert metric_total(dump, "suptrace.call.timeouts") == 1


async def test_an_intensity_breach_exports_the_crashes_behind_it(
    http_receiver: HttpReceiver, no_sample: None
) -> None:
    result = await run_node(dodos, 2)
    assert result["kinds"] == ["restart"] * 2 + ["not_restarted"]
    dump = http_receiver.dump()
    ids = {s.span_id: s for s in dump.spans}
    handlings = spans_named(dump, "process dodos", "CONSUMER")
    (breaking,) = [s for s in handlings if any(n == "intensity" for n, _t, _a in s.events)]
    assert breaking.failed and "max restart intensity" in breaking.status_message
    # It handled the last dodo's exit signal: that exit, and the crash under it, came too.
    (exit_link,) = breaking.links
    last_exit = ids[exit_link[1]]
    assert last_exit.name == "exit dodo" and last_exit.failed
    crash = ids[last_exit.parent_id]
    assert crash.name == "process dodo" and crash.failed
    assert crash.trace_id == last_exit.trace_id
    assert "meteor strike" in crash.status_message
    # Every crash and every restart arrived; world's not_restarted too.
    assert len([s for s in spans_named(dump, "exit dodo") if s.failed]) == 3
    restarts = [n for s in handlings for n, _t, _a in s.events if n == "restart"]
    assert len(restarts) == 2
    world = spans_named(dump, "process world", "CONSUMER")
    assert any(n == "not_restarted" for s in world for n, _t, _a in s.events)
    # The healthy lunch (a cast) and meals call were not exported... unless dodo's
    # recent handling: they are the crashing dodo's history, so they came with it.
    assert metric_total(dump, "suptrace.process.restarts") == 2


# -- healthy traffic: parent-based sampling keeps call chains whole ------------------------


async def many_chains(seen: dict[str, tuple[str, str]], n: int) -> None:
    await three_hops(seen)
    for i in range(n):
        assert await suptrace.call("a", i) == i


@pytest.mark.parametrize(
    ("sample", "env"),
    [("0.5", {}), ("", {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"})],
)
async def test_healthy_chains_are_sampled_whole_or_not_at_all(
    grpc_receiver: GrpcReceiver, monkeypatch: pytest.MonkeyPatch, sample: str, env: dict[str, str]
) -> None:
    monkeypatch.setenv("SUPTRACE_TRACES_SAMPLE", sample or "0")  # the app's sampler wins
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    seen: dict[str, tuple[str, str]] = {}
    await run_node(many_chains, seen, 200)
    dump = grpc_receiver.dump()
    by_trace: dict[str, list[SpanRec]] = {}
    for s in dump.spans:
        by_trace.setdefault(s.trace_id, []).append(s)
    # The servers' starts are traces of their own (started by the root, outside any
    # span), sampled like the rest: one "init" span each.
    starts = {t: spans for t, spans in by_trace.items() if spans[0].name.startswith("init ")}
    assert all(len(spans) == 1 for spans in starts.values())
    calls = [spans for t, spans in by_trace.items() if t not in starts]
    for spans in calls:
        assert chain(spans) == ["call a", "process a", "call b", "process b", "call c", "process c"]
        assert len(spans) == 6
    assert 50 <= len(calls) <= 150, len(calls)  # ~100 of 200 (p < 1e-12 outside)


async def test_sample_one_exports_every_chain_and_zero_none(
    grpc_receiver: GrpcReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPTRACE_TRACES_SAMPLE", "1")
    await run_node(many_chains, {}, 20)
    assert len(spans_named(grpc_receiver.dump(), "process c")) == 20


# -- composition: a real httpx instrumentation inside handle_call ------------------------------


class _Headers(http.server.BaseHTTPRequestHandler):
    got: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).got.append(self.headers.get("traceparent"))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


@pytest.fixture
def downstream() -> Iterator[tuple[str, list[str | None]]]:
    """A local HTTP service that records the ``traceparent`` each request carried."""
    got: list[str | None] = []
    handler = type("Handler", (_Headers,), {"got": got})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", got
    server.shutdown()
    server.server_close()


class Fetcher(suptrace.GenServer):
    async def init(self, url: str, seen: dict[str, tuple[str, str]]) -> None:
        self.url = url
        self.seen = seen

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        import httpx

        self.seen[request] = current_ids()
        async with httpx.AsyncClient() as client:
            response = await client.get(self.url)
        if request == "then crash":
            raise RuntimeError("after the request")
        return response.status_code


async def fetch(url: str, seen: dict[str, tuple[str, str]], requests: list[str]) -> list[Any]:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    node_telemetry = current_parts("test").telemetry
    assert node_telemetry is not None and node_telemetry.setup is not None
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=node_telemetry.setup.tracer_provider)
    try:
        suptrace.trap_exit(True)
        await Fetcher.start_link(url, seen, name="fetcher")
        out: list[Any] = []
        for r in requests:
            try:
                out.append(await suptrace.call("fetcher", r))
            except suptrace.CallExit as exc:
                out.append(type(exc).__name__)
        return out
    finally:
        instrumentor.uninstrument()


@pytest.mark.parametrize("traces", ["all", "failures"])
async def test_httpx_inside_handle_call_joins_the_trace(
    grpc_receiver: GrpcReceiver,
    downstream: tuple[str, list[str | None]],
    no_sample: None,
    traces: str,
) -> None:
    url, got = downstream
    seen: dict[str, tuple[str, str]] = {}
    result = await run_node(fetch, url, seen, ["get", "then crash"], traces=traces)
    assert result == [200, "CallExit"]
    dump = grpc_receiver.dump()
    # The downstream service got the handler's trace id in its traceparent.
    assert len(got) == 2 and all(g is not None for g in got)
    parents = [g.split("-") for g in got if g is not None]
    assert [p[1] for p in parents] == [seen["get"][0], seen["then crash"][0]]
    # The failed handling (and, in "all" mode, both) arrived with its trace id ...
    crashed = trace_of(dump, seen["then crash"][0])
    assert {"call fetcher", "process fetcher", "exit fetcher"} <= {s.name for s in crashed}
    if traces == "all":
        # ... and the httpx span is a child of the handling span, in the same trace.
        (serve,) = [s for s in trace_of(dump, seen["get"][0]) if s.name == "process fetcher"]
        (client,) = [
            s for s in trace_of(dump, seen["get"][0]) if s.kind == "CLIENT" and s.name == "GET"
        ]
        assert client.parent_id == serve.span_id and serve.span_id == seen["get"][1]
        assert int(parents[0][3], 16) & 1  # sampled
    else:
        # Unsampled yet valid: downstream sees the real ids, not sampled ...
        assert not int(parents[0][3], 16) & 1
        # ... and when the fetcher crashed next, its recent handlings came along with
        # the ids the downstream service saw.
        got_trace = trace_of(dump, seen["get"][0])
        assert chain(got_trace) == ["call fetcher", "process fetcher"]
        (serve,) = [s for s in got_trace if s.name == "process fetcher"]
        assert serve.span_id == seen["get"][1]


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value"),
    [("SUPTRACE_TRACES", "some"), ("SUPTRACE_TRACES_SAMPLE", "2"), ("SUPTRACE_TRACES_SAMPLE", "x")],
)
async def test_bad_trace_settings_fail_at_node_start_naming_the_variable(
    grpc_receiver: GrpcReceiver, monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)

    async def main() -> None:
        pass

    with pytest.raises(ValueError, match=var) as info:
        await run_node(main)
    assert repr(value) in str(info.value)


def test_bad_traces_keyword_fails_at_node_creation() -> None:
    with pytest.raises(ValueError, match="traces must be 'failures', 'all' or 'off'"):
        suptrace.Node("bad", traces="everything")


async def test_traces_off_exports_no_spans_but_exact_metrics(grpc_receiver: GrpcReceiver) -> None:
    seen: dict[str, tuple[str, str]] = {}
    await run_node(crash_scenario, seen, traces="off")
    dump = grpc_receiver.dump()
    assert dump.spans == []
    assert (
        metric_total(dump, "suptrace.process.exits", **{"suptrace.exit.reason": "RuntimeError"})
        == 1
    )


# -- bounded memory --------------------------------------------------------------------------


async def flood(n: int) -> dict[str, int]:
    node_telemetry = current_parts("test").telemetry
    assert node_telemetry is not None and node_telemetry.bridge is not None
    tail = node_telemetry.bridge.tail
    assert tail is not None
    pid = await Hop.start("flooded", None, {}, name="flooded")
    for i in range(n):
        suptrace.cast(pid, i)
    assert await suptrace.call(pid, "done") == "done"
    proc = pid._proc
    assert proc is not None
    return {
        "evicted": tail.evicted,
        "recent": len(tail.recent[proc]),
        "rings": len(tail.recent),
        "live": len(current_runtime().procs),
    }


async def test_a_flood_never_grows_the_pending_spans(
    grpc_receiver: GrpcReceiver, no_sample: None
) -> None:
    stats = await run_node(flood, 2000)
    # The flooded process keeps its last 16 handlings; the rest were freed, and counted.
    assert stats["recent"] == 16
    assert stats["evicted"] >= 2000 - 16
    assert stats["rings"] <= stats["live"]


# -- no endless spans --------------------------------------------------------------------------


async def long_lived(receiver: GrpcReceiver) -> dict[str, int]:
    """A server that outlives the work: its spans must arrive while it is still alive."""
    import time

    await three_hops({})
    for i in range(5):
        assert await suptrace.call("a", i) == i
    done = time.time_ns()
    telemetry = current_parts("test").telemetry
    await asyncio.to_thread(telemetry.setup.tracer_provider.force_flush)
    arrived = len(receiver.dump().spans)
    return {"done": done, "arrived": arrived}


async def test_no_span_outlives_the_work_it_measures(grpc_receiver: GrpcReceiver) -> None:
    result = await run_node(long_lived, grpc_receiver, traces="all")
    # Every span of the calls was exported while a, b and c were still running.
    assert result["arrived"] >= 5 * 6
    dump = grpc_receiver.dump()
    assert not [s for s in dump.spans if s.name.startswith("lifetime ")]
    for s in dump.spans:
        if s.name.startswith("exit "):  # the node's shutdown: zero-length, at the exit
            assert s.start == s.end
        else:
            assert s.end <= result["done"], (s.name, s.end - result["done"])


class Asker(suptrace.GenServer):
    """``handle_call(name)`` calls ``name``, which nobody holds, and answers what it got."""

    async def init(self, seen: dict[str, tuple[str, str]]) -> None:
        self.seen = seen

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        self.seen["ghost" if request == "ghost" else "dead"] = current_ids()
        try:
            return await suptrace.call(request, "anyone there?", timeout=1)
        except suptrace.NoProc as error:
            return error.reason

    async def handle_cast(self, msg: Any) -> None:
        pass


async def ask_nobody(seen: dict[str, tuple[str, str]]) -> None:
    await Asker.start_link(seen, name="asker")
    for i in range(20):  # healthy traffic around it, sampled out in "failures" mode
        suptrace.cast("asker", i)
    assert await suptrace.call("asker", "ghost") == "noproc"
    dead = suptrace.spawn(never_returns)
    ref = suptrace.monitor(dead)
    suptrace.exit(dead, "kill")
    await suptrace.receive(lambda m: isinstance(m, suptrace.Down) and m.ref == ref)
    assert await suptrace.call("asker", dead) == "noproc"


async def never_returns() -> None:
    await asyncio.Event().wait()


@pytest.mark.parametrize("traces", ["failures", "all"])
async def test_a_call_to_nobody_exports_its_trace(
    grpc_receiver: GrpcReceiver, no_sample: None, traces: str
) -> None:
    """`NoProc` is a `CallError` raised before anything is sent: the failed call is still
    a CLIENT span, under the handling that made it, and in "failures" mode its trace is
    exported with the ids the handler saw."""
    seen: dict[str, tuple[str, str]] = {}
    await run_node(ask_nobody, seen, traces=traces)
    dump = grpc_receiver.dump()
    for key in ("ghost", "dead"):
        trace_id, span_id = seen[key]
        spans = trace_of(dump, trace_id)
        [asker] = [s for s in spans if s.name == "process asker"]
        assert asker.span_id == span_id
        [refused] = [s for s in spans if s.parent_id == span_id and s.name.startswith("call ")]
        assert refused.kind == spans_named(dump, refused.name)[0].kind
        assert refused.failed and refused.status_message.startswith("NoProc: no process")
        assert refused.attributes["messaging.operation.name"] == "call"
    ghost = {s.name: s for s in trace_of(dump, seen["ghost"][0])}["call ghost"]
    assert ghost.attributes["messaging.destination.name"] == "ghost"
    assert "no process is registered under this name" in ghost.status_message
    # The call to a dead pid is named by the pid.
    [dead] = [s for s in trace_of(dump, seen["dead"][0]) if s.name.startswith("call <0.")]
    assert dead.attributes["suptrace.caller.name"] == "asker"
