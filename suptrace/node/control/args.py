"""The checks of a request's arguments: a bad one is ``bad_args`` naming it.

An argument must have the type its op asks for (a boolean is not an integer,
an integer is a number), be finite and not huge if it is a number, and short
if it is a string; lists are of short strings.

>>> required({"target": "db"}, "target", str)
'db'
>>> optional({"limit": float("nan")}, "limit", int, 10)
Traceback (most recent call last):
...
suptrace.node.control.errors.OpError: argument 'limit' must be an integer, got float nan
"""

from __future__ import annotations

import math
from typing import Any

from suptrace.node.control.errors import OpError, show

__all__ = ["capped", "optional", "required", "sampling_time", "texts"]

#: Longest string argument accepted (names, pid texts, specs, reasons).
MAX_TEXT = 1000
#: Largest magnitude of a number argument (no limit of the node needs more).
MAX_NUMBER = 2**53


def _typename(kinds: tuple[type, ...]) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if float in kinds:
        kinds = tuple(k for k in kinds if k is not int)
    return " or ".join(names.get(k, f"a {k.__name__}") for k in kinds)


def _check(key: str, value: Any, kinds: tuple[type, ...]) -> Any:
    """``value`` if it is one of ``kinds`` (bool is not an int, an int is a
    float, numbers are finite and not huge, strings short), else `OpError`."""
    numeric = int in kinds or float in kinds
    if isinstance(value, bool):
        ok = bool in kinds
    elif isinstance(value, int):
        ok = numeric
    else:
        ok = isinstance(value, kinds)
    if not ok:
        raise OpError(
            "bad_args",
            f"argument {key!r} must be {_typename(kinds)}, got {type(value).__name__} "
            f"{show(value, 60)}",
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise OpError("bad_args", f"argument {key!r} must be a finite number, got {show(value)}")
    if numeric and not isinstance(value, bool) and isinstance(value, (int, float)):
        if abs(value) > MAX_NUMBER:
            raise OpError("bad_args", f"argument {key!r} is out of range ({show(value, 30)})")
        if int in kinds and float not in kinds:
            value = int(value)
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise OpError(
            "bad_args", f"argument {key!r} is too long ({len(value)} characters, max {MAX_TEXT})"
        )
    return value


def required(args: dict[str, Any], key: str, kind: type) -> Any:
    """The argument ``key``, which must be there and be a ``kind``."""
    value = args.get(key)
    if value is None:
        raise OpError("bad_args", f"argument {key!r} is required ({_typename((kind,))})")
    return _check(key, value, (kind,))


def optional(args: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """The argument ``key`` if given (a ``kind``), else ``default``."""
    value = args.get(key)
    if value is None:
        return default
    return _check(key, value, kind if isinstance(kind, tuple) else (kind,))


def texts(args: dict[str, Any], key: str, default: Any, most: int = 64) -> Any:
    """An optional list of at most ``most`` short strings."""
    value = optional(args, key, list, None)
    if value is None:
        return default
    if len(value) > most:
        raise OpError("bad_args", f"argument {key!r} has {len(value)} items (max {most})")
    for item in value:
        if not isinstance(item, str) or len(item) > 200:
            raise OpError(
                "bad_args",
                f"argument {key!r} must be a list of short strings, got an item {show(item, 60)}",
            )
    return value


def capped(args: dict[str, Any], key: str, default: float, cap: float, kind: type) -> Any:
    """An optional positive number, at most ``cap`` (the node's own limit)."""
    value = optional(args, key, (int, float), default)
    if value <= 0:
        raise OpError("bad_args", f"argument {key!r} must be > 0, got {show(value)}")
    return kind(min(value, cap))


def sampling_time(args: dict[str, Any]) -> float:
    """How long a doctor request samples (0 when its arguments are bad: the op refuses them)."""
    samples = args.get("samples", 3)
    interval = args.get("interval", 0.5)
    if (
        isinstance(samples, int)
        and not isinstance(samples, bool)
        and isinstance(interval, (int, float))
        and not isinstance(interval, bool)
        and math.isfinite(interval)
    ):
        return max(0.0, min(max(samples, 0), 20) * max(0.0, min(float(interval), 10.0)))
    return 0.0
