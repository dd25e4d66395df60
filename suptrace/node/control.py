"""The control server: every node's socket for `suptrace` commands.

A node serves a Unix domain socket ``<runtime dir>/<node>.sock`` (directory
0700, socket 0600, peer uid checked with ``SO_PEERCRED``) next to a JSON
sidecar ``<node>.json`` (pid, node name, start time) that ``suptrace nodes``
reads. Optionally it also listens on TCP, loopback unless told otherwise, and
then only for clients that prove they know the cookie (HMAC challenge-response,
see `suptrace.node.control_protocol`), optionally over TLS.

The server is plain asyncio tasks, never suptrace processes, so nothing it
does shows up in a trace of ``"all"``. It reads the node, asks supervisors
through their admin API with timeouts, and runs tracers for ``attach``
clients. Operations that change the node (``terminate_child``,
``restart_child``, ``exit``) answer ``forbidden`` unless the node was started
with ``control={"allow_write": True}``.

Every safety limit is a named option with a default (see `ControlServer`).
Nobody can jam the socket:

* **Deadlines.** A connection must send its first request (Unix) or
  authenticate (TCP) within ``auth_timeout`` (5 s); a frame must arrive in full
  within ``frame_timeout`` (5 s) of its first byte (a slowloris is closed); a
  client with no request running and no stream is closed after
  ``idle_timeout`` (30 s) without a request. Each is closed with a ``timeout``
  error frame naming the deadline.
* **Pools.** A connection costs a bare socket until its first bytes, and a
  slot only once it sent a request (Unix) or authenticated (TCP). Until then it
  waits in its transport's own pool (``max_pending`` 64 on Unix,
  ``max_unauthenticated`` 16 on TCP; when full, the oldest waiter is closed),
  so unauthenticated peers never take the owner's slots. ``max_clients`` (16)
  clients at once, ``max_per_uid`` (3/4 of them) per peer uid (TCP clients
  count as one peer); when the slots are full, a client idle for a second is
  closed to make room, else the newcomer gets ``busy`` (the CLI tries again).
* **Accept bursts.** At most 8 connections are accepted per loop turn and
  ``accept_rate`` (500) a second; the rest wait in the kernel's backlog (64).
* **Requests.** Each runs as its own task (``max_inflight`` 4 per connection;
  more wait unread, and at most 16 frames of a connection are handled per
  loop turn), within ``op_timeout``, and is cancelled when its client leaves; streams
  (``attach``, ``reports`` with ``follow``) end with their client and remove
  their trace state. Frames are at most ``max_frame`` (1 MiB; 4 KiB before a
  TCP peer authenticated) and nest at most 32 levels; a bad argument (wrong
  type, NaN, an infinity, a huge number, a long string) is ``bad_args`` naming
  the argument.
* **Slow readers.** A client that does not read never slows the node: stream
  items that find its write buffer above ``high_water`` are dropped and
  counted (the stream's ``end`` frame says how many), and a connection whose
  buffer passes ``hard_limit`` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import math
import os
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from suptrace.core.runtime import Runtime
from suptrace.node import control_ops as ops
from suptrace.node.control_protocol import (
    AUTH_MAX_FRAME,
    HEADER,
    MAX_FRAME,
    PROTOCOL,
    ProtocolError,
    client_proof,
    decode_body,
    default_cookie_file,
    encode_frame,
    ensure_private_dir,
    is_stale_socket,
    load_or_create_cookie,
    new_nonce,
    proofs_equal,
    read_sidecar,
    runtime_dir,
    server_proof,
    socket_stem,
)
from suptrace.observers.calltrace import resolve_function, trace_calls
from suptrace.observers.reports import Report, Reports
from suptrace.observers.tracer import FLAGS, Tracer, running_tracers

if TYPE_CHECKING:
    from suptrace.node.parts import NodeParts

__all__ = ["ControlServer"]

#: Operations that change the node: refused unless ``allow_write``.
WRITE_OPS = frozenset({"terminate_child", "restart_child", "exit"})
_MAX_ID = 64
#: Longest path a Unix socket address may have (Linux: 108 bytes with the NUL).
_MAX_SOCKET_PATH = 107
#: Listen backlog: connections the kernel holds while the node accepts at its own pace.
_BACKLOG = 64
#: Connections accepted per loop turn at most.
_ACCEPT_BATCH = 8
#: Seconds between two warnings of the same kind about clients.
_LOG_EVERY = 60.0
#: Frames of one connection handled per loop turn at most.
_FRAMES_PER_TURN = 16
#: An admitted client idle this long may be closed to make room for a new one.
_EVICT_IDLE = 1.0


class _Listener:
    """A listening socket and its accept budget (a token bucket)."""

    __slots__ = ("at", "context", "kind", "resume", "sock", "tokens")

    def __init__(self, sock: socket.socket, kind: str, context: Any, tokens: float) -> None:
        self.sock = sock
        self.kind = kind
        self.context = context
        self.tokens = tokens
        self.at = time.monotonic()
        self.resume: asyncio.TimerHandle | None = None


def _warn(message: str) -> None:
    from loguru import logger

    logger.warning("{}", message)


class _Stream:
    """One streaming request of a connection (an attach or a reports follow)."""

    kind = "stream"

    def __init__(self, conn: _Conn, req_id: Any) -> None:
        self.conn = conn
        self.id = req_id
        self.dropped = 0
        self.sent = 0
        self.ended = False

    def push(self, item: str, data: dict[str, Any]) -> None:
        if self.ended:
            return
        if self.conn.send_stream({"id": self.id, "stream": item, "data": data}):
            self.sent += 1
        else:
            self.dropped += 1

    def end(self, reason: str, **extra: Any) -> None:
        if self.ended:
            return
        self.ended = True
        self.conn.streams.pop(self.id, None)
        data = {"reason": reason, "sent": self.sent, "client_dropped": self.dropped, **extra}
        self.conn.send({"id": self.id, "stream": "end", "data": data})

    def stop(self, reason: str) -> None:
        self.end(reason)


class _TraceStream(_Stream):
    kind = "attach"

    def __init__(self, conn: _Conn, req_id: Any, term_limit: int) -> None:
        super().__init__(conn, req_id)
        self.term_limit = term_limit
        self.tracer: Tracer | None = None

    def on_event(self, event: Any) -> None:
        self.push("event", ops.event_json(event, self.term_limit))

    def on_stop(self, tracer: Tracer) -> None:
        stats = tracer.stats()
        stats["traced_pids"] = [str(p) for p in stats.get("traced_pids", ())]
        self.end(tracer.stop_reason or "stopped", stats=stats, summary=tracer.summary())

    def stop(self, reason: str) -> None:
        if self.tracer is not None and self.tracer.active:
            self.tracer.stop(reason)  # its on_stop ends the stream
        else:
            self.end(reason)


class _ReportStream(_Stream):
    kind = "reports"

    def __init__(self, conn: _Conn, req_id: Any, kinds: frozenset[str] | None, limit: int) -> None:
        super().__init__(conn, req_id)
        self.kinds = kinds
        self.limit = limit
        self.unsubscribe: Callable[[], None] | None = None

    def on_report(self, report: Report) -> None:
        if ops.report_matches(report, self.kinds):
            self.push("report", ops.report_json(report, self.limit))

    def end(self, reason: str, **extra: Any) -> None:
        if self.unsubscribe is not None:
            self.unsubscribe()
            self.unsubscribe = None
        super().end(reason, **extra)


class _Conn(asyncio.Protocol):
    """One client connection: a plain protocol, no task of its own.

    A connection costs nothing but this object until a complete request frame
    arrives; each request then runs as its own task (at most ``max_inflight``
    per connection), cancelled when the client leaves.
    """

    def __init__(self, server: ControlServer, kind: str, peer: str) -> None:
        self.server = server
        self.kind = kind
        self.transport: asyncio.Transport | None = None
        self.authed = kind == "unix"  # TCP clients must prove the cookie first
        self.admitted = False  # counted in the clients' pool (after a request / auth)
        self.peer = peer  # the fairness key: "uid:<n>" for Unix, "tcp" for TCP
        self.nonce = ""
        self.streams: dict[Any, _Stream] = {}
        self.ops: set[asyncio.Task[None]] = set()
        self.closed = False
        self.buf = bytearray()
        self.need = -1  # body size of the frame being read, -1: reading a header
        now = time.monotonic()
        self.opened = now
        self.last_active = now
        self.frame_started = 0.0  # when the unfinished frame in buf began, 0: none
        #: The bare socket while nothing has arrived on it (no transport yet).
        self.raw: socket.socket | None = None
        self.paused = False  # frames wait: requests running, or a turn's frames done
        self.reading_paused = False  # the transport reads no more (too much is waiting)

    # -- asyncio protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's do not derive from asyncio.Transport.
        self.transport = cast("asyncio.Transport", transport)
        if self.closed:  # closed while its socket was being handed over
            self.transport.abort()
        elif self not in self.server._conns:
            self.server._connected(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server._disconnected(self)
        for task in list(self.ops):
            task.cancel()  # nobody is left to read the answer
        self.stop_streams("client_gone")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_active = time.monotonic()
        self.buf += data
        if not self.paused:
            self._process()
        elif (
            len(self.buf) > 2 * self.server.max_frame
            and self.transport is not None
            and not self.reading_paused
        ):
            self.reading_paused = True  # the client sends far ahead: read no more for now
            self.transport.pause_reading()

    def _process(self) -> None:
        """Handle the complete frames in the buffer: a few per loop turn, and none
        while ``max_inflight`` requests of this connection run (reading pauses)."""
        buf = self.buf
        server = self.server
        budget = _FRAMES_PER_TURN
        while not self.closed:
            if len(self.ops) >= server.max_inflight:
                self._hold()  # an answer resumes it
                break
            if self.need < 0:
                if len(buf) < HEADER.size:
                    break
                (size,) = HEADER.unpack_from(buf)
                limit = server.max_frame if self.authed else AUTH_MAX_FRAME
                if size > limit:
                    server.errors += 1
                    what = "max_frame" if self.authed else "limit before authentication"
                    self.error(
                        None,
                        "frame_too_large",
                        f"a frame of {size} bytes is over this node's {what} of {limit}; "
                        "closing the connection",
                    )
                    self.close()
                    return
                del buf[: HEADER.size]
                self.need = size
            if len(buf) < self.need:
                break
            if budget == 0:
                self._hold()
                asyncio.get_running_loop().call_soon(self._resume)
                break
            budget -= 1
            body = bytes(buf[: self.need])
            del buf[: self.need]
            self.need = -1
            self.frame_started = 0.0
            try:
                server._frame(self, body)
            except Exception as exc:  # a bug here must never reach asyncio's error log
                server.errors += 1
                _warn(f"suptrace control: a request failed: {type(exc).__name__}: {ops.show(exc)}")
                self.error(None, "internal", f"the request failed inside the node: {ops.show(exc)}")
        if (buf or self.need >= 0) and not self.frame_started:
            self.frame_started = time.monotonic()

    def _hold(self) -> None:
        # Frames wait in the buffer; reading goes on (so that a client leaving is
        # noticed) until the buffer holds more than two frames' worth.
        self.paused = True

    def _resume(self) -> None:
        if self.closed or not self.paused:
            return
        self.paused = False
        if self.transport is not None and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        self._process()

    def _op_done(self, task: asyncio.Task[None]) -> None:
        self.ops.discard(task)
        if self.paused and not self.closed:
            asyncio.get_running_loop().call_soon(self._resume)

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    # -- writing --------------------------------------------------------------------

    def _buffered(self) -> int:
        transport = self.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def send(self, obj: dict[str, Any]) -> bool:
        """Queue a frame; a client that stopped reading long ago is disconnected."""
        transport = self.transport
        if transport is None and self.raw is not None and not self.closed:
            with contextlib.suppress(OSError):  # a welcome or a last word: a few bytes
                self.raw.send(encode_frame(obj))
            return True
        if self.closed or transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > self.server.hard_limit:
            self.abort("the client does not read what the node sends")
            return False
        try:
            transport.write(encode_frame(obj))
        except (OSError, RuntimeError):
            self.abort("write failed")
            return False
        return True

    def send_stream(self, obj: dict[str, Any]) -> bool:
        """Queue a stream item unless the client is behind: then drop and count it."""
        if self._buffered() > self.server.high_water:
            self.server.frames_dropped += 1
            return False
        return self.send(obj)

    def error(self, req_id: Any, code: str, message: str, **detail: Any) -> None:
        self.send(
            {"id": req_id, "ok": False, "error": {"code": code, "message": message, **detail}}
        )

    def stop_streams(self, reason: str) -> None:
        for stream in list(self.streams.values()):
            stream.stop(reason)

    def close(self) -> None:
        """Close after what is queued is written (a frame saying why, usually)."""
        if self.closed:
            return
        self.closed = True
        self.server._disconnected(self)
        for task in list(self.ops):
            task.cancel()
        self.stop_streams("client_gone")
        if self.transport is not None:
            self.transport.close()
        elif self.raw is not None:
            self.server._forget_raw(self)

    def drop(self, code: str, why: str) -> None:
        """Tell the client why, then close (deadlines, eviction)."""
        if not self.closed:
            self.error(None, code, why)
            self.close()

    def abort(self, why: str) -> None:
        if self.closed:
            return
        self.server._warn_limited(
            "dropped", f"suptrace control: dropped a client of node {self.server.node_name}: {why}"
        )
        self.close()
        if self.transport is not None:
            self.transport.abort()


class ControlServer:
    """A node's control socket. ``Node(control=...)`` creates it; options:

    ================  ==========  ===================================================
    option            default     meaning
    ================  ==========  ===================================================
    ``runtime_dir``   see below   directory of the socket and its sidecar
    ``name``          node name   socket file name (``<name>.sock``)
    ``allow_write``   False       allow terminate_child / restart_child / exit
    ``max_clients``   16          clients at once (more get ``busy``): a connection
                                  counts once it sent a request (Unix) or
                                  authenticated (TCP)
    ``max_per_uid``   3/4 of max  clients of one peer uid (TCP clients: one group)
    ``max_pending``   64          Unix connections that have sent no request yet
                                  (when full, the oldest is closed)
    ``max_unauthenticated`` 16    TCP connections not yet authenticated (their own
                                  pool: they never take a client's slot)
    ``max_inflight``  4           requests running at once on one connection (it
                                  is read no further until one is answered)
    ``accept_rate``   500/s       connections accepted per second at most (the rest
                                  wait in the kernel's backlog); ``accept_burst`` 32
    ``max_frame``     1 MiB       largest request frame
    ``max_streams``   4           streams (attach, reports follow) per connection
    ``max_tracers``   8           attach sessions at once on the node
    ``max_events``    100000      cap on an attach's ``max_events``
    ``max_duration``  3600 s      cap on an attach's ``duration``
    ``max_rate``      10000/s     cap on an attach's ``rate``
    ``max_term``      4000        cap on the characters of a term in an event
    ``high_water``    1 MiB       client write buffer above which stream items drop
    ``hard_limit``    8 MiB       client write buffer above which it is disconnected
    ``op_timeout``    10 s        longest a request may take
    ``call_timeout``  2 s         how long a supervisor or server has to answer
    ``auth_timeout``  5 s         time from connecting to the first request (Unix)
                                  or to being authenticated (TCP, TLS included)
    ``frame_timeout`` 5 s         time a frame may take from its first byte to its last
    ``idle_timeout``  30 s        a client with no request running and no stream is
                                  closed after this long without a request
    ``tcp``           None        ``"host:port"``, ``(host, port)``, a port or True
                                  (127.0.0.1, any free port)
    ``cookie_file``   see below   TCP: the shared secret (created 0600 if missing)
    ``certfile``      None        TCP: serve TLS with this certificate...
    ``keyfile``       None        ...and this key
    ================  ==========  ===================================================

    The runtime directory is ``$SUPTRACE_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/suptrace``, else ``suptrace-<uid>`` in the temporary
    directory. The cookie file is ``$SUPTRACE_COOKIE_FILE``, else
    ``~/.suptrace.cookie``.
    """

    def __init__(
        self,
        *,
        runtime_dir: str | os.PathLike[str] | None = None,
        name: str | None = None,
        allow_write: bool = False,
        max_clients: int = 16,
        max_frame: int = MAX_FRAME,
        max_streams: int = 4,
        max_tracers: int = 8,
        max_events: int = 100_000,
        max_duration: float = 3600.0,
        max_rate: float = 10_000.0,
        max_term: int = 4000,
        high_water: int = 1 << 20,
        hard_limit: int = 8 << 20,
        op_timeout: float = 10.0,
        call_timeout: float = 2.0,
        auth_timeout: float = 5.0,
        frame_timeout: float = 5.0,
        idle_timeout: float = 30.0,
        max_per_uid: int | None = None,
        max_pending: int = 64,
        max_unauthenticated: int = 16,
        max_inflight: int = 4,
        accept_rate: float = 500.0,
        accept_burst: int = 32,
        tcp: str | int | bool | tuple[str, int] | None = None,
        cookie_file: str | os.PathLike[str] | None = None,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
    ) -> None:
        for label, value in (
            ("max_clients", max_clients),
            ("max_frame", max_frame),
            ("max_streams", max_streams),
            ("max_tracers", max_tracers),
            ("max_events", max_events),
            ("max_term", max_term),
            ("high_water", high_water),
            ("hard_limit", hard_limit),
            ("max_pending", max_pending),
            ("max_unauthenticated", max_unauthenticated),
            ("max_inflight", max_inflight),
            ("accept_burst", accept_burst),
            ("max_per_uid", max_clients if max_per_uid is None else max_per_uid),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"control option {label} must be an int > 0, got {value!r}")
        for label, fvalue in (
            ("max_duration", max_duration),
            ("max_rate", max_rate),
            ("op_timeout", op_timeout),
            ("call_timeout", call_timeout),
            ("auth_timeout", auth_timeout),
            ("frame_timeout", frame_timeout),
            ("idle_timeout", idle_timeout),
            ("accept_rate", accept_rate),
        ):
            if (
                isinstance(fvalue, bool)
                or not isinstance(fvalue, (int, float))
                or not math.isfinite(fvalue)
                or fvalue <= 0
            ):
                raise ValueError(f"control option {label} must be a number > 0, got {fvalue!r}")
        if (certfile is None) != (keyfile is None):
            raise ValueError("control options certfile and keyfile go together (TLS needs both)")
        if certfile is not None and not tcp:
            raise ValueError("control options certfile/keyfile need tcp=... (TLS is for TCP)")
        self.runtime_dir = Path(runtime_dir) if runtime_dir is not None else None
        self.socket_name = name
        self.allow_write = bool(allow_write)
        self.max_clients = max_clients
        self.max_frame = max_frame
        self.max_streams = max_streams
        self.max_tracers = max_tracers
        self.max_events = max_events
        self.max_duration = float(max_duration)
        self.max_rate = float(max_rate)
        self.max_term = max_term
        self.high_water = high_water
        self.hard_limit = max(hard_limit, high_water)
        self.op_timeout = float(op_timeout)
        self.call_timeout = float(call_timeout)
        self.auth_timeout = float(auth_timeout)
        self.frame_timeout = float(frame_timeout)
        self.idle_timeout = float(idle_timeout)
        self.max_per_uid = (
            max(1, (max_clients * 3 + 3) // 4) if max_per_uid is None else max_per_uid
        )
        self.max_pending = max_pending
        self.max_unauthenticated = max_unauthenticated
        self.max_inflight = max_inflight
        self.accept_rate = float(accept_rate)
        self.accept_burst = accept_burst
        self._sweep_every = min(
            1.0, max(0.05, min(self.auth_timeout, self.frame_timeout, self.idle_timeout) / 4)
        )
        self.tcp = _parse_tcp(tcp)
        self.cookie_file = Path(cookie_file) if cookie_file is not None else None
        self.certfile = certfile
        self.keyfile = keyfile
        # Set by start():
        self.node_name = ""
        self.id = ""
        self.path: Path | None = None
        self.sidecar: Path | None = None
        self.tcp_address: tuple[str, int] | None = None
        self.started = 0.0
        self.frames_dropped = 0
        self.requests = 0
        self.errors = 0
        self.refused = 0
        self.accepted = 0
        self.evicted = 0
        self.timed_out = 0
        self.ops_cancelled = 0
        self._rt: Runtime | None = None
        self._parts: NodeParts | None = None
        self._cookie: bytes | None = None
        self._listeners: list[_Listener] = []
        self._conns: set[_Conn] = set()
        self._waiting: dict[str, dict[_Conn, None]] = {"unix": {}, "tcp": {}}
        self._admitted: set[_Conn] = set()
        self._per_peer: dict[str, int] = {}
        self._opening: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closing = False
        self._logged: set[str] = set()
        self._limited: dict[str, tuple[float, int]] = {}
        self._welcome = b""
        self._inode: tuple[int, int] | None = None
        self._ops: dict[str, Callable[[_Conn, Any, dict[str, Any]], Awaitable[Any]]] = {
            "hello": self._op_hello,
            "status": self._op_status,
            "ps": self._op_ps,
            "info": self._op_info,
            "tree": self._op_tree,
            "reports": self._op_reports,
            "tombstones": self._op_tombstones,
            "tombstone": self._op_tombstone,
            "attach": self._op_attach,
            "detach": self._op_detach,
            "doctor": self._op_doctor,
            "top": self._op_top,
            "terminate_child": functools.partial(self._op_write, "terminate_child"),
            "restart_child": functools.partial(self._op_write, "restart_child"),
            "exit": functools.partial(self._op_write, "exit"),
        }

    def __repr__(self) -> str:
        return f"<ControlServer {self.path or 'not started'}>"

    @property
    def runtime(self) -> Runtime:
        assert self._rt is not None, "the control server is not started"
        return self._rt

    @property
    def parts(self) -> NodeParts:
        assert self._parts is not None, "the control server is not started"
        return self._parts

    # -- service protocol -------------------------------------------------------------

    async def start(self, parts: NodeParts) -> None:
        self._rt = parts.runtime
        self._parts = parts
        self.node_name = parts.name
        self.started = time.time()
        if self.tcp is not None:
            self._cookie = load_or_create_cookie(self.cookie_file or default_cookie_file())
        try:
            await self._start_unix()
        except OSError as exc:
            # A node runs without its control socket rather than not at all.
            _warn(f"suptrace control socket not started for node {self.node_name}: {exc}")
        self._welcome = encode_frame(
            {
                "type": "welcome",
                "protocol": PROTOCOL,
                "auth": None,
                "node": self.node_name,
                "id": self.id,
            }
        )
        if self.tcp is not None:
            await self._start_tcp()
        if self.path is not None:
            self._write_sidecar()

    async def close(self) -> None:
        self._closing = True
        loop = asyncio.get_running_loop()
        for listener in self._listeners:
            if listener.resume is not None:
                listener.resume.cancel()
            loop.remove_reader(listener.sock.fileno())
            listener.sock.close()
        self._listeners.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in list(self._opening):
            task.cancel()
        running = [t for c in self._conns for t in c.ops]
        for conn in list(self._conns):
            conn.stop_streams("node_stopped")
            conn.close()
        if running or self._opening:
            await asyncio.wait([*running, *self._opening], timeout=1.0)
        self._remove_files()

    # -- sockets ----------------------------------------------------------------------

    async def _start_unix(self) -> None:
        directory = self.runtime_dir or runtime_dir()
        ensure_private_dir(directory)
        stem = socket_stem(self.socket_name or self.node_name)
        sock, path, stem = _bind_unix(directory, stem)
        st = os.stat(path)
        self._inode = (st.st_dev, st.st_ino)
        self._listen(sock, "unix", None)
        self.path = path
        self.id = stem
        self.sidecar = path.with_suffix(".json")

    async def _start_tcp(self) -> None:
        assert self.tcp is not None
        host, port = self.tcp
        context = None
        if self.certfile is not None:
            import ssl

            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(os.fspath(self.certfile), os.fspath(self.keyfile or ""))
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.create_server(address[:2], family=family, backlog=_BACKLOG)
        sock.setblocking(False)
        self._listen(sock, "tcp", context)
        bound = sock.getsockname()
        self.tcp_address = (str(bound[0]), int(bound[1]))

    def _listen(self, sock: socket.socket, kind: str, context: Any) -> None:
        listener = _Listener(sock, kind, context, float(self.accept_burst))
        self._listeners.append(listener)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_acceptable, listener)

    def _on_acceptable(self, listener: _Listener) -> None:
        """Accept a few connections per loop turn, at most ``accept_rate`` a second
        (a token bucket): the rest wait in the kernel's backlog, so a burst of
        connections costs the node's loop a bounded share of its time."""
        now = time.monotonic()
        listener.tokens = min(
            float(self.accept_burst), listener.tokens + (now - listener.at) * self.accept_rate
        )
        listener.at = now
        for _ in range(min(_ACCEPT_BATCH, int(listener.tokens))):
            try:
                csock, _ = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                # Out of file descriptors or memory: wait a little instead of spinning.
                self._log_once(
                    f"accept_{exc.errno}",
                    f"suptrace control: node {self.node_name} cannot accept connections "
                    f"now ({exc.strerror or exc}); retrying in 0.1 s",
                )
                self._pause_accepting(listener, 0.1)
                return
            listener.tokens -= 1.0
            self.accepted += 1
            self._open(csock, listener)
        if listener.tokens < 1.0:
            self._pause_accepting(listener, (1.0 - listener.tokens) / self.accept_rate)

    def _pause_accepting(self, listener: _Listener, delay: float) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(listener.sock.fileno())

        def resume() -> None:
            listener.resume = None
            if not self._closing:
                loop.add_reader(listener.sock.fileno(), self._on_acceptable, listener)

        listener.resume = loop.call_later(max(delay, 0.001), resume)

    def _open(self, csock: socket.socket, listener: _Listener) -> None:
        kind = listener.kind
        csock.setblocking(False)
        if kind == "unix":
            uid, problem = _peer_problem(csock)
            if problem is not None:
                self.refused += 1
                with contextlib.suppress(OSError):
                    csock.send(
                        encode_frame(
                            {
                                "id": None,
                                "ok": False,
                                "error": {"code": "forbidden", "message": problem},
                            }
                        )
                    )
                csock.close()
                return
            peer = f"uid:{uid}"
        else:
            peer = "tcp"
            if listener.context is not None and len(self._opening) >= self.max_unauthenticated:
                # TLS handshakes in progress count as unauthenticated peers too.
                self.refused += 1
                csock.close()
                return
        if listener.context is None:
            # Until its first bytes, a connection is a bare socket watched for reading:
            # one that closes without a word (a connect/close burst) never costs a
            # transport or a task.
            conn = _Conn(self, kind, peer)
            conn.raw = csock
            self._connected(conn)
            if not conn.closed:
                asyncio.get_running_loop().add_reader(csock.fileno(), self._raw_readable, conn)
            return
        task = asyncio.get_running_loop().create_task(self._connect(csock, kind, peer, listener))
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    def _raw_readable(self, conn: _Conn) -> None:
        """The first bytes (or the end) of a bare connection."""
        raw = conn.raw
        if raw is None:
            return
        try:
            first = raw.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            first = b""
        if not first:  # it left without a word
            conn.closed = True
            self._disconnected(conn)
            self._forget_raw(conn)
            return
        asyncio.get_running_loop().remove_reader(raw.fileno())
        conn.raw = None
        task = asyncio.get_running_loop().create_task(self._hand_over(raw, conn))
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    def _forget_raw(self, conn: _Conn) -> None:
        raw, conn.raw = conn.raw, None
        if raw is not None:
            asyncio.get_running_loop().remove_reader(raw.fileno())
            raw.close()

    async def _hand_over(self, raw: socket.socket, conn: _Conn) -> None:
        """Give a bare connection a transport; what it sent is still in the socket."""
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: conn, raw)
        except (OSError, ConnectionError):
            raw.close()
            conn.closed = True
            self._disconnected(conn)

    async def _connect(
        self, csock: socket.socket, kind: str, peer: str, listener: _Listener
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: _Conn(self, kind, peer),
                csock,
                ssl=listener.context,
                ssl_handshake_timeout=self.auth_timeout if listener.context is not None else None,
            )
        except (OSError, ConnectionError, TimeoutError, EOFError):
            csock.close()
        except Exception as exc:  # e.g. ssl.SSLError: a peer that does not speak TLS
            csock.close()
            self._log_once("tls", f"suptrace control: a TCP peer failed TLS: {exc}")

    def _warn_limited(self, key: str, message: str) -> None:
        """Log ``message`` at most once a minute per ``key``, with how many were not."""
        now = time.monotonic()
        last, skipped = self._limited.get(key, (-_LOG_EVERY, 0))
        if now - last < _LOG_EVERY:
            self._limited[key] = (last, skipped + 1)
            return
        self._limited[key] = (now, 0)
        _warn(message + (f" ({skipped} more like this in the last minute)" if skipped else ""))

    def _log_once(self, key: str, message: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            _warn(message)

    def _write_sidecar(self) -> None:
        assert self.path is not None and self.sidecar is not None
        data = {
            "node": self.node_name,
            "id": self.id,
            "pid": os.getpid(),
            "started": self.started,
            "socket": str(self.path),
            "protocol": PROTOCOL,
            "tcp": f"{self.tcp_address[0]}:{self.tcp_address[1]}" if self.tcp_address else None,
            "tls": self.certfile is not None,
            "allow_write": self.allow_write,
            "argv": sys.argv[:4],
        }
        tmp = self.sidecar.with_name(f".{self.sidecar.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, self.sidecar)

    def _remove_files(self) -> None:
        """Remove the socket and the ``<node>.json`` sidecar, each on its own: either may
        be gone already (asyncio 3.13 unlinks the socket in ``server.close()``), and a
        file that a successor node now owns is left alone."""
        path, self.path = self.path, None
        if path is None:
            return
        socket_ours = False
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == self._inode:  # still ours, not a successor's
                socket_ours = True
                path.unlink()
        except OSError:  # gone already, or not ours to remove
            pass
        if self.sidecar is not None:
            data = read_sidecar(self.sidecar)
            # Ours by its pid; unreadable only counts as ours when the socket was.
            if (data is None and socket_ours) or (data is not None and data.get("pid") == os.getpid()):
                with contextlib.suppress(OSError):
                    self.sidecar.unlink(missing_ok=True)

    # -- connections ------------------------------------------------------------------

    def _connected(self, conn: _Conn) -> None:
        """A new connection: it waits in its kind's small pool until its first request
        (Unix) or its authentication (TCP); when the pool is full the oldest waiter
        is closed, so clients that never send cannot keep anyone out."""
        if self._closing:
            conn.closed = True
            if conn.transport is not None:
                conn.transport.abort()
            elif conn.raw is not None:
                conn.raw.close()
                conn.raw = None
            return
        pool = self._waiting[conn.kind]
        cap = self.max_pending if conn.kind == "unix" else self.max_unauthenticated
        while len(pool) >= cap:
            oldest = next(iter(pool))
            self.evicted += 1
            oldest.drop("busy", "closed: newer clients were waiting and this one sent no request")
            pool.pop(oldest, None)
        pool[conn] = None
        self._conns.add(conn)
        if conn.authed:
            if conn.transport is not None:
                conn.transport.write(self._welcome)
            elif conn.raw is not None:
                with contextlib.suppress(OSError):
                    conn.raw.send(self._welcome)
        else:
            conn.nonce = new_nonce()
            conn.send(
                {
                    "type": "welcome",
                    "protocol": PROTOCOL,
                    "auth": "hmac-sha256",
                    "nonce": conn.nonce,
                }
            )
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._sweep_every, self._sweep)

    def _disconnected(self, conn: _Conn) -> None:
        self._conns.discard(conn)
        self._waiting[conn.kind].pop(conn, None)
        if conn.admitted:
            conn.admitted = False
            self._admitted.discard(conn)
            self._per_peer[conn.peer] -= 1

    def _admit(self, conn: _Conn, req_id: Any) -> bool:
        """Move a connection from its waiting pool into the clients' pool."""
        self._waiting[conn.kind].pop(conn, None)
        full = len(self._admitted) >= self.max_clients
        peer_full = self._per_peer.get(conn.peer, 0) >= self.max_per_uid
        if full or peer_full:
            victim = self._idle_victim(conn.peer if peer_full and not full else None)
            if victim is None:
                self.refused += 1
                if peer_full and not full:
                    why = (
                        f"{conn.peer} already has {self.max_per_uid} of the node's control "
                        "clients (max_per_uid)"
                    )
                else:
                    why = (
                        f"the node already serves {self.max_clients} control clients (max_clients)"
                    )
                conn.error(req_id, "busy", f"{why}; try again when one has finished")
                conn.close()
                return False
            self.evicted += 1
            victim.drop("busy", "closed: idle while all the node's control client slots were taken")
        conn.admitted = True
        self._admitted.add(conn)
        self._per_peer[conn.peer] = self._per_peer.get(conn.peer, 0) + 1
        return True

    def _idle_victim(self, peer: str | None) -> _Conn | None:
        """The admitted client idle the longest (no request running, no stream),
        if it has been idle for a second at least."""
        limit = time.monotonic() - _EVICT_IDLE
        best: _Conn | None = None
        for conn in self._admitted:
            if conn.ops or conn.streams or conn.last_active > limit:
                continue
            if peer is not None and conn.peer != peer:
                continue
            if best is None or conn.last_active < best.last_active:
                best = conn
        return best

    def _sweep(self) -> None:
        """Close the connections past a deadline (runs while there are connections)."""
        self._sweeper = None
        now = time.monotonic()
        for conn in list(self._conns):
            if conn.closed:
                continue
            why = None
            if not conn.admitted and now - conn.opened > self.auth_timeout:
                what = "authenticate" if conn.kind == "tcp" else "send a request"
                why = f"a client must {what} within {self.auth_timeout:g}s of connecting"
                why += " (auth_timeout)"
            elif (
                conn.frame_started
                and not conn.paused
                and now - conn.frame_started > self.frame_timeout
            ):
                why = (
                    f"a frame must arrive in full within {self.frame_timeout:g}s of its first "
                    "byte (frame_timeout)"
                )
            elif (
                conn.admitted
                and not conn.ops
                and not conn.streams
                and now - conn.last_active > self.idle_timeout
            ):
                why = f"no request for {self.idle_timeout:g}s (idle_timeout)"
            if why is not None:
                self.timed_out += 1
                conn.drop("timeout", f"closed: {why}")
        if self._conns and not self._closing:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._sweep_every, self._sweep)

    def _frame(self, conn: _Conn, body: bytes) -> None:
        """One complete frame from ``conn``."""
        try:
            request = decode_body(body)
        except ProtocolError as exc:
            self.errors += 1
            if not conn.authed:
                conn.error(None, "unauthenticated", f"authenticate first (op auth): {exc.message}")
                conn.close()
                return
            if not conn.admitted and not self._admit(conn, None):
                return
            conn.error(None, exc.code, exc.message)
            return
        if conn.authed and not conn.admitted and not self._admit(conn, request.get("id")):
            return
        self._handle(conn, request)

    def _handle(self, conn: _Conn, request: dict[str, Any]) -> None:
        req_id = request.get("id")
        if isinstance(req_id, bool) or not (
            (isinstance(req_id, int) and abs(req_id) < 1 << 63)
            or (isinstance(req_id, str) and len(req_id) <= _MAX_ID)
        ):
            self.errors += 1
            conn.error(None, "bad_request", "a request needs an id: an int or a short string")
            if not conn.authed:
                conn.close()  # before auth, one mistake ends the conversation
            return
        if request.get("v") != PROTOCOL:
            self.errors += 1
            conn.error(
                req_id,
                "bad_version",
                f"this node speaks control protocol {PROTOCOL}, not {ops.show(request.get('v'))}",
                supported=[PROTOCOL],
            )
            if not conn.authed:
                conn.close()
            return
        op = request.get("op")
        args = request.get("args", {})
        if not isinstance(op, str) or not isinstance(args, dict):
            self.errors += 1
            conn.error(req_id, "bad_request", "a request is {v, id, op: str, args: object}")
            if not conn.authed:
                conn.close()
            return
        if not conn.authed:
            if op == "auth":
                self._auth(conn, req_id, args)
            else:
                self.refused += 1
                conn.error(req_id, "unauthenticated", "authenticate first (op auth)")
                conn.close()
            return
        handler = self._ops.get(op)
        if handler is None:
            self.errors += 1
            conn.error(
                req_id,
                "unknown_op",
                f"unknown operation {op[:40]!r}; this node knows: {', '.join(sorted(self._ops))}",
            )
            return
        if op in WRITE_OPS and not self.allow_write:
            self.refused += 1
            conn.error(
                req_id,
                "forbidden",
                f"{op} changes the node, and node {self.node_name} is read-only to its control "
                "socket; start it with control={'allow_write': True} to allow it",
            )
            return
        self.requests += 1
        task = asyncio.get_running_loop().create_task(self._run(conn, req_id, op, handler, args))
        conn.ops.add(task)
        task.add_done_callback(conn._op_done)

    async def _run(
        self,
        conn: _Conn,
        req_id: Any,
        op: str,
        handler: Callable[[_Conn, Any, dict[str, Any]], Awaitable[Any]],
        args: dict[str, Any],
    ) -> None:
        """One request, as its own task: cancelled when its client leaves."""
        timeout = self.op_timeout + (_sampling_time(args) if op == "doctor" else 0.0)
        try:
            async with asyncio.timeout(timeout):
                result = await handler(conn, req_id, args)
        except ops.OpError as exc:
            conn.error(req_id, exc.code, exc.message, **exc.detail)
            return
        except TimeoutError:
            conn.error(req_id, "timeout", f"{op} took longer than {timeout:.0f}s (op_timeout)")
            return
        except asyncio.CancelledError:
            self.ops_cancelled += 1
            raise
        except Exception as exc:  # a bug here must never take the node down
            self.errors += 1
            _warn(f"suptrace control: {op} failed: {type(exc).__name__}: {ops.show(exc)}")
            conn.error(
                req_id,
                "internal",
                f"{op} failed inside the node: {type(exc).__name__}: {ops.show(exc)}",
            )
            return
        conn.last_active = time.monotonic()
        conn.send({"id": req_id, "ok": True, "result": result})

    def _auth(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> None:
        assert self._cookie is not None
        client_nonce = args.get("nonce")
        if not isinstance(client_nonce, str) or not 16 <= len(client_nonce) <= 128:
            self.refused += 1
            conn.error(req_id, "unauthenticated", "auth needs a client nonce and a proof")
            conn.close()
            return
        expected = client_proof(self._cookie, conn.nonce, client_nonce)
        if not proofs_equal(args.get("proof"), expected):
            self.refused += 1
            conn.error(req_id, "unauthenticated", "wrong proof: the cookies differ")
            conn.close()
            return
        conn.authed = True
        conn.peer = "tcp"
        if not self._admit(conn, req_id):
            return
        proof = server_proof(self._cookie, conn.nonce, client_nonce)
        conn.send({"id": req_id, "ok": True, "result": {"proof": proof, "node": self.node_name}})

    # -- operations -------------------------------------------------------------------

    def limits(self) -> dict[str, Any]:
        return {
            "max_frame": self.max_frame,
            "max_clients": self.max_clients,
            "max_streams": self.max_streams,
            "max_tracers": self.max_tracers,
            "max_events": self.max_events,
            "max_duration": self.max_duration,
            "max_rate": self.max_rate,
            "max_term": self.max_term,
            "high_water": self.high_water,
            "max_per_uid": self.max_per_uid,
            "max_pending": self.max_pending,
            "max_unauthenticated": self.max_unauthenticated,
            "max_inflight": self.max_inflight,
            "auth_timeout": self.auth_timeout,
            "frame_timeout": self.frame_timeout,
            "idle_timeout": self.idle_timeout,
            "accept_rate": self.accept_rate,
        }

    async def _op_hello(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        from suptrace._version import __version__

        return {
            "protocol": PROTOCOL,
            "node": self.node_name,
            "id": self.id,
            "pid": os.getpid(),
            "started": self.started,
            "version": __version__,
            "python": sys.version.split()[0],
            "allow_write": self.allow_write,
            "ops": sorted(self._ops),
            "limits": self.limits(),
        }

    async def _op_status(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        rt = self.runtime
        tracers = running_tracers(rt)
        streams = [s for c in self._conns for s in c.streams.values()]
        stats = []
        for t in tracers:
            s = t.stats()
            s["traced_pids"] = [str(p) for p in s.get("traced_pids", ())]
            stats.append(s)
        return {
            "node": self.node_name,
            "processes": sum(1 for p in rt.procs.values() if p.alive),
            "registered": len(rt.names),
            "clients": len(self._conns),
            "streams": {
                "attach": sum(1 for s in streams if s.kind == "attach"),
                "reports": sum(1 for s in streams if s.kind == "reports"),
            },
            "tracers": stats,
            "traced_processes": sum(1 for p in rt.procs.values() if p.tracers),
            "event_hooks": len(rt.hooks),
            "spawn_hooks": len(rt.spawn_hooks),
            "hook_errors": rt.hook_errors,
            "frames_dropped": self.frames_dropped,
            "requests": self.requests,
            "errors": self.errors,
            "refused": self.refused,
            "connections": self._connections(),
            "allow_write": self.allow_write,
            "limits": self.limits(),
            "telemetry": ops.telemetry_signals(self.parts.telemetry),
        }

    def _connections(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "waiting": {kind: len(pool) for kind, pool in self._waiting.items()},
            "admitted": len(self._admitted),
            "requests_running": sum(len(c.ops) for c in self._conns),
            "requests_cancelled": self.ops_cancelled,
            "timed_out": self.timed_out,
            "evicted": self.evicted,
        }

    async def _op_ps(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        system = _opt(args, "system", bool, False)
        limit = _opt(args, "limit", int, 10_000)
        tasks = _opt(args, "tasks", bool, False)
        return ops.ps(self.runtime, system, max(1, limit), tasks, self.parts.tasks)

    async def _op_info(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        target = _req(args, "target", str)
        return await ops.info(self.runtime, target, self.call_timeout, 200)

    def _reports(self) -> Reports | None:
        return self.parts.reports

    async def _op_tree(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        return await ops.tree(self.runtime, self._reports(), self.call_timeout)

    async def _op_top(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        limit = max(1, min(_opt(args, "limit", int, 100), 10_000))
        report_limit = max(0, min(_opt(args, "reports", int, 5), 50))
        sort = _opt(args, "sort", str, "m")
        if sort not in ops.TOP_SORTS:
            raise ops.OpError("bad_args", f"top: sort must be one of m, s, r, y, not {sort!r}")
        # The message counts of this connection's last refresh: messages/s since then.
        previous = getattr(conn, "top_counts", None)
        result, conn.top_counts = ops.top(  # type: ignore[attr-defined]
            self.runtime, self._reports(), limit, report_limit, sort, previous
        )
        return result

    async def _op_tombstones(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        stones = reversed(list(self.runtime.tombstones.values()))
        return {"tombstones": [ops.tombstone_json(s) for s in stones]}

    async def _op_tombstone(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        name = _req(args, "name", str)
        stone = self.runtime.tombstones.get(name)
        if stone is None:
            raise ops.OpError(
                "not_found", f"no tombstone for {ops.show(name)} on node {self.node_name}"
            )
        return ops.tombstone_json(stone)

    async def _op_doctor(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        samples = _opt(args, "samples", int, 3)
        interval = _opt(args, "interval", (int, float), 0.5)
        if not 1 <= samples <= 20 or not 0 < interval <= 10:
            raise ops.OpError("bad_args", "doctor: samples must be 1..20 and interval 0..10 s")
        stuck_after = float(_opt(args, "stuck_after", (int, float), 30.0))
        mailbox_min = _opt(args, "mailbox_min", int, 10)
        return await ops.doctor(
            self.runtime,
            self._reports(),
            samples=samples,
            interval=float(interval),
            stuck_after=stuck_after,
            mailbox_min=mailbox_min,
            timeout=self.call_timeout,
            call_timeouts=self.parts.call_timeouts,
            telemetry=self.parts.telemetry,
        )

    async def _op_write(self, op: str, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        if op == "exit":
            _req(args, "target", str)
            reason = _req(args, "reason", str)
            if not reason or len(reason) > 200:
                raise ops.OpError("bad_args", "exit: reason must be a non-empty string (<= 200)")
        else:
            _req(args, "supervisor", str)
            _req(args, "child", str)
        return await ops.write_op(self.runtime, op, args, self.call_timeout)

    async def _op_reports(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        reports = self._reports()
        if reports is None:
            raise ops.OpError("not_found", f"node {self.node_name} runs without reports")
        kinds_arg = _opt_texts(args, "kinds", None)
        kinds = None
        if kinds_arg is not None:
            bad = [k for k in kinds_arg if k not in ops.REPORT_KINDS]
            if bad or not kinds_arg:
                raise ops.OpError(
                    "bad_args",
                    f"unknown report kind(s) {ops.show(bad)}; "
                    f"kinds: {', '.join(sorted(ops.REPORT_KINDS))}",
                )
            kinds = frozenset(kinds_arg)
        limit = max(0, min(_opt(args, "limit", int, 100), reports.history.maxlen or 1000))
        chosen = [r for r in reports.history if ops.report_matches(r, kinds)]
        result: dict[str, Any] = {
            "reports": [ops.report_json(r) for r in chosen[-limit:]] if limit else [],
            "total": len(chosen),
        }
        if _opt(args, "follow", bool, False):
            self._check_stream_room(conn, req_id)
            stream = _ReportStream(conn, req_id, kinds, 400)
            stream.unsubscribe = reports.add_handler(stream.on_report)
            conn.streams[req_id] = stream
            result["stream"] = req_id
        return result

    def _check_stream_room(self, conn: _Conn, req_id: Any) -> None:
        if req_id in conn.streams:
            raise ops.OpError("bad_request", f"a stream with id {req_id!r} is already open")
        if len(conn.streams) >= self.max_streams:
            raise ops.OpError(
                "busy", f"this connection already has {self.max_streams} streams (max_streams)"
            )

    async def _op_attach(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        rt = self.runtime
        target_text = _req(args, "target", str)
        flags = _opt_texts(args, "flags", ["send", "receive", "procs"])
        if not flags:
            raise ops.OpError("bad_args", f"flags: a list of {', '.join(FLAGS)} or event kinds")
        calls = _opt_texts(args, "call", [], most=32)
        follow = _opt(args, "follow_name", bool, True)
        limits = {
            "max_events": _capped(args, "max_events", 1000, self.max_events, int),
            "duration": _capped(args, "duration", 60.0, self.max_duration, float),
            "rate": _capped(args, "rate", 1000.0, self.max_rate, float),
        }
        term_limit = int(_capped(args, "term_limit", 200, self.max_term, int))
        self._check_stream_room(conn, req_id)
        active = sum(1 for c in self._conns for s in c.streams.values() if s.kind == "attach")
        if active >= self.max_tracers:
            raise ops.OpError(
                "busy", f"node {self.node_name} already runs {self.max_tracers} attach sessions"
            )
        target: Any
        if target_text in ("all", "new"):
            target = target_text
        else:
            proc = ops.find_process(rt, target_text)
            if proc is None:
                raise ops.not_found(rt, target_text)
            target = proc.name if proc.name == target_text else proc.pid
        set_on_spawn = _opt(args, "set_on_spawn", bool, False)
        for spec in calls:
            if spec.partition(":")[0] not in sys.modules:
                raise ops.OpError(
                    "bad_args",
                    f"--call {ops.show(spec)}: only functions of modules the node has already imported "
                    "can be traced (the control socket never imports code)",
                )
            try:
                resolve_function(spec)
            except Exception as exc:
                raise ops.OpError(
                    "bad_args", f"--call {ops.show(spec)}: {ops.show(exc, 300)}"
                ) from None
        stream = _TraceStream(conn, req_id, term_limit)
        try:
            tracer = Tracer(
                rt,
                target,
                flags,
                max_events=int(limits["max_events"]),
                duration=limits["duration"],
                rate=limits["rate"],
                handler=stream.on_event,
                follow_name=follow,
                set_on_spawn=set_on_spawn,
                term_limit=term_limit,
                on_stop=stream.on_stop,
            )
        except (ValueError, TypeError) as exc:
            raise ops.OpError("bad_args", str(exc)[:500]) from None
        stream.tracer = tracer
        conn.streams[req_id] = stream
        try:
            tracer.start()
            if calls:
                trace_calls(calls, tracer=tracer)  # undone by tracer.stop()
        except Exception as exc:
            conn.streams.pop(req_id, None)
            stream.ended = True
            tracer.stop("failed")
            raise ops.OpError("bad_args", f"attach {target_text}: {ops.show(exc, 300)}") from None
        return {
            "stream": req_id,
            "target": str(target),
            "pid": next((str(p) for p in tracer.stats()["traced_pids"]), None),
            "kinds": sorted(tracer.kinds),
            "limits": {**limits, "term_limit": term_limit},
            "follow_name": follow,
        }

    async def _op_detach(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        stream_id = _opt(args, "stream", (int, str), None)
        stream = conn.streams.get(stream_id)
        if stream is None:
            if stream_id is None:
                conn.stop_streams("detached")
                return {"detached": "all"}
            raise ops.OpError(
                "not_found", f"no open stream {ops.show(stream_id)} on this connection"
            )
        stream.stop("detached")
        return {"detached": stream_id}


# -- helpers --------------------------------------------------------------------------------


def _parse_tcp(tcp: Any) -> tuple[str, int] | None:
    if tcp is None or tcp is False:
        return None
    if tcp is True:
        return ("127.0.0.1", 0)
    if isinstance(tcp, int):
        return ("127.0.0.1", tcp)
    if isinstance(tcp, tuple) and len(tcp) == 2:
        return (str(tcp[0]), int(tcp[1]))
    if isinstance(tcp, str):
        host, sep, port = tcp.rpartition(":")
        if sep and port.isdigit():
            return (host.strip("[]") or "127.0.0.1", int(port))
    raise ValueError(
        f"control option tcp must be 'host:port', (host, port), a port or True, got {tcp!r}"
    )


#: Longest string argument accepted (names, pid texts, specs, reasons).
_MAX_TEXT = 1000
#: Largest magnitude of a number argument (no limit of the node needs more).
_MAX_NUMBER = 2**53


def _typename(kinds: tuple[type, ...]) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if float in kinds:
        kinds = tuple(k for k in kinds if k is not int)
    return " or ".join(names.get(k, f"a {k.__name__}") for k in kinds)


def _check(key: str, value: Any, kinds: tuple[type, ...]) -> Any:
    """``value`` if it is one of ``kinds`` (bool is not an int, an int is a
    float, numbers are finite and not huge, strings short), else `OpError`."""
    numeric = int in kinds or float in kinds
    if isinstance(value, bool):
        ok = bool in kinds
    elif isinstance(value, int):
        ok = numeric
    else:
        ok = isinstance(value, kinds)
    if not ok:
        raise ops.OpError(
            "bad_args",
            f"argument {key!r} must be {_typename(kinds)}, got {type(value).__name__} "
            f"{ops.show(value, 60)}",
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ops.OpError(
            "bad_args", f"argument {key!r} must be a finite number, got {ops.show(value)}"
        )
    if numeric and not isinstance(value, bool) and isinstance(value, (int, float)):
        if abs(value) > _MAX_NUMBER:
            raise ops.OpError(
                "bad_args", f"argument {key!r} is out of range ({ops.show(value, 30)})"
            )
        if int in kinds and float not in kinds:
            value = int(value)
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        raise ops.OpError(
            "bad_args", f"argument {key!r} is too long ({len(value)} characters, max {_MAX_TEXT})"
        )
    return value


def _req(args: dict[str, Any], key: str, kind: type) -> Any:
    value = args.get(key)
    if value is None:
        raise ops.OpError("bad_args", f"argument {key!r} is required ({_typename((kind,))})")
    return _check(key, value, (kind,))


def _opt(args: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = args.get(key)
    if value is None:
        return default
    return _check(key, value, kind if isinstance(kind, tuple) else (kind,))


def _opt_texts(args: dict[str, Any], key: str, default: Any, most: int = 64) -> Any:
    """An optional list of short strings."""
    value = _opt(args, key, list, None)
    if value is None:
        return default
    if len(value) > most:
        raise ops.OpError("bad_args", f"argument {key!r} has {len(value)} items (max {most})")
    for item in value:
        if not isinstance(item, str) or len(item) > 200:
            raise ops.OpError(
                "bad_args",
                f"argument {key!r} must be a list of short strings, got an item "
                f"{ops.show(item, 60)}",
            )
    return value


def _capped(args: dict[str, Any], key: str, default: float, cap: float, kind: type) -> Any:
    value = _opt(args, key, (int, float), default)
    if value <= 0:
        raise ops.OpError("bad_args", f"argument {key!r} must be > 0, got {ops.show(value)}")
    return kind(min(value, cap))


def _sampling_time(args: dict[str, Any]) -> float:
    """How long a doctor request samples (0 when its arguments are bad: the op refuses them)."""
    samples = args.get("samples", 3)
    interval = args.get("interval", 0.5)
    if (
        isinstance(samples, int)
        and not isinstance(samples, bool)
        and isinstance(interval, (int, float))
        and not isinstance(interval, bool)
        and math.isfinite(interval)
    ):
        return max(0.0, min(max(samples, 0), 20) * max(0.0, min(float(interval), 10.0)))
    return 0.0


def _peer_problem(sock: socket.socket) -> tuple[int, str | None]:
    """The peer uid of a Unix connection, and why it may not talk to this node
    (None: it may)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return -1, None  # no peer credentials here: the 0700 directory is the guard
    fmt = "3i"
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize(fmt))
    except OSError:
        return -1, "the peer's credentials cannot be read"
    _pid, uid, _gid = struct.unpack(fmt, raw)
    if uid in (os.getuid(), 0):
        return uid, None
    return uid, f"peer uid {uid} may not use this control socket (it belongs to uid {os.getuid()})"


def _bind_unix(directory: Path, stem: str) -> tuple[socket.socket, Path, str]:
    """Bind ``<stem>.sock``; a stale socket of a dead node is replaced, a live
    node's name gets ``-<pid>`` (then ``-<pid>-<n>``) appended."""
    candidates = [
        stem,
        f"{stem}-{os.getpid()}",
        *(f"{stem}-{os.getpid()}-{n}" for n in range(2, 9)),
    ]
    for candidate in candidates:
        path = directory / f"{candidate}.sock"
        if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
            raise OSError(
                errno.ENAMETOOLONG,
                f"control socket path {path} is longer than a Unix socket allows; "
                "set SUPTRACE_RUNTIME_DIR to a shorter directory",
            )
        for _attempt in range(2):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(os.fspath(path))
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRINUSE:
                    raise
                if is_stale_socket(path):
                    with contextlib.suppress(OSError):
                        path.unlink()
                        path.with_suffix(".json").unlink(missing_ok=True)
                    continue
                break
            os.chmod(path, 0o600)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
            return sock, path, candidate
    raise OSError(errno.EADDRINUSE, f"no free control socket name for {stem} in {directory}")
