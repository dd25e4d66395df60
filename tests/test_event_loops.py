"""The suite runs on the event loop ``SUPTRACE_TEST_LOOP`` names (tests/conftest.py):
these tests prove the choice is real, for pytest's own loop and for a node's."""

from __future__ import annotations

import asyncio

from conftest import TEST_LOOP

import suptrace


def _is_expected(loop: asyncio.AbstractEventLoop) -> bool:
    module = type(loop).__module__
    if TEST_LOOP == "uvloop":
        return module.startswith("uvloop")
    return module.startswith("asyncio")


async def test_the_tests_run_on_the_chosen_loop() -> None:
    loop = asyncio.get_running_loop()
    assert _is_expected(loop), (TEST_LOOP, type(loop))


def test_a_node_started_by_run_uses_the_chosen_loop() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()

        async def worker() -> None:
            suptrace.send("main", type(loop).__module__ + "." + type(loop).__name__)

        suptrace.register("main", suptrace.self_pid())
        suptrace.spawn(worker)
        msg = await suptrace.receive(timeout=10)
        assert isinstance(msg, str)
        return msg

    kind = suptrace.run(main, node="loops", control=False, log_reports=False)
    assert kind.startswith("uvloop" if TEST_LOOP == "uvloop" else "asyncio"), kind
