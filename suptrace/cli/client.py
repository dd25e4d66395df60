"""A blocking client of a node's control socket (the command line's only way in).

It imports nothing of the runtime: a command talks to a node, it never loads
one. Connections are Unix sockets found through the sidecars in the runtime
directory, or TCP with the cookie handshake (optionally TLS).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suptrace.node.control.protocol import (
    CLIENT_MAX_FRAME,
    HEADER,
    PROTOCOL,
    ProtocolError,
    check_private_dir,
    client_proof,
    decode_body,
    encode_frame,
    is_stale_socket,
    list_sidecars,
    proofs_equal,
    read_cookie,
    runtime_dir,
    server_proof,
)

__all__ = [
    "CliError",
    "RemoteError",
    "Client",
    "NodeEntry",
    "scan_nodes",
    "choose_node",
    "EXIT_OK",
    "EXIT_NOT_FOUND",
    "EXIT_USAGE",
]

EXIT_OK = 0
#: The node, process, name or child asked for does not exist (or a doctor finding).
EXIT_NOT_FOUND = 1
#: Bad options or arguments.
EXIT_USAGE = 2


class CliError(Exception):
    """Something to tell the user, and the exit code that goes with it."""

    def __init__(self, message: str, code: int = EXIT_NOT_FOUND, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.detail = detail


class RemoteError(CliError):
    """The node answered with an error frame."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.error_code = str(error.get("code", "internal"))
        exit_code = EXIT_USAGE if self.error_code in _USAGE_CODES else EXIT_NOT_FOUND
        super().__init__(str(error.get("message", "error")), exit_code, error)


_USAGE_CODES = {"bad_args", "bad_request", "unknown_op", "bad_version"}


class ConnectionLost(CliError):
    """The node went away in the middle of a conversation."""


class _Busy(CliError):
    """The node could not take this client now; trying again shortly may work."""


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


def _retrying(open_once: Callable[[], Client], timeout: float) -> Client:
    """``open_once()`` until it stops raising `_Busy`, pausing 10 ms, 20 ms, ...
    (at most 100 ms) between tries, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        try:
            return open_once()
        except _Busy as exc:
            if time.monotonic() + pause > deadline:
                raise CliError(f"{exc.message} (gave up after {timeout:g}s)") from None
        time.sleep(pause)  # a back-off between connection attempts
        pause = min(pause * 2, 0.1)


# -- the connection ------------------------------------------------------------------------


class Client:
    """One connection to one node. Use as a context manager."""

    def __init__(self, sock: socket.socket, label: str) -> None:
        self.sock = sock
        self.label = label
        self.welcome: dict[str, Any] = {}
        self.node = label
        self._ids = itertools.count(1)
        self._pending: list[dict[str, Any]] = []
        #: The node's answer to ``hello`` (Unix connections ask it on opening).
        self.hello: dict[str, Any] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- opening --------------------------------------------------------------------

    @classmethod
    def unix(cls, path: str | os.PathLike[str], label: str, timeout: float = 5.0) -> Client:
        """Connect, and be admitted among the node's clients (by a ``hello``).

        A node that is busy (all client slots taken, or a burst of connections
        in its backlog) is tried again with a growing pause until ``timeout``.
        """
        return _retrying(lambda: cls._open_unix(path, label, timeout), timeout)

    @classmethod
    def _open_unix(cls, path: str | os.PathLike[str], label: str, timeout: float) -> Client:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # A blocking connect waits in the kernel for room in a full backlog (a
        # burst of connections), for at most the send timeout, instead of failing.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(timeout))
        try:
            sock.connect(os.fspath(path))
        except PermissionError:
            sock.close()
            raise CliError(
                f"cannot connect to node {label}: permission denied on {path} "
                "(a node only accepts its own user)"
            ) from None
        except BlockingIOError:  # the node's backlog is full: a burst of connections
            sock.close()
            raise _Busy(f"node {label} is not accepting connections now (backlog full)") from None
        except OSError as exc:
            sock.close()
            raise CliError(
                f"cannot connect to node {label} at {path}: {exc.strerror or exc}"
            ) from None
        sock.settimeout(timeout)
        client = cls(sock, label)
        try:
            client._greet(None)
            client.hello = client.request("hello")
        except RemoteError as exc:
            client.close()
            if exc.error_code == "busy":
                raise _Busy(exc.message) from None
            raise
        except ConnectionLost as exc:  # closed while we waited to be admitted
            client.close()
            raise _Busy(exc.message) from None
        except BaseException:
            client.close()
            raise
        return client

    @classmethod
    def tcp(
        cls,
        host: str,
        port: int,
        cookie: bytes,
        *,
        tls: bool = False,
        cafile: str | None = None,
        timeout: float = 5.0,
    ) -> Client:
        """Connect and authenticate, trying again while the node says ``busy``."""
        return _retrying(
            lambda: cls._open_tcp(host, port, cookie, tls=tls, cafile=cafile, timeout=timeout),
            timeout,
        )

    @classmethod
    def _open_tcp(
        cls,
        host: str,
        port: int,
        cookie: bytes,
        *,
        tls: bool,
        cafile: str | None,
        timeout: float,
    ) -> Client:
        label = f"{host}:{port}"
        try:
            raw = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise CliError(f"cannot connect to {label}: {exc.strerror or exc}") from None
        sock: socket.socket = raw
        if tls:
            import ssl

            context = ssl.create_default_context(cafile=cafile)
            try:
                sock = context.wrap_socket(raw, server_hostname=host)
            except (ssl.SSLError, OSError) as exc:
                raw.close()
                raise CliError(f"TLS with {label} failed: {exc}") from None
        client = cls(sock, label)
        sock.settimeout(min(timeout, 5.0))
        try:
            client._greet(cookie)
        except RemoteError as exc:
            client.close()
            if exc.error_code == "busy":
                raise _Busy(exc.message) from None
            raise
        except CliError as exc:
            client.close()
            if not tls and "did not answer" in exc.message:
                raise CliError(f"{label} sent no welcome: if it serves TLS, add --tls") from None
            raise
        sock.settimeout(timeout)
        return client

    def _greet(self, cookie: bytes | None) -> None:
        welcome = self.read_frame()
        if welcome.get("ok") is False:
            raise RemoteError(welcome.get("error") or {})
        if welcome.get("type") != "welcome":
            raise CliError(f"{self.label} does not speak the suptrace control protocol")
        if welcome.get("protocol") != PROTOCOL:
            raise CliError(
                f"{self.label} speaks control protocol {welcome.get('protocol')}, "
                f"this suptrace speaks {PROTOCOL}: use the same suptrace version"
            )
        self.welcome = welcome
        if welcome.get("auth") == "hmac-sha256":
            if cookie is None:
                raise CliError(f"{self.label} wants a cookie (--cookie-file)")
            nonce = welcome.get("nonce")
            if not isinstance(nonce, str):
                raise CliError(f"{self.label} sent a malformed challenge")
            mine = secrets.token_hex(16)
            result = self.request(
                "auth", {"nonce": mine, "proof": client_proof(cookie, nonce, mine)}
            )
            if not proofs_equal(result.get("proof"), server_proof(cookie, nonce, mine)):
                raise CliError(f"{self.label} could not prove it knows the cookie: refusing it")
            self.node = str(result.get("node", self.label))
        else:
            self.node = str(welcome.get("node", self.label))

    # -- frames ---------------------------------------------------------------------

    def _recv_exact(self, n: int) -> bytes:
        chunks = []
        while n:
            try:
                chunk = self.sock.recv(min(n, 1 << 16))
            except TimeoutError:
                raise CliError(f"node {self.node} did not answer in time") from None
            except OSError as exc:
                raise ConnectionLost(f"lost the connection to node {self.node}: {exc}") from None
            if not chunk:
                raise ConnectionLost(f"node {self.node} closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def read_frame(self) -> dict[str, Any]:
        if self._pending:
            return self._pending.pop(0)
        (size,) = HEADER.unpack(self._recv_exact(HEADER.size))
        if size > CLIENT_MAX_FRAME:
            raise CliError(f"node {self.node} sent a frame of {size} bytes: too large")
        try:
            return decode_body(self._recv_exact(size), max_depth=None)
        except ProtocolError as exc:
            raise CliError(f"node {self.node} sent a bad frame: {exc.message}") from None

    def send(self, op: str, args: dict[str, Any] | None = None) -> int:
        req_id = next(self._ids)
        frame = encode_frame({"v": PROTOCOL, "id": req_id, "op": op, "args": args or {}})
        try:
            self.sock.sendall(frame)
        except OSError as exc:
            raise ConnectionLost(f"lost the connection to node {self.node}: {exc}") from None
        return req_id

    def request(self, op: str, args: dict[str, Any] | None = None) -> Any:
        """Send a request and return its result; error frames raise `RemoteError`."""
        req_id = self.send(op, args)
        return self.wait_reply(req_id)

    def wait_reply(self, req_id: int) -> Any:
        held: list[dict[str, Any]] = []
        try:
            while True:
                frame = self.read_frame()
                if frame.get("id") in (req_id, None) and "ok" in frame:
                    if frame["ok"]:
                        return frame.get("result")
                    raise RemoteError(frame.get("error") or {})
                held.append(frame)  # a stream item of another request: keep it
        finally:
            self._pending[:0] = held

    def set_timeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def stream_frames(self, stream_id: int) -> Iterator[dict[str, Any]]:
        """The frames of a stream until (and including) its ``end``."""
        while True:
            frame = self.read_frame()
            if frame.get("id") != stream_id:
                continue
            if frame.get("ok") is False:
                raise RemoteError(frame.get("error") or {})
            if "stream" in frame:
                yield frame
                if frame["stream"] == "end":
                    return


# -- finding nodes -------------------------------------------------------------------------


@dataclass
class NodeEntry:
    """One node as its sidecar describes it."""

    id: str
    node: str
    pid: int
    started: float
    socket: str
    tcp: str | None = None
    tls: bool = False
    allow_write: bool = False
    alive: bool = True
    sidecar: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "node": self.node,
            "pid": self.pid,
            "started": self.started,
            "uptime": max(0.0, time.time() - self.started),
            "socket": self.socket,
            "tcp": self.tcp,
            "tls": self.tls,
            "allow_write": self.allow_write,
        }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def scan_nodes(clean: bool = True) -> tuple[list[NodeEntry], list[NodeEntry]]:
    """Running nodes, and the stale entries found (removed when ``clean``)."""
    directory = runtime_dir()
    if not directory.exists():
        return [], []
    problem = check_private_dir(directory)
    if problem is not None:
        raise CliError(f"refusing the runtime directory: {problem}")
    alive: list[NodeEntry] = []
    stale: list[NodeEntry] = []
    for path, data in list_sidecars(directory):
        try:
            entry = NodeEntry(
                id=str(data.get("id") or path.stem),
                node=str(data.get("node") or path.stem),
                pid=int(data.get("pid") or 0),
                started=float(data.get("started") or 0.0),
                socket=str(data.get("socket") or path.with_suffix(".sock")),
                tcp=data.get("tcp"),
                tls=bool(data.get("tls")),
                allow_write=bool(data.get("allow_write")),
                sidecar=str(path),
                extra=data,
            )
        except (TypeError, ValueError):
            continue
        if _pid_alive(entry.pid) and not is_stale_socket(entry.socket):
            alive.append(entry)
            continue
        entry.alive = False
        stale.append(entry)
        if clean:
            for leftover in (Path(entry.socket), path):
                try:
                    if os.lstat(leftover).st_uid == os.getuid():
                        leftover.unlink()
                except OSError:
                    pass
    return alive, stale


def choose_node(wanted: str | None) -> NodeEntry:
    """The node ``--node`` names (an id, a node name or a pid), or the only one running."""
    nodes, _ = scan_nodes()
    where = runtime_dir()
    if not nodes:
        raise CliError(
            f"no suptrace node is running (looked in {where}; a node started with another "
            "SUPTRACE_RUNTIME_DIR or XDG_RUNTIME_DIR lives elsewhere)"
        )
    if wanted is None:
        if len(nodes) == 1:
            return nodes[0]
        names = ", ".join(n.id for n in nodes)
        raise CliError(f"several nodes are running ({names}): pick one with --node", EXIT_USAGE)
    for match in (
        [n for n in nodes if n.id == wanted],
        [n for n in nodes if n.node == wanted],
        [n for n in nodes if str(n.pid) == wanted],
    ):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            names = ", ".join(n.id for n in match)
            raise CliError(
                f"--node {wanted} matches several nodes ({names}): use one of these ids", EXIT_USAGE
            )
    names = ", ".join(n.id for n in nodes)
    raise CliError(f"no node {wanted!r} is running (running: {names})")


@dataclass
class Target:
    """How to reach a node: the command-line connection options."""

    node: str | None = None
    connect: str | None = None
    cookie_file: str | None = None
    tls: bool = False
    cafile: str | None = None
    timeout: float = 15.0

    def open(self) -> Client:
        if self.connect:
            host, sep, port = self.connect.rpartition(":")
            if not sep or not port.isdigit():
                raise CliError(f"--connect wants HOST:PORT, got {self.connect!r}", EXIT_USAGE)
            from suptrace.node.control.protocol import default_cookie_file

            path = Path(self.cookie_file) if self.cookie_file else default_cookie_file()
            try:
                cookie = read_cookie(path)
            except (OSError, ValueError) as exc:
                raise CliError(f"cannot use the cookie: {exc}", EXIT_USAGE) from None
            client = Client.tcp(
                host.strip("[]") or "127.0.0.1",
                int(port),
                cookie,
                tls=self.tls,
                cafile=self.cafile,
                timeout=self.timeout,
            )
        else:
            entry = choose_node(self.node)
            client = Client.unix(entry.socket, entry.id, timeout=self.timeout)
        return client
