"""Plain values of the runtime: pids, refs, exit reasons and runtime messages.

Everything here is immutable and cheap; nothing here knows about the event loop.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from suptrace.core.process import Process

__all__ = [
    "NORMAL",
    "SHUTDOWN",
    "KILL",
    "KILLED",
    "NOPROC",
    "IGNORE",
    "Pid",
    "Ref",
    "Shutdown",
    "ExitMsg",
    "Down",
    "CastRequest",
    "CAST",
    "shown",
    "is_normal_exit",
    "reason_class",
]

NORMAL: Final = "normal"
SHUTDOWN: Final = "shutdown"
KILL: Final = "kill"
KILLED: Final = "killed"
NOPROC: Final = "noproc"


class _Ignore:
    """The `ignore` atom: returned by a start function or `init` to start nothing."""

    __slots__ = ()
    _instance: _Ignore | None = None

    def __new__(cls) -> _Ignore:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "IGNORE"

    def __reduce__(self) -> str:
        return "IGNORE"


IGNORE: Final = _Ignore()


class Pid:
    """A process identifier, printed like Erlang's ``<0.42.0>``.

    Pids are hashable and ordered by creation. A pid stays valid as a value
    after its process dies; sending to it then drops the message.

    A pid is a value: one parsed from its text (`Pid.parse`) or unpickled
    names the same process as the original, found in the node's process
    table when it is used. A pid of another node, or of a process that is
    gone, behaves as a dead pid.

    >>> Pid(42)
    <0.42.0>
    >>> import pickle
    >>> pickle.loads(pickle.dumps(Pid(42))) == Pid(42)
    True
    """

    __slots__ = ("__weakref__", "_hash", "_home", "_proc", "number", "serial")

    number: int
    serial: int
    # The slots below are the core package's: spawn fills them in, a death clears
    # ``_proc``; code outside core finds a pid's process with `resolve`.
    #: The live process of the node that made the pid, kept so that the hot paths
    #: find it without a lookup; None on a parsed or unpickled pid and after death.
    _proc: Process | None
    #: The creation of the node the pid belongs to: set on every pid a node makes and
    #: kept after its process died, so that the pid never names a process of a later
    #: node in the same program (numbers start again in each); on a pid from outside
    #: (unpickled, or parsed as another node's), the node it came from. Unset on a pid
    #: parsed as ``<0.N.0>`` or made by hand: it names process N of the node using it.
    _home: str

    def __init__(self, number: int, serial: int = 0) -> None:
        self.number = number
        self.serial = serial
        self._proc = None
        # Pids are dict keys on every hot path: the hash is kept, and a local pid's
        # (serial 0, every pid the runtime makes) is its number, no tuple to hash.
        self._hash = hash((number, serial)) if serial else number

    def __repr__(self) -> str:
        return f"<0.{self.number}.{self.serial}>"

    def __hash__(self) -> int:
        return self._hash

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if type(other) is not Pid:
            return NotImplemented
        return self.number == other.number and self.serial == other.serial

    def __lt__(self, other: Pid) -> bool:
        return (self.number, self.serial) < (other.number, other.serial)

    def __le__(self, other: Pid) -> bool:
        return (self.number, self.serial) <= (other.number, other.serial)

    def __gt__(self, other: Pid) -> bool:
        return (self.number, self.serial) > (other.number, other.serial)

    def __ge__(self, other: Pid) -> bool:
        return (self.number, self.serial) >= (other.number, other.serial)

    def __reduce__(self) -> tuple[Any, ...]:
        # The node's creation travels with the pid, as in Erlang's external pid format:
        # unpickled by another node (or a later run) it names no live process.
        home = getattr(self, "_home", None)
        if home is None:
            from suptrace.core.runtime import maybe_runtime

            proc = self._proc
            rt = proc.runtime if proc is not None else maybe_runtime()
            home = rt.creation if rt is not None else None
        return (_pid_from, (self.number, self.serial, home))

    @classmethod
    def parse(cls, text: str) -> Pid:
        """Parse ``<0.42.0>`` (or ``0.42.0``) back into a pid value.

        >>> Pid.parse("<0.42.0>")
        <0.42.0>
        """
        body = text.strip().removeprefix("<").removesuffix(">")
        parts = body.split(".")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"not a pid: {text!r} (expected the form <0.42.0>)")
        pid = cls(int(parts[1]), int(parts[2]))
        if int(parts[0]) != 0:  # as Erlang's list_to_pid: 0 is this node, others are remote
            pid._home = f"node {int(parts[0])}"
        return pid


def _pid_from(number: int, serial: int, home: str | None) -> Pid:
    """Unpickle a pid: it remembers the node it came from (None: made outside any node)."""
    pid = Pid(number, serial)
    if home is not None:
        pid._home = home
    return pid


ref_counter = itertools.count(1)


class Ref:
    """A unique reference (monitors, calls), printed like ``#Ref<0.7>``."""

    # ``__hash__`` is a slot: each ref holds its hash as the bound ``conjugate`` of its
    # number (a C call that returns the number), so the monitor tables hash refs on
    # every spawn_monitor and death without a Python frame.
    __slots__ = ("__hash__", "number")

    def __init__(self, number: int | None = None) -> None:
        self.number = n = next(ref_counter) if number is None else number
        self.__hash__ = n.conjugate  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"#Ref<0.{self.number}>"

    def __eq__(self, other: object) -> bool:
        return type(other) is Ref and other.number == self.number

    def __lt__(self, other: Ref) -> bool:
        return self.number < other.number


@dataclass(frozen=True, slots=True)
class Shutdown:
    """OTP's ``{shutdown, Term}``: a normal-class exit carrying a term.

    >>> is_normal_exit(Shutdown(("failed_to_start_child", "db", "timeout")))
    True
    """

    term: Any


@dataclass(frozen=True, slots=True)
class ExitMsg:
    """An exit signal turned into a message because the receiver traps exits."""

    pid: Pid
    reason: Any


@dataclass(frozen=True, slots=True)
class Down:
    """Delivered to a monitoring process when the monitored process dies."""

    ref: Ref
    pid: Pid
    reason: Any


class CastRequest:
    """A `cast` as tracing, the flight recorder and instrumentation see it
    (internal; ``msg`` is what ``handle_cast`` gets).

    In a mailbox a cast is the exact tuple ``(CAST, msg)`` unless an instrument
    is installed: a tuple of untracked values leaves the cyclic garbage
    collector's tables at its first pass, where a queue of objects would be
    traversed by every collection until handled. Whatever shows a message
    (`receive`, `extract`, tracing events, the flight recorder) shows a
    `CastRequest` (see `shown`).
    """

    __slots__ = ("msg",)

    def __init__(self, msg: Any) -> None:
        self.msg = msg

    def __repr__(self) -> str:
        return f"cast({self.msg!r})"


#: A cast in a mailbox: the tuple ``(CAST, msg)``. A bare ``object()``: its
#: instances, unlike those of any class, are not tracked by the garbage collector.
CAST: Final[Any] = object()


def shown(msg: Any) -> Any:
    """``msg`` as tracing and receivers see it: a cast in its mailbox form becomes a `CastRequest`."""
    if type(msg) is tuple and msg and msg[0] is CAST:
        return CastRequest(msg[1])
    return msg


_new = object.__new__


def new_ref() -> Ref:
    """``Ref()`` without its ``__init__`` frame (one per monitor on the spawn path)."""
    ref = _new(Ref)
    ref.number = n = next(ref_counter)
    ref.__hash__ = n.conjugate  # type: ignore[method-assign]
    return ref


_set_down_ref = Down.__dict__["ref"].__set__
_set_down_pid = Down.__dict__["pid"].__set__
_set_down_reason = Down.__dict__["reason"].__set__


def make_down(ref: Ref, pid: Any, reason: Any) -> Down:
    """Build a `Down` without the frozen dataclass's per-field ``__setattr__`` detour
    (the runtime makes one for every monitored death)."""
    down = _new(Down)
    _set_down_ref(down, ref)
    _set_down_pid(down, pid)
    _set_down_reason(down, reason)
    return down


def is_normal_exit(reason: Any) -> bool:
    """True for ``normal``, ``shutdown`` and ``Shutdown(_)``: exits a transient child may make."""
    # Only strings are compared: a reason's own __eq__ (user data) never runs here.
    if isinstance(reason, str):
        return str.__eq__(reason, NORMAL) or str.__eq__(reason, SHUTDOWN)
    return type(reason) is Shutdown


def is_atom(reason: Any, atom: str) -> bool:
    """``reason == atom`` without running a reason's own ``__eq__`` (user data: it may
    raise, or answer with something that is not a bool)."""
    return isinstance(reason, str) and str.__eq__(reason, atom) is True


def reason_class(reason: Any) -> str:
    """A low-cardinality label for a reason: the atom itself, or an exception's class name."""
    if isinstance(reason, str):
        # An atom is its own class; a long text is not a label (and must stay small).
        return reason if len(reason) <= 64 else "str"
    if isinstance(reason, Shutdown):
        return "shutdown"
    if isinstance(reason, BaseException):
        return type(reason).__name__
    return type(reason).__name__
