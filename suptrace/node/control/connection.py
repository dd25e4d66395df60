"""One client connection: framing, deadlines' bookkeeping, requests as tasks, writing.

A connection is a plain asyncio protocol with no task of its own. It reads
length-prefixed frames (`suptrace.node.control.protocol`), hands each complete
one to its server, runs at most ``max_inflight`` requests at once (frames wait
unread meanwhile), writes answers and stream items without ever letting a slow
reader slow the node, and cancels its requests and ends its streams when the
client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import TYPE_CHECKING, Any, cast

from suptrace.node.control.errors import show
from suptrace.node.control.log import warn
from suptrace.node.control.protocol import AUTH_MAX_FRAME, HEADER, encode_frame, error_frame
from suptrace.node.control.streams import Stream

if TYPE_CHECKING:
    from suptrace.node.control.server import ControlServer

__all__ = ["Connection"]

#: Frames of one connection handled per loop turn at most.
FRAMES_PER_TURN = 16


class Connection(asyncio.Protocol):
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
        self.streams: dict[Any, Stream] = {}
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
        #: The message counts of the last ``top`` of this connection (its rates are since then).
        self.top_counts: Any = None

    # -- asyncio protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's do not derive from asyncio.Transport.
        self.transport = cast("asyncio.Transport", transport)
        if self.closed:  # closed while its socket was being handed over
            self.transport.abort()
        elif self not in self.server.connections:
            self.server.connected(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.disconnected(self)
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
            len(self.buf) > 2 * self.server.options.max_frame
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
        budget = FRAMES_PER_TURN
        options = server.options
        while not self.closed:
            if len(self.ops) >= options.max_inflight:
                self._hold()  # an answer resumes it
                break
            if self.need < 0:
                if len(buf) < HEADER.size:
                    break
                (size,) = HEADER.unpack_from(buf)
                limit = options.max_frame if self.authed else AUTH_MAX_FRAME
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
                server.on_frame(self, body)
            except Exception as exc:  # a bug here must never reach asyncio's error log
                server.errors += 1
                warn(f"suptrace control: a request failed: {type(exc).__name__}: {show(exc)}")
                self.error(None, "internal", f"the request failed inside the node: {show(exc)}")
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

    def op_done(self, task: asyncio.Task[None]) -> None:
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
        if transport.get_write_buffer_size() > self.server.options.hard_limit:
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
        if self._buffered() > self.server.options.high_water:
            self.server.frames_dropped += 1
            return False
        return self.send(obj)

    def error(self, req_id: Any, code: str, message: str, **detail: Any) -> None:
        self.send(error_frame(req_id, code, message, **detail))

    def stop_streams(self, reason: str) -> None:
        for stream in list(self.streams.values()):
            stream.stop(reason)

    def close(self) -> None:
        """Close after what is queued is written (a frame saying why, usually)."""
        if self.closed:
            return
        self.closed = True
        self.server.disconnected(self)
        for task in list(self.ops):
            task.cancel()
        self.stop_streams("client_gone")
        if self.transport is not None:
            self.transport.close()
        elif self.raw is not None:
            self.forget_raw()

    def drop(self, code: str, why: str) -> None:
        """Tell the client why, then close (deadlines, eviction)."""
        if not self.closed:
            self.error(None, code, why)
            self.close()

    def forget_raw(self) -> None:
        """Stop watching the bare socket and close it (it never got a transport)."""
        raw, self.raw = self.raw, None
        if raw is not None:
            asyncio.get_running_loop().remove_reader(raw.fileno())
            raw.close()

    def abort(self, why: str) -> None:
        if self.closed:
            return
        self.server.warnings.limited(
            "dropped", f"suptrace control: dropped a client of node {self.server.node_name}: {why}"
        )
        self.close()
        if self.transport is not None:
            self.transport.abort()
