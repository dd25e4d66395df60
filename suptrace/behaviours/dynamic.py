"""DynamicSupervisor: children started at run time, each restarted on its own.

Elixir's DynamicSupervisor (OTP's ``simple_one_for_one`` made friendlier):
``one_for_one`` only, default intensity 3 in 5 seconds, ``max_children``, and
``extra_args`` prepended to every child's start arguments. Children are stopped
in parallel when the supervisor stops.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from suptrace.behaviours.childspec import ChildInfo, ChildSpec, as_childspec, check_flags
from suptrace.behaviours.intensity import RestartWindow
from suptrace.behaviours.supervisor import (
    ChildNotFound,
    MaxChildren,
    StartChildError,
    SupervisorError,
    _expected_shutdown,
    _reason_text,
    _SupervisorBase,
    _TryAgain,
)
from suptrace.core.process import exit, monitor, receive, trap_exit, unlink
from suptrace.core.terms import KILL, NOPROC, SHUTDOWN, Down, ExitMsg, Pid, is_normal_exit

__all__ = ["DynamicSupervisor"]


class _Dyn:
    __slots__ = ("failure", "pid", "proc", "restart_times", "restarting", "restarts", "spec")

    def __init__(self, spec: ChildSpec, pid: Pid) -> None:
        self.spec = spec
        self.pid = pid
        #: Kept to read a dead child supervisor's exit cause (for not_restarted).
        self.proc = pid._proc
        self.restarting = False
        #: Why the last restart failed, while ``restarting``.
        self.failure: Any = None
        #: Restarts counted against the intensity because of this child (see
        #: `_SupervisorBase.restarts_of`), and their times within the period.
        self.restarts = 0
        self.restart_times: deque[int] | None = None


class DynamicSupervisor(_SupervisorBase):
    """Start children on demand with `start_child`.

    >>> import suptrace
    >>> async def worker(tag):
    ...     await suptrace.receive()
    >>> async def start_worker(tag):
    ...     return suptrace.spawn_link(worker, tag)
    >>> async def main():
    ...     sup = await suptrace.DynamicSupervisor.start_link(name="pool", max_children=2)
    ...     for n in range(2):
    ...         await suptrace.start_child("pool", suptrace.ChildSpec(id=n, start=(start_worker, (n,))))
    ...     try:
    ...         await suptrace.start_child("pool", suptrace.ChildSpec(id=3, start=(start_worker, (3,))))
    ...     except suptrace.MaxChildren as e:
    ...         print(e)
    ...     return await suptrace.count_children("pool")
    >>> suptrace.run(main)
    pool already runs max_children=2 children
    {'specs': 2, 'active': 2, 'supervisors': 0, 'workers': 2}
    """

    max_children: int | None
    extra_args: tuple[Any, ...]

    @classmethod
    async def start_link(  # type: ignore[override,unused-ignore]
        cls,
        name: str | None = None,
        intensity: int = 3,
        period: int = 5,
        max_children: int | None = None,
        extra_args: tuple[Any, ...] = (),
        timeout: float | None = None,
    ) -> Any:
        """Start an empty dynamic supervisor linked to the caller."""
        return await cls._boot(True, name, intensity, period, max_children, extra_args, timeout)

    @classmethod
    async def start(  # type: ignore[override,unused-ignore]
        cls,
        name: str | None = None,
        intensity: int = 3,
        period: int = 5,
        max_children: int | None = None,
        extra_args: tuple[Any, ...] = (),
        timeout: float | None = None,
    ) -> Any:
        """Like `start_link`, unlinked."""
        return await cls._boot(False, name, intensity, period, max_children, extra_args, timeout)

    @classmethod
    async def _boot(
        cls,
        link: bool,
        name: str | None,
        intensity: int,
        period: int,
        max_children: int | None,
        extra_args: tuple[Any, ...],
        timeout: float | None,
    ) -> Any:
        _check(intensity, period, max_children, extra_args)
        opts = {
            "intensity": intensity,
            "period": period,
            "max_children": max_children,
            "extra_args": tuple(extra_args),
        }
        return await cls._start((), opts, name, timeout, link=link)

    async def init(
        self, intensity: int, period: int, max_children: int | None, extra_args: tuple[Any, ...]
    ) -> None:
        trap_exit(True)
        self.intensity = intensity
        self.period = period
        self.max_children = max_children
        self.extra_args = extra_args
        self.window = RestartWindow(intensity, period)
        self.exit_cause = None
        #: Children by current pid (or by their old pid while restarting), in start order.
        self.children: dict[Pid, _Dyn] = {}

    # -- exits and restarts --------------------------------------------------------------

    async def handle_info(self, msg: Any) -> None:
        if type(msg) is ExitMsg:
            child = self.children.get(msg.pid)
            if child is not None and not child.restarting:
                await self._child_exited(msg.pid, child, msg.reason)
        elif type(msg) is _TryAgain:
            child = self.children.get(msg.key)
            if child is not None and child.restarting:
                await self._restart(msg.key, child, child.failure, retry=True)

    async def _child_exited(self, pid: Pid, child: _Dyn, reason: Any) -> None:
        spec = child.spec
        normal = is_normal_exit(reason)
        if spec.restart == "temporary" or (spec.restart == "transient" and normal):
            if not normal:
                self._report("child_terminated", spec, pid, reason)
            del self.children[pid]
            if normal and spec.type == "supervisor":
                self._not_restarted(spec, child.proc, pid, reason)
            return
        self._report("child_terminated", spec, pid, reason)
        await self._restart(pid, child, reason)

    async def _restart(self, key: Pid, child: _Dyn, reason: Any, retry: bool = False) -> None:
        if not self._count_restart(child):
            del self.children[key]
            self._give_up(child.spec, key, reason, retry)
        status, value = await self._start_spec(child.spec, self.extra_args)
        if status == "error":
            # The offender still holds the pid that died, as OTP's simple_one_for_one.
            self._report("start_error", child.spec, key, value)
            child.restarting = True
            child.failure = value
            self._try_again_later(key)
            return
        del self.children[key]
        if status == "ok":
            child.restarting = False
            child.pid = value
            child.proc = value._proc
            self.children[value] = child
            self._event(
                "restart", child_id=child.spec.id, old_pid=key, new_pid=value, reason=reason
            )
            self._progress(child.spec, value)

    def restarts_of(self, pid: Pid) -> tuple[int, int] | None:
        child = self.children.get(pid)
        return None if child is None else self._child_restarts(child)

    # -- stopping ------------------------------------------------------------------------

    async def terminate(self, reason: Any) -> None:
        """Stop all children in parallel; each is killed after its own ``shutdown``."""
        live = [(pid, c) for pid, c in self.children.items() if not c.restarting]
        self.children.clear()
        if not live:
            return
        refs = {}
        for pid, child in live:
            ref = monitor(pid)
            unlink(pid)
            early = self._flush_exit(pid)
            refs[ref] = (pid, child, early)
            exit(pid, KILL if child.spec.shutdown == "brutal_kill" else SHUTDOWN)
        # Children's specs differ here, unlike OTP's simple_one_for_one (one spec, one
        # timer): as Elixir's DynamicSupervisor (a kill timer per shutdown value), a
        # child is killed when its own shutdown has passed, not the longest one.
        loop = asyncio.get_running_loop()
        signalled = loop.time()
        deadlines = {
            ref: signalled + float(child.spec.shutdown)
            for ref, (_p, child, _e) in refs.items()
            if child.spec.shutdown not in ("brutal_kill", "infinity")
        }
        while refs:
            timeout = None
            if deadlines:
                timeout = max(0.0, min(deadlines.values()) - loop.time())
            try:
                msg = await receive(lambda m: type(m) is Down and m.ref in refs, timeout)
            except TimeoutError:
                now = loop.time()
                for ref, due in list(deadlines.items()):
                    if due <= now:
                        del deadlines[ref]
                        exit(refs[ref][0], KILL)
                continue
            deadlines.pop(msg.ref, None)
            pid, child, early = refs.pop(msg.ref)
            got = (
                early
                if isinstance(msg.reason, str) and msg.reason == NOPROC and early is not None
                else msg.reason
            )
            if not _expected_shutdown(child.spec, got):
                self._report("shutdown_error", child.spec, pid, got)

    # -- admin ---------------------------------------------------------------------------

    async def _admin(self, op: Any, request: tuple[Any, ...]) -> Any:
        if op == "which_children":
            return [
                ChildInfo(
                    None,
                    "restarting" if c.restarting else c.pid,
                    c.spec.type,
                    c.spec.module_names(),
                )
                for c in reversed(list(self.children.values()))
            ]
        if op == "count_children":
            kids = list(self.children.values())
            return {
                "specs": len(kids),
                "active": sum(1 for c in kids if not c.restarting),
                "supervisors": sum(1 for c in kids if c.spec.type == "supervisor"),
                "workers": sum(1 for c in kids if c.spec.type == "worker"),
            }
        if op == "describe":
            return {
                "kind": "dynamic_supervisor",
                "name": self._proc.name,
                "pid": self._proc.pid,
                "strategy": "one_for_one",
                "intensity": self.intensity,
                "period": self.period,
                "restarts_in_window": self.window.used(int(time.monotonic())),
                "max_children": self.max_children,
                "children": [
                    {
                        "id": c.spec.id,
                        "pid": "restarting" if c.restarting else c.pid,
                        "restart": c.spec.restart,
                        "type": c.spec.type,
                        "shutdown": c.spec.shutdown,
                        "significant": False,
                        "restarts": c.restarts,
                        "restarts_window": self._child_restarts(c)[1],
                        "start": c.spec.start,
                    }
                    for c in reversed(list(self.children.values()))
                ],
            }
        arg = request[1]
        if op == "start_child":
            spec = as_childspec(arg)
            if spec.significant:
                raise ValueError(
                    f"child spec {spec.id!r}: a DynamicSupervisor has no significant children"
                )
            if self.max_children is not None and len(self.children) >= self.max_children:
                raise MaxChildren(
                    f"{self.sup_name} already runs max_children={self.max_children} children",
                    self.sup_name,
                    spec.id,
                )
            status, value = await self._start_spec(spec, self.extra_args)
            if status == "error":
                raise StartChildError(
                    f"starting child {spec.id!r} under {self.sup_name} failed: {_reason_text(value)}",
                    self.sup_name,
                    spec.id,
                    value,
                )
            if status == "ignore":
                return None
            self.children[value] = _Dyn(spec, value)
            self._progress(spec, value, api=True)
            return value
        if op == "terminate_child":
            child = self.children.get(arg) if isinstance(arg, Pid) else None
            if child is None:
                raise ChildNotFound(
                    f"{arg!r} is not a child of {self.sup_name} (a DynamicSupervisor terminates children by pid)",
                    self.sup_name,
                    arg,
                )
            del self.children[arg]
            if not child.restarting:
                await self._shutdown_child(child.spec, arg)
            return None
        if op in ("restart_child", "delete_child", "get_childspec"):
            if op == "get_childspec" and isinstance(arg, Pid) and arg in self.children:
                return self.children[arg].spec
            raise SupervisorError(
                f"{op} is not supported by a DynamicSupervisor (its children have no ids)",
                self.sup_name,
                arg,
            )
        raise ValueError(f"unknown supervisor request {request!r}")


def _check(intensity: Any, period: Any, max_children: Any, extra_args: Any) -> None:
    check_flags("one_for_one", intensity, period, "never")
    if max_children is not None and (
        isinstance(max_children, bool) or not isinstance(max_children, int) or max_children < 0
    ):
        raise ValueError(f"invalid max_children {max_children!r} (expected None or an int >= 0)")
    if not isinstance(extra_args, (tuple, list)):
        raise ValueError(f"invalid extra_args {extra_args!r} (expected a tuple)")
