"""The control server: its pools of connections, its deadlines and its dispatch.

`ControlServer` owns the listeners (`suptrace.node.control.transport`) and the
connections (`suptrace.node.control.connection`). A new connection waits in
its kind's small pool until it sent a request (Unix) or authenticated (TCP);
then it takes one of ``max_clients`` slots, at most ``max_per_uid`` per peer. A
request is checked (id, protocol version, shape, authentication), routed
through the table of operations (`suptrace.node.control.handlers.OPS`),
refused if it writes on a read-only node, and run as its own task within
``op_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suptrace.core.runtime import Runtime
from suptrace.node.control.connection import Connection
from suptrace.node.control.errors import OpError, show
from suptrace.node.control.handlers import OPS, Op
from suptrace.node.control.log import Warnings, warn
from suptrace.node.control.options import ControlOptions, options_table
from suptrace.node.control.protocol import (
    PROTOCOL,
    ProtocolError,
    client_proof,
    decode_body,
    default_cookie_file,
    encode_frame,
    ensure_private_dir,
    error_frame,
    load_or_create_cookie,
    new_nonce,
    proofs_equal,
    reply_frame,
    runtime_dir,
    server_proof,
    socket_stem,
)
from suptrace.node.control.transport import (
    Acceptor,
    bind_unix,
    remove_files,
    tcp_listener,
    write_sidecar,
)

if TYPE_CHECKING:
    from suptrace.node.parts import NodeParts

__all__ = ["ControlServer"]

_MAX_ID = 64
#: An admitted client idle this long may be closed to make room for a new one.
_EVICT_IDLE = 1.0


class _Refused(Exception):
    """A request answered with an error frame before any op runs."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(frame["error"]["message"])
        self.frame = frame


class ControlServer:
    """A node's control socket. ``Node(control=...)`` creates it; options:

    {options}

    The runtime directory is ``$SUPTRACE_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/suptrace``, else ``suptrace-<uid>`` in the temporary
    directory. The cookie file is ``$SUPTRACE_COOKIE_FILE``, else
    ``~/.suptrace.cookie``. A bad value is a ``ValueError`` naming the option,
    an unknown option a ``TypeError``:

    >>> ControlServer(max_clients=4).limits()["max_per_uid"]
    3
    >>> ControlServer(max_clients=0)
    Traceback (most recent call last):
    ...
    ValueError: control option max_clients must be an int > 0, got 0
    """

    def __init__(self, **options: Any) -> None:
        #: The options, checked (see the table above).
        self.options = ControlOptions.of(options)
        o = self.options
        self._sweep_every = min(
            1.0, max(0.05, min(o.auth_timeout, o.frame_timeout, o.idle_timeout) / 4)
        )
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
        #: The open connections (the server's own; connections read it).
        self.connections: set[Connection] = set()
        self.warnings = Warnings()
        self._rt: Runtime | None = None
        self._parts: NodeParts | None = None
        self._cookie: bytes | None = None
        self._acceptor = Acceptor(self)
        self._waiting: dict[str, dict[Connection, None]] = {"unix": {}, "tcp": {}}
        self._admitted: set[Connection] = set()
        self._per_peer: dict[str, int] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closing = False
        self._welcome = b""
        self._inode: tuple[int, int] | None = None

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

    def limits(self) -> dict[str, Any]:
        """The limits ``hello`` and ``status`` report (see `ControlOptions.limits`)."""
        return self.options.limits()

    # -- service protocol -------------------------------------------------------------

    async def start(self, parts: NodeParts) -> None:
        self._rt = parts.runtime
        self._parts = parts
        self.node_name = parts.name
        self.started = time.time()
        tcp = self.options.tcp
        if tcp is not None:
            self._cookie = load_or_create_cookie(self.options.cookie_file or default_cookie_file())
        try:
            self._start_unix()
        except OSError as exc:
            # A node runs without its control socket rather than not at all.
            warn(f"suptrace control socket not started for node {self.node_name}: {exc}")
        self._welcome = encode_frame(
            {
                "type": "welcome",
                "protocol": PROTOCOL,
                "auth": None,
                "node": self.node_name,
                "id": self.id,
            }
        )
        if tcp is not None:
            sock, context = tcp_listener(tcp, self.options.certfile, self.options.keyfile)
            self._acceptor.listen(sock, "tcp", context)
            bound = sock.getsockname()
            self.tcp_address = (str(bound[0]), int(bound[1]))
        if self.path is not None:
            self._write_sidecar()

    async def close(self) -> None:
        self._closing = True
        self._acceptor.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        opening = self._acceptor.opening
        running = [t for c in self.connections for t in c.ops]
        for conn in list(self.connections):
            conn.stop_streams("node_stopped")
            conn.close()
        if running or opening:
            await asyncio.wait([*running, *opening], timeout=1.0)
        self.remove_files()

    # -- files ------------------------------------------------------------------------

    def _start_unix(self) -> None:
        directory = self.options.runtime_dir or runtime_dir()
        ensure_private_dir(directory)
        stem = socket_stem(self.options.name or self.node_name)
        sock, path, stem = bind_unix(directory, stem)
        st = os.stat(path)
        self._inode = (st.st_dev, st.st_ino)
        self._acceptor.listen(sock, "unix", None)
        self.path = path
        self.id = stem
        self.sidecar = path.with_suffix(".json")

    def _write_sidecar(self) -> None:
        assert self.path is not None and self.sidecar is not None
        write_sidecar(
            self.sidecar,
            {
                "node": self.node_name,
                "id": self.id,
                "pid": os.getpid(),
                "started": self.started,
                "socket": str(self.path),
                "protocol": PROTOCOL,
                "tcp": f"{self.tcp_address[0]}:{self.tcp_address[1]}" if self.tcp_address else None,
                "tls": self.options.certfile is not None,
                "allow_write": self.options.allow_write,
                "argv": sys.argv[:4],
            },
        )

    def remove_files(self) -> None:
        """Remove the socket and its sidecar, unless a successor node owns them now."""
        path, self.path = self.path, None
        if path is not None:
            remove_files(path, self._inode, self.sidecar)

    # -- connections ------------------------------------------------------------------

    def connected(self, conn: Connection) -> None:
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
        options = self.options
        cap = options.max_pending if conn.kind == "unix" else options.max_unauthenticated
        while len(pool) >= cap:
            oldest = next(iter(pool))
            self.evicted += 1
            oldest.drop("busy", "closed: newer clients were waiting and this one sent no request")
            pool.pop(oldest, None)
        pool[conn] = None
        self.connections.add(conn)
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

    def disconnected(self, conn: Connection) -> None:
        """``conn`` is closed: it leaves its pool (and frees its slot)."""
        self.connections.discard(conn)
        self._waiting[conn.kind].pop(conn, None)
        if conn.admitted:
            conn.admitted = False
            self._admitted.discard(conn)
            self._per_peer[conn.peer] -= 1

    def connection_counts(self) -> dict[str, Any]:
        """The connections' counters (``status`` shows them)."""
        return {
            "accepted": self.accepted,
            "waiting": {kind: len(pool) for kind, pool in self._waiting.items()},
            "admitted": len(self._admitted),
            "requests_running": sum(len(c.ops) for c in self.connections),
            "requests_cancelled": self.ops_cancelled,
            "timed_out": self.timed_out,
            "evicted": self.evicted,
        }

    def _admit(self, conn: Connection, req_id: Any) -> bool:
        """Move a connection from its waiting pool into the clients' pool."""
        self._waiting[conn.kind].pop(conn, None)
        max_clients = self.options.max_clients
        max_per_uid = self.options.max_per_uid
        full = len(self._admitted) >= max_clients
        peer_full = self._per_peer.get(conn.peer, 0) >= max_per_uid
        if full or peer_full:
            victim = self._idle_victim(conn.peer if peer_full and not full else None)
            if victim is None:
                self.refused += 1
                if peer_full and not full:
                    why = (
                        f"{conn.peer} already has {max_per_uid} of the node's control "
                        "clients (max_per_uid)"
                    )
                else:
                    why = f"the node already serves {max_clients} control clients (max_clients)"
                conn.error(req_id, "busy", f"{why}; try again when one has finished")
                conn.close()
                return False
            self.evicted += 1
            victim.drop("busy", "closed: idle while all the node's control client slots were taken")
        conn.admitted = True
        self._admitted.add(conn)
        self._per_peer[conn.peer] = self._per_peer.get(conn.peer, 0) + 1
        return True

    def _idle_victim(self, peer: str | None) -> Connection | None:
        """The admitted client idle the longest (no request running, no stream),
        if it has been idle for a second at least."""
        limit = time.monotonic() - _EVICT_IDLE
        best: Connection | None = None
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
        options = self.options
        for conn in list(self.connections):
            if conn.closed:
                continue
            why = None
            if not conn.admitted and now - conn.opened > options.auth_timeout:
                what = "authenticate" if conn.kind == "tcp" else "send a request"
                why = f"a client must {what} within {options.auth_timeout:g}s of connecting"
                why += " (auth_timeout)"
            elif (
                conn.frame_started
                and not conn.paused
                and now - conn.frame_started > options.frame_timeout
            ):
                why = (
                    f"a frame must arrive in full within {options.frame_timeout:g}s of its "
                    "first byte (frame_timeout)"
                )
            elif (
                conn.admitted
                and not conn.ops
                and not conn.streams
                and now - conn.last_active > options.idle_timeout
            ):
                why = f"no request for {options.idle_timeout:g}s (idle_timeout)"
            if why is not None:
                self.timed_out += 1
                conn.drop("timeout", f"closed: {why}")
        if self.connections and not self._closing:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._sweep_every, self._sweep)

    # -- requests ---------------------------------------------------------------------

    def on_frame(self, conn: Connection, body: bytes) -> None:
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

    def _handle(self, conn: Connection, request: dict[str, Any]) -> None:
        try:
            req_id, name, args = self._unpack(request)
        except _Refused as refused:
            conn.send(refused.frame)
            if not conn.authed:
                conn.close()  # before auth, one mistake ends the conversation
            return
        if not conn.authed:
            if name == "auth":
                self._auth(conn, req_id, args)
            else:
                self.refused += 1
                conn.error(req_id, "unauthenticated", "authenticate first (op auth)")
                conn.close()
            return
        try:
            op = self._route(req_id, name)
        except _Refused as refused:
            conn.send(refused.frame)
            return
        self.requests += 1
        task = asyncio.get_running_loop().create_task(self._run(conn, req_id, op, args))
        conn.ops.add(task)
        task.add_done_callback(conn.op_done)

    def _unpack(self, request: dict[str, Any]) -> tuple[Any, str, dict[str, Any]]:
        """A request's id, op name and arguments; `_Refused` when it is malformed."""
        req_id = request.get("id")
        if isinstance(req_id, bool) or not (
            (isinstance(req_id, int) and abs(req_id) < 1 << 63)
            or (isinstance(req_id, str) and len(req_id) <= _MAX_ID)
        ):
            self.errors += 1
            raise _Refused(
                error_frame(None, "bad_request", "a request needs an id: an int or a short string")
            )
        if request.get("v") != PROTOCOL:
            self.errors += 1
            raise _Refused(
                error_frame(
                    req_id,
                    "bad_version",
                    f"this node speaks control protocol {PROTOCOL}, not {show(request.get('v'))}",
                    supported=[PROTOCOL],
                )
            )
        name = request.get("op")
        args = request.get("args", {})
        if not isinstance(name, str) or not isinstance(args, dict):
            self.errors += 1
            raise _Refused(
                error_frame(req_id, "bad_request", "a request is {v, id, op: str, args: object}")
            )
        return req_id, name, args

    def _route(self, req_id: Any, name: str) -> Op:
        """The operation ``name`` asks for; `_Refused` when it is unknown or may not run."""
        op = OPS.get(name)
        if op is None:
            self.errors += 1
            raise _Refused(
                error_frame(
                    req_id,
                    "unknown_op",
                    f"unknown operation {name[:40]!r}; this node knows: {', '.join(sorted(OPS))}",
                )
            )
        if op.writes and not self.options.allow_write:
            self.refused += 1
            raise _Refused(
                error_frame(
                    req_id,
                    "forbidden",
                    f"{name} changes the node, and node {self.node_name} is read-only to its "
                    "control socket; start it with control={'allow_write': True} to allow it",
                )
            )
        return op

    async def _run(self, conn: Connection, req_id: Any, op: Op, args: dict[str, Any]) -> None:
        """One request, as its own task: cancelled when its client leaves."""
        frame = await self._answer(conn, req_id, op, args)
        if frame["ok"]:
            conn.last_active = time.monotonic()
        conn.send(frame)

    async def _answer(
        self, conn: Connection, req_id: Any, op: Op, args: dict[str, Any]
    ) -> dict[str, Any]:
        """The reply or error frame of one request, run within its timeout."""
        timeout = self.options.op_timeout + op.extra_time(args)
        try:
            async with asyncio.timeout(timeout):
                result = await op.run(self, conn, req_id, args)
        except OpError as exc:
            return error_frame(req_id, exc.code, exc.message, **exc.detail)
        except TimeoutError:
            return error_frame(
                req_id, "timeout", f"{op.name} took longer than {timeout:.0f}s (op_timeout)"
            )
        except asyncio.CancelledError:
            self.ops_cancelled += 1
            raise
        except Exception as exc:  # a bug here must never take the node down
            self.errors += 1
            warn(f"suptrace control: {op.name} failed: {type(exc).__name__}: {show(exc)}")
            return error_frame(
                req_id,
                "internal",
                f"{op.name} failed inside the node: {type(exc).__name__}: {show(exc)}",
            )
        return reply_frame(req_id, result)

    async def dispatch(
        self, request: dict[str, Any], conn: Connection | None = None
    ) -> dict[str, Any]:
        """The frame the node answers ``request`` with, as an admitted client of its
        socket gets it (checks, routing, the op itself, its timeout), without a socket.

        ``conn`` is the connection the request is on (its streams, its last ``top``);
        None: a connection of its own that no client reads.
        """
        if conn is None:
            conn = Connection(self, "unix", "in-process")
        try:
            req_id, name, args = self._unpack(request)
            op = self._route(req_id, name)
        except _Refused as refused:
            return refused.frame
        self.requests += 1
        return await self._answer(conn, req_id, op, args)

    def _auth(self, conn: Connection, req_id: Any, args: dict[str, Any]) -> None:
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
        conn.send(reply_frame(req_id, {"proof": proof, "node": self.node_name}))


ControlServer.__doc__ = (ControlServer.__doc__ or "").replace(
    "{options}", textwrap.indent(options_table(), "    ").lstrip()
)
