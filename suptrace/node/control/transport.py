"""How connections get in: the listening sockets and their files, TLS, the accept budget.

The Unix socket ``<runtime dir>/<stem>.sock`` (0600, in a 0700 directory, the
peer's uid checked with ``SO_PEERCRED``) and an optional TCP listener (TLS if
the node has a certificate). At most ``ACCEPT_BATCH`` connections are accepted
per loop turn and ``accept_rate`` a second (a token bucket per listener); the
rest wait in the kernel's backlog. A plain connection stays a bare socket,
watched for reading, until its first bytes: one that closes without a word
never costs a transport or a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import struct
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suptrace.node.control.connection import Connection
from suptrace.node.control.protocol import (
    encode_frame,
    error_frame,
    is_stale_socket,
    read_sidecar,
)

if TYPE_CHECKING:
    from suptrace.node.control.server import ControlServer

__all__ = [
    "Acceptor",
    "Listener",
    "bind_unix",
    "peer_problem",
    "remove_files",
    "tcp_listener",
    "write_sidecar",
]

#: Longest path a Unix socket address may have (Linux: 108 bytes with the NUL).
MAX_SOCKET_PATH = 107
#: Listen backlog: connections the kernel holds while the node accepts at its own pace.
BACKLOG = 64
#: Connections accepted per loop turn at most.
ACCEPT_BATCH = 8


class Listener:
    """A listening socket and its accept budget (a token bucket)."""

    __slots__ = ("at", "context", "kind", "resume", "sock", "tokens")

    def __init__(self, sock: socket.socket, kind: str, context: Any, tokens: float) -> None:
        self.sock = sock
        self.kind = kind
        self.context = context
        self.tokens = tokens
        self.at = time.monotonic()
        self.resume: asyncio.TimerHandle | None = None


def peer_problem(sock: socket.socket) -> tuple[int, str | None]:
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


def bind_unix(directory: Path, stem: str) -> tuple[socket.socket, Path, str]:
    """Bind ``<stem>.sock``; a stale socket of a dead node is replaced, a live
    node's name gets ``-<pid>`` (then ``-<pid>-<n>``) appended."""
    candidates = [
        stem,
        f"{stem}-{os.getpid()}",
        *(f"{stem}-{os.getpid()}-{n}" for n in range(2, 9)),
    ]
    for candidate in candidates:
        path = directory / f"{candidate}.sock"
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
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
            sock.listen(BACKLOG)
            sock.setblocking(False)
            return sock, path, candidate
    raise OSError(errno.EADDRINUSE, f"no free control socket name for {stem} in {directory}")


def write_sidecar(sidecar: Path, data: dict[str, Any]) -> None:
    """Write ``<stem>.json`` (0600) at once: a reader sees the old file or the new one."""
    tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, sidecar)


def remove_files(path: Path, inode: tuple[int, int] | None, sidecar: Path | None) -> None:
    """Remove the socket ``path`` and its sidecar, each on its own: either may be
    gone already (asyncio 3.13 unlinks the socket in ``server.close()``), and a
    file that a successor node now owns is left alone (the socket is ours by its
    ``inode``, the sidecar by its pid)."""
    socket_ours = False
    try:
        st = os.stat(path)
        if (st.st_dev, st.st_ino) == inode:  # still ours, not a successor's
            socket_ours = True
            path.unlink()
    except OSError:  # gone already, or not ours to remove
        pass
    if sidecar is not None:
        data = read_sidecar(sidecar)
        # Ours by its pid; unreadable only counts as ours when the socket was.
        if (data is None and socket_ours) or (data is not None and data.get("pid") == os.getpid()):
            with contextlib.suppress(OSError):
                sidecar.unlink(missing_ok=True)


def tcp_listener(
    address: tuple[str, int], certfile: Path | None, keyfile: Path | None
) -> tuple[socket.socket, Any]:
    """A listening TCP socket, and its TLS context (None: plain TCP)."""
    host, port = address
    context = None
    if certfile is not None:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(os.fspath(certfile), os.fspath(keyfile or ""))
    family, _, _, _, bound = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.create_server(bound[:2], family=family, backlog=BACKLOG)
    sock.setblocking(False)
    return sock, context


class Acceptor:
    """A server's listeners: accepts connections within the budget and opens them.

    A connection that needs a handshake (TLS) or that sent its first bytes gets
    an asyncio transport from a short task; those tasks are ``opening``.
    """

    def __init__(self, server: ControlServer) -> None:
        self.server = server
        self.listeners: list[Listener] = []
        self.opening: set[asyncio.Task[None]] = set()
        self.closing = False

    def listen(self, sock: socket.socket, kind: str, context: Any) -> None:
        listener = Listener(sock, kind, context, float(self.server.options.accept_burst))
        self.listeners.append(listener)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_acceptable, listener)

    def close(self) -> None:
        """Stop listening, and cancel the connections still being opened."""
        self.closing = True
        loop = asyncio.get_running_loop()
        for listener in self.listeners:
            if listener.resume is not None:
                listener.resume.cancel()
            loop.remove_reader(listener.sock.fileno())
            listener.sock.close()
        self.listeners.clear()
        for task in list(self.opening):
            task.cancel()

    def _on_acceptable(self, listener: Listener) -> None:
        """Accept a few connections per loop turn, at most ``accept_rate`` a second
        (a token bucket): the rest wait in the kernel's backlog, so a burst of
        connections costs the node's loop a bounded share of its time."""
        server = self.server
        options = server.options
        now = time.monotonic()
        listener.tokens = min(
            float(options.accept_burst), listener.tokens + (now - listener.at) * options.accept_rate
        )
        listener.at = now
        for _ in range(min(ACCEPT_BATCH, int(listener.tokens))):
            try:
                csock, _ = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                # Out of file descriptors or memory: wait a little instead of spinning.
                server.warnings.once(
                    f"accept_{exc.errno}",
                    f"suptrace control: node {server.node_name} cannot accept connections "
                    f"now ({exc.strerror or exc}); retrying in 0.1 s",
                )
                self._pause(listener, 0.1)
                return
            listener.tokens -= 1.0
            server.accepted += 1
            self._open(csock, listener)
        if listener.tokens < 1.0:
            self._pause(listener, (1.0 - listener.tokens) / options.accept_rate)

    def _pause(self, listener: Listener, delay: float) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(listener.sock.fileno())

        def resume() -> None:
            listener.resume = None
            if not self.closing:
                loop.add_reader(listener.sock.fileno(), self._on_acceptable, listener)

        listener.resume = loop.call_later(max(delay, 0.001), resume)

    def _open(self, csock: socket.socket, listener: Listener) -> None:
        server = self.server
        kind = listener.kind
        csock.setblocking(False)
        if kind == "unix":
            uid, problem = peer_problem(csock)
            if problem is not None:
                server.refused += 1
                with contextlib.suppress(OSError):
                    csock.send(encode_frame(error_frame(None, "forbidden", problem)))
                csock.close()
                return
            peer = f"uid:{uid}"
        else:
            peer = "tcp"
            if (
                listener.context is not None
                and len(self.opening) >= server.options.max_unauthenticated
            ):
                # TLS handshakes in progress count as unauthenticated peers too.
                server.refused += 1
                csock.close()
                return
        if listener.context is None:
            # Until its first bytes, a connection is a bare socket watched for reading:
            # one that closes without a word (a connect/close burst) never costs a
            # transport or a task.
            conn = Connection(server, kind, peer)
            conn.raw = csock
            server.connected(conn)
            if not conn.closed:
                asyncio.get_running_loop().add_reader(csock.fileno(), self._raw_readable, conn)
            return
        self._start(self._connect(csock, kind, peer, listener))

    def _start(self, opening: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(opening)
        self.opening.add(task)
        task.add_done_callback(self.opening.discard)

    def _raw_readable(self, conn: Connection) -> None:
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
            self.server.disconnected(conn)
            conn.forget_raw()
            return
        asyncio.get_running_loop().remove_reader(raw.fileno())
        conn.raw = None
        self._start(self._hand_over(raw, conn))

    async def _hand_over(self, raw: socket.socket, conn: Connection) -> None:
        """Give a bare connection a transport; what it sent is still in the socket."""
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: conn, raw)
        except (OSError, ConnectionError):
            raw.close()
            conn.closed = True
            self.server.disconnected(conn)

    async def _connect(
        self, csock: socket.socket, kind: str, peer: str, listener: Listener
    ) -> None:
        server = self.server
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: Connection(server, kind, peer),
                csock,
                ssl=listener.context,
                ssl_handshake_timeout=(
                    server.options.auth_timeout if listener.context is not None else None
                ),
            )
        except (OSError, ConnectionError, TimeoutError, EOFError):
            csock.close()
        except Exception as exc:  # e.g. ssl.SSLError: a peer that does not speak TLS
            csock.close()
            server.warnings.once("tls", f"suptrace control: a TCP peer failed TLS: {exc}")
