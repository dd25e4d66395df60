"""Exceptions raised by the runtime.

`Exit` ends the current process with a reason. The `CallError` family is what a
failed `call` raises; uncaught, it crashes the caller with itself as the reason,
which is OTP's ``{Reason, {gen_server, call, [...]}}`` exit in Python clothes.
"""

from __future__ import annotations

from typing import Any

from suptrace.core.saferepr import safe_repr, safe_str

__all__ = [
    "Exit",
    "CallError",
    "CallTimeout",
    "CallExit",
    "NoProc",
    "NodeError",
    "RegistrationError",
]


class Exit(BaseException):
    """Raise to end the current process with ``reason``.

    It derives from `BaseException` (like `SystemExit`) so that a broad
    ``except Exception`` in user code does not swallow a deliberate exit.

    >>> try:
    ...     raise Exit("shutdown")
    ... except Exit as e:
    ...     e.reason
    'shutdown'
    """

    def __init__(self, reason: Any = "normal") -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"Exit({safe_repr(self.reason, DETAIL_LIMIT)})"


class CallError(Exception):
    """A `call` (or an operation on a named process) failed.

    Attributes: ``reason`` (OTP's reason term), ``dest`` (what was called),
    ``request`` and ``timeout``.
    """

    def __init__(
        self,
        reason: Any,
        dest: Any = None,
        request: Any = None,
        timeout: float | None = None,
        detail: str | None = None,
    ) -> None:
        self.reason = reason
        self.dest = dest
        self.request = request
        self.timeout = timeout
        self.detail = detail
        super().__init__(self._message())

    def _message(self) -> str:
        dest = safe_str(self.dest, 200)
        what = f"call to {dest}" if self.request is not None else dest
        msg = f"{what} failed: {safe_repr(self.reason, DETAIL_LIMIT)}"
        if self.request is not None:
            msg += f" (request {_short(self.request)}"
            msg += f", timeout {self.timeout}s)" if self.timeout is not None else ")"
        if self.detail:
            msg += f"; {safe_str(self.detail, DETAIL_LIMIT)}"
        return msg

    def __repr__(self) -> str:
        parts = [safe_repr(self.reason, DETAIL_LIMIT), f"dest={safe_repr(self.dest)}"]
        if self.request is not None:
            parts.append(f"request={_short(self.request)}")
        if self.timeout is not None:
            parts.append(f"timeout={self.timeout}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.dest, self.request, self.timeout, self.detail))


class CallTimeout(CallError, TimeoutError):
    """The server did not reply within the timeout (reason ``"timeout"``)."""

    def __init__(
        self,
        reason: Any = "timeout",
        dest: Any = None,
        request: Any = None,
        timeout: float | None = None,
        detail: str | None = None,
    ) -> None:
        CallError.__init__(self, reason, dest, request, timeout, detail)

    def _message(self) -> str:
        return (
            f"call to {safe_str(self.dest)} timed out after {self.timeout}s "
            f"(request {_short(self.request)}); the server is alive but did not reply in time"
        )


class CallExit(CallError):
    """The server died before replying; ``reason`` is its exit reason."""

    def _message(self) -> str:
        return (
            f"{safe_str(self.dest)} exited with {safe_repr(self.reason, DETAIL_LIMIT)} before replying "
            f"to {_short(self.request)}"
        )


class NoProc(CallError):
    """No such process: a dead pid or an unregistered name (reason ``"noproc"``).

    When the name belonged to a process that died, the message tells its story
    (how and when it exited, and why it was not restarted, when known).
    """

    def __init__(
        self,
        reason: Any = "noproc",
        dest: Any = None,
        request: Any = None,
        timeout: float | None = None,
        detail: str | None = None,
    ) -> None:
        CallError.__init__(self, reason, dest, request, timeout, detail)

    def _message(self) -> str:
        if self.detail:
            return f"no process {safe_str(self.dest)}: {safe_str(self.detail, DETAIL_LIMIT)}"
        return f"no process {safe_str(self.dest)} (noproc): it is not registered or not alive"


class NodeError(RuntimeError):
    """A runtime function was used outside a running node or outside a process."""


class RegistrationError(ValueError):
    """A name could not be registered or unregistered (taken, not a string, ...)."""


#: How much of a reason or detail an error message prints (the message stays a few KB).
DETAIL_LIMIT = 1000


def _short(value: Any, limit: int = 120) -> str:
    text = safe_repr(value, limit)
    return text if len(text) <= limit else text[: limit - 3] + "..."
