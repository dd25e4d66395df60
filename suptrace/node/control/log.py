"""What the control server logs about its clients, and how often.

A burst of bad clients must not flood the node's log: a warning of one kind is
written at most once a minute (saying how many like it were not), and a
condition that lasts (no file descriptors left, a peer failing TLS) once.
"""

from __future__ import annotations

import time

__all__ = ["Warnings", "warn"]

#: Seconds between two warnings of the same kind about clients.
LOG_EVERY = 60.0


def warn(message: str) -> None:
    """Log ``message`` as a warning (loguru is imported only when there is one)."""
    from loguru import logger

    logger.warning("{}", message)


class Warnings:
    """Warnings of one server, by kind: at most one a minute, or only the first."""

    __slots__ = ("_limited", "_logged")

    def __init__(self) -> None:
        self._logged: set[str] = set()
        self._limited: dict[str, tuple[float, int]] = {}

    def limited(self, key: str, message: str) -> None:
        """Log ``message`` at most once a minute per ``key``, with how many were not."""
        now = time.monotonic()
        last, skipped = self._limited.get(key, (-LOG_EVERY, 0))
        if now - last < LOG_EVERY:
            self._limited[key] = (last, skipped + 1)
            return
        self._limited[key] = (now, 0)
        warn(message + (f" ({skipped} more like this in the last minute)" if skipped else ""))

    def once(self, key: str, message: str) -> None:
        """Log ``message`` the first time ``key`` is seen only."""
        if key not in self._logged:
            self._logged.add(key)
            warn(message)
