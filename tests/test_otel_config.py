"""Choosing providers and exporters: explicit, global, instrumented, environment, off (SPEC §7)."""

from __future__ import annotations

import asyncio
import importlib.metadata
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from otlp_receivers import Relay, call_chain

import suptrace
from suptrace.core.runtime import current_runtime
from suptrace.node.parts import parts_of
from suptrace.observers import otel
from suptrace.observers.otel.config import default_file
from suptrace.observers.otel.setup import configure


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_SAMPLER",
        "SUPTRACE_TELEMETRY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SUPTRACE_OTLP_FILE", str(tmp_path / "default.otlp.jsonl"))


def in_memory() -> tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader]:
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    return tp, spans, MeterProvider(metric_readers=[reader]), reader


async def state() -> dict[str, Any]:
    rt = current_runtime()
    telemetry = parts_of(rt).telemetry
    return {
        "instrument": rt.instrument,
        "telemetry": telemetry,
        "mode": telemetry.setup.mode if telemetry is not None else None,
    }


def test_off_installs_nothing() -> None:
    for value in ("off", False):
        seen = suptrace.run(state, telemetry=value, control=False)
        assert seen == {"instrument": None, "telemetry": None, "mode": None}


def test_the_environment_can_turn_telemetry_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert suptrace.run(state, control=False)["telemetry"] is None
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.setenv("SUPTRACE_TELEMETRY", "off")
    assert suptrace.run(state, control=False)["telemetry"] is None


def test_bad_option_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="telemetry must be"):
        suptrace.Node("bad", telemetry="sometimes")


def test_explicit_providers_are_used_and_not_shut_down(tmp_path: Path) -> None:
    tp, spans, mp, reader = in_memory()
    result = suptrace.run(
        call_chain, tracer_provider=tp, meter_provider=mp, control=False, log_reports=False
    )
    assert result["answer"] == ("c", "hello")
    names = {s.name for s in spans.get_finished_spans()}
    assert {"call a", "process a", "call b", "process b", "call c", "process c"} <= names
    # Explicit providers belong to the application: the node neither shut them down
    # nor wrote the embedded default file.
    assert not (tmp_path / "default.otlp.jsonl").exists()
    with tp.get_tracer("after").start_as_current_span("still-alive"):
        pass
    assert "still-alive" in {s.name for s in spans.get_finished_spans()}
    data = reader.get_metrics_data()
    assert data is not None
    metric_names = {
        m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    assert {
        "suptrace.call.duration",
        "suptrace.message.duration",
        "suptrace.process.exits",
    } <= metric_names
    # Instrumentation scope: suptrace, its version, a schema URL.
    scopes = {s.instrumentation_scope for s in spans.get_finished_spans() if s.name == "call a"}
    (scope,) = scopes
    assert (scope.name, scope.version) == ("suptrace", suptrace.__version__)
    assert scope.schema_url and scope.schema_url.startswith("https://opentelemetry.io/schemas/")


def test_node_keywords_match_run() -> None:
    tp, spans, _mp, _reader = in_memory()

    async def main() -> None:
        async with suptrace.Node("kw", tracer_provider=tp, control=False) as node:
            assert node.telemetry is not None
            await node.run_root(call_chain)

    asyncio.run(main())
    assert any(s.name == "call a" for s in spans.get_finished_spans())


def test_always_off_sampler_installs_no_per_message_hook() -> None:
    tp = TracerProvider(sampler=ALWAYS_OFF)
    seen = suptrace.run(state, tracer_provider=tp, control=False)
    assert seen["telemetry"] is not None and seen["instrument"] is None
    # Parent-based always-off still follows sampled parents: the hook stays.
    tp2 = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    assert suptrace.run(state, tracer_provider=tp2, control=False)["instrument"] is not None


def test_ratio_sampling_keeps_call_chains_whole_and_metrics_exact() -> None:
    """The production setting the README recommends: a parent-based ratio sampler.
    Sampled call chains are recorded whole (the hop a -> b follows the root's
    decision), unsampled ones not at all, and the metrics count every call."""
    spans = InMemorySpanExporter()
    tp = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.25)))
    tp.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    n = 200

    async def main() -> None:
        await Relay.start_link(None, name="b")
        await Relay.start_link("b", name="a")
        for i in range(n):
            assert await suptrace.call("a", i) == ("c", i)

    suptrace.run(main, tracer_provider=tp, meter_provider=mp, control=False, log_reports=False)
    chains: dict[int, list[str]] = {}
    for span in spans.get_finished_spans():
        if span.name.startswith(("call ", "process ")):
            chains.setdefault(span.context.trace_id, []).append(span.name)
    assert 0 < len(chains) < n
    for names in chains.values():
        assert sorted(names) == ["call a", "call b", "process a", "process b"]
    data = reader.get_metrics_data()
    assert data is not None
    counts = [
        point.count
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "suptrace.call.duration"
        for point in metric.data.data_points
    ]
    assert sum(counts) == 2 * n  # main -> a and a -> b, sampled or not


def test_global_providers_are_used_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import trace

    tp, spans, _mp, _reader = in_memory()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: tp)
    seen = suptrace.run(state, control=False)
    assert seen["mode"] == "global"
    suptrace.run(call_chain, control=False, log_reports=False)
    assert any(s.name == "call a" for s in spans.get_finished_spans())


def test_instrumentor_sets_the_providers_of_new_nodes() -> None:
    (entry,) = [
        ep
        for ep in importlib.metadata.entry_points(group="opentelemetry_instrumentor")
        if ep.name == "suptrace"
    ]
    cls = entry.load()
    assert cls is otel.SuptraceInstrumentor
    tp, spans, _mp, _reader = in_memory()
    instrumentor = cls()
    instrumentor.instrument(tracer_provider=tp)
    try:
        assert suptrace.run(state, control=False)["mode"] == "instrumented"
        suptrace.run(call_chain, control=False, log_reports=False)
        assert any(s.name == "call a" for s in spans.get_finished_spans())
    finally:
        instrumentor.uninstrument()
    assert suptrace.run(state, control=False)["mode"] == "file"


def test_auto_picks_otlp_when_an_endpoint_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4317")
    setup = configure("n", None)
    assert setup is not None and setup.mode == "otlp"
    setup.close_sync(1.0)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    setup = configure("n", "auto")
    assert setup is not None
    exporter = setup.tracer_provider._active_span_processor._span_processors[0].span_exporter.inner
    assert type(exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    setup.close_sync(1.0)


def test_service_name_and_instance_come_from_node_and_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup = configure("my-node", "file")
    assert setup is not None
    attrs = setup.tracer_provider.resource.attributes
    assert attrs["service.instance.id"] == "my-node"
    setup.close_sync(1.0)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing")
    setup = configure("my-node", "file")
    assert setup is not None
    assert setup.tracer_provider.resource.attributes["service.name"] == "billing"
    setup.close_sync(1.0)


def test_default_file_is_per_node_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SUPTRACE_OTLP_FILE")
    monkeypatch.chdir(tmp_path)
    assert default_file("copy cat/1") == tmp_path / "suptrace-copy_cat_1.otlp.jsonl"
    suptrace.run(call_chain, node="roundtrip", control=False, log_reports=False, telemetry=True)
    assert (tmp_path / "suptrace-roundtrip.otlp.jsonl").stat().st_size > 0


def test_auto_with_nothing_configured_installs_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A library costs nothing until telemetry is asked for: no instrument, no
    hooks on the hot path, no file."""
    for key in ("SUPTRACE_OTLP_FILE", "SUPTRACE_TELEMETRY", "OTEL_EXPORTER_OTLP_ENDPOINT",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_METRICS_EXPORTER"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)

    async def main() -> tuple[Any, frozenset[str]]:
        rt = suptrace.self_pid()._proc.runtime  # type: ignore[union-attr]
        return rt.instrument, rt.watch

    from suptrace.observers.otel.globals import global_set as _global_set

    if _global_set():
        pytest.skip("the application installed a global tracer provider in this process")
    instrument, watch = suptrace.run(main, node="quiet", control=False, log_reports=False)
    assert instrument is None
    assert "send" not in watch and "receive" not in watch
    assert list(tmp_path.iterdir()) == []


def test_a_failing_tracer_never_breaks_the_application() -> None:
    from loguru import logger
    from opentelemetry import trace

    class ExplodingTracer(trace.Tracer):
        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("tracer bug")

        def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("tracer bug")

    class Exploding(trace.TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            return ExplodingTracer()

    lines: list[str] = []
    sink = logger.add(
        lambda m: lines.append(m.record["message"]), level="ERROR", format="{message}"
    )
    try:
        result = suptrace.run(
            call_chain, tracer_provider=Exploding(), control=False, log_reports=False
        )
    finally:
        logger.remove(sink)
    assert result["answer"] == ("c", "hello")
    assert isinstance(result["failed"], suptrace.CallExit)
    assert sum("OpenTelemetry bridge failed" in line for line in lines) == 1
