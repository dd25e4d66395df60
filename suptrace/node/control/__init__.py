"""The control server: every node's socket for `suptrace` commands.

A node serves a Unix domain socket ``<runtime dir>/<node>.sock`` (directory
0700, socket 0600, peer uid checked with ``SO_PEERCRED``) next to a JSON
sidecar ``<node>.json`` (pid, node name, start time) that ``suptrace nodes``
reads. Optionally it also listens on TCP, loopback unless told otherwise, and
then only for clients that prove they know the cookie (HMAC challenge-response,
see `suptrace.node.control.protocol`), optionally over TLS.

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

The package holds one concept per module: `~suptrace.node.control.protocol`
(the wire format, shared with the ``suptrace`` client), `~suptrace.node.control.options`
(the option table), `~suptrace.node.control.transport` (listeners, TLS, the
accept budget), `~suptrace.node.control.connection` (framing, writing,
requests as tasks), `~suptrace.node.control.streams` (attach and reports
streams), `~suptrace.node.control.server` (pools, deadlines, dispatch),
`~suptrace.node.control.handlers` (the table of operations),
`~suptrace.node.control.args` (argument checks), `~suptrace.node.control.errors`
(the expected failures of a request), `~suptrace.node.control.log` (the server's
own warnings, some at most once a minute), and what the operations answer:
`~suptrace.node.control.shapes` (the JSON forms of events, reports and
tombstones), `~suptrace.node.control.processes` (finding processes; ps,
inspect, top), `~suptrace.node.control.supervisors` (the requests to
supervisors, out of the application's traces), `~suptrace.node.control.trees`
(supervision trees), `~suptrace.node.control.diagnose` (the doctor's sampling
run), `~suptrace.node.control.doctor` (the doctor's rules) and
`~suptrace.node.control.writes` (the operations that change the node).

The package imports its server on first use, so the command line, which needs
only the protocol, does not load the runtime.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from suptrace.node.control.server import ControlServer as ControlServer

__all__ = ["ControlServer"]


def __getattr__(name: str) -> Any:
    if name != "ControlServer":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from suptrace.node.control.server import ControlServer

    globals()[name] = ControlServer
    return ControlServer
