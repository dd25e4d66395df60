"""Real OTLP receivers for the OpenTelemetry tests, and the scenarios they observe.

* `GrpcReceiver`: a gRPC server implementing the collector's TraceService,
  MetricsService and LogsService (``opentelemetry.proto.collector.*.v1``).
* `HttpReceiver`: an ``http.server`` that decodes protobuf bodies posted to
  ``/v1/traces``, ``/v1/metrics`` and ``/v1/logs`` (gzip or not).

Both listen on 127.0.0.1 on a free port, keep every request, can be told to
refuse (gRPC ``UNAVAILABLE`` / HTTP 503, or a non-retryable HTTP 400), all
signals or only some (`refuse_signals`), or to hang until released (a slow
collector), and
turn what they received into a `suptrace.cli.view.Dump` (the same structure
``suptrace view`` reads from a file), so tests assert on spans, links,
events, statuses and metric points by name. Waiting for data blocks on a
condition variable (`wait_for`), never on a sleep.

``traces_only=True`` makes either one behave like Jaeger or Tempo: traces are
taken, metrics and logs refused for good (gRPC ``UNIMPLEMENTED``, HTTP 404),
each refusal counted in ``unimplemented``.

Scenarios (run as a node's root process):

* `call_chain` -- ``a -> b -> c`` by `call`, a cast to ``a``, and a call whose
  server crashes (``CallExit``);
* `dodos` -- a transient child supervisor ``dodos`` (intensity N) whose only
  child ``dodo`` crashes N + 1 times: N restarts, one intensity breach, the
  subtree not restarted;
* `kill_busy` -- a server killed while it handles a cast.
"""

from __future__ import annotations

import asyncio
import gzip
import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

import suptrace
from suptrace import ChildSpec, Down, GenServer, Supervisor
from suptrace.cli.view import Dump, SpanRec, load_lines
from suptrace.observers.otel.jsonl import otlp_json

__all__ = [
    "GrpcReceiver",
    "HttpReceiver",
    "free_port",
    "spans_named",
    "metric_points",
    "metric_total",
    "call_chain",
    "dodos",
    "kill_busy",
]

#: How long a test waits for a receiver before failing.
WAIT = 10.0


def free_port() -> int:
    """A port nothing listens on right now (for the "collector down" tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Store:
    """What a receiver got, guarded by a condition variable."""

    def __init__(self, traces_only: bool = False) -> None:
        self.cond = threading.Condition()
        self.requests: list[Any] = []
        self.counts = {"traces": 0, "metrics": 0, "logs": 0}
        self.refused = 0
        #: None: accept; "unavailable": retryable refusal; "bad_request": HTTP 400;
        #: over HTTP, any other status code as a string ("415").
        self.refuse: str | None = None
        #: The signals `refuse` applies to (None: all of them).
        self.refuse_signals: set[str] | None = None
        #: When set, trace requests hang until it is released: a slow collector.
        self.stall: threading.Event | None = None
        self.stalled = 0
        #: A traces-only backend (Jaeger, Tempo): metrics and logs are unknown services.
        self.traces_only = traces_only
        self.unimplemented = {"metrics": 0, "logs": 0}
        #: Spans received, counted as they arrive.
        self.span_count = 0
        #: The headers (HTTP) or metadata (gRPC) of each accepted request, by signal.
        self.headers: dict[str, list[dict[str, str]]] = {"traces": [], "metrics": [], "logs": []}

    def refuses(self, signal: str) -> bool:
        return self.refuse is not None and (
            self.refuse_signals is None or signal in self.refuse_signals
        )

    def hit(self, what: str, signal: str | None = None) -> None:
        """Count a refused, stalled or unimplemented request (and wake the waiters)."""
        with self.cond:
            if what == "refused":
                self.refused += 1
            elif what == "stalled":
                self.stalled += 1
            elif signal is not None:
                self.unimplemented[signal] += 1
            self.cond.notify_all()

    def add(self, signal: str, request: Any, headers: dict[str, str] | None = None) -> None:
        with self.cond:
            self.headers[signal].append(headers or {})
            self.requests.append(request)
            self.counts[signal] += 1
            if signal == "traces":
                self.span_count += sum(
                    len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans
                )
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def dump(self) -> Dump:
        with self.cond:
            requests = list(self.requests)
        return load_lines(Dump(path=_NOWHERE), (otlp_json(r) for r in requests))


class _Nowhere:
    def __str__(self) -> str:
        return "(receiver)"


_NOWHERE: Any = _Nowhere()


class GrpcReceiver(_Store):
    """An OTLP/gRPC collector stand-in."""

    def __init__(self, traces_only: bool = False, port: int = 0) -> None:
        super().__init__(traces_only)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        store = self

        def handler(signal: str, response: Any) -> Callable[[Any, Any], Any]:
            def export(request: Any, context: Any) -> Any:
                if store.traces_only and signal != "traces":
                    # What a server without this service answers (Jaeger: "unknown service").
                    store.hit("unimplemented", signal)
                    service = {"metrics": "metrics.v1.MetricsService", "logs": "logs.v1.LogsService"}
                    context.abort(
                        grpc.StatusCode.UNIMPLEMENTED,
                        f"unknown service opentelemetry.proto.collector.{service[signal]}",
                    )
                stall = store.stall
                if stall is not None and signal == "traces":
                    store.hit("stalled")
                    stall.wait(30)
                if store.refuses(signal):
                    store.hit("refused")
                    code = (
                        grpc.StatusCode.UNAVAILABLE
                        if store.refuse == "unavailable"
                        else grpc.StatusCode.INVALID_ARGUMENT
                    )
                    context.abort(code, "refused by the test")
                store.add(signal, request, {k: str(v) for k, v in context.invocation_metadata()})
                return response

            return export

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            Export = staticmethod(handler("traces", trace_service_pb2.ExportTraceServiceResponse()))

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
            Export = staticmethod(
                handler("metrics", metrics_service_pb2.ExportMetricsServiceResponse())
            )

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
            Export = staticmethod(handler("logs", logs_service_pb2.ExportLogsServiceResponse()))

        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.stop(grace=None)


_DECODERS: dict[str, tuple[str, Any, Any]] = {
    "/v1/traces": (
        "traces",
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ),
    "/v1/metrics": (
        "metrics",
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
    "/v1/logs": (
        "logs",
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
    ),
}


class HttpReceiver(_Store):
    """An OTLP/HTTP (protobuf) collector stand-in."""

    def __init__(self, traces_only: bool = False) -> None:
        super().__init__(traces_only)
        store = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
                pass

            def do_POST(self) -> None:
                found = _DECODERS.get(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if found is None:
                    self.send_error(404)
                    return
                signal = found[0]
                if store.traces_only and signal != "traces":
                    store.hit("unimplemented", signal)
                    self.send_error(404)
                    return
                stall = store.stall
                if stall is not None and signal == "traces":
                    store.hit("stalled")
                    stall.wait(30)
                if store.refuses(signal):
                    store.hit("refused")
                    refuse = store.refuse
                    self.send_response(
                        503 if refuse == "unavailable" else 400 if refuse == "bad_request"
                        else int(refuse)
                    )
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                _signal, request_type, response_type = found
                store.add(
                    signal,
                    request_type.FromString(body),
                    {k.lower(): v for k, v in self.headers.items()},
                )
                payload = response_type().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def otlp_env(
    monkeypatch: Any, receiver: GrpcReceiver | HttpReceiver, protocol: str
) -> Iterator[None]:
    """Point the standard OTEL_* variables at ``receiver``."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "otel-test")
    for key in (
        "SUPTRACE_TELEMETRY",
        "OTEL_SDK_DISABLED",
        "SUPTRACE_OTEL_GLOBAL",
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_LOGS_EXPORTER",
    ):
        monkeypatch.delenv(key, raising=False)
    yield


# -- assertions helpers ------------------------------------------------------------------


def spans_named(dump: Dump, name: str, kind: str | None = None) -> list[SpanRec]:
    return [s for s in dump.spans if s.name == name and (kind is None or s.kind == kind)]


def metric_points(dump: Dump, name: str) -> list[dict[str, Any]]:
    entry = dump.metrics.get(name)
    return list(entry["points"].values()) if entry is not None else []


def metric_total(dump: Dump, name: str, **attrs: Any) -> float:
    """Sum of a counter's (latest, cumulative) points whose attributes include ``attrs``."""
    total: float = 0
    for p in metric_points(dump, name):
        if all(p["attributes"].get(k) == v for k, v in attrs.items()):
            total += p["value"] if "value" in p else p["count"]
    return total


# -- scenarios -------------------------------------------------------------------------------


class Relay(GenServer):
    """Forwards each call to ``nxt`` (or answers it); ``"crash"`` raises in the last hop."""

    async def init(self, nxt: str | None) -> None:
        self.nxt = nxt
        self.seen: list[Any] = []

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        if self.nxt is not None:
            return await suptrace.call(self.nxt, request)
        if request == "crash":
            raise RuntimeError("c exploded")
        return ("c", request)

    async def handle_cast(self, msg: Any) -> None:
        self.seen.append(msg)
        if self.nxt is not None:
            suptrace.cast(self.nxt, msg)


async def call_chain() -> dict[str, Any]:
    """a -> b -> c calls, a cast a -> b -> c, then a call that crashes c."""
    suptrace.trap_exit(True)
    await Relay.start_link(None, name="c")
    await Relay.start_link("c", name="b")
    await Relay.start_link("b", name="a")
    answer = await suptrace.call("a", "hello")
    suptrace.cast("a", ("note", 1))
    await suptrace.call("c", "sync")  # the cast went a -> b -> c before this call reached c
    await suptrace.call("b", "sync")
    c = suptrace.whereis("c")
    failed: BaseException | None = None
    try:
        await suptrace.call("a", "crash")
    except suptrace.CallExit as exc:
        failed = exc
    # c crashed; b and a are linked to it and die with it: wait for the exits to land.
    ref = suptrace.monitor(c) if c is not None else None
    if ref is not None:
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
    return {"answer": answer, "failed": failed}


class Dodo(GenServer):
    async def init(self) -> None:
        self.meals = 0

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        return self.meals

    async def handle_cast(self, msg: Any) -> None:
        if msg == "meteor":
            raise RuntimeError("meteor strike")
        self.meals += 1


def dodos_spec(intensity: int) -> ChildSpec:
    dodo = ChildSpec(id="dodo", start=(Dodo.start_link, (), {"name": "dodo"}))
    return ChildSpec(
        id="dodos",
        start=(
            Supervisor.start_link,
            ([dodo],),
            {"name": "dodos", "intensity": intensity, "period": 60},
        ),
        restart="transient",
        type="supervisor",
    )


async def dodos(intensity: int = 3) -> dict[str, Any]:
    """The dodos: ``dodo`` crashes ``intensity + 1`` times; its transient supervisor gives up."""
    suptrace.trap_exit(True)
    seen: asyncio.Queue[suptrace.TraceEvent] = asyncio.Queue()
    stop = suptrace.add_event_handler(seen.put_nowait, kinds=["restart", "not_restarted"])
    await Supervisor.start_link([dodos_spec(intensity)], name="world", intensity=10, period=60)
    suptrace.cast("dodo", "lunch")
    assert await suptrace.call("dodo", "meals") == 1
    kinds = []
    for _ in range(intensity + 1):
        suptrace.cast("dodo", "meteor")
        event = await asyncio.wait_for(seen.get(), WAIT)
        kinds.append(event.kind)
    stop()
    return {"kinds": kinds, "dodos": suptrace.whereis("dodos"), "world": suptrace.whereis("world")}


async def kill_busy() -> dict[str, Any]:
    """A server is killed while it handles a cast (its spans must still end)."""
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class Busy(GenServer):
        async def handle_cast(self, msg: Any) -> None:
            started.set_result(None)
            await asyncio.Future()  # blocks until killed

    pid = await Busy.start(name="busy")
    ref = suptrace.monitor(pid)
    suptrace.cast("busy", "work")
    await asyncio.wait_for(started, WAIT)
    suptrace.exit(pid, "kill")
    down = await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
    return {"reason": down.reason}
