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

Every safety limit is a named option with a default (see `ControlServer`). A
client that does not read never slows the node: stream items that find its
write buffer above ``high_water`` are dropped and counted, and a connection
whose buffer passes ``hard_limit`` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suptrace.core.runtime import Runtime
from suptrace.node import control_ops as ops
from suptrace.node.control_protocol import (
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
from suptrace.observers.tracer import FLAGS, Tracer

if TYPE_CHECKING:
    from suptrace.node.node import Node

__all__ = ["ControlServer"]

#: Operations that change the node: refused unless ``allow_write``.
WRITE_OPS = frozenset({"terminate_child", "restart_child", "exit"})
_MAX_ID = 64
#: Longest path a Unix socket address may have (Linux: 108 bytes with the NUL).
_MAX_SOCKET_PATH = 107


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


class _Conn:
    """One client connection."""

    def __init__(
        self,
        server: ControlServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        transport_kind: str,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.authed = transport_kind == "unix"  # TCP clients must prove the cookie first
        self.nonce = new_nonce()
        self.streams: dict[Any, _Stream] = {}
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    def _buffered(self) -> int:
        transport = self.writer.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def send(self, obj: dict[str, Any]) -> bool:
        """Queue a frame; a client that stopped reading long ago is disconnected."""
        if self.closed or self.writer.is_closing():
            return False
        if self._buffered() > self.server.hard_limit:
            self.abort("the client does not read what the node sends")
            return False
        try:
            self.writer.write(encode_frame(obj))
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

    def abort(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        _warn(f"suptrace control: dropped a client of node {self.server.node_name}: {why}")
        self.stop_streams("client_gone")
        transport = self.writer.transport
        if transport is not None:
            transport.abort()


class ControlServer:
    """A node's control socket. ``Node(control=...)`` creates it; options:

    ================  ==========  ===================================================
    option            default     meaning
    ================  ==========  ===================================================
    ``runtime_dir``   see below   directory of the socket and its sidecar
    ``name``          node name   socket file name (``<name>.sock``)
    ``allow_write``   False       allow terminate_child / restart_child / exit
    ``max_clients``   16          connections at once (more get ``busy``)
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
    ``auth_timeout``  10 s        TCP: time to authenticate
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
        auth_timeout: float = 10.0,
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
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"control option {label} must be an int > 0, got {value!r}")
        for label, fvalue in (
            ("max_duration", max_duration),
            ("max_rate", max_rate),
            ("op_timeout", op_timeout),
            ("call_timeout", call_timeout),
            ("auth_timeout", auth_timeout),
        ):
            if isinstance(fvalue, bool) or not isinstance(fvalue, (int, float)) or fvalue <= 0:
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
        self._rt: Runtime | None = None
        self._cookie: bytes | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._conns: set[_Conn] = set()
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

    # -- service protocol -------------------------------------------------------------

    async def start(self, node: Node) -> None:
        rt = node.runtime
        self._rt = rt
        self.node_name = node.name
        self.started = time.time()
        rt.services["control"] = self
        if self.tcp is not None:
            self._cookie = load_or_create_cookie(self.cookie_file or default_cookie_file())
        try:
            await self._start_unix()
        except OSError as exc:
            # A node runs without its control socket rather than not at all.
            _warn(f"suptrace control socket not started for node {self.node_name}: {exc}")
        if self.tcp is not None:
            await self._start_tcp()
        if self.path is not None:
            self._write_sidecar()

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for conn in list(self._conns):
            conn.stop_streams("node_stopped")
            conn.closed = True
            with contextlib.suppress(Exception):
                conn.writer.close()
        tasks = [c.task for c in self._conns if c.task is not None and not c.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()
        self._remove_files()
        if self._rt is not None and self._rt.services.get("control") is self:
            del self._rt.services["control"]

    # -- sockets ----------------------------------------------------------------------

    async def _start_unix(self) -> None:
        directory = self.runtime_dir or runtime_dir()
        ensure_private_dir(directory)
        stem = socket_stem(self.socket_name or self.node_name)
        sock, path, stem = _bind_unix(directory, stem)
        try:
            server = await asyncio.start_unix_server(
                lambda r, w: self._accept(r, w, "unix"), sock=sock
            )
        except BaseException:
            sock.close()
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        st = os.stat(path)
        self._inode = (st.st_dev, st.st_ino)
        self._servers.append(server)
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
        server = await asyncio.start_server(
            lambda r, w: self._accept(r, w, "tcp"), host, port, ssl=context
        )
        self._servers.append(server)
        address = server.sockets[0].getsockname()
        self.tcp_address = (str(address[0]), int(address[1]))

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

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, kind: str
    ) -> None:
        conn = _Conn(self, reader, writer, kind)
        conn.task = asyncio.current_task()
        if kind == "unix":
            problem = _peer_problem(writer)
            if problem is not None:
                self.refused += 1
                conn.error(None, "forbidden", problem)
                await _close(writer)
                return
        if len(self._conns) >= self.max_clients:
            self.refused += 1
            conn.error(
                None,
                "busy",
                f"the node already serves {self.max_clients} control clients (max_clients)",
            )
            await _close(writer)
            return
        self._conns.add(conn)
        try:
            await self._serve(conn)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.discard(conn)
            conn.stop_streams("client_gone")
            conn.closed = True
            await _close(writer)

    async def _serve(self, conn: _Conn) -> None:
        welcome: dict[str, Any] = {"type": "welcome", "protocol": PROTOCOL}
        if conn.authed:
            welcome.update(auth=None, node=self.node_name, id=self.id)
        else:
            welcome.update(auth="hmac-sha256", nonce=conn.nonce)
        conn.send(welcome)
        reader = conn.reader
        while not conn.closed:
            if conn.authed:
                header = await reader.readexactly(HEADER.size)
            else:
                header = await asyncio.wait_for(reader.readexactly(HEADER.size), self.auth_timeout)
            (size,) = HEADER.unpack(header)
            if size > self.max_frame:
                self.errors += 1
                conn.error(
                    None,
                    "frame_too_large",
                    f"a frame of {size} bytes is over this node's max_frame of {self.max_frame}; "
                    "closing the connection",
                )
                return
            if not conn.authed:
                body = await asyncio.wait_for(reader.readexactly(size), self.auth_timeout)
            else:
                body = await reader.readexactly(size)
            try:
                request = decode_body(body)
            except ProtocolError as exc:
                self.errors += 1
                conn.error(None, exc.code, exc.message)
                continue
            await self._handle(conn, request)

    async def _handle(self, conn: _Conn, request: dict[str, Any]) -> None:
        req_id = request.get("id")
        if isinstance(req_id, bool) or not (
            isinstance(req_id, int) or (isinstance(req_id, str) and len(req_id) <= _MAX_ID)
        ):
            self.errors += 1
            conn.error(None, "bad_request", "a request needs an id: an int or a short string")
            return
        if request.get("v") != PROTOCOL:
            self.errors += 1
            conn.error(
                req_id,
                "bad_version",
                f"this node speaks control protocol {PROTOCOL}, not {request.get('v')!r}",
                supported=[PROTOCOL],
            )
            return
        op = request.get("op")
        args = request.get("args", {})
        if not isinstance(op, str) or not isinstance(args, dict):
            self.errors += 1
            conn.error(req_id, "bad_request", "a request is {v, id, op: str, args: object}")
            return
        if not conn.authed:
            if op == "auth":
                self._auth(conn, req_id, args)
            else:
                self.refused += 1
                conn.error(req_id, "unauthenticated", "authenticate first (op auth)")
                conn.closed = True
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
        timeout = self.op_timeout + (_sampling_time(args) if op == "doctor" else 0.0)
        try:
            result = await asyncio.wait_for(handler(conn, req_id, args), timeout)
        except ops.OpError as exc:
            conn.error(req_id, exc.code, exc.message, **exc.detail)
            return
        except TimeoutError:
            conn.error(req_id, "timeout", f"{op} took longer than {timeout:.0f}s (op_timeout)")
            return
        except Exception as exc:  # a bug here must never take the node down
            self.errors += 1
            _warn(f"suptrace control: {op} failed: {type(exc).__name__}: {exc}")
            conn.error(
                req_id, "internal", f"{op} failed inside the node: {type(exc).__name__}: {exc}"
            )
            return
        conn.send({"id": req_id, "ok": True, "result": result})
        with contextlib.suppress(ConnectionError, RuntimeError):
            await asyncio.wait_for(conn.writer.drain(), self.op_timeout)

    def _auth(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> None:
        assert self._cookie is not None
        client_nonce = args.get("nonce")
        if not isinstance(client_nonce, str) or not 16 <= len(client_nonce) <= 128:
            self.refused += 1
            conn.error(req_id, "unauthenticated", "auth needs a client nonce and a proof")
            conn.closed = True
            return
        expected = client_proof(self._cookie, conn.nonce, client_nonce)
        if not proofs_equal(args.get("proof"), expected):
            self.refused += 1
            conn.error(req_id, "unauthenticated", "wrong proof: the cookies differ")
            conn.closed = True
            return
        conn.authed = True
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
        }

    async def _op_hello(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        from suptrace import __version__

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
        tracers = list(rt.services.get("tracers", ()))
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
            "allow_write": self.allow_write,
            "limits": self.limits(),
            "telemetry": ops.telemetry_signals(rt),
        }

    async def _op_ps(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        system = _opt(args, "system", bool, False)
        limit = _opt(args, "limit", int, 10_000)
        tasks = _opt(args, "tasks", bool, False)
        return ops.ps(self.runtime, system, max(1, limit), tasks)

    async def _op_info(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        target = _req(args, "target", str)
        return await ops.info(self.runtime, target, self.call_timeout, 200)

    def _reports(self) -> Reports | None:
        service = self.runtime.services.get("reports")
        return service if isinstance(service, Reports) else None

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
            raise ops.OpError("not_found", f"no tombstone for {name!r} on node {self.node_name}")
        return ops.tombstone_json(stone)

    async def _op_doctor(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        samples = _opt(args, "samples", int, 3)
        interval = _opt(args, "interval", (int, float), 0.5)
        if not 1 <= samples <= 20 or not 0 < interval <= 10:
            raise ops.OpError("bad_args", "doctor: samples must be 1..20 and interval 0..10 s")
        return await ops.doctor(
            self.runtime,
            self._reports(),
            samples=samples,
            interval=float(interval),
            stuck_after=float(_opt(args, "stuck_after", (int, float), 30.0)),
            mailbox_min=_opt(args, "mailbox_min", int, 10),
            timeout=self.call_timeout,
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
        kinds_arg = _opt(args, "kinds", list, None)
        kinds = None
        if kinds_arg is not None:
            bad = [k for k in kinds_arg if k not in ops.REPORT_KINDS]
            if bad or not kinds_arg:
                raise ops.OpError(
                    "bad_args",
                    f"unknown report kind(s) {bad}; kinds: {', '.join(sorted(ops.REPORT_KINDS))}",
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
        flags = _opt(args, "flags", list, ["send", "receive", "procs"])
        if not flags or not all(isinstance(f, str) for f in flags):
            raise ops.OpError("bad_args", f"flags: a list of {', '.join(FLAGS)} or event kinds")
        calls = _opt(args, "call", list, [])
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
        for spec in calls:
            if not isinstance(spec, str) or spec.partition(":")[0] not in sys.modules:
                raise ops.OpError(
                    "bad_args",
                    f"--call {spec!r}: only functions of modules the node has already imported "
                    "can be traced (the control socket never imports code)",
                )
            try:
                resolve_function(spec)
            except ValueError as exc:
                raise ops.OpError("bad_args", str(exc)) from None
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
                set_on_spawn=_opt(args, "set_on_spawn", bool, False),
                term_limit=term_limit,
                on_stop=stream.on_stop,
            )
        except ValueError as exc:
            raise ops.OpError("bad_args", str(exc)) from None
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
            raise ops.OpError("bad_args", f"attach {target_text}: {exc}") from None
        return {
            "stream": req_id,
            "target": str(target),
            "pid": next((str(p) for p in tracer.stats()["traced_pids"]), None),
            "kinds": sorted(tracer.kinds),
            "limits": {**limits, "term_limit": term_limit},
            "follow_name": follow,
        }

    async def _op_detach(self, conn: _Conn, req_id: Any, args: dict[str, Any]) -> Any:
        stream_id = args.get("stream")
        stream = conn.streams.get(stream_id)
        if stream is None:
            if stream_id is None:
                conn.stop_streams("detached")
                return {"detached": "all"}
            raise ops.OpError("not_found", f"no open stream {stream_id!r} on this connection")
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


def _req(args: dict[str, Any], key: str, kind: type) -> Any:
    value = args.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ops.OpError("bad_args", f"argument {key!r} is required ({kind.__name__})")
    return value


def _opt(args: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = args.get(key)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise ops.OpError("bad_args", f"argument {key!r} must be {names}, got {value!r}")
    return value


def _capped(args: dict[str, Any], key: str, default: float, cap: float, kind: type) -> Any:
    value = _opt(args, key, (int, float), default)
    if value <= 0:
        raise ops.OpError("bad_args", f"argument {key!r} must be > 0, got {value!r}")
    return kind(min(value, cap))


def _sampling_time(args: dict[str, Any]) -> float:
    samples = args.get("samples", 3)
    interval = args.get("interval", 0.5)
    if isinstance(samples, int) and isinstance(interval, (int, float)):
        return max(0.0, min(samples, 20) * min(float(interval), 10.0))
    return 0.0


def _peer_problem(writer: asyncio.StreamWriter) -> str | None:
    """Why the peer of a Unix connection may not talk to this node (None: it may)."""
    sock = writer.get_extra_info("socket")
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None  # no peer credentials here: the 0700 directory is the guard
    fmt = "3i"
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize(fmt))
    _pid, uid, _gid = struct.unpack(fmt, raw)
    if uid in (os.getuid(), 0):
        return None
    return f"peer uid {uid} may not use this control socket (it belongs to uid {os.getuid()})"


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
            sock.listen(64)
            sock.setblocking(False)
            return sock, path, candidate
    raise OSError(errno.EADDRINUSE, f"no free control socket name for {stem} in {directory}")


async def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 1.0)
