"""suptrace's own OTLP span encoder says exactly what the SDK's encoder says, faster.

Every comparison is between the two encoders' requests, normalized so that the
grouping of spans by resource and scope does not matter (the fast encoder puts
the spans it leaves to the SDK in a group of their own); each span, resource
and scope is compared as its deterministic serialization.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

import suptrace
from suptrace.observers.otel import wire
from suptrace.observers.otel.exporters import observed

SAMPLED = TraceFlags(TraceFlags.SAMPLED)
RESOURCE = Resource({"service.name": "wire-test", "n": 3})
SCOPE = InstrumentationScope("suptrace", "1.2.3", "https://opentelemetry.io/schemas/1.26.0")


def flat(request: Any) -> list[tuple[bytes, bytes, str, str, bytes]]:
    """(resource, scope, the two schema urls, span) for each span, sorted."""
    out = []
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append(
                    (
                        rs.resource.SerializeToString(deterministic=True),
                        ss.scope.SerializeToString(deterministic=True),
                        rs.schema_url,
                        ss.schema_url,
                        span.SerializeToString(deterministic=True),
                    )
                )
    return sorted(out)


def same_as_sdk(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    """Both encoders agree on ``spans``; returns those the fast one left to the SDK's."""
    handed: list[ReadableSpan] = []

    def fallback(batch: Any) -> Any:
        handed.extend(batch)
        return sdk_encode(batch)

    saved = wire.sdk_encode_spans
    wire.sdk_encode_spans = fallback
    try:
        ours = wire.encode_spans(spans)
    finally:
        wire.sdk_encode_spans = saved
    theirs = sdk_encode(spans)
    assert flat(ours) == flat(theirs)
    assert [wire.fast(s) for s in spans] == [s not in handed for s in spans]
    return handed


def span(
    name: str = "process worker",
    *,
    trace_id: int = 0x1234,
    span_id: int = 0x99,
    parent: SpanContext | None = None,
    attributes: dict[str, Any] | None = None,
    events: tuple[Event, ...] = (),
    links: tuple[Link, ...] = (),
    kind: SpanKind = SpanKind.CONSUMER,
    status: Status | None = None,
    resource: Resource = RESOURCE,
    scope: InstrumentationScope | None = SCOPE,
    trace_state: TraceState | None = None,
) -> ReadableSpan:
    return ReadableSpan(
        name,
        SpanContext(trace_id, span_id, False, SAMPLED, trace_state),
        parent,
        resource,
        attributes or {},
        events,
        links,
        kind,
        None,
        status or Status(),
        1_700_000_000_000_000_000,
        1_700_000_000_000_123_456,
        scope,
    )


def test_suptrace_s_shapes_encode_as_the_sdk_encodes_them() -> None:
    parent_local = SpanContext(0x1234, 0x55, False, SAMPLED)
    parent_remote = SpanContext(0x1234, 0x56, True, SAMPLED)
    link = Link(SpanContext(0xABC, 0xDEF, False, SAMPLED))
    assert not same_as_sdk(
        [
            span(
                attributes={
                    "messaging.system": "suptrace",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": "sink",
                    "suptrace.process.pid": "<0.12.0>",
                    "suptrace.message": "('work', 17)" * 20,
                },
                links=(link,),
            ),
            span("call sink", kind=SpanKind.CLIENT, parent=parent_local),
            span("process sink", kind=SpanKind.SERVER, parent=parent_remote),
            span("exit crasher", kind=SpanKind.INTERNAL, status=Status(StatusCode.ERROR, "boom")),
            span("ok", status=Status(StatusCode.OK)),
            span("", trace_id=(1 << 128) - 1, span_id=(1 << 64) - 1),
            span(
                "with events",
                events=(
                    Event("exception", {"exception.type": "RuntimeError"}, timestamp=5),
                    Event("", {}, timestamp=0),
                ),
            ),
            span("state", trace_state=TraceState([("k", "v"), ("a", "b")])),
            span("linked", links=(Link(SpanContext(1, 2, True, SAMPLED), {"why": "sent_by"}),)),
            span("other resource", resource=Resource({"service.name": "another"})),
            span("no scope", scope=None),
            span("other scope", scope=InstrumentationScope("httpx", "0.1")),
        ]
    )


def test_values_it_does_not_write_go_to_the_sdk_in_the_same_request() -> None:
    odd = [
        span("list", attributes={"xs": [1, 2, 3]}),
        span("none", attributes={"x": None}),
        span("huge", attributes={"big": 1 << 70, "fine": 1}),
        span("str subclass", attributes={"s": type("S", (str,), {})("v")}),
    ]
    plain = [span("plain", attributes={"a": "b"})]
    assert same_as_sdk(odd + plain) == odd


values = st.one_of(
    st.text(max_size=80),
    st.booleans(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=40),
)


@settings(max_examples=150, deadline=None)
@given(
    attributes=st.dictionaries(st.text(max_size=30), values, max_size=8),
    event_attributes=st.dictionaries(st.text(max_size=10), values, max_size=3),
    name=st.text(max_size=40),
    ids=st.tuples(st.integers(1, (1 << 128) - 1), st.integers(1, (1 << 64) - 1)),
    times=st.tuples(st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1)),
)
def test_any_scalar_attributes_encode_as_the_sdk_encodes_them(
    attributes: dict[str, Any],
    event_attributes: dict[str, Any],
    name: str,
    ids: tuple[int, int],
    times: tuple[int, int],
) -> None:
    s = ReadableSpan(
        name,
        SpanContext(ids[0], ids[1], False, SAMPLED),
        None,
        RESOURCE,
        attributes,
        (Event("e", event_attributes, timestamp=times[0]),),
        (Link(SpanContext(ids[0], ids[1] ^ 1 or 1, False, SAMPLED), event_attributes),),
        SpanKind.PRODUCER,
        None,
        Status(StatusCode.ERROR, name or None),
        times[0],
        times[1],
        SCOPE,
    )
    assert not any(type(v) is float and math.isnan(v) for v in attributes.values())
    assert not same_as_sdk([s])


class Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


class Crasher(suptrace.GenServer):
    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        if request == "boom":
            raise RuntimeError("boom")
        return request

    async def handle_cast(self, msg: Any) -> None:
        pass


def test_every_span_a_node_makes_is_written_by_the_fast_encoder(tmp_path: Path) -> None:
    """The spans of calls, casts, a crash, its exit and the restart: all on the fast path,
    all encoded as the SDK would."""
    keep = Keep()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(keep))

    async def main() -> None:
        await suptrace.Supervisor.start_link(
            [suptrace.ChildSpec(id="c", start=(Crasher.start_link, (), {"name": "c"}))],
            name="sup",
        )
        assert await suptrace.call("c", "hello") == "hello"
        suptrace.cast("c", ("tick", 1))
        with pytest.raises(suptrace.CallError):
            await suptrace.call("c", "boom")
        assert await suptrace.call("c", "again") == "again"

    suptrace.run(main, tracer_provider=provider, traces="all", control=False, log_reports=False)
    provider.shutdown()
    names = {s.name for s in keep.spans}
    assert {"call c", "process c", "exit c"} <= names, names
    handed = same_as_sdk(keep.spans)
    assert not handed, [s.name for s in handed]


def test_the_grpc_span_exporter_sends_what_the_fast_encoder_writes() -> None:
    """The exporter suptrace builds for gRPC spans translates batches with it."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    cls = observed(OTLPSpanExporter, wire.encode_spans)
    exporter = cls(endpoint="127.0.0.1:9", insecure=True)
    try:
        spans = [span(attributes={"a": "b"})]
        request = exporter._translate_data(spans)
        assert flat(request) == flat(sdk_encode(spans))
        assert observed(OTLPSpanExporter) is not cls  # the plain subclass keeps the SDK's
    finally:
        exporter.shutdown()
    assert grpc  # the gRPC exporter is installed with the package


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_node_s_spans_reach_a_real_receiver_through_the_encoder_of_its_protocol(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    """Over gRPC every span a node sends was written by the fast encoder (and the
    receiver parsed all of them); over HTTP the SDK's encoder writes them all."""
    from otlp_receivers import GrpcReceiver, HttpReceiver, otlp_env

    written: list[int] = []
    inner = wire._span

    def counting(s: ReadableSpan, cache: Any) -> bytes:
        encoded = inner(s, cache)
        written.append(s.context.span_id)
        return encoded

    monkeypatch.setattr(wire, "_span", counting)
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    try:
        with otlp_env(monkeypatch, receiver, protocol):
            monkeypatch.setenv("SUPTRACE_TRACES", "all")

            async def main() -> None:
                pid = await Crasher.start_link(name="c")
                for i in range(50):
                    assert await suptrace.call(pid, i) == i

            suptrace.run(main, control=False, log_reports=False)
        got = {int.from_bytes(bytes.fromhex(s.span_id), "big") for s in receiver.dump().spans}
    finally:
        receiver.close()
    assert len([s for s in receiver.dump().spans if s.name == "call c"]) == 50
    if protocol == "grpc":
        assert got and got == set(written)
    else:
        assert not written
