"""Total, bounded text forms of any value: what every report, trace line,
tombstone, error message and control-plane value is rendered with.

A reason or a message is user data: its ``__repr__`` or ``__str__`` may raise,
it may be an int too large for ``str()`` (``10**5000`` raises `ValueError`),
a 100 MB string or a list that contains itself. `safe_repr` and `safe_str`
never raise (an `Exception` from user code becomes a visible placeholder) and
never return more than about ``limit`` characters, and they never copy a huge
string whole before cutting it.

>>> safe_repr("x" * 50, limit=10)
"'xx…xxx'"
>>> safe_repr(10**5000)
'<int of 5001 digits>'
>>> class Bad:
...     def __repr__(self):
...         raise RuntimeError("no")
>>> safe_repr(Bad())
'<Bad (repr failed: RuntimeError)>'
>>> loop = []; loop.append(loop); safe_repr(loop)
'[[[[[[…]]]]]]'
>>> len(safe_str(ValueError("m" * 10_000_000), limit=100)) <= 200
True
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

__all__ = ["safe_repr", "safe_str", "reason_text", "MARK"]

#: Appended where a long text was cut.
MARK = "…"

#: Ints longer than this many bits are described, not printed (str() refuses
#: ints over 4300 digits by default, and printing one is quadratic anyway).
_BIG_INT_BITS = 4096


def _type_name(value: Any) -> str:
    try:
        name = type(value).__qualname__
    except Exception:  # a hostile metaclass
        return "object"
    return name if isinstance(name, str) else "object"


def _failed(value: Any, what: str, exc: BaseException) -> str:
    return f"<{_type_name(value)} ({what} failed: {_type_name(exc)})>"


def _int_text(value: int, limit: int) -> str:
    if value.bit_length() > _BIG_INT_BITS:
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"<int of {digits} digits>"
    text = int.__repr__(value)
    return text if len(text) <= limit else text[:limit] + MARK


def cut(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters with `MARK`."""
    return text if len(text) <= limit else text[:limit] + MARK


class BoundedRepr(reprlib.Repr):
    """`reprlib.Repr` that never raises and stops once its output budget is spent."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.maxstring = limit
        self.maxother = limit
        self.maxlong = limit
        self.maxlist = 12
        self.maxtuple = 12
        self.maxdict = 12
        self.maxset = 12
        self.maxfrozenset = 12
        self.maxdeque = 12
        self.maxlevel = 5
        self.fillvalue = MARK
        self._budget = 0
        #: True while rendering: a nested render (a __repr__ that renders) gets its own.
        self.busy = False

    def repr(self, x: Any) -> str:
        # A self-referential or wide value is walked only until the text is long enough.
        self._budget = self.limit * 4
        self.busy = True
        try:
            return super().repr(x)
        finally:
            self.busy = False

    def repr1(self, x: Any, level: int) -> str:
        if self._budget <= 0:
            return MARK
        try:
            text = super().repr1(x, level)
        except RecursionError as exc:
            text = _failed(x, "repr", exc)
        except Exception as exc:  # a hostile __repr__, __len__, __iter__ or __lt__
            text = _failed(x, "repr", exc)
        self._budget -= len(text)
        return text

    def repr_int(self, x: int, level: int) -> str:
        return _int_text(x, self.maxlong)

    def repr_instance(self, x: Any, level: int) -> str:
        if isinstance(x, int) and type(x).__repr__ is int.__repr__:  # int subclasses
            return _int_text(x, self.maxother)
        if isinstance(x, BaseException):
            return exception_repr(x, self.maxother)
        try:
            text = repr(x)
        except Exception as exc:
            return _failed(x, "repr", exc)
        if not isinstance(text, str):
            return _failed(x, "repr", TypeError())
        return cut(text, self.maxother)

    def repr_bytes(self, x: bytes, level: int) -> str:
        return _cut_bytes(x, self.maxstring)

    def repr_bytearray(self, x: bytearray, level: int) -> str:
        return _cut_bytes(x, self.maxstring)


def _cut_bytes(obj: bytes | bytearray, limit: int) -> str:
    # Slice before repr: a multi-megabyte payload must not be copied whole into text.
    if len(obj) <= limit:
        return repr(obj)
    half = max(limit // 2, 1)
    return f"{obj[:half]!r}{MARK} ({len(obj)} bytes)"


_reprs: dict[int, BoundedRepr] = {}


def _repr_for(limit: int) -> BoundedRepr:
    r = _reprs.get(limit)
    if r is not None and r.busy:
        return BoundedRepr(limit)
    if r is None:
        if len(_reprs) > 64:
            _reprs.clear()
        r = _reprs[limit] = BoundedRepr(limit)
    return r


def safe_repr(value: Any, limit: int = 200) -> str:
    """A repr of ``value`` of at most about ``2 * limit`` characters; never raises."""
    try:
        if isinstance(value, BaseException):
            text = exception_repr(value, limit)
        else:
            text = _repr_for(limit).repr(value)
    except Exception as exc:
        text = _failed(value, "repr", exc)
    return text if len(text) <= limit * 2 else text[: limit * 2] + MARK


def exception_str(exc: BaseException, limit: int = 200) -> str:
    """``str(exc)``, cut to about ``limit`` characters; never raises.

    A single string argument (the usual message) is cut before anything is
    copied, so a 100 MB message costs nothing here.
    """
    try:
        args = exc.args
        if type(args) is tuple and len(args) == 1 and type(args[0]) is str:
            return cut(args[0], limit)
        if type(args) is tuple and not args and type(exc).__str__ is BaseException.__str__:
            return ""
        if type(exc).__str__ is BaseException.__str__ and type(args) is tuple:
            # str() of several args is their tuple's repr: bounded instead.
            return safe_repr(args, limit)
        text = str(exc)
        if not isinstance(text, str):
            return _failed(exc, "str", TypeError())
        return cut(text, limit)
    except Exception as err:
        return _failed(exc, "str", err)


def exception_repr(exc: BaseException, limit: int = 200) -> str:
    """``Type('message')``, or the class's own repr when it defines one; never raises."""
    cls = type(exc)
    try:
        if hasattr(exc, "reason") and cls.__repr__ is not BaseException.__repr__:
            return cut(repr(exc), limit * 2)
    except Exception:
        pass  # fall back to the message form below
    message = exception_str(exc, limit)
    name = _type_name(exc)
    return f"{name}({message!r})" if message else f"{name}()"


_OBJECT_STR: Any = object.__str__


def safe_str(value: Any, limit: int = 200) -> str:
    """``str(value)`` bounded and total: strings as themselves, exceptions as their
    message, anything else as `safe_repr` when its ``__str__`` is the default one."""
    if type(value) is str:
        return cut(value, limit)
    if isinstance(value, BaseException):
        return exception_str(value, limit)
    if isinstance(value, int) and type(value).__str__ is int.__str__:
        return _int_text(value, limit) if type(value) is not bool else str(value)
    try:
        if type(value).__str__ is _OBJECT_STR:
            return safe_repr(value, limit)
        text = str(value)
        if not isinstance(text, str):
            return _failed(value, "str", TypeError())
        return cut(text, limit)
    except Exception as exc:
        return _failed(value, "str", exc)


def reason_text(reason: Any, limit: int = 300) -> str:
    """An exit reason as text: atoms bare, exceptions ``Type(message)``, else a safe repr.

    >>> reason_text("shutdown"), reason_text(ValueError("bad")), reason_text(("x", 1))
    ('shutdown', "ValueError('bad')", "('x', 1)")
    """
    if type(reason) is str:
        return cut(reason, limit)
    return safe_repr(reason, limit)
