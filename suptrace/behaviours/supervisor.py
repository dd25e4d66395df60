"""Supervisor: starts children, restarts them by strategy, gives up by intensity.

OTP's rules (``supervisor.erl``), kept case by case:

* children start in list order; a failed start stops the ones already started
  (reverse order) and the supervisor exits
  ``Shutdown(("failed_to_start_child", id, reason))``;
* a child exit is handled by its restart type (permanent always restarts;
  transient only after an abnormal exit; temporary never) and the strategy
  (``one_for_one``, ``one_for_all``, ``rest_for_one``);
* every restart, and every retry of a failed restart, is counted: more than
  ``intensity`` within ``period`` seconds and the supervisor stops all children
  in reverse start order and exits ``"shutdown"``;
* reports (as events the reports observer turns into SASL reports) are emitted
  exactly where OTP logs them -- plus ``not_restarted`` where OTP is silent.

What both supervisors share (child records, starting and stopping one child,
intensity bookkeeping, reports) is in `suptrace.behaviours.supervision`; the
admin requests and their client functions are in `suptrace.behaviours.admin`
(their names are also importable from here).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar

from suptrace.behaviours.admin import (
    AdminHandlers,
    AlreadyPresent,
    AlreadyStarted,
    ChildNotFound,
    ChildRestarting,
    ChildRunning,
    StartChildError,
)
from suptrace.behaviours.childspec import ChildSpec, as_childspec, check_flags
from suptrace.behaviours.intensity import RestartWindow
from suptrace.behaviours.supervision import Child, SupervisorBase, TryAgain, reason_text
from suptrace.core.errors import Exit
from suptrace.core.links import trap_exit
from suptrace.core.terms import SHUTDOWN, ExitMsg, Pid, Shutdown, is_normal_exit

__all__ = ["Supervisor"]


class Supervisor(SupervisorBase):
    """A supervisor with static children.

    >>> import suptrace
    >>> async def worker():
    ...     await suptrace.receive()
    >>> async def start_worker():
    ...     return suptrace.spawn_link(worker)
    >>> async def main():
    ...     spec = suptrace.ChildSpec(id="w", start=(start_worker, ()))
    ...     sup = await suptrace.Supervisor.start_link([spec], intensity=3, period=5)
    ...     [child] = await suptrace.which_children(sup)
    ...     suptrace.exit(child.pid, "boom")                  # crash it...
    ...     while (await suptrace.which_children(sup))[0].pid == child.pid:
    ...         await suptrace.call(sup, ("which_children",)) # ...and let it restart
    ...     return await suptrace.count_children(sup)
    >>> suptrace.run(main)
    {'specs': 1, 'active': 1, 'supervisors': 0, 'workers': 1}
    """

    strategy: str
    auto_shutdown: str

    @classmethod
    async def start_link(  # type: ignore[override,unused-ignore]
        cls,
        children: Any = (),
        *,
        strategy: str = "one_for_one",
        intensity: int = 1,
        period: int = 5,
        auto_shutdown: str = "never",
        name: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Start a supervisor linked to the caller; returns its pid once every
        child has started. Invalid flags or specs raise `ValueError` here."""
        return await cls._boot(
            True, children, strategy, intensity, period, auto_shutdown, name, timeout
        )

    @classmethod
    async def start(  # type: ignore[override,unused-ignore]
        cls,
        children: Any = (),
        *,
        strategy: str = "one_for_one",
        intensity: int = 1,
        period: int = 5,
        auto_shutdown: str = "never",
        name: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Like `start_link`, unlinked."""
        return await cls._boot(
            False, children, strategy, intensity, period, auto_shutdown, name, timeout
        )

    @classmethod
    async def _boot(
        cls,
        link: bool,
        children: Any,
        strategy: str,
        intensity: int,
        period: int,
        auto_shutdown: str,
        name: str | None,
        timeout: float | None,
    ) -> Any:
        specs = _check_all(children, strategy, intensity, period, auto_shutdown)
        flags = {
            "strategy": strategy,
            "intensity": intensity,
            "period": period,
            "auto_shutdown": auto_shutdown,
        }
        return await cls.start_server(link, (specs,), flags, name, timeout)

    async def init(
        self,
        specs: list[ChildSpec],
        strategy: str,
        intensity: int,
        period: int,
        auto_shutdown: str,
    ) -> None:
        trap_exit(True)
        self.strategy = strategy
        self.intensity = intensity
        self.period = period
        self.auto_shutdown = auto_shutdown
        self.window = RestartWindow(intensity, period)
        self.exit_cause = None
        self.children: list[Child] = []
        self.by_id: dict[Any, Child] = {}
        self.by_pid: dict[Pid, Child] = {}
        for spec in specs:
            status, value = await self.start_spec(spec)
            if status == "error":
                self.report("start_error", spec, None, value)
                await self._stop_children(self.children)
                raise Exit(Shutdown(("failed_to_start_child", spec.id, value)))
            if status == "ignore" and spec.restart == "temporary":
                continue
            child = Child(spec)
            self._add(child)
            if status == "ok":
                self._set_pid(child, value)
                self.progress(spec, value)

    # -- bookkeeping --------------------------------------------------------------------

    def _add(self, child: Child) -> None:
        self.children.append(child)
        self.by_id[child.spec.id] = child

    def _remove(self, child: Child) -> None:
        self.children.remove(child)
        self.by_id.pop(child.spec.id, None)
        if child.pid is not None:
            self.by_pid.pop(child.pid, None)

    def _set_pid(self, child: Child, pid: Pid | None) -> None:
        if child.pid is not None:
            self.by_pid.pop(child.pid, None)
        child.pid = pid
        child.proc = self.process_of(pid) if pid is not None else None
        if pid is not None:
            self.by_pid[pid] = child

    # -- child exits --------------------------------------------------------------------

    async def handle_info(self, msg: Any) -> None:
        if type(msg) is ExitMsg:
            child = self.by_pid.get(msg.pid)
            if child is not None:
                await self._child_exited(child, msg.reason)
        elif type(msg) is TryAgain:
            child = self.by_id.get(msg.key)
            if child is not None and child.restarting:
                await self._restart(child, child.failure, None, retry=True)

    async def _child_exited(self, child: Child, reason: Any) -> None:
        spec = child.spec
        pid = child.pid
        dead = child.proc
        restart = spec.restart
        if restart == "permanent" or (not is_normal_exit(reason) and restart == "transient"):
            self.report("child_terminated", spec, pid, reason)
            self._set_pid(child, None)
            await self._restart(child, reason, pid)
            return
        if restart == "temporary":
            if not is_normal_exit(reason):
                self.report("child_terminated", spec, pid, reason)
            self._remove(child)
        else:
            self._set_pid(child, None)
        if is_normal_exit(reason) and spec.type == "supervisor":
            self.not_restarted(spec, dead, pid, reason)
        if spec.significant:
            self._check_auto_shutdown(child, reason)

    def _check_auto_shutdown(self, child: Child, reason: Any) -> None:
        if self.auto_shutdown == "never":
            return
        # A child between a failed restart and its retry still counts: OTP keeps
        # {restarting, Pid} as its pid, not undefined.
        if self.auto_shutdown == "all_significant" and any(
            c.spec.significant and (c.pid is not None or c.restarting) for c in self.children
        ):
            return
        text = (
            f"auto_shutdown={self.auto_shutdown}: significant child {child.spec.id!r} "
            f"exited {reason_text(reason)}"
        )
        self.record_exit_cause(
            {"cause": "auto_shutdown", "child_id": child.spec.id, "text": text}, f"by {text}"
        )
        raise Exit(SHUTDOWN)

    # -- restarts -----------------------------------------------------------------------

    async def _restart(
        self, child: Child, reason: Any, old: Pid | None, retry: bool = False
    ) -> None:
        if not self.count_restart(child):
            child.restarting = False
            self._remove(child)
            self.give_up(child.spec, old, reason, retry)
        if self.strategy == "one_for_one":
            group = [child]
        else:
            index = self.children.index(child)
            group = (
                self.children[index:] if self.strategy == "rest_for_one" else list(self.children)
            )
            for other in reversed(group):
                if other is not child and other.pid is not None:
                    pid = other.pid
                    await self.shutdown_child(other.spec, pid)
                    self._set_pid(other, None)
                    if other.spec.restart == "temporary":
                        self._remove(other)
            group = [c for c in group if c.spec.id in self.by_id]
        for member in group:
            status, value = await self.start_spec(member.spec)
            if status == "error":
                # As OTP's supervisor:restart/3: a one_for_one start_error names the
                # child record still holding the pid that died (also on a retry); the
                # other strategies cleared the pids of the group they stopped.
                if self.strategy == "one_for_one" and old is not None:
                    member.dead = old
                dead = member.dead if self.strategy == "one_for_one" else None
                self.report("start_error", member.spec, dead, value)
                member.restarting = True
                member.failure = value
                self.try_again_later(member.spec.id)
                return
            member.restarting = False
            if status == "ok":
                self._set_pid(member, value)
                self.event(
                    "restart",
                    child_id=member.spec.id,
                    old_pid=old if member is child else None,
                    new_pid=value,
                    reason=reason,
                )
                self.progress(member.spec, value)
            else:
                self._set_pid(member, None)

    # -- stopping -----------------------------------------------------------------------

    async def _stop_children(self, children: list[Child]) -> None:
        for child in reversed(list(children)):
            if child.pid is not None:
                await self.shutdown_child(child.spec, child.pid)
                self._set_pid(child, None)
            child.restarting = False

    async def terminate(self, reason: Any) -> None:
        await self._stop_children(self.children)

    # -- tooling API --------------------------------------------------------------------

    def child_records(self) -> Collection[Child]:
        return self.children

    def child_by_pid(self, pid: Pid) -> Child | None:
        return self.by_pid.get(pid)

    def child_key(self, text: str) -> Any:
        """The id of the child whose id is ``text`` or prints as ``text`` (its str
        or repr); ``text`` itself when no child matches.

        >>> import suptrace
        >>> from suptrace.core.runtime import process_of
        >>> async def worker():
        ...     await suptrace.receive()
        >>> async def start_worker():
        ...     return suptrace.spawn_link(worker)
        >>> async def main():
        ...     spec = suptrace.ChildSpec(id=("db", 1), start=(start_worker, ()))
        ...     sup = await suptrace.Supervisor.start_link([spec])
        ...     server = process_of(sup).behaviour
        ...     return server.child_key("('db', 1)"), server.child_key("cache")
        >>> suptrace.run(main)
        (('db', 1), 'cache')
        """
        for c in self.children:
            cid = c.spec.id
            if cid == text or str(cid) == text or repr(cid) == text:
                return cid
        return text

    def describe_flags(self) -> dict[str, Any]:
        return {"auto_shutdown": self.auto_shutdown}

    # -- admin requests (the handler table is `admin_handlers`, below) ------------------

    async def start_child_request(self, spec: Any) -> Pid | None:
        """``start_child``: add a spec and start it (OTP's error cases, no report)."""
        spec = as_childspec(spec)
        _check_id(spec)
        _check_significant(spec, self.auto_shutdown)
        existing = self.by_id.get(spec.id)
        if existing is not None:
            if existing.pid is not None and not existing.restarting:
                raise AlreadyStarted(
                    f"child {spec.id!r} of {self.sup_name} is already running as {existing.pid}",
                    self.sup_name,
                    spec.id,
                    existing.pid,
                )
            raise AlreadyPresent(
                f"a child spec {spec.id!r} is already present in {self.sup_name} (not running); "
                "use restart_child or delete_child",
                self.sup_name,
                spec.id,
            )
        status, value = await self.start_spec(spec)
        if status == "error":
            raise StartChildError(
                f"starting child {spec.id!r} under {self.sup_name} failed: {reason_text(value)}",
                self.sup_name,
                spec.id,
                value,
            )
        if status == "ignore" and spec.restart == "temporary":
            return None
        child = Child(spec)
        self._add(child)
        if status == "ok":
            self._set_pid(child, value)
            self.progress(spec, value, api=True)
            return value  # type: ignore[no-any-return]
        return None

    async def get_childspec_request(self, key: Any) -> ChildSpec:
        """``get_childspec``: the spec of the child with id ``key``."""
        return self._need(key).spec

    async def terminate_child_request(self, key: Any) -> None:
        """``terminate_child``: stop the child (a retry pending is cancelled); a
        temporary child's spec goes too."""
        child = self._need(key)
        if child.restarting:
            child.restarting = False
        elif child.pid is not None:
            await self.shutdown_child(child.spec, child.pid)
            self._set_pid(child, None)
        if child.spec.restart == "temporary":
            self._remove(child)

    async def restart_child_request(self, key: Any) -> Pid | None:
        """``restart_child``: start a stopped child from its spec."""
        child = self._need(key)
        self._check_stopped(child)
        status, value = await self.start_spec(child.spec)
        if status == "error":
            raise StartChildError(
                f"restarting child {key!r} of {self.sup_name} failed: {reason_text(value)}",
                self.sup_name,
                key,
                value,
            )
        if status == "ok":
            self._set_pid(child, value)
            self.progress(child.spec, value, api=True)
            return value  # type: ignore[no-any-return]
        return None

    async def delete_child_request(self, key: Any) -> None:
        """``delete_child``: remove a stopped child's spec."""
        child = self._need(key)
        self._check_stopped(child)
        self._remove(child)

    #: The admin handler table: request kind -> the method that answers it.
    admin_handlers: ClassVar[AdminHandlers] = {
        **SupervisorBase.admin_handlers,
        "start_child": start_child_request,
        "get_childspec": get_childspec_request,
        "terminate_child": terminate_child_request,
        "restart_child": restart_child_request,
        "delete_child": delete_child_request,
    }

    def _need(self, key: Any) -> Child:
        try:
            child = self.by_id.get(key)
        except TypeError:  # an unhashable key: no child has it as its id
            child = None
        if child is None:
            raise ChildNotFound(
                f"supervisor {self.sup_name} has no child {key!r} "
                f"(children: {[c.spec.id for c in self.children]})",
                self.sup_name,
                key,
            )
        return child

    def _check_stopped(self, child: Child) -> None:
        key = child.spec.id
        if child.restarting:
            raise ChildRestarting(
                f"child {key!r} of {self.sup_name} is restarting (a restart failed and will be retried)",
                self.sup_name,
                key,
            )
        if child.pid is not None:
            raise ChildRunning(
                f"child {key!r} of {self.sup_name} is running as {child.pid}; terminate_child it first",
                self.sup_name,
                key,
            )


def _check_all(
    children: Any, strategy: Any, intensity: Any, period: Any, auto_shutdown: Any
) -> list[ChildSpec]:
    check_flags(strategy, intensity, period, auto_shutdown)
    if isinstance(children, (str, bytes)) or not hasattr(children, "__iter__"):
        raise ValueError(f"children must be a list of ChildSpec, got {children!r}")
    specs = [as_childspec(c) for c in children]
    seen: set[Any] = set()
    for spec in specs:
        _check_id(spec)
        if spec.id in seen:
            raise ValueError(f"child specs: duplicate child id {spec.id!r}")
        seen.add(spec.id)
        _check_significant(spec, auto_shutdown)
    return specs


def _check_significant(spec: ChildSpec, auto_shutdown: str) -> None:
    if spec.significant and auto_shutdown == "never":
        raise ValueError(
            f"child spec {spec.id!r}: bad combination: significant=True with "
            "auto_shutdown='never' (significance only matters with any_significant "
            "or all_significant)"
        )


def _check_id(spec: ChildSpec) -> None:
    """A Supervisor finds its children by id: the id must be hashable."""
    try:
        hash(spec.id)
    except TypeError:
        raise ValueError(
            f"child spec {spec.id!r}: invalid id: a Supervisor keys its children by id, "
            "so the id must be hashable (use a str, a number or a tuple)"
        ) from None
