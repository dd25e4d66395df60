"""Providers suptrace builds become the global OpenTelemetry ones (SPEC §7, second round).

The global providers are set once per process, so each case runs a small
application in its own interpreter against a real OTLP receiver: what
another instrumentation (here, the application's own tracer) makes through
the global API reaches the same backend; ``SUPTRACE_OTEL_GLOBAL=false`` keeps
suptrace's providers private; a provider the application installed is never
replaced; the propagator stays the standard one; use of the globals after the
node stopped is harmless.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from otlp_receivers import GrpcReceiver

APP = """
import json, sys
import suptrace
from opentelemetry import metrics, propagate, trace
from suptrace import GenServer
from suptrace.node.parts import current_parts

if "--own-provider" in sys.argv:
    from opentelemetry.sdk.trace import TracerProvider
    trace.set_tracer_provider(TracerProvider())


class Svc(GenServer):
    async def handle_call(self, request, caller):
        with trace.get_tracer("the.app").start_as_current_span("app work") as span:
            carrier = {}
            propagate.inject(carrier)
            return {
                "trace_id": span.get_span_context().trace_id,
                "recording": span.is_recording(),
                "carrier": carrier,
            }


async def main():
    await Svc.start_link(name="svc")
    got = await suptrace.call("svc", "go")
    setup = current_parts("test").telemetry.setup
    got["installed"] = setup.installed_globals
    got["tracer_is_ours"] = trace.get_tracer_provider() is setup.tracer_provider
    got["tracer_provider"] = type(trace.get_tracer_provider()).__name__
    return got


result = suptrace.run(main, node="app", control=False, log_reports=False, telemetry="otlp")
# After the node stopped: the globals stay installed (the API cannot unset them) and
# using them must be harmless.
with trace.get_tracer("the.app").start_as_current_span("after the node"):
    pass
metrics.get_meter("the.app").create_counter("late").add(1)


async def second():
    setup = current_parts("test").telemetry.setup
    return type(setup.tracer_provider).__name__


# A later node given only a meter provider does not pick up the stopped node's tracer.
from opentelemetry.sdk.metrics import MeterProvider

result["second_tracer"] = suptrace.run(
    second, node="second", control=False, log_reports=False, meter_provider=MeterProvider()
)
result["fields"] = sorted(propagate.get_global_textmap().fields)
print("RESULT " + json.dumps(result), flush=True)
"""


def run_app(tmp_path: Path, receiver: GrpcReceiver, *args: str, **env_extra: str) -> Any:
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SUPTRACE_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="50",
        SUPTRACE_TRACES="all",
        SUPTRACE_RUNTIME_DIR=str(tmp_path),
        **env_extra,
    )
    done = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


@pytest.fixture
def receiver() -> Any:
    got = GrpcReceiver()
    yield got
    got.close()


def span_names(receiver: GrpcReceiver) -> set[str]:
    return {s.name for s in receiver.dump().spans}


def test_suptrace_providers_become_the_global_ones(tmp_path: Path, receiver: GrpcReceiver) -> None:
    result = run_app(tmp_path, receiver)
    assert result["installed"] == ["tracer_provider", "meter_provider", "logger_provider"]
    assert result["tracer_is_ours"]
    # The application's own span is real (not the no-op span of an unset global) and
    # reaches the same backend as suptrace's; its context propagates as W3C headers.
    assert result["recording"] and result["trace_id"] != 0
    assert "app work" in span_names(receiver)
    assert result["carrier"]["traceparent"].split("-")[1] == f"{result['trace_id']:032x}"
    assert result["fields"] == ["baggage", "traceparent", "tracestate"]
    # Used after the node stopped: no error, nothing sent.
    assert "after the node" not in span_names(receiver)
    assert result["second_tracer"] == "NoOpTracerProvider"


def test_opting_out_keeps_the_providers_private(tmp_path: Path, receiver: GrpcReceiver) -> None:
    result = run_app(tmp_path, receiver, SUPTRACE_OTEL_GLOBAL="false")
    assert result["installed"] == []
    assert result["tracer_provider"] == "ProxyTracerProvider"
    assert not result["recording"]  # the API's no-op span: nothing global was installed
    assert "app work" not in span_names(receiver)
    assert "call svc" in span_names(receiver)  # suptrace's own spans still flow


def test_a_provider_the_application_installed_is_never_replaced(
    tmp_path: Path, receiver: GrpcReceiver
) -> None:
    result = run_app(tmp_path, receiver, "--own-provider")
    assert result["installed"] == ["meter_provider", "logger_provider"]
    assert not result["tracer_is_ours"] and result["tracer_provider"] == "TracerProvider"
    assert "app work" not in span_names(receiver)  # it went to the application's provider


def test_the_propagator_is_the_one_the_environment_chooses(
    tmp_path: Path, receiver: GrpcReceiver
) -> None:
    result = run_app(tmp_path, receiver, OTEL_PROPAGATORS="tracecontext")
    assert result["fields"] == ["traceparent", "tracestate"]
    assert "traceparent" in result["carrier"] and "baggage" not in result["carrier"]
