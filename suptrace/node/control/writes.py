"""The operations that change a node: ``terminate_child``, ``restart_child``
(carried out by the supervisor, through its admin API) and ``exit`` (an exit
signal sent by the runtime). The server refuses them unless the node allows
writes; arguments are checked by the handlers before they get here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from suptrace.behaviours.admin import ChildNotFound, SupervisorError, restart_child, terminate_child
from suptrace.behaviours.supervision import SupervisorBase
from suptrace.core.links import exit as exit_signal
from suptrace.core.process import Process
from suptrace.core.runtime import Runtime
from suptrace.node.control.errors import OpError
from suptrace.node.control.processes import find_process, not_found
from suptrace.node.control.shapes import pid_json
from suptrace.node.control.supervisors import is_supervisor, untraced
from suptrace.observers.format import short

__all__ = ["write_op"]


def _supervisor(rt: Runtime, target: str) -> Process:
    proc = find_process(rt, target)
    if proc is None:
        raise not_found(rt, target, "supervisor")
    if not is_supervisor(proc):
        raise OpError("bad_args", f"{target} is not a supervisor (it runs {proc.initial_call})")
    return proc


def _child_key(sup: Process, child: str) -> Any:
    """The child id (or, for a DynamicSupervisor, pid) the text ``child`` names."""
    behaviour = sup.behaviour
    assert isinstance(behaviour, SupervisorBase)  # _supervisor() checked it
    try:
        return behaviour.child_key(child)
    except ValueError as exc:
        raise OpError("bad_args", str(exc)) from None


async def write_op(rt: Runtime, op: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    """``terminate_child``, ``restart_child`` or ``exit``."""
    if op == "exit":
        target = args["target"]
        proc = find_process(rt, target)
        if proc is None:
            raise not_found(rt, target)
        exit_signal(proc.pid, args["reason"])
        return {"target": str(proc.pid), "reason": args["reason"]}
    sup = _supervisor(rt, args["supervisor"])
    key = _child_key(sup, args["child"])
    try:
        if op == "terminate_child":
            with untraced():
                await asyncio.wait_for(terminate_child(sup.pid, key), timeout)
            return {"supervisor": str(sup.pid), "child": short(key)}
        with untraced():
            pid = await asyncio.wait_for(restart_child(sup.pid, key), timeout)
        return {"supervisor": str(sup.pid), "child": short(key), "pid": pid_json(pid)}
    except SupervisorError as exc:
        code = "not_found" if isinstance(exc, ChildNotFound) else "bad_args"
        raise OpError(code, str(exc)) from None
    except TimeoutError:
        raise OpError("timeout", f"{sup.name or sup.pid} did not answer in {timeout}s") from None
