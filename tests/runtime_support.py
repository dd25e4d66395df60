"""Helpers for the runtime tests (imported by the test modules; see conftest.py).

Tests never sleep to synchronise: they wait on monitors (`Down`), trapped exits
(`ExitMsg`), replies and events. `in_node` runs a test body as the root process
of a fresh node inside the test's own event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import suptrace
from suptrace import Down, ExitMsg, Pid, Ref

T = TypeVar("T")

#: Upper bound for any single test body; a hang fails fast instead of at pytest-timeout.
TEST_DEADLINE = 5.0


async def in_node(main: Callable[..., Awaitable[T]], *args: Any, **node_opts: Any) -> T:
    """Run ``main(*args)`` as the root process of a new node; return its result.

    An exception in ``main`` (a failed assert included) is re-raised here.
    """
    node_opts.setdefault("shutdown_timeout", 1.0)
    node_opts.setdefault("log_reports", False)  # keep crash reports off the test output
    async with asyncio.timeout(TEST_DEADLINE), suptrace.Node("test", **node_opts) as node:
        return await node.run_root(main, *args)


async def never() -> None:
    """Await something that never happens (a process that blocks until it is stopped)."""
    await asyncio.Event().wait()


async def idle() -> None:
    """A process body that waits forever for messages and ignores them."""
    while True:
        await suptrace.receive()


async def echo() -> None:
    """Answer ``(pid, "ping")`` with ``("pong", self)``; ignore anything else."""
    me = suptrace.self_pid()
    while True:
        msg = await suptrace.receive()
        if isinstance(msg, tuple) and len(msg) == 2 and msg[1] == "ping":
            suptrace.send(msg[0], ("pong", me))


async def ping(pid: Pid, timeout: float = 1.0) -> bool:
    """True if ``pid`` (running `echo`) answers: proof that it is alive and serving."""
    me = suptrace.self_pid()
    suptrace.send(pid, (me, "ping"))
    await suptrace.receive(lambda m: m == ("pong", pid), timeout=timeout)
    return True


async def down_of(ref: Ref, timeout: float = 2.0) -> Down:
    """The `Down` message of monitor ``ref``."""
    msg: Down = await suptrace.receive(lambda m: type(m) is Down and m.ref == ref, timeout=timeout)
    return msg


async def exit_from(pid: Pid, timeout: float = 2.0) -> ExitMsg:
    """The next `ExitMsg` sent by ``pid``."""
    msg: ExitMsg = await suptrace.receive(
        lambda m: type(m) is ExitMsg and m.pid == pid, timeout=timeout
    )
    return msg


async def wait_dead(pid: Pid, timeout: float = 2.0) -> Any:
    """Monitor ``pid`` and return its exit reason once it is dead."""
    return (await down_of(suptrace.monitor(pid), timeout)).reason


async def mailbox_empty() -> bool:
    """True if nothing at all is queued for the caller right now."""
    try:
        await suptrace.receive(timeout=0)
    except TimeoutError:
        return True
    return False
