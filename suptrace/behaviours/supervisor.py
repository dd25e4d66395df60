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
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from suptrace.behaviours.childspec import (
    ChildInfo,
    ChildSpec,
    as_childspec,
    check_flags,
)
from suptrace.behaviours.gen_server import Caller, GenServer, StartError, call
from suptrace.behaviours.intensity import RestartWindow
from suptrace.core.errors import Exit
from suptrace.core.process import (
    Process,
    exit,
    link,
    monitor,
    receive,
    trap_exit,
    unlink,
)
from suptrace.core.saferepr import exception_str, safe_repr, safe_str
from suptrace.core.terms import (
    IGNORE,
    KILL,
    KILLED,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    Down,
    ExitMsg,
    Pid,
    Shutdown,
    is_normal_exit,
)

__all__ = [
    "Supervisor",
    "SupervisorError",
    "ChildNotFound",
    "ChildRunning",
    "ChildRestarting",
    "AlreadyPresent",
    "AlreadyStarted",
    "StartChildError",
    "MaxChildren",
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


# -- children ------------------------------------------------------------------------------


class _Child:
    __slots__ = (
        "dead",
        "failure",
        "pid",
        "proc",
        "restart_times",
        "restarting",
        "restarts",
        "spec",
    )

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.pid: Pid | None = None
        self.proc: Process | None = None
        self.restarting = False
        #: Why the last restart failed, while ``restarting``.
        self.failure: Any = None
        #: Restarts counted against the intensity because this child exited (or its
        #: restart failed), over the supervisor's life; see `_SupervisorBase.restarts_of`.
        self.restarts = 0
        #: Their whole-second monotonic times within the period (oldest first), or None.
        self.restart_times: deque[int] | None = None
        #: The pid that died, while a one_for_one restart fails (OTP's {restarting, Pid}).
        self.dead: Pid | None = None

    def state(self) -> Pid | str | None:
        return "restarting" if self.restarting else self.pid


@dataclass(frozen=True, slots=True)
class _TryAgain:
    key: Any


def offender(spec: ChildSpec, pid: Pid | None) -> dict[str, Any]:
    """OTP's offender keys for a child."""
    start: Any = spec.start
    if spec.restart == "temporary":
        start = (spec.func, None)  # OTP keeps no start args for temporary children
    return {
        "pid": pid,
        "id": spec.id,
        "start": start,
        "restart_type": spec.restart,
        "shutdown": spec.shutdown,
        "child_type": spec.type,
        "significant": spec.significant,
    }


def _reason_text(reason: Any) -> str:
    if isinstance(reason, BaseException):  # total and bounded, whatever the reason is
        message = exception_str(reason, 1000)
        return f"{type(reason).__name__}({message})" if message else type(reason).__name__
    return safe_str(reason, 1000) if isinstance(reason, str) else safe_repr(reason, 1000)


class _SupervisorBase(GenServer):
    """What both supervisors share: starting, stopping, counting and reporting."""

    intensity: int
    period: int
    window: RestartWindow
    exit_cause: dict[str, Any] | None

    # -- admin requests -----------------------------------------------------------------

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        """Admin requests answer ``("ok", value)`` or ``("error", exc)``; the client
        functions raise the error in the caller, and the supervisor keeps running."""
        op = request[0] if isinstance(request, tuple) and request else request
        try:
            return ("ok", await self._admin(op, request))
        except (SupervisorError, ValueError) as e:
            return ("error", e)

    async def _admin(self, op: Any, request: tuple[Any, ...]) -> Any:
        raise NotImplementedError

    # -- reporting ----------------------------------------------------------------------

    @property
    def sup_name(self) -> Any:
        return self._proc.name or self._proc.pid

    def _event(self, kind: str, **data: Any) -> None:
        proc = self._proc
        rt = proc.runtime
        if kind in rt.watch or proc.tracers:
            rt.emit(proc, kind, {"supervisor": self.sup_name, **data})

    def _report(self, context: str, spec: ChildSpec, pid: Pid | None, reason: Any) -> None:
        self._event(context, child_id=spec.id, reason=reason, offender=offender(spec, pid))

    def _progress(self, spec: ChildSpec, pid: Pid, api: bool = False) -> None:
        """A child started; ``api`` marks starts requested through the admin API
        (logged at DEBUG rather than INFO, as current OTP does)."""
        if api:
            self._event("progress", child_id=spec.id, started=offender(spec, pid), api=True)
        else:
            self._event("progress", child_id=spec.id, started=offender(spec, pid))

    # -- starting -----------------------------------------------------------------------

    async def _start_spec(self, spec: ChildSpec, extra: tuple[Any, ...] = ()) -> tuple[str, Any]:
        """Run a start function: ``("ok", pid)``, ``("ignore", None)`` or ``("error", reason)``."""
        try:
            result = spec.func(*extra, *spec.args, **spec.kwargs)
            if inspect.isawaitable(result):
                result = await result
        except (Exit, StartError) as e:
            # A child's failed init (``StartError``) reports its own reason, as
            # OTP's ``{error, Reason}`` from ``start_link``.
            return "error", e.reason
        except Exception as e:
            return "error", e
        if result is IGNORE:
            return "ignore", None
        if type(result) is not Pid:
            return "error", TypeError(
                f"start function {spec.start_text()} of child {spec.id!r} returned "
                f"{result!r}; it must return a Pid linked to the supervisor, or IGNORE"
            )
        me = self._proc
        if me.links is None or result not in me.links:
            # OTP assumes the start function linked the child; an unlinked child
            # would die unseen, so link it here.
            link(result)
        return "ok", result

    def _try_again_later(self, key: Any) -> None:
        """Schedule a retry of a failed restart (OTP's ``try_again_restart`` cast).

        The retry arrives on a later loop iteration, so requests from other
        processes (terminate_child, shutdown) get in between even when the
        start function fails without ever awaiting.
        """
        proc = self._proc
        proc.runtime.loop.call_soon(proc.deliver, _TryAgain(key), proc.pid)

    def _count_restart(self, child: Any) -> bool:
        """Count a restart against the intensity, and against ``child`` (the child
        whose exit, or failed restart, caused it): O(1) amortised."""
        now = int(time.monotonic())
        child.restarts += 1
        times = child.restart_times
        if times is None:
            child.restart_times = times = deque()
        times.append(now)
        horizon = now - self.period
        while times[0] < horizon:
            times.popleft()
        return self.window.add(now)

    def _child_restarts(self, child: Any) -> tuple[int, int]:
        """``(total, within the intensity window now)`` for one child."""
        times = child.restart_times
        if not times:
            return child.restarts, 0
        horizon = int(time.monotonic()) - self.period
        return child.restarts, sum(1 for t in times if t >= horizon)

    def restarts_of(self, pid: Pid) -> tuple[int, int] | None:
        """How often this supervisor restarted the child now running as ``pid``:
        ``(total, within the intensity window)``, or None if ``pid`` is not its child.

        Only restarts counted against the intensity are counted, each against the
        child whose exit caused it (siblings a one_for_all restart takes along are not)."""
        raise NotImplementedError

    def _give_up(self, spec: ChildSpec, pid: Pid | None, reason: Any, retry: bool = False) -> None:
        """Restart intensity reached: report, remember why, and exit ``shutdown``.

        ``reason`` is the child's exit reason, or with ``retry`` the reason its
        last restart failed."""
        used = self.window.used(int(time.monotonic()))
        self._event(
            "intensity",
            child_id=spec.id,
            reason="reached_max_restart_intensity",
            offender=offender(spec, pid),
            child_reason=reason,
            restarts=used,
            intensity=self.intensity,
            period=self.period,
        )
        what = "failed to restart:" if retry else "exited"
        last = f"last offender {spec.id!r} {what} {_reason_text(reason)}"
        detail = f"{used} restarts in {self.period}s exceeded max restart intensity {self.intensity}; {last}"
        cause = (
            f"after reaching max restart intensity ({used} restarts in {self.period}s, "
            f"intensity {self.intensity}; {last})"
        )
        self.exit_cause = {
            "cause": "reached_max_restart_intensity",
            "offender": offender(spec, pid),
            "offender_reason": reason,
            "detail": detail,
            "text": cause,
        }
        self._proc.notes = [cause]
        raise Exit(SHUTDOWN)

    def _not_restarted(
        self, spec: ChildSpec, dead: Process | None, pid: Pid | None, reason: Any
    ) -> None:
        """Beyond OTP: say out loud that a whole subtree is gone for good."""
        cause = None
        if dead is not None and isinstance(dead.behaviour, _SupervisorBase):
            cause = dead.behaviour.exit_cause
        rule = (
            f"{spec.restart} child exited {_reason_text(reason)}, which counts as a normal "
            f"exit: a {spec.restart} child is only restarted after an abnormal exit"
            if spec.restart == "transient"
            else f"temporary child: never restarted (exited {_reason_text(reason)})"
        )
        self._event(
            "not_restarted",
            child_id=spec.id,
            reason=reason,
            restart_type=spec.restart,
            cause=cause,
            rule=rule,
            offender=offender(spec, pid),
        )
        name = dead.name if dead is not None else None
        if name is not None:
            stone = self._proc.runtime.tombstones.get(name)
            if stone is not None and stone.pid == pid:
                stone.notes.append(
                    f"{spec.restart}, so its parent {self.sup_name} did not restart it"
                )

    # -- stopping ----------------------------------------------------------------------

    def _flush_exit(self, pid: Pid) -> Any:
        """Take a queued ``ExitMsg`` from ``pid`` out of the mailbox; its reason or None."""
        msg, _ = self._proc.extract(lambda m: type(m) is ExitMsg and m.pid == pid)
        return msg.reason if type(msg) is ExitMsg else None

    async def _shutdown_child(self, spec: ChildSpec, pid: Pid) -> None:
        """Stop one child per its shutdown spec; report an unexpected exit reason."""
        ref = monitor(pid)
        unlink(pid)
        early = self._flush_exit(pid)
        sd = spec.shutdown
        if sd == "brutal_kill":
            exit(pid, KILL)
            reason = await _down(ref, None)
        else:
            exit(pid, SHUTDOWN)
            try:
                reason = await _down(ref, None if sd == "infinity" else float(sd))
            except TimeoutError:
                exit(pid, KILL)
                reason = await _down(ref, None)
        if isinstance(reason, str) and reason == NOPROC and early is not None:
            reason = early
        if not _expected_shutdown(spec, reason):
            self._report("shutdown_error", spec, pid, reason)

    # -- admin helpers ------------------------------------------------------------------

    def _window_text(self) -> str:
        return f"{self.window.used(int(time.monotonic()))}/{self.intensity} in {self.period}s"


def _expected_shutdown(spec: ChildSpec, reason: Any) -> bool:
    # Only strings are compared: a reason's own __eq__ (user data) never runs here.
    if spec.shutdown == "brutal_kill":
        if isinstance(reason, str) and reason == KILLED:
            return True
    elif isinstance(reason, str) and reason == SHUTDOWN:
        return True
    if spec.restart != "permanent":
        return (isinstance(reason, str) and reason in (NORMAL, SHUTDOWN)) or type(reason) is Shutdown
    return False


async def _down(ref: Any, timeout: float | None) -> Any:
    msg = await receive(lambda m: type(m) is Down and m.ref == ref, timeout)
    return msg.reason


class Supervisor(_SupervisorBase):
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
        return await cls._start((specs,), flags, name, timeout, link=link)

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
        self.children: list[_Child] = []
        self.by_id: dict[Any, _Child] = {}
        self.by_pid: dict[Pid, _Child] = {}
        for spec in specs:
            status, value = await self._start_spec(spec)
            if status == "error":
                self._report("start_error", spec, None, value)
                await self._stop_children(self.children)
                raise Exit(Shutdown(("failed_to_start_child", spec.id, value)))
            if status == "ignore" and spec.restart == "temporary":
                continue
            child = _Child(spec)
            self._add(child)
            if status == "ok":
                self._set_pid(child, value)
                self._progress(spec, value)

    # -- bookkeeping --------------------------------------------------------------------

    def _add(self, child: _Child) -> None:
        self.children.append(child)
        self.by_id[child.spec.id] = child

    def _remove(self, child: _Child) -> None:
        self.children.remove(child)
        self.by_id.pop(child.spec.id, None)
        if child.pid is not None:
            self.by_pid.pop(child.pid, None)

    def restarts_of(self, pid: Pid) -> tuple[int, int] | None:
        child = self.by_pid.get(pid)
        return None if child is None else self._child_restarts(child)

    def _set_pid(self, child: _Child, pid: Pid | None) -> None:
        if child.pid is not None:
            self.by_pid.pop(child.pid, None)
        child.pid = pid
        child.proc = pid._proc if pid is not None else None
        if pid is not None:
            self.by_pid[pid] = child

    # -- child exits --------------------------------------------------------------------

    async def handle_info(self, msg: Any) -> None:
        if type(msg) is ExitMsg:
            child = self.by_pid.get(msg.pid)
            if child is not None:
                await self._child_exited(child, msg.reason)
        elif type(msg) is _TryAgain:
            child = self.by_id.get(msg.key)
            if child is not None and child.restarting:
                await self._restart(child, child.failure, None, retry=True)

    async def _child_exited(self, child: _Child, reason: Any) -> None:
        spec = child.spec
        pid = child.pid
        dead = child.proc
        restart = spec.restart
        if restart == "permanent" or (not is_normal_exit(reason) and restart == "transient"):
            self._report("child_terminated", spec, pid, reason)
            self._set_pid(child, None)
            await self._restart(child, reason, pid)
            return
        if restart == "temporary":
            if not is_normal_exit(reason):
                self._report("child_terminated", spec, pid, reason)
            self._remove(child)
        else:
            self._set_pid(child, None)
        if is_normal_exit(reason) and spec.type == "supervisor":
            self._not_restarted(spec, dead, pid, reason)
        if spec.significant:
            self._check_auto_shutdown(child, reason)

    def _check_auto_shutdown(self, child: _Child, reason: Any) -> None:
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
            f"exited {_reason_text(reason)}"
        )
        self.exit_cause = {"cause": "auto_shutdown", "child_id": child.spec.id, "text": text}
        self._proc.notes = [f"by {text}"]
        raise Exit(SHUTDOWN)

    # -- restarts -----------------------------------------------------------------------

    async def _restart(
        self, child: _Child, reason: Any, old: Pid | None, retry: bool = False
    ) -> None:
        if not self._count_restart(child):
            child.restarting = False
            self._remove(child)
            self._give_up(child.spec, old, reason, retry)
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
                    await self._shutdown_child(other.spec, pid)
                    self._set_pid(other, None)
                    if other.spec.restart == "temporary":
                        self._remove(other)
            group = [c for c in group if c.spec.id in self.by_id]
        for member in group:
            status, value = await self._start_spec(member.spec)
            if status == "error":
                # As OTP's supervisor:restart/3: a one_for_one start_error names the
                # child record still holding the pid that died (also on a retry); the
                # other strategies cleared the pids of the group they stopped.
                if self.strategy == "one_for_one" and old is not None:
                    member.dead = old
                dead = member.dead if self.strategy == "one_for_one" else None
                self._report("start_error", member.spec, dead, value)
                member.restarting = True
                member.failure = value
                self._try_again_later(member.spec.id)
                return
            member.restarting = False
            if status == "ok":
                self._set_pid(member, value)
                self._event(
                    "restart",
                    child_id=member.spec.id,
                    old_pid=old if member is child else None,
                    new_pid=value,
                    reason=reason,
                )
                self._progress(member.spec, value)
            else:
                self._set_pid(member, None)

    # -- stopping -----------------------------------------------------------------------

    async def _stop_children(self, children: list[_Child]) -> None:
        for child in reversed(list(children)):
            if child.pid is not None:
                await self._shutdown_child(child.spec, child.pid)
                self._set_pid(child, None)
            child.restarting = False

    async def terminate(self, reason: Any) -> None:
        await self._stop_children(self.children)

    # -- admin --------------------------------------------------------------------------

    async def _admin(self, op: Any, request: tuple[Any, ...]) -> Any:
        if op == "which_children":
            return [
                ChildInfo(c.spec.id, c.state(), c.spec.type, c.spec.module_names())
                for c in reversed(self.children)
            ]
        if op == "count_children":
            return {
                "specs": len(self.children),
                "active": sum(1 for c in self.children if c.pid is not None and not c.restarting),
                "supervisors": sum(1 for c in self.children if c.spec.type == "supervisor"),
                "workers": sum(1 for c in self.children if c.spec.type == "worker"),
            }
        if op == "describe":
            return self._describe()
        key = request[1]
        if op == "start_child":
            return await self._api_start_child(as_childspec(key))
        child = self.by_id.get(key)
        if op == "get_childspec":
            return self._need(child, key).spec
        if op == "terminate_child":
            child = self._need(child, key)
            if child.restarting:
                child.restarting = False
            elif child.pid is not None:
                await self._shutdown_child(child.spec, child.pid)
                self._set_pid(child, None)
            if child.spec.restart == "temporary":
                self._remove(child)
            return None
        if op == "restart_child":
            child = self._need(child, key)
            self._check_stopped(child)
            status, value = await self._start_spec(child.spec)
            if status == "error":
                raise StartChildError(
                    f"restarting child {key!r} of {self.sup_name} failed: {_reason_text(value)}",
                    self.sup_name,
                    key,
                    value,
                )
            if status == "ok":
                self._set_pid(child, value)
                self._progress(child.spec, value, api=True)
                return value
            return None
        if op == "delete_child":
            child = self._need(child, key)
            self._check_stopped(child)
            self._remove(child)
            return None
        raise ValueError(f"unknown supervisor request {request!r}")

    def _need(self, child: _Child | None, key: Any) -> _Child:
        if child is None:
            raise ChildNotFound(
                f"supervisor {self.sup_name} has no child {key!r} "
                f"(children: {[c.spec.id for c in self.children]})",
                self.sup_name,
                key,
            )
        return child

    def _check_stopped(self, child: _Child) -> None:
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

    async def _api_start_child(self, spec: ChildSpec) -> Pid | None:
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
        status, value = await self._start_spec(spec)
        if status == "error":
            raise StartChildError(
                f"starting child {spec.id!r} under {self.sup_name} failed: {_reason_text(value)}",
                self.sup_name,
                spec.id,
                value,
            )
        if status == "ignore" and spec.restart == "temporary":
            return None
        child = _Child(spec)
        self._add(child)
        if status == "ok":
            self._set_pid(child, value)
            self._progress(spec, value, api=True)
            return value  # type: ignore[no-any-return]
        return None

    def _describe(self) -> dict[str, Any]:
        return {
            "kind": "supervisor",
            "name": self._proc.name,
            "pid": self._proc.pid,
            "strategy": self.strategy,
            "intensity": self.intensity,
            "period": self.period,
            "restarts_in_window": self.window.used(int(time.monotonic())),
            "auto_shutdown": self.auto_shutdown,
            "children": [
                {
                    "id": c.spec.id,
                    "pid": c.state(),
                    "restart": c.spec.restart,
                    "type": c.spec.type,
                    "shutdown": c.spec.shutdown,
                    "significant": c.spec.significant,
                    "restarts": c.restarts,
                    "restarts_window": self._child_restarts(c)[1],
                    "start": c.spec.start,
                }
                for c in reversed(self.children)
            ],
        }


def _check_all(
    children: Any, strategy: Any, intensity: Any, period: Any, auto_shutdown: Any
) -> list[ChildSpec]:
    check_flags(strategy, intensity, period, auto_shutdown)
    if isinstance(children, (str, bytes)) or not hasattr(children, "__iter__"):
        raise ValueError(f"children must be a list of ChildSpec, got {children!r}")
    specs = [as_childspec(c) for c in children]
    seen: set[Any] = set()
    for spec in specs:
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
