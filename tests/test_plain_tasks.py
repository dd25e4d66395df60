"""Plain asyncio tasks in a node: a crash report for an exception nobody retrieves, through
the loop's exception handler, without taking the application's handler away.

Every test waits for the report it expects through ``add_report_handler`` (a future the
handler resolves); none relies on a garbage-collector pass or on time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import suptrace
from suptrace.node.control.processes import ps
from suptrace.node.control.shapes import report_json
from suptrace.observers.tasks import NEVER_RETRIEVED, TaskCrashReport


def _next_task_crash(predicate: Any = None) -> tuple[asyncio.Future[TaskCrashReport], Any]:
    """A future resolved by the next task crash report (matching ``predicate``)."""
    fut: asyncio.Future[TaskCrashReport] = asyncio.get_running_loop().create_future()

    def handler(report: Any) -> None:
        wanted = predicate is None or predicate(report)
        if isinstance(report, TaskCrashReport) and not fut.done() and wanted:
            fut.set_result(report)

    return fut, suptrace.add_report_handler(handler)


async def _boom(text: str = "the feed went away") -> None:
    await asyncio.sleep(0)
    raise ValueError(text)


async def test_a_forgotten_task_that_raises_gets_a_crash_report_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with suptrace.Node("tasks-report", control=False, log_reports=False):
        got, _ = _next_task_crash()
        asyncio.create_task(_boom(), name="price-feed")  # noqa: RUF006 - nobody keeps it, nobody awaits it
        report = await asyncio.wait_for(got, 10)
        history = suptrace.report_history()
    assert report.task == "price-feed"
    assert report.coroutine == "_boom"
    assert isinstance(report.reason, ValueError) and str(report.reason) == "the feed went away"
    assert report.created_at == ()
    assert report in history
    text = suptrace.format_report(report)
    assert text.startswith("=CRASH REPORT====")
    assert "task: price-feed" in text and "not a process" in text
    assert 'raise ValueError(text)' in text and "test_plain_tasks.py" in text
    assert "PYTHONASYNCIODEBUG=1" in text  # how to learn where it was created
    as_json = report_json(report)
    assert as_json["kind"] == "crash" and as_json["task"] == "price-feed"
    assert as_json["reason"] == "ValueError('the feed went away')"
    # The report replaces asyncio's own "never retrieved" log line.
    assert not [r for r in caplog.records if NEVER_RETRIEVED in r.getMessage()]


async def test_in_debug_mode_the_report_says_where_the_task_was_created() -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    try:
        async with suptrace.Node("tasks-debug", control=False, log_reports=False):
            got, _ = _next_task_crash()
            asyncio.create_task(_boom(), name="made-here")  # noqa: RUF006 - the line the report must name
            report = await asyncio.wait_for(got, 10)
    finally:
        loop.set_debug(False)
    assert report.created_at, report
    assert "test_plain_tasks.py" in report.created_at[-1]
    assert "test_in_debug_mode_the_report_says_where_the_task_was_created" in report.created_at[-1]
    assert "created at (innermost last)" in suptrace.format_report(report)


async def test_an_exception_someone_retrieves_gets_no_report() -> None:
    async with suptrace.Node("tasks-retrieved", control=False, log_reports=False):
        seen: list[Any] = []
        remove = suptrace.add_report_handler(seen.append)
        awaited = asyncio.create_task(_boom("awaited"), name="awaited")
        with pytest.raises(ValueError):
            await awaited
        gathered = asyncio.gather(_boom("gathered"), return_exceptions=True)
        assert [str(e) for e in await gathered] == ["gathered"]
        del awaited, gathered
        # A last task that nobody retrieves: once its report is in, the ones above would
        # have been reported before it (each was freed first).
        got, _ = _next_task_crash()
        asyncio.create_task(_boom("sentinel"), name="sentinel")  # noqa: RUF006 (unreferenced on purpose)
        await asyncio.wait_for(got, 10)
        remove()
    crashes = [r for r in seen if isinstance(r, TaskCrashReport)]
    assert [r.task for r in crashes] == ["sentinel"]


async def test_a_task_still_referenced_is_reported_when_the_reference_goes() -> None:
    async with suptrace.Node("tasks-held", control=False, log_reports=False):
        seen: list[Any] = []
        suptrace.add_report_handler(seen.append)
        held = asyncio.create_task(_boom("held"), name="held")
        await asyncio.wait([held])  # finished, exception not retrieved, still referenced
        got, _ = _next_task_crash()
        del held  # asyncio's "never retrieved" moment, and so the report's
        report = await asyncio.wait_for(got, 10)
    assert report.task == "held"
    assert [r.task for r in seen if isinstance(r, TaskCrashReport)] == ["held"]


async def test_a_crashing_process_gets_its_usual_report_not_a_task_report() -> None:
    async with suptrace.Node("tasks-proc", control=False, log_reports=False):
        seen: list[Any] = []
        suptrace.add_report_handler(seen.append)

        async def crasher() -> None:
            raise RuntimeError("process crash")

        crashed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        suptrace.add_report_handler(
            lambda r: crashed.done() or not isinstance(r, suptrace.CrashReport) or crashed.set_result(None)
        )
        suptrace.spawn(crasher)
        await asyncio.wait_for(crashed, 10)
        got, _ = _next_task_crash()
        asyncio.create_task(_boom("sentinel"), name="sentinel")  # noqa: RUF006 (unreferenced on purpose)
        await asyncio.wait_for(got, 10)
    kinds = [type(r).__name__ for r in seen]
    assert kinds.count("CrashReport") == 1
    assert [r.task for r in seen if isinstance(r, TaskCrashReport)] == ["sentinel"]


async def test_the_applications_handler_set_before_the_node_keeps_getting_everything() -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []

    def app_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        contexts.append(context)

    loop.set_exception_handler(app_handler)
    try:
        async with suptrace.Node("tasks-app-before", control=False, log_reports=False):
            assert loop.get_exception_handler() is not app_handler  # the node's, chained
            got, _ = _next_task_crash()
            asyncio.create_task(_boom(), name="lost")  # noqa: RUF006 (unreferenced on purpose)
            report = await asyncio.wait_for(got, 10)
            loop.call_exception_handler({"message": "something else went wrong"})
        # Stopping gives the loop its handler back.
        assert loop.get_exception_handler() is app_handler
    finally:
        loop.set_exception_handler(None)
    assert report.task == "lost"
    messages = [c["message"] for c in contexts]
    assert messages == [NEVER_RETRIEVED, "something else went wrong"]
    assert contexts[0]["future"].get_name() == "lost"


async def test_other_contexts_still_reach_asyncios_default_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with suptrace.Node("tasks-default", control=False, log_reports=False):
        asyncio.get_running_loop().call_exception_handler({"message": "a callback failed"})
    assert [r.getMessage() for r in caplog.records if "a callback failed" in r.getMessage()]


async def test_a_handler_the_application_sets_after_the_start_wins_and_stays() -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []

    def late_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        contexts.append(context)

    try:
        async with suptrace.Node("tasks-app-after", control=False, log_reports=False) as node:
            assert ps(node.runtime, False, 10, tasks=True, watch=node.parts.tasks)["task_crash_reports"] is True
            loop.set_exception_handler(late_handler)
            # The node says it no longer reports (ps --all prints a note about it).
            listing = ps(node.runtime, False, 10, tasks=True, watch=node.parts.tasks)
            assert listing["task_crash_reports"] is False
            assert "replaced the loop's exception handler" in listing["task_crash_reports_off"]
            lost = asyncio.create_task(_boom(), name="lost-late")
            await asyncio.wait([lost])
            del lost
            # asyncio called the application's handler synchronously, as the task went.
            assert [c["message"] for c in contexts] == [NEVER_RETRIEVED]
        assert loop.get_exception_handler() is late_handler  # not taken away at stop
    finally:
        loop.set_exception_handler(None)


async def test_a_node_without_reports_leaves_the_handler_alone() -> None:
    loop = asyncio.get_running_loop()
    async with suptrace.Node("tasks-noreports", control=False, reports=False) as node:
        assert loop.get_exception_handler() is None
        listing = ps(node.runtime, False, 10, tasks=True, watch=node.parts.tasks)
        assert listing["task_crash_reports"] is False
        assert "reports=False" in listing["task_crash_reports_off"]


async def test_ps_lists_plain_tasks_with_where_they_await_and_on_what() -> None:
    async with suptrace.Node("tasks-ps", control=False, log_reports=False) as node:
        gate = asyncio.Event()

        async def fetcher() -> None:
            await gate.wait()

        async def waiter(task: asyncio.Task[None]) -> None:
            await task

        fetch = asyncio.create_task(fetcher(), name="fetcher")
        wait = asyncio.create_task(waiter(fetch), name="waiter")

        async def proc() -> None:
            await suptrace.receive()

        suptrace.spawn(proc, name="a.process")
        await asyncio.sleep(0)  # let both tasks reach their first await
        result = ps(node.runtime, False, 100, tasks=True, watch=node.parts.tasks)
        rows = {t["task"]: t for t in result["tasks"]}
        assert {"fetcher", "waiter"} <= set(rows)
        # Processes are not listed as tasks.
        assert not any(t["coroutine"].endswith("<locals>.proc") for t in result["tasks"])
        assert rows["waiter"]["awaiting"] == "task 'fetcher'"
        assert rows["fetcher"]["awaited_by"] == ["task 'waiter'"]
        assert rows["fetcher"]["state"] == "pending"
        assert rows["fetcher"]["awaiting_at"][0].endswith("<locals>.fetcher")
        assert rows["fetcher"]["awaiting_at"][-1].endswith("in Event.wait")
        assert rows["fetcher"]["suptrace"] is False
        assert "tasks" not in ps(node.runtime, False, 100)  # only when asked
        gate.set()
        await wait


async def test_a_task_crash_report_is_exported_as_an_otlp_log_record(http_receiver: Any) -> None:
    async with suptrace.Node("tasks-otel", control=False, log_reports=False) as node:
        assert node.telemetry is not None
        got, _ = _next_task_crash()
        asyncio.create_task(_boom("exported"), name="exported-task")  # noqa: RUF006 (unreferenced on purpose)
        await asyncio.wait_for(got, 10)
    dump = http_receiver.dump()
    crashes = [r for r in dump.logs if r["event_name"] == "suptrace.crash_report"]
    (record,) = [r for r in crashes if r["attributes"].get("suptrace.task.name") == "exported-task"]
    assert record["attributes"]["suptrace.exit.reason_class"] == "ValueError"
    assert "exported-task" in str(record["body"])
