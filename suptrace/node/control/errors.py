"""How a control request fails in an expected way: `OpError`, and `show` for
the values an error message quotes."""

from __future__ import annotations

from typing import Any

__all__ = ["OpError", "show"]


class OpError(Exception):
    """A request failed in an expected way; becomes an error frame with ``code``."""

    def __init__(self, code: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


def show(value: Any, limit: int = 80) -> str:
    """A short repr of a value taken from a request, for an error message; never raises.

    >>> show("x" * 100, 10)
    "'xxxxxxxxx..."
    """
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."
