"""Child specifications and what supervisors say about their children."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from suptrace.core.terms import Pid

__all__ = [
    "ChildSpec",
    "ChildInfo",
    "RestartType",
    "ChildType",
    "ShutdownSpec",
    "STRATEGIES",
    "AUTO_SHUTDOWN",
    "check_flags",
    "as_childspec",
]

RestartType = Literal["permanent", "transient", "temporary"]
ChildType = Literal["worker", "supervisor"]
ShutdownSpec = float | int | Literal["brutal_kill", "infinity"]

STRATEGIES: Final = ("one_for_one", "one_for_all", "rest_for_one")
AUTO_SHUTDOWN: Final = ("never", "any_significant", "all_significant")
_RESTARTS: Final = ("permanent", "transient", "temporary")
_TYPES: Final = ("worker", "supervisor")
_DEFAULT = object()


@dataclass(frozen=True)
class ChildSpec:
    """How to start, restart and stop one child.

    ``start`` is ``(callable, args)`` or ``(callable, args, kwargs)``; the
    callable (sync or async) returns a `Pid` linked to the caller, `IGNORE`,
    or raises. ``shutdown`` is seconds, ``"brutal_kill"`` or ``"infinity"``
    (the default for supervisors; 5.0 for workers). Invalid values raise
    `ValueError` naming the field.

    >>> async def start_worker(n): ...
    >>> ChildSpec(id="w1", start=(start_worker, (1,))).shutdown
    5.0
    >>> ChildSpec(id="w1", start=(start_worker, (1,)), restart="sometimes")
    Traceback (most recent call last):
    ...
    ValueError: child spec 'w1': invalid restart 'sometimes' (expected one of permanent, ...)
    """

    id: Any
    start: tuple[Any, ...]
    restart: RestartType = "permanent"
    shutdown: ShutdownSpec = field(default=_DEFAULT)  # type: ignore[arg-type]
    type: ChildType = "worker"
    significant: bool = False
    modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        where = f"child spec {self.id!r}"
        if self.id is None:
            raise ValueError("child spec: missing id (every child needs a unique id)")
        start = self.start
        if not isinstance(start, tuple) or len(start) not in (2, 3):
            raise ValueError(
                f"{where}: invalid start {start!r} (expected (callable, args) or "
                "(callable, args, kwargs))"
            )
        if not callable(start[0]):
            raise ValueError(f"{where}: invalid start: {start[0]!r} is not callable")
        if not isinstance(start[1], (tuple, list)):
            raise ValueError(f"{where}: invalid start args {start[1]!r} (expected a tuple)")
        if len(start) == 3 and not isinstance(start[2], Mapping):
            raise ValueError(f"{where}: invalid start kwargs {start[2]!r} (expected a dict)")
        if self.restart not in _RESTARTS:
            raise ValueError(
                f"{where}: invalid restart {self.restart!r} (expected one of {', '.join(_RESTARTS)})"
            )
        if self.type not in _TYPES:
            raise ValueError(
                f"{where}: invalid type {self.type!r} (expected 'worker' or 'supervisor')"
            )
        if self.shutdown is _DEFAULT:
            object.__setattr__(self, "shutdown", "infinity" if self.type == "supervisor" else 5.0)
        sd = self.shutdown
        if isinstance(sd, bool) or not (
            sd in ("brutal_kill", "infinity") or (isinstance(sd, (int, float)) and sd >= 0)
        ):
            raise ValueError(
                f"{where}: invalid shutdown {sd!r} (expected seconds >= 0, 'brutal_kill' "
                "or 'infinity')"
            )
        if isinstance(sd, int):
            object.__setattr__(self, "shutdown", float(sd))
        if not isinstance(self.significant, bool):
            raise ValueError(f"{where}: invalid significant {self.significant!r} (expected a bool)")
        if self.significant and self.restart == "permanent":
            raise ValueError(
                f"{where}: bad combination: restart='permanent' with significant=True "
                "(a significant child must be transient or temporary)"
            )
        if self.modules is not None and not all(isinstance(m, str) for m in self.modules):
            raise ValueError(f"{where}: invalid modules {self.modules!r} (expected strings)")

    @property
    def func(self) -> Callable[..., Any]:
        fn: Callable[..., Any] = self.start[0]
        return fn

    @property
    def args(self) -> tuple[Any, ...]:
        return tuple(self.start[1])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.start[2]) if len(self.start) == 3 else {}

    def module_names(self) -> list[str]:
        if self.modules is not None:
            return list(self.modules)
        fn = self.func
        owner = getattr(fn, "__self__", None)
        target = owner if inspect.isclass(owner) else fn
        return [f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"]

    def start_text(self) -> str:
        fn = self.func
        owner = getattr(fn, "__self__", None)
        qual = getattr(fn, "__qualname__", repr(fn))
        if inspect.isclass(owner):
            qual = f"{owner.__qualname__}.{fn.__name__}"
        return f"{qual}{tuple(self.args)!r}" if self.restart != "temporary" else f"{qual}(...)"

    def as_dict(self) -> dict[str, Any]:
        """OTP's child-spec map, with all seven keys."""
        return {
            "id": self.id,
            "start": self.start,
            "restart": self.restart,
            "shutdown": self.shutdown,
            "type": self.type,
            "significant": self.significant,
            "modules": self.module_names(),
        }


def as_childspec(spec: Any) -> ChildSpec:
    """Accept a `ChildSpec` or a dict with the same keys."""
    if isinstance(spec, ChildSpec):
        return spec
    if isinstance(spec, Mapping):
        known = {"id", "start", "restart", "shutdown", "type", "significant", "modules"}
        if "id" not in spec:
            raise ValueError(f"child spec {dict(spec)!r}: missing id")
        if "start" not in spec:
            raise ValueError(f"child spec {spec['id']!r}: missing start")
        kwargs = {k: v for k, v in spec.items() if k in known}
        return ChildSpec(**kwargs)
    raise ValueError(f"invalid child spec {spec!r} (expected a ChildSpec or a dict)")


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One row of `which_children`: ``pid`` is a Pid, None, or ``"restarting"``."""

    id: Any
    pid: Pid | str | None
    type: str
    modules: list[str]


def check_flags(strategy: Any, intensity: Any, period: Any, auto_shutdown: Any) -> None:
    """Validate supervisor flags; `ValueError` names the bad one."""
    if strategy not in STRATEGIES:
        raise ValueError(
            f"supervisor flags: invalid strategy {strategy!r} (expected one of "
            f"{', '.join(STRATEGIES)})"
        )
    if isinstance(intensity, bool) or not isinstance(intensity, int) or intensity < 0:
        raise ValueError(
            f"supervisor flags: invalid intensity {intensity!r} (expected an int >= 0)"
        )
    if isinstance(period, bool) or not isinstance(period, int) or period <= 0:
        raise ValueError(
            f"supervisor flags: invalid period {period!r} (expected an int > 0 seconds)"
        )
    if auto_shutdown not in AUTO_SHUTDOWN:
        raise ValueError(
            f"supervisor flags: invalid auto_shutdown {auto_shutdown!r} (expected one of "
            f"{', '.join(AUTO_SHUTDOWN)})"
        )
