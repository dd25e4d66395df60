"""The control server's options: one table, from which everything else is read.

Each option is written once, as a field of `ControlOptions`: its name, the kind
of value it takes, its default, its bound and a line of documentation. The
checks of ``ControlServer(**options)``, the defaults, `ControlOptions.limits`
(what ``hello`` and ``status`` report) and the table in `ControlServer`'s
documentation are all derived from these fields.

>>> opts = ControlOptions(max_clients=8)
>>> opts.max_clients, opts.max_per_uid, opts.limits()["max_per_uid"]
(8, 6, 6)
>>> ControlOptions(idle_timeout=0)
Traceback (most recent call last):
...
ValueError: control option idle_timeout must be a number > 0, got 0
"""

from __future__ import annotations

import math
import os
import textwrap
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from suptrace.node.control.protocol import MAX_FRAME

__all__ = ["ControlOptions", "Option", "options_table", "parse_tcp"]

#: What an option takes: a positive int, a positive finite number, a boolean, a
#: short text, a file system path, or a TCP address (see `parse_tcp`).
Kind = Literal["int", "number", "bool", "text", "path", "address"]


@dataclass(frozen=True)
class Option:
    """How one option is checked, shown and reported (a field's metadata)."""

    kind: Kind
    #: One line (or a few) of documentation for the options table.
    doc: str
    #: The default as the documentation shows it (None: the default itself).
    shown: str | None = None
    #: Reported by ``hello`` and ``status`` (`ControlOptions.limits`).
    reported: bool = False
    #: None is a valid value (it means "derive it", or "none").
    optional: bool = False


def _option(
    default: Any,
    kind: Kind,
    doc: str,
    *,
    shown: str | None = None,
    reported: bool = False,
    optional: bool = False,
) -> Any:
    spec = Option(kind, doc, shown, reported, optional or default is None)
    return field(default=default, metadata={"option": spec})


@dataclass(frozen=True)
class ControlOptions:
    """A control server's options, checked (``ValueError`` naming the bad one).

    The field order is the order of `limits` (and of the documentation table).
    """

    runtime_dir: Path | None = _option(  # noqa: RUF009 (a field with its metadata)
        None, "path", "directory of the socket and its sidecar", shown="see below"
    )
    name: str | None = _option(
        None, "text", "socket file name (``<name>.sock``)", shown="node name"
    )
    allow_write: bool = _option(False, "bool", "allow terminate_child / restart_child / exit")
    max_frame: int = _option(
        MAX_FRAME, "int", "largest request frame", shown="1 MiB", reported=True
    )
    max_clients: int = _option(
        16,
        "int",
        "clients at once (more get ``busy``): a connection counts once it sent a "
        "request (Unix) or authenticated (TCP)",
        reported=True,
    )
    max_streams: int = _option(
        4, "int", "streams (attach, reports follow) per connection", reported=True
    )
    max_tracers: int = _option(8, "int", "attach sessions at once on the node", reported=True)
    max_events: int = _option(100_000, "int", "cap on an attach's ``max_events``", reported=True)
    max_duration: float = _option(
        3600.0, "number", "cap on an attach's ``duration``", shown="3600 s", reported=True
    )
    max_rate: float = _option(
        10_000.0, "number", "cap on an attach's ``rate``", shown="10000/s", reported=True
    )
    max_term: int = _option(
        4000, "int", "cap on the characters of a term in an event", reported=True
    )
    high_water: int = _option(
        1 << 20,
        "int",
        "client write buffer above which stream items drop",
        shown="1 MiB",
        reported=True,
    )
    hard_limit: int = _option(
        8 << 20,
        "int",
        "client write buffer above which it is disconnected (at least ``high_water``)",
        shown="8 MiB",
    )
    max_per_uid: int = _option(
        None,
        "int",
        "clients of one peer uid (TCP clients: one group)",
        shown="3/4 of max",
        reported=True,
    )
    max_pending: int = _option(
        64,
        "int",
        "Unix connections that have sent no request yet (when full, the oldest is closed)",
        reported=True,
    )
    max_unauthenticated: int = _option(
        16,
        "int",
        "TCP connections not yet authenticated (their own pool: they never take a client's slot)",
        reported=True,
    )
    max_inflight: int = _option(
        4,
        "int",
        "requests running at once on one connection (it is read no further until one is answered)",
        reported=True,
    )
    auth_timeout: float = _option(
        5.0,
        "number",
        "time from connecting to the first request (Unix) or to being authenticated "
        "(TCP, TLS included)",
        shown="5 s",
        reported=True,
    )
    frame_timeout: float = _option(
        5.0,
        "number",
        "time a frame may take from its first byte to its last",
        shown="5 s",
        reported=True,
    )
    idle_timeout: float = _option(
        30.0,
        "number",
        "a client with no request running and no stream is closed after this long "
        "without a request",
        shown="30 s",
        reported=True,
    )
    accept_rate: float = _option(
        500.0,
        "number",
        "connections accepted per second at most (the rest wait in the kernel's backlog)",
        shown="500/s",
        reported=True,
    )
    accept_burst: int = _option(32, "int", "connections accepted at once after a quiet time")
    op_timeout: float = _option(10.0, "number", "longest a request may take", shown="10 s")
    call_timeout: float = _option(
        2.0, "number", "how long a supervisor or server has to answer", shown="2 s"
    )
    tcp: tuple[str, int] | None = _option(
        None,
        "address",
        '``"host:port"``, ``(host, port)``, a port or True (127.0.0.1, any free port)',
    )
    cookie_file: Path | None = _option(  # noqa: RUF009
        None,
        "path",
        "TCP: the shared secret (created 0600 if missing)",
        shown="see below",
    )
    certfile: Path | None = _option(  # noqa: RUF009
        None, "path", "TCP: serve TLS with this certificate..."
    )
    keyfile: Path | None = _option(None, "path", "...and this key")  # noqa: RUF009

    def __post_init__(self) -> None:
        for f, spec in _SPECS:
            value = getattr(self, f.name)
            if value is None and spec.optional:
                continue
            object.__setattr__(self, f.name, _checked(f.name, spec.kind, value))
        if self.max_per_uid is None:
            object.__setattr__(self, "max_per_uid", max(1, (self.max_clients * 3 + 3) // 4))
        object.__setattr__(self, "hard_limit", max(self.hard_limit, self.high_water))
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("control options certfile and keyfile go together (TLS needs both)")
        if self.certfile is not None and self.tcp is None:
            raise ValueError("control options certfile/keyfile need tcp=... (TLS is for TCP)")

    @classmethod
    def of(cls, options: dict[str, Any]) -> ControlOptions:
        """The options named in ``options``; an unknown name is a `TypeError` listing them.

        >>> ControlOptions.of({"max_client": 4})
        Traceback (most recent call last):
        ...
        TypeError: unknown control option 'max_client' (did you mean max_clients?); ...
        """
        known = {f.name for f, _ in _SPECS}
        unknown = [name for name in options if name not in known]
        if unknown:
            import difflib

            first = unknown[0]
            close = difflib.get_close_matches(first, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise TypeError(
                f"unknown control option {first!r}{hint}; the options are: "
                f"{', '.join(f.name for f, _ in _SPECS)}"
            )
        return cls(**options)

    def limits(self) -> dict[str, Any]:
        """The options ``hello`` and ``status`` report (the limits a client may meet)."""
        return {f.name: getattr(self, f.name) for f, spec in _SPECS if spec.reported}


def _checked(name: str, kind: Kind, value: Any) -> Any:
    """``value`` as the option ``name`` keeps it, or a `ValueError` naming the option."""
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"control option {name} must be an int > 0, got {value!r}")
        return value
    if kind == "number":
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"control option {name} must be a number > 0, got {value!r}")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"control option {name} must be True or False, got {value!r}")
        return value
    if kind == "text":
        if not isinstance(value, str):
            raise ValueError(f"control option {name} must be a string, got {value!r}")
        return value
    if kind == "path":
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            raise ValueError(
                f"control option {name} must be a path (a string or os.PathLike), got {value!r}"
            )
        return Path(value)
    return parse_tcp(value)


def parse_tcp(tcp: Any) -> tuple[str, int] | None:
    """The ``(host, port)`` the ``tcp`` option asks for (None: no TCP listener).

    >>> parse_tcp("0.0.0.0:7000"), parse_tcp(7000), parse_tcp(True), parse_tcp(False)
    (('0.0.0.0', 7000), ('127.0.0.1', 7000), ('127.0.0.1', 0), None)
    """
    if tcp is None or tcp is False:
        return None
    if tcp is True:
        return ("127.0.0.1", 0)
    if isinstance(tcp, int):
        return ("127.0.0.1", tcp)
    if isinstance(tcp, tuple) and len(tcp) == 2 and str(tcp[1]).isdigit():
        return (str(tcp[0]), int(tcp[1]))
    if isinstance(tcp, str):
        host, sep, port = tcp.rpartition(":")
        if sep and port.isdigit():
            return (host.strip("[]") or "127.0.0.1", int(port))
    raise ValueError(
        f"control option tcp must be 'host:port', (host, port), a port or True, got {tcp!r}"
    )


_SPECS: tuple[tuple[Field[Any], Option], ...] = tuple(
    (f, f.metadata["option"]) for f in fields(ControlOptions)
)


def options_table() -> str:
    """The options as a reStructuredText table (for `ControlServer`'s documentation)."""
    rows = []
    for f, spec in _SPECS:
        shown = spec.shown
        if shown is None:
            shown = "None" if f.default is None else repr(f.default)
        rows.append((f"``{f.name}``", shown, spec.doc))
    width_name = max(len(r[0]) for r in rows)
    width_default = max(max(len(r[1]) for r in rows), len("default"))
    indent = " " * (width_name + width_default + 4)
    rule = f"{'=' * width_name}  {'=' * width_default}  {'=' * 52}"
    lines = [rule, f"{'option':<{width_name}}  {'default':<{width_default}}  meaning", rule]
    for name, shown, doc in rows:
        first, *more = textwrap.wrap(doc, 52)
        lines.append(f"{name:<{width_name}}  {shown:<{width_default}}  {first}")
        lines.extend(indent + line for line in more)
    lines.append(rule)
    return "\n".join(lines)
