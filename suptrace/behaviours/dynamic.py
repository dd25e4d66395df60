"""DynamicSupervisor: children started at run time, each restarted on its own.

Elixir's DynamicSupervisor (OTP's ``simple_one_for_one`` made friendlier):
``one_for_one`` only, default intensity 3 in 5 seconds, ``max_children``, and
``extra_args`` prepended to every child's start arguments. Children are stopped
in parallel when the supervisor stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any, ClassVar

from suptrace.behaviours.admin import (
    AdminHandlers,
    ChildNotFound,
    MaxChildren,
    StartChildError,
    SupervisorError,
)
from suptrace.behaviours.childspec import ChildSpec, as_childspec, check_flags
from suptrace.behaviours.intensity import RestartWindow
from suptrace.behaviours.supervision import (
    Child,
    SupervisorBase,
    TryAgain,
    expected_shutdown,
    reason_text,
)
from suptrace.core.links import exit, monitor, trap_exit, unlink
from suptrace.core.mailbox import receive
from suptrace.core.terms import KILL, NOPROC, SHUTDOWN, Down, ExitMsg, Pid, is_normal_exit

__all__ = ["DynamicSupervisor"]


class DynamicSupervisor(SupervisorBase):
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

    describe_kind: ClassVar[str] = "dynamic_supervisor"
    children_have_ids: ClassVar[bool] = False
    #: Always one_for_one (a class attribute: no per-instance state to show).
    strategy = "one_for_one"

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
        return await cls.start_server(link, (), opts, name, timeout)

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
        self.children: dict[Pid, Child] = {}

    # -- exits and restarts --------------------------------------------------------------

    async def handle_info(self, msg: Any) -> None:
        if type(msg) is ExitMsg:
            child = self.children.get(msg.pid)
            if child is not None and not child.restarting:
                await self._child_exited(msg.pid, child, msg.reason)
        elif type(msg) is TryAgain:
            child = self.children.get(msg.key)
            if child is not None and child.restarting:
                await self._restart(msg.key, child, child.failure, retry=True)

    async def _child_exited(self, pid: Pid, child: Child, reason: Any) -> None:
        spec = child.spec
        normal = is_normal_exit(reason)
        if spec.restart == "temporary" or (spec.restart == "transient" and normal):
            if not normal:
                self.report("child_terminated", spec, pid, reason)
            del self.children[pid]
            if normal and spec.type == "supervisor":
                self.not_restarted(spec, child.proc, pid, reason)
            return
        self.report("child_terminated", spec, pid, reason)
        await self._restart(pid, child, reason)

    async def _restart(self, key: Pid, child: Child, reason: Any, retry: bool = False) -> None:
        if not self.count_restart(child):
            del self.children[key]
            self.give_up(child.spec, key, reason, retry)
        status, value = await self.start_spec(child.spec, self.extra_args)
        if status == "error":
            # The offender still holds the pid that died, as OTP's simple_one_for_one.
            self.report("start_error", child.spec, key, value)
            child.restarting = True
            child.failure = value
            self.try_again_later(key)
            return
        del self.children[key]
        if status == "ok":
            child.restarting = False
            child.pid = value
            child.proc = self.process_of(value)
            self.children[value] = child
            self.event("restart", child_id=child.spec.id, old_pid=key, new_pid=value, reason=reason)
            self.progress(child.spec, value)

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
            early = self.flush_exit(pid)
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
            if not expected_shutdown(child.spec, got):
                self.report("shutdown_error", child.spec, pid, got)

    # -- tooling API --------------------------------------------------------------------

    def child_records(self) -> Collection[Child]:
        return self.children.values()

    def child_by_pid(self, pid: Pid) -> Child | None:
        return self.children.get(pid)

    def child_key(self, text: str) -> Any:
        """The pid ``text`` names: a DynamicSupervisor knows its children by pid only.
        `ValueError` (naming this supervisor) when ``text`` is not a pid.

        >>> import suptrace
        >>> from suptrace.core.runtime import process_of
        >>> async def main():
        ...     pool = await suptrace.DynamicSupervisor.start_link(name="pool")
        ...     server = process_of(pool).behaviour
        ...     print(server.child_key("<0.42.0>"))
        ...     try:
        ...         server.child_key("worker")
        ...     except ValueError as e:
        ...         print(e)
        >>> suptrace.run(main)
        <0.42.0>
        pool is a DynamicSupervisor: name the child by pid (got 'worker', expected the form <0.42.0>)
        """
        try:
            return Pid.parse(text)
        except ValueError:
            raise ValueError(
                f"{self.sup_name} is a DynamicSupervisor: name the child by pid "
                f"(got {text!r}, expected the form <0.42.0>)"
            ) from None

    def describe_flags(self) -> dict[str, Any]:
        return {"max_children": self.max_children}

    # -- admin requests (the handler table is `admin_handlers`, below) ------------------

    async def start_child_request(self, arg: Any) -> Pid | None:
        """``start_child``: start a child from a spec, ``extra_args`` first."""
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
        status, value = await self.start_spec(spec, self.extra_args)
        if status == "error":
            raise StartChildError(
                f"starting child {spec.id!r} under {self.sup_name} failed: {reason_text(value)}",
                self.sup_name,
                spec.id,
                value,
            )
        if status == "ignore":
            return None
        self.children[value] = Child(spec, value, self.process_of(value))
        self.progress(spec, value, api=True)
        return value  # type: ignore[no-any-return]

    async def terminate_child_request(self, arg: Any) -> None:
        """``terminate_child``: stop the child running as pid ``arg`` and forget it."""
        child = self.children.get(arg) if isinstance(arg, Pid) else None
        if child is None:
            raise ChildNotFound(
                f"{arg!r} is not a child of {self.sup_name} (a DynamicSupervisor terminates children by pid)",
                self.sup_name,
                arg,
            )
        del self.children[arg]
        if not child.restarting:
            await self.shutdown_child(child.spec, arg)

    async def get_childspec_request(self, arg: Any) -> ChildSpec:
        """``get_childspec``: the spec of the child running as pid ``arg``."""
        if isinstance(arg, Pid) and arg in self.children:
            return self.children[arg].spec
        raise self._unsupported("get_childspec", arg)

    async def restart_child_request(self, arg: Any) -> None:
        raise self._unsupported("restart_child", arg)

    async def delete_child_request(self, arg: Any) -> None:
        raise self._unsupported("delete_child", arg)

    #: The admin handler table: request kind -> the method that answers it.
    admin_handlers: ClassVar[AdminHandlers] = {
        **SupervisorBase.admin_handlers,
        "start_child": start_child_request,
        "get_childspec": get_childspec_request,
        "terminate_child": terminate_child_request,
        "restart_child": restart_child_request,
        "delete_child": delete_child_request,
    }

    def _unsupported(self, kind: str, arg: Any) -> SupervisorError:
        return SupervisorError(
            f"{kind} is not supported by a DynamicSupervisor (its children have no ids)",
            self.sup_name,
            arg,
        )


def _check(intensity: Any, period: Any, max_children: Any, extra_args: Any) -> None:
    check_flags("one_for_one", intensity, period, "never")
    if max_children is not None and (
        isinstance(max_children, bool) or not isinstance(max_children, int) or max_children < 0
    ):
        raise ValueError(f"invalid max_children {max_children!r} (expected None or an int >= 0)")
    if not isinstance(extra_args, (tuple, list)):
        raise ValueError(f"invalid extra_args {extra_args!r} (expected a tuple)")
