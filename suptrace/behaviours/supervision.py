"""What every supervisor shares: the child record, starting and stopping one
child, restart-intensity bookkeeping, reports, and the admin dispatch.

`SupervisorBase` is the base of `Supervisor` (static children, strategies) and
`DynamicSupervisor` (children started at run time). Its methods without a
leading underscore are what those subclasses build on; the *tooling API* part
(`restarts_of`, `intensity_use`, `child_key`) is what the node's control plane
reads in place, on the node's loop, without sending the supervisor a request.

Reports are events (the reports observer turns them into SASL reports),
emitted exactly where OTP logs them -- plus ``not_restarted`` where OTP is
silent.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, NoReturn

from suptrace.behaviours.admin import AdminHandlers, answer
from suptrace.behaviours.childspec import ChildInfo, ChildSpec
from suptrace.behaviours.gen_server import GenServer, StartError
from suptrace.behaviours.intensity import RestartWindow
from suptrace.behaviours.requests import Caller
from suptrace.core.errors import Exit
from suptrace.core.links import exit, link, monitor, unlink
from suptrace.core.mailbox import receive
from suptrace.core.process import Process
from suptrace.core.runtime import process_of
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
)

__all__ = [
    "SupervisorBase",
    "Child",
    "ChildRestarts",
    "IntensityUse",
    "TryAgain",
    "offender",
    "reason_text",
    "expected_shutdown",
]


# -- children ------------------------------------------------------------------------------


class Child:
    """One child as its supervisor keeps it: spec, current pid and restart counts."""

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

    def __init__(
        self, spec: ChildSpec, pid: Pid | None = None, proc: Process | None = None
    ) -> None:
        self.spec = spec
        self.pid = pid
        #: The child's process, kept to read a dead child supervisor's exit cause
        #: and name (for not_restarted).
        self.proc = proc
        self.restarting = False
        #: Why the last restart failed, while ``restarting``.
        self.failure: Any = None
        #: Restarts counted against the intensity because this child exited (or its
        #: restart failed), over the supervisor's life; see `SupervisorBase.restarts_of`.
        self.restarts = 0
        #: Their whole-second monotonic times within the period (oldest first), or None.
        self.restart_times: deque[int] | None = None
        #: The pid that died, while a one_for_one restart fails (OTP's {restarting, Pid}).
        self.dead: Pid | None = None

    def state(self) -> Pid | str | None:
        """What `which_children` shows: the pid, None, or ``"restarting"``."""
        return "restarting" if self.restarting else self.pid


@dataclass(frozen=True, slots=True)
class TryAgain:
    """A supervisor's note to itself: retry the failed restart of ``key``."""

    key: Any


class ChildRestarts(NamedTuple):
    """How often a supervisor restarted one child (see `SupervisorBase.restarts_of`)."""

    total: int
    in_window: int


@dataclass(frozen=True, slots=True)
class IntensityUse:
    """A supervisor's flags and restart-intensity use, read in place."""

    strategy: str
    intensity: int
    period: int
    restarts_in_window: int
    children: int


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


def reason_text(reason: Any) -> str:
    """An exit reason as text for a message: total and bounded, whatever it is.

    >>> reason_text(ValueError("bad"))
    'ValueError(bad)'
    >>> reason_text("shutdown")
    'shutdown'
    """
    if isinstance(reason, BaseException):
        message = exception_str(reason, 1000)
        return f"{type(reason).__name__}({message})" if message else type(reason).__name__
    return safe_str(reason, 1000) if isinstance(reason, str) else safe_repr(reason, 1000)


def expected_shutdown(spec: ChildSpec, reason: Any) -> bool:
    """Whether ``reason`` is what stopping this child is expected to end with
    (anything else is a ``shutdown_error``)."""
    # Only strings are compared: a reason's own __eq__ (user data) never runs here.
    if spec.shutdown == "brutal_kill":
        if isinstance(reason, str) and reason == KILLED:
            return True
    elif isinstance(reason, str) and reason == SHUTDOWN:
        return True
    if spec.restart == "permanent":
        return False
    if isinstance(reason, str):
        return reason in (NORMAL, SHUTDOWN)
    return type(reason) is Shutdown


async def _down(ref: Any, timeout: float | None) -> Any:
    msg = await receive(lambda m: type(m) is Down and m.ref == ref, timeout)
    return msg.reason


class SupervisorBase(GenServer):
    """What both supervisors share: starting, stopping, counting and reporting.

    The tooling API reads a live supervisor in place (from its node's loop):

    >>> import suptrace
    >>> from suptrace.core.runtime import process_of
    >>> async def worker():
    ...     await suptrace.receive()
    >>> async def start_worker():
    ...     return suptrace.spawn_link(worker)
    >>> async def main():
    ...     spec = suptrace.ChildSpec(id="w", start=(start_worker, ()))
    ...     sup = await suptrace.Supervisor.start_link([spec], intensity=3, period=5)
    ...     server = process_of(sup).behaviour
    ...     [child] = await suptrace.which_children(sup)
    ...     return server.intensity_use(), server.restarts_of(child.pid)
    >>> use, counts = suptrace.run(main)
    >>> use
    IntensityUse(strategy='one_for_one', intensity=3, period=5, restarts_in_window=0, children=1)
    >>> counts
    ChildRestarts(total=0, in_window=0)
    """

    #: ``kind`` in `describe`.
    describe_kind: ClassVar[str] = "supervisor"
    #: False when children are known by pid only (their id shows as None).
    children_have_ids: ClassVar[bool] = True

    strategy: str
    intensity: int
    period: int
    window: RestartWindow
    exit_cause: dict[str, Any] | None

    # -- what a subclass provides -------------------------------------------------------

    def child_records(self) -> Collection[Child]:
        """The children, in start order."""
        raise NotImplementedError

    def child_by_pid(self, pid: Pid) -> Child | None:
        """The child now running as ``pid`` (or, for a DynamicSupervisor, restarting
        after ``pid`` died), or None."""
        raise NotImplementedError

    def child_key(self, text: str) -> Any:
        """The key an admin request names a child by, for a child named by ``text``
        (an id's str or repr; a pid's text for a DynamicSupervisor). `ValueError`
        when ``text`` cannot name a child of this kind of supervisor."""
        raise NotImplementedError

    def describe_flags(self) -> dict[str, Any]:
        """The flags `describe` shows beyond strategy, intensity and period."""
        return {}

    # -- tooling API (read in place, on the node's loop) --------------------------------

    def restarts_of(self, pid: Pid) -> ChildRestarts | None:
        """How often this supervisor restarted the child now running as ``pid``:
        ``(total, within the intensity window)``, or None if ``pid`` is not its child.

        Only restarts counted against the intensity are counted, each against the
        child whose exit caused it (siblings a one_for_all restart takes along are not)."""
        child = self.child_by_pid(pid)
        return None if child is None else self.child_restarts(child)

    def intensity_use(self) -> IntensityUse:
        """Flags and restart-intensity use now, without a request to the supervisor."""
        return IntensityUse(
            self.strategy,
            self.intensity,
            self.period,
            self.window.used(int(time.monotonic())),
            len(self.child_records()),
        )

    # -- admin requests -----------------------------------------------------------------

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        """Admin requests answer ``("ok", value)`` or ``("error", exc)``; the client
        functions raise the error in the caller, and the supervisor keeps running."""
        return await answer(self.admin_handlers, self, request)

    async def which_children_request(self) -> list[ChildInfo]:
        """``which_children``: one `ChildInfo` per child, newest first."""
        with_ids = self.children_have_ids
        return [
            ChildInfo(
                c.spec.id if with_ids else None, c.state(), c.spec.type, c.spec.module_names()
            )
            for c in reversed(list(self.child_records()))
        ]

    async def count_children_request(self) -> dict[str, int]:
        """``count_children``: specs, active children, supervisors and workers."""
        kids = self.child_records()
        return {
            "specs": len(kids),
            "active": sum(1 for c in kids if c.pid is not None and not c.restarting),
            "supervisors": sum(1 for c in kids if c.spec.type == "supervisor"),
            "workers": sum(1 for c in kids if c.spec.type == "worker"),
        }

    async def describe_request(self) -> dict[str, Any]:
        """``describe``: flags, restart-window use and children, newest first."""
        proc = self._proc
        return {
            "kind": self.describe_kind,
            "name": proc.name,
            "pid": proc.pid,
            "strategy": self.strategy,
            "intensity": self.intensity,
            "period": self.period,
            "restarts_in_window": self.window.used(int(time.monotonic())),
            **self.describe_flags(),
            "children": [
                {
                    "id": c.spec.id,
                    "pid": c.state(),
                    "restart": c.spec.restart,
                    "type": c.spec.type,
                    "shutdown": c.spec.shutdown,
                    "significant": c.spec.significant,
                    "restarts": c.restarts,
                    "restarts_window": self.child_restarts(c)[1],
                    "start": c.spec.start,
                }
                for c in reversed(list(self.child_records()))
            ],
        }

    #: The admin handler table: request kind -> the method that answers it.
    admin_handlers: ClassVar[AdminHandlers] = {
        "which_children": which_children_request,
        "count_children": count_children_request,
        "describe": describe_request,
    }

    # -- starting the supervisor ------------------------------------------------------

    @classmethod
    async def start_server(
        cls,
        link: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None,
        timeout: float | None,
    ) -> Any:
        """Start the server process: ``init(*args, **kwargs)`` (validated flags and
        specs), linked to the caller with ``link``."""
        starter = super().start_link if link else super().start
        return await starter(*args, name=name, timeout=timeout, **kwargs)

    # -- reporting ----------------------------------------------------------------------

    @property
    def sup_name(self) -> Any:
        return self._proc.name or self._proc.pid

    def event(self, kind: str, **data: Any) -> None:
        """Emit a supervisor event (if anything watches it)."""
        proc = self._proc
        rt = proc.runtime
        if kind in rt.watch or proc.tracers:
            rt.emit(proc, kind, {"supervisor": self.sup_name, **data})

    def report(self, context: str, spec: ChildSpec, pid: Pid | None, reason: Any) -> None:
        """A supervisor report (``start_error``, ``child_terminated``, ``shutdown_error``)."""
        self.event(context, child_id=spec.id, reason=reason, offender=offender(spec, pid))

    def progress(self, spec: ChildSpec, pid: Pid, api: bool = False) -> None:
        """A child started; ``api`` marks starts requested through the admin API
        (logged at DEBUG rather than INFO, as current OTP does)."""
        if api:
            self.event("progress", child_id=spec.id, started=offender(spec, pid), api=True)
        else:
            self.event("progress", child_id=spec.id, started=offender(spec, pid))

    @staticmethod
    def process_of(pid: Pid) -> Process | None:
        """The process of a child that just started as ``pid`` (kept in its `Child`)."""
        return process_of(pid)

    # -- starting -----------------------------------------------------------------------

    async def start_spec(self, spec: ChildSpec, extra: tuple[Any, ...] = ()) -> tuple[str, Any]:
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

    def try_again_later(self, key: Any) -> None:
        """Schedule a retry of a failed restart (OTP's ``try_again_restart`` cast).

        The retry arrives on a later loop iteration, so requests from other
        processes (terminate_child, shutdown) get in between even when the
        start function fails without ever awaiting.
        """
        proc = self._proc
        proc.runtime.loop.call_soon(proc.deliver, TryAgain(key), proc.pid)

    # -- restart intensity --------------------------------------------------------------

    def count_restart(self, child: Child) -> bool:
        """Count a restart against the intensity, and against ``child`` (the child
        whose exit, or failed restart, caused it): O(1) amortised. False when the
        intensity is reached."""
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

    def child_restarts(self, child: Child) -> ChildRestarts:
        """``(total, within the intensity window now)`` for one child."""
        times = child.restart_times
        if not times:
            return ChildRestarts(child.restarts, 0)
        horizon = int(time.monotonic()) - self.period
        return ChildRestarts(child.restarts, sum(1 for t in times if t >= horizon))

    def give_up(
        self, spec: ChildSpec, pid: Pid | None, reason: Any, retry: bool = False
    ) -> NoReturn:
        """Restart intensity reached: report, remember why, and exit ``shutdown``.

        ``reason`` is the child's exit reason, or with ``retry`` the reason its
        last restart failed."""
        used = self.window.used(int(time.monotonic()))
        self.event(
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
        last = f"last offender {spec.id!r} {what} {reason_text(reason)}"
        detail = f"{used} restarts in {self.period}s exceeded max restart intensity {self.intensity}; {last}"
        cause = (
            f"after reaching max restart intensity ({used} restarts in {self.period}s, "
            f"intensity {self.intensity}; {last})"
        )
        self.record_exit_cause(
            {
                "cause": "reached_max_restart_intensity",
                "offender": offender(spec, pid),
                "offender_reason": reason,
                "detail": detail,
                "text": cause,
            },
            cause,
        )
        raise Exit(SHUTDOWN)

    def record_exit_cause(self, cause: dict[str, Any], note: str) -> None:
        """Remember why the supervisor is about to exit by its own decision: in
        ``exit_cause`` (its parent's not_restarted report quotes it) and as the
        note on its tombstone."""
        self.exit_cause = cause
        self._proc.notes = [note]

    def not_restarted(
        self, spec: ChildSpec, dead: Process | None, pid: Pid | None, reason: Any
    ) -> None:
        """Beyond OTP: say out loud that a whole subtree is gone for good."""
        cause = None
        if dead is not None and isinstance(dead.behaviour, SupervisorBase):
            cause = dead.behaviour.exit_cause
        rule = (
            f"{spec.restart} child exited {reason_text(reason)}, which counts as a normal "
            f"exit: a {spec.restart} child is only restarted after an abnormal exit"
            if spec.restart == "transient"
            else f"temporary child: never restarted (exited {reason_text(reason)})"
        )
        self.event(
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

    # -- stopping -----------------------------------------------------------------------

    def flush_exit(self, pid: Pid) -> Any:
        """Take a queued ``ExitMsg`` from ``pid`` out of the mailbox; its reason or None."""
        msg, _ = self._proc.extract(lambda m: type(m) is ExitMsg and m.pid == pid)
        return msg.reason if type(msg) is ExitMsg else None

    async def shutdown_child(self, spec: ChildSpec, pid: Pid) -> None:
        """Stop one child per its shutdown spec; report an unexpected exit reason."""
        ref = monitor(pid)
        unlink(pid)
        early = self.flush_exit(pid)
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
        if not expected_shutdown(spec, reason):
            self.report("shutdown_error", spec, pid, reason)
