"""The admin requests a supervisor answers, and the functions that ask them.

A request is a tuple ``(kind, *args)`` sent with `call` (a kind that takes no
argument may also be sent bare, as ``"which_children"``). `REQUESTS` names
every kind and its arguments; each supervisor class answers them from a
handler table, a dict from kind to the method that answers it (see
`answer`). The reply is ``("ok", value)`` or ``("error", exc)``: the client
functions below raise ``exc`` in the caller, and the supervisor keeps running
whatever the request was.

>>> parse_request(("terminate_child", "db"))
('terminate_child', ('db',))
>>> parse_request("which_children")
('which_children', ())
>>> parse_request(("restart_child",))
Traceback (most recent call last):
...
suptrace.behaviours.admin.BadRequest: supervisor request 'restart_child' takes 1 argument (child_id), got 0 in ('restart_child',)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from suptrace.behaviours.childspec import ChildInfo, ChildSpec
from suptrace.behaviours.client import call
from suptrace.core.saferepr import safe_repr
from suptrace.core.terms import Pid

__all__ = [
    "SupervisorError",
    "BadRequest",
    "ChildNotFound",
    "ChildRunning",
    "ChildRestarting",
    "AlreadyPresent",
    "AlreadyStarted",
    "StartChildError",
    "MaxChildren",
    "REQUESTS",
    "AdminHandler",
    "AdminHandlers",
    "parse_request",
    "answer",
    "which_children",
    "count_children",
    "start_child",
    "terminate_child",
    "restart_child",
    "delete_child",
    "get_childspec",
    "describe",
]


# -- errors --------------------------------------------------------------------------------


class SupervisorError(Exception):
    """An admin request to a supervisor was refused."""

    def __init__(self, message: str, supervisor: Any = None, child_id: Any = None) -> None:
        super().__init__(message)
        self.supervisor = supervisor
        self.child_id = child_id


class BadRequest(SupervisorError, ValueError):
    """The request itself is malformed: an unknown kind, or the wrong arguments."""


class ChildNotFound(SupervisorError):
    """No child with that id (or pid)."""


class ChildRunning(SupervisorError):
    """The child is running; terminate it first."""


class ChildRestarting(SupervisorError):
    """The child is between a failed restart and its retry."""


class AlreadyPresent(SupervisorError):
    """A spec with that id exists (not running)."""


class AlreadyStarted(SupervisorError):
    """A child with that id is running; ``.pid`` is its pid."""

    def __init__(
        self, message: str, supervisor: Any = None, child_id: Any = None, pid: Pid | None = None
    ) -> None:
        super().__init__(message, supervisor, child_id)
        self.pid = pid


class StartChildError(SupervisorError):
    """The child's start function failed; ``.reason`` says how."""

    def __init__(
        self, message: str, supervisor: Any = None, child_id: Any = None, reason: Any = None
    ) -> None:
        super().__init__(message, supervisor, child_id)
        self.reason = reason


class MaxChildren(SupervisorError):
    """A DynamicSupervisor already runs ``max_children`` children."""


# -- the requests --------------------------------------------------------------------------

#: Every admin request kind, with the names of the arguments it takes.
REQUESTS: Final[Mapping[str, tuple[str, ...]]] = {
    "which_children": (),
    "count_children": (),
    "describe": (),
    "start_child": ("spec",),
    "get_childspec": ("child_id",),
    "terminate_child": ("child_id_or_pid",),
    "restart_child": ("child_id",),
    "delete_child": ("child_id",),
}

#: Answers one kind of request: called as ``handler(supervisor, *args)``.
AdminHandler = Callable[..., Awaitable[Any]]
#: A supervisor class's handler table: request kind -> handler.
AdminHandlers = Mapping[str, AdminHandler]

_KINDS: Final = ", ".join(REQUESTS)


def parse_request(request: Any) -> tuple[str, tuple[Any, ...]]:
    """Split an admin request into its kind and arguments, checked against
    `REQUESTS`; `BadRequest` says what is wrong with it."""
    if isinstance(request, str):
        kind, args = request, ()
    elif isinstance(request, tuple) and request and isinstance(request[0], str):
        kind, args = request[0], tuple(request[1:])
    else:
        raise BadRequest(
            f"unknown supervisor request {safe_repr(request, 200)}: expected a tuple "
            f"(kind, *args) with kind one of {_KINDS}"
        )
    params = REQUESTS.get(kind)
    if params is None:
        raise BadRequest(
            f"unknown supervisor request {safe_repr(request, 200)} (known kinds: {_KINDS})"
        )
    if len(args) != len(params):
        wanted = f"{len(params)} argument{'s' if len(params) != 1 else ''}"
        names = f" ({', '.join(params)})" if params else ""
        raise BadRequest(
            f"supervisor request {kind!r} takes {wanted}{names}, got {len(args)} "
            f"in {safe_repr(request, 200)}"
        )
    return kind, args


async def answer(handlers: AdminHandlers, server: Any, request: Any) -> tuple[str, Any]:
    """Answer ``request`` with ``server``'s handler for its kind: ``("ok", value)``,
    or ``("error", exc)`` when the request is malformed or refused."""
    try:
        kind, args = parse_request(request)
        handler = handlers.get(kind)
        if handler is None:
            raise BadRequest(f"{type(server).__name__} does not answer supervisor request {kind!r}")
        return ("ok", await handler(server, *args))
    except (SupervisorError, ValueError) as e:
        return ("error", e)


# -- admin API (callable from any process or plain task) -----------------------------------


async def _admin_call(sup: Pid | str, request: tuple[Any, ...]) -> Any:
    status, value = await call(sup, request, timeout=None)
    if status == "error":
        raise value
    return value


async def which_children(sup: Pid | str) -> list[ChildInfo]:
    """The children, newest first: ``ChildInfo(id, pid | None | "restarting", type, modules)``."""
    result: list[ChildInfo] = await _admin_call(sup, ("which_children",))
    return result


async def count_children(sup: Pid | str) -> dict[str, int]:
    """``{"specs", "active", "supervisors", "workers"}`` as OTP counts them."""
    result: dict[str, int] = await _admin_call(sup, ("count_children",))
    return result


async def start_child(sup: Pid | str, spec: Any) -> Pid | None:
    """Add and start a child (a `ChildSpec`, or for a DynamicSupervisor a spec or
    extra args). Returns its pid, or None when the start function returned IGNORE."""
    result: Pid | None = await _admin_call(sup, ("start_child", spec))
    return result


async def terminate_child(sup: Pid | str, id_or_pid: Any) -> None:
    """Stop a child by id (by pid for a DynamicSupervisor); its spec stays unless temporary."""
    await _admin_call(sup, ("terminate_child", id_or_pid))


async def restart_child(sup: Pid | str, child_id: Any) -> Pid | None:
    """Start a stopped child again from its spec."""
    result: Pid | None = await _admin_call(sup, ("restart_child", child_id))
    return result


async def delete_child(sup: Pid | str, child_id: Any) -> None:
    """Remove a stopped child's spec."""
    await _admin_call(sup, ("delete_child", child_id))


async def get_childspec(sup: Pid | str, child_id: Any) -> ChildSpec:
    """The spec of a child."""
    result: ChildSpec = await _admin_call(sup, ("get_childspec", child_id))
    return result


async def describe(sup: Pid | str) -> dict[str, Any]:
    """Flags, restart-window use and children of a supervisor (for tooling).

    Each child also says how often this supervisor restarted it: ``restarts``
    (over the supervisor's life) and ``restarts_window`` (those still inside the
    intensity window), counted against the child whose exit caused each restart."""
    result: dict[str, Any] = await _admin_call(sup, ("describe",))
    return result
