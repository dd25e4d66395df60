"""The OpenTelemetry package's seams: settings decided once, one token shape, no node import."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import suptrace
from suptrace.core.process import Process
from suptrace.core.runtime import current_runtime
from suptrace.node.parts import current_parts
from suptrace.observers.otel.bridge import Bridge
from suptrace.observers.otel.config import Decision, decide
from suptrace.observers.otel.setup import configure

PACKAGE = Path(suptrace.__file__).parent / "observers" / "otel"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SUPTRACE_TRACES", "SUPTRACE_TRACES_SAMPLE", "SUPTRACE_TELEMETRY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SUPTRACE_OTEL_GLOBAL", "false")


def test_the_otel_package_imports_nothing_from_the_node() -> None:
    """The node uses the observers, never the other way round (no import circle)."""
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            found += [f"{path.name}: {n}" for n in names if n.startswith("suptrace.node")]
    assert found == []


def test_the_export_mode_decides_the_trace_mode_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert decide("file") == Decision("file", "all", 0.01)
    assert decide("otlp") == Decision("otlp", "failures", 0.01)
    assert decide("otlp", "all") == Decision("otlp", "all", 0.01)
    monkeypatch.setenv("SUPTRACE_TRACES_SAMPLE", "0.25")
    assert decide("otlp") == Decision("otlp", "failures", 0.25)
    # The sample counts in "failures" mode only, but a bad one fails in every mode: set
    # for later, it would otherwise fail on the day the mode changes.
    assert decide("file") == Decision("file", "all", 0.01)
    monkeypatch.setenv("SUPTRACE_TRACES_SAMPLE", "lots")
    with pytest.raises(ValueError, match="SUPTRACE_TRACES_SAMPLE must be a number"):
        decide("file")
    # Off reads nothing about traces: a bad variable harms nothing.
    monkeypatch.setenv("SUPTRACE_TRACES", "some")
    assert decide("off") == Decision("off")
    with pytest.raises(ValueError, match="SUPTRACE_TRACES must be"):
        decide("file")


def test_spans_printed_to_the_console_are_all_of_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """"failures" is the default where spans are shipped; the console shows them here."""
    for signal in ("", "TRACES_", "METRICS_", "LOGS_"):
        monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_{signal}ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert decide() == Decision("console", "all", 0.01)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")  # the rest
    assert decide("otlp") == Decision("otlp", "all", 0.01)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    assert decide("otlp") == Decision("otlp", "failures", 0.01)
    monkeypatch.setenv("SUPTRACE_TRACES", "failures")  # asked for: it wins
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert decide("otlp").traces == "failures"


@pytest.mark.parametrize("value", ["5", "-0.1", "nan", "inf"])
def test_a_bad_sample_fails_at_node_start_with_the_embedded_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    monkeypatch.setenv("SUPTRACE_TRACES_SAMPLE", value)

    async def main() -> str:
        return "ran"

    with pytest.raises(ValueError, match="SUPTRACE_TRACES_SAMPLE") as info:
        suptrace.run(main, telemetry=tmp_path / "t.otlp.jsonl", control=False, log_reports=False)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", ["bogus", "jaeger"])
def test_a_bad_telemetry_variable_fails_at_node_start(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SUPTRACE_TELEMETRY", value)

    async def main() -> str:
        return "ran"

    with pytest.raises(ValueError, match="SUPTRACE_TELEMETRY must be") as info:
        suptrace.run(main, control=False, log_reports=False)
    assert repr(value) in str(info.value)
    monkeypatch.setenv("SUPTRACE_TELEMETRY", " Off ")  # the words are read leniently
    assert suptrace.run(main, control=False, log_reports=False) == "ran"


def test_a_bad_trace_variable_fails_before_any_provider_is_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SUPTRACE_TRACES", "sometimes")
    with pytest.raises(ValueError, match="SUPTRACE_TRACES must be 'failures', 'all' or 'off'"):
        configure("n", tmp_path / "t.otlp.jsonl")
    monkeypatch.delenv("SUPTRACE_TRACES")
    setup = configure("n", tmp_path / "t.otlp.jsonl", traces="failures")
    assert setup is not None
    try:
        assert setup.decision == Decision("file", "failures", 0.01)
    finally:
        setup.close_sync(1.0)


async def test_the_bridge_takes_the_decision_and_reads_no_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Settings the bridge would have read itself: they must not count any more.
    monkeypatch.setenv("SUPTRACE_TRACES", "all")
    monkeypatch.setenv("SUPTRACE_TRACES_SAMPLE", "not a number")

    async def main() -> tuple[str, float]:
        bridge = Bridge(current_runtime(), TracerProvider(), traces="failures", sample=0.5)
        return bridge.traces, bridge.ratio

    async def bad() -> None:
        Bridge(current_runtime(), traces="some")

    assert await run_node(main, telemetry="off") == ("failures", 0.5)
    with pytest.raises(ValueError, match="traces must be"):
        await run_node(bad, telemetry="off")


class Echo(suptrace.GenServer):
    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        return request

    async def handle_cast(self, msg: Any) -> None:
        pass

    async def handle_info(self, msg: Any) -> None:
        pass


async def run_node(main: Any, **opts: Any) -> Any:
    async with suptrace.Node("otel-package", control=False, log_reports=False, **opts) as node:
        return await node.run_root(main)


@pytest.mark.parametrize("traces", ["all", "failures"])
@pytest.mark.parametrize("metrics", [True, False])
async def test_handlings_and_calls_hand_back_one_token_shape(
    traces: str, metrics: bool, tmp_path: Path
) -> None:
    """``(span, context, t0, process, label, kind)`` from both ``handle_begin`` and
    ``call_begin``, whatever the mode (a call's process is its caller)."""
    tokens: list[tuple[str, Any]] = []

    def recording(hook: str, inner: Any) -> Any:
        def wrapped(*args: Any) -> Any:
            token = inner(*args)
            tokens.append((hook, token))
            return token

        return wrapped

    async def main() -> None:
        telemetry = current_parts("the test").telemetry
        assert telemetry is not None and telemetry.bridge is not None
        bridge = telemetry.bridge
        if not metrics:
            bridge.metrics = None
        for hook in ("handle_begin", "call_begin"):
            setattr(bridge, hook, recording(hook, getattr(bridge, hook)))
        pid = await Echo.start_link(name="echo")
        assert await suptrace.call("echo", "ping") == "ping"
        suptrace.cast("echo", "tick")
        suptrace.send(pid, "hello")
        assert await suptrace.call("echo", "sync") == "sync"
        # In "failures" mode the server loop records a cast or plain message that came
        # without a context itself, as a raw record of the same shape, in the ring.
        state = pid._proc.instrument_state  # type: ignore[union-attr]
        if state is not None and state.inline:
            tokens.extend(("handle_begin", t) for t in state.ring if type(t) is tuple)

    await run_node(main, telemetry=str(tmp_path / "t.otlp.jsonl"), traces=traces)
    kinds = {(hook, token[5]) for hook, token in tokens if token is not None}
    assert kinds == {
        ("call_begin", "client"),
        ("handle_begin", "init"),
        ("handle_begin", "call"),
        ("handle_begin", "cast"),
        ("handle_begin", "info"),
    }
    for hook, token in tokens:
        assert type(token) is tuple and len(token) == 6, (hook, token)
        span, context, t0, proc, label, _kind = token
        assert span is not None
        # A raw record (a cast or plain message the server loop recorded) always has
        # its start; other tokens only when metrics are on, never an init's (no message).
        timed = (metrics and _kind != "init") or type(span) is list
        assert type(t0) is float and (t0 > 0) is timed
        assert label == "echo"
        assert isinstance(proc, Process)
        if hook == "call_begin":
            assert context is None and proc.name != "echo"  # the caller: main
        else:
            assert proc.name == "echo"


def test_the_server_loop_hands_a_full_series_back_at_the_bridge_s_limit() -> None:
    """The loop appends durations itself until a series holds the bridge's pending limit,
    then lets the bridge flush it: both take the number from the core's one definition."""
    from suptrace.behaviours import gen_server
    from suptrace.core.runtime import SERIES_LIMIT
    from suptrace.observers.otel.metrics import PENDING_LIMIT

    assert gen_server.SERIES_LIMIT is SERIES_LIMIT and PENDING_LIMIT is SERIES_LIMIT
