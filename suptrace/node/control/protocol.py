"""The control protocol, shared by a node's control server and its clients.

Standard library only: the command line imports this without the runtime.

Framing
    Every frame is a 4-byte big-endian length followed by that many bytes of
    UTF-8 JSON holding one object. A peer refuses a frame longer than its
    maximum (the server's default is `MAX_FRAME`, 1 MiB; before a TCP client
    has authenticated, `AUTH_MAX_FRAME`, 4 KiB) and closes the connection
    after saying so: the stream cannot be resynchronised. A request nested
    deeper than `MAX_DEPTH` (arrays and objects inside each other) is answered
    with ``bad_frame``, whatever its size.

Frames
    Every frame carries ``"v": PROTOCOL``. On connecting, the server speaks
    first with a ``welcome`` frame; a TCP welcome holds only the auth challenge
    (nothing about the node before the client proved it knows the cookie).

    ==========  ===========================================================
    request     ``{"v", "id", "op", "args"}`` -- ``id`` is chosen by the
                client (int or short string) and echoed in every answer
    reply       ``{"v", "id", "ok": true, "result"}``
    error       ``{"v", "id", "ok": false, "error": {"code", "message", ...}}``
    stream      ``{"v", "id", "stream": "event" | "report" | "end", "data"}``
                -- items of a streaming request (``attach``, ``reports``
                with ``follow``); ``end`` is the last one and says why
    ==========  ===========================================================

Authentication (TCP only)
    The welcome carries a server nonce. The client answers with op ``auth``
    and ``{"nonce": client_nonce, "proof": client_proof(...)}``; the server
    replies with its own ``proof`` so the client knows the server holds the
    cookie too. Both proofs are HMAC-SHA256 over both nonces: the cookie never
    crosses the wire.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import stat
import struct
import tempfile
from pathlib import Path
from typing import Any, Final

__all__ = [
    "PROTOCOL",
    "MAX_FRAME",
    "AUTH_MAX_FRAME",
    "MAX_DEPTH",
    "CLIENT_MAX_FRAME",
    "ERRORS",
    "HEADER",
    "ProtocolError",
    "encode_frame",
    "decode_body",
    "reply_frame",
    "error_frame",
    "runtime_dir",
    "ensure_private_dir",
    "check_private_dir",
    "socket_stem",
    "is_stale_socket",
    "read_sidecar",
    "list_sidecars",
    "default_cookie_file",
    "read_cookie",
    "load_or_create_cookie",
    "client_proof",
    "server_proof",
    "proofs_equal",
    "new_nonce",
]

#: Protocol version spoken by this build.
PROTOCOL: Final = 1
#: Default largest frame a server accepts (bytes of JSON).
MAX_FRAME: Final = 1 << 20
#: Largest frame a TCP peer may send before it has authenticated (the auth frame is ~200 B).
AUTH_MAX_FRAME: Final = 4096
#: Deepest nesting of arrays and objects a request may have.
MAX_DEPTH: Final = 32
#: Largest frame a client accepts (replies such as ``ps`` of a big node are larger).
CLIENT_MAX_FRAME: Final = 64 << 20
HEADER: Final = struct.Struct(">I")

#: Error codes (the ``code`` of an error frame).
ERRORS: Final = frozenset(
    {
        "bad_frame",  # not a JSON object
        "frame_too_large",  # the length prefix is over the limit (the server closes)
        "bad_version",  # a ``v`` this server does not speak
        "bad_request",  # no op, bad id, args not an object
        "unknown_op",
        "bad_args",
        "not_found",  # no such process, name, supervisor, child or stream
        "forbidden",  # a write op on a read-only node, a peer of another uid
        "unauthenticated",  # TCP: no or a wrong proof (the server closes)
        "busy",  # too many clients, streams or tracers
        "timeout",  # the node did not answer in time (a busy supervisor, say)
        "internal",  # a bug in the server: the node itself is fine
    }
)


class ProtocolError(Exception):
    """A frame or answer that breaks the protocol; ``code`` is an error code."""

    def __init__(self, code: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


# -- frames ---------------------------------------------------------------------------------


def encode_frame(obj: dict[str, Any]) -> bytes:
    """Length prefix + compact JSON of ``obj`` (which gets ``"v"`` if missing)."""
    if "v" not in obj:
        obj = {"v": PROTOCOL, **obj}
    try:
        body = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    except UnicodeEncodeError:  # a lone surrogate (echoed from a request): escape it
        body = json.dumps(obj, separators=(",", ":"), default=str).encode()
    return HEADER.pack(len(body)) + body


def reply_frame(req_id: Any, result: Any) -> dict[str, Any]:
    """The answer to request ``req_id``.

    >>> reply_frame(7, {"pid": "<0.4.0>"})
    {'v': 1, 'id': 7, 'ok': True, 'result': {'pid': '<0.4.0>'}}
    """
    return {"v": PROTOCOL, "id": req_id, "ok": True, "result": result}


def error_frame(req_id: Any, code: str, message: str, **detail: Any) -> dict[str, Any]:
    """The error answering request ``req_id`` (None: a frame with no usable id).

    >>> error_frame(None, "bad_frame", "frame is not UTF-8 JSON")
    {'v': 1, 'id': None, 'ok': False, 'error': {'code': 'bad_frame', 'message': 'frame is not UTF-8 JSON'}}
    """
    return {
        "v": PROTOCOL,
        "id": req_id,
        "ok": False,
        "error": {"code": code, "message": message, **detail},
    }


def decode_body(body: bytes, max_depth: int | None = MAX_DEPTH) -> dict[str, Any]:
    """Parse one frame body; raises `ProtocolError` (``bad_frame``) when it is not
    a JSON object, or nests arrays and objects deeper than ``max_depth`` (None:
    only as deep as the parser itself can go).

    >>> decode_body(b'{"op": "ps"}')
    {'op': 'ps'}
    >>> decode_body(b"[" * 100_000)
    Traceback (most recent call last):
    ...
    suptrace.node.control.protocol.ProtocolError: frame nests arrays/objects too deeply (the limit is 32 levels)
    """
    try:
        obj = json.loads(body.decode("utf-8"))
    except RecursionError:
        raise ProtocolError("bad_frame", _too_deep(max_depth)) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("bad_frame", f"frame is not UTF-8 JSON: {_clip(str(exc))}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_frame", f"frame must hold a JSON object, got {type(obj).__name__}")
    if max_depth is not None and _depth_over(obj, max_depth):
        raise ProtocolError("bad_frame", _too_deep(max_depth))
    return obj


def _too_deep(max_depth: int | None) -> str:
    limit = f" (the limit is {max_depth} levels)" if max_depth is not None else ""
    return f"frame nests arrays/objects too deeply{limit}"


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _depth_over(obj: Any, max_depth: int) -> bool:
    """True when ``obj`` nests lists and dicts deeper than ``max_depth`` (no recursion)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, (dict, list)))
    return False


# -- where sockets live ---------------------------------------------------------------------


def runtime_dir() -> Path:
    """Where nodes put their control sockets.

    ``$SUPTRACE_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/suptrace``, else
    ``suptrace-<uid>`` in the temporary directory.
    """
    explicit = os.environ.get("SUPTRACE_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "suptrace"
    return Path(tempfile.gettempdir()) / f"suptrace-{os.getuid()}"


def check_private_dir(path: Path) -> str | None:
    """Why ``path`` is not a safe runtime directory (None when it is): it must be a
    real directory owned by this user and closed to everybody else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return f"{path} does not exist"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory (a symlink or a file is refused)"
    if st.st_uid != os.getuid():
        return (
            f"{path} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}); "
            "set SUPTRACE_RUNTIME_DIR to a directory of your own"
        )
    if st.st_mode & 0o077:
        return f"{path} is open to other users (mode {stat.S_IMODE(st.st_mode):o}, must be 700)"
    return None


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` with mode 0700, or tighten it if it is ours; raise
    `PermissionError` when it cannot be made safe."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    problem = check_private_dir(path)
    if problem is not None and "open to other users" in problem:
        os.chmod(path, 0o700)
        problem = check_private_dir(path)
    if problem is not None:
        raise PermissionError(f"suptrace runtime directory refused: {problem}")


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def socket_stem(name: str) -> str:
    """A file-name-safe form of a node name (the socket is ``<stem>.sock``)."""
    stem = _UNSAFE.sub("_", name)[:64] or "node"
    return "_" + stem[1:] if stem.startswith(".") else stem


def is_stale_socket(path: str | os.PathLike[str]) -> bool:
    """True when nobody listens on the Unix socket at ``path`` any more (a node
    that died without cleaning up); a busy or refusing listener is not stale."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """A node's ``<stem>.json``, or None when it is unreadable or not ours."""
    try:
        if os.lstat(path).st_uid != os.getuid():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def list_sidecars(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every readable sidecar in ``directory``, sorted by file name."""
    try:
        paths = sorted(directory.glob("*.json"))
    except OSError:
        return []
    found = []
    for path in paths:
        data = read_sidecar(path)
        if data is not None:
            found.append((path, data))
    return found


# -- cookie and proofs ---------------------------------------------------------------------


def default_cookie_file() -> Path:
    """``$SUPTRACE_COOKIE_FILE``, else ``~/.suptrace.cookie``."""
    explicit = os.environ.get("SUPTRACE_COOKIE_FILE")
    return Path(explicit) if explicit else Path.home() / ".suptrace.cookie"


def read_cookie(path: Path) -> bytes:
    """The cookie in ``path``; refuses a file others can read, or an empty one."""
    st = os.stat(path)
    if st.st_mode & 0o077:
        raise PermissionError(
            f"cookie file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run: chmod 600 {path}"
        )
    cookie = path.read_bytes().strip()
    if not cookie:
        raise ValueError(f"cookie file {path} is empty")
    return cookie


def load_or_create_cookie(path: Path) -> bytes:
    """Read the cookie, or write a new random one (mode 0600) if the file is missing."""
    try:
        return read_cookie(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    cookie = secrets.token_urlsafe(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # somebody else created it just now: use theirs
        return read_cookie(path)
    with os.fdopen(fd, "wb") as f:
        f.write(cookie + b"\n")
    return cookie


def new_nonce() -> str:
    return secrets.token_hex(16)


def _proof(role: bytes, cookie: bytes, server_nonce: str, client_nonce: str) -> str:
    msg = role + b"\0" + server_nonce.encode() + b"\0" + client_nonce.encode()
    return hmac.new(cookie, msg, hashlib.sha256).hexdigest()


def client_proof(cookie: bytes, server_nonce: str, client_nonce: str) -> str:
    """What the client sends to prove it knows the cookie."""
    return _proof(b"suptrace-client", cookie, server_nonce, client_nonce)


def server_proof(cookie: bytes, server_nonce: str, client_nonce: str) -> str:
    """What the server sends back to prove it knows the cookie too."""
    return _proof(b"suptrace-server", cookie, server_nonce, client_nonce)


def proofs_equal(a: Any, b: str) -> bool:
    """True when ``a`` is the proof ``b`` (compared in constant time)."""
    if not isinstance(a, str) or len(a) > 256:
        return False
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode())
