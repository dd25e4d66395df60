"""Every rule of ``suptrace doctor``, each on its situation built in-process: a real
node, real supervisors and processes, real reports. The rule (or the control
op that applies it) is called directly on what the node holds -- the same data
the control server hands it -- and each rule also meets a healthy case that it
must leave alone. No subprocess, no CLI; tests wait on reports and Down
messages, never on time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from loguru import logger
from otlp_receivers import HttpReceiver, otlp_env
from sup_support import TEST_DEADLINE, Lab, ReportLog, exit_and_wait

import suptrace
from suptrace import ChildSpec, GenServer, Supervisor
from suptrace.node.control import diagnose, trees
from suptrace.node.control.doctor import (
    RULES,
    check_call_timeouts,
    check_restart_loops,
    check_telemetry,
    check_tree,
)

T = TypeVar("T")

#: What `trees.tree` and `diagnose.doctor` give a supervisor to answer `describe`.
ASK = 2.0


async def on_node(
    main: Callable[[suptrace.Node], Awaitable[T]], *, name: str = "rules", **opts: Any
) -> T:
    """Run ``main(node)`` as the root process of a fresh quiet node without a control
    socket (telemetry off unless asked)."""
    opts.setdefault("log_reports", False)
    opts.setdefault("telemetry", "off")
    opts.setdefault("shutdown_timeout", 1.0)
    async with (
        asyncio.timeout(TEST_DEADLINE * 3),
        suptrace.Node(name, control=False, **opts) as node,
    ):
        return await node.run_root(main, node)


async def live_roots(node: suptrace.Node) -> list[dict[str, Any]]:
    """The node's supervision trees as `describe` data, as the control server builds them."""
    snapshot = await trees.tree(node.runtime, node.reports, ASK)
    roots: list[dict[str, Any]] = snapshot["roots"]
    return roots


def tree_findings(roots: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(f["rule"], f["subject"], f["severity"]) for root in roots for f in check_tree(root)]


async def doctor(node: suptrace.Node, **kw: Any) -> list[dict[str, Any]]:
    """The ``doctor`` op on this node (one sample unless asked)."""
    args: dict[str, Any] = {"samples": 1, "interval": 0.01, "stuck_after": 3600.0}
    args.update(kw)
    result = await diagnose.doctor(
        node.runtime,
        node.reports,
        samples=args["samples"],
        interval=args["interval"],
        stuck_after=args["stuck_after"],
        mailbox_min=args.get("mailbox_min", 10),
        timeout=ASK,
        call_timeouts=node.call_timeouts,
        telemetry=node.telemetry,
    )
    findings: list[dict[str, Any]] = result["findings"]
    return findings


def by_rule(findings: list[dict[str, Any]], rule: str) -> list[dict[str, Any]]:
    return [f for f in findings if f["rule"] == rule]


async def idle() -> None:
    """A worker that waits for messages and ignores them."""
    while True:
        await suptrace.receive()


def worker(cid: str, **kw: Any) -> ChildSpec:
    return ChildSpec(id=cid, start=(suptrace.spawn_link, (idle,), {}), **kw)


def sub_supervisor(
    cid: str,
    children: list[ChildSpec],
    restart: str = "permanent",
    *,
    significant: bool = False,
    **flags: Any,
) -> ChildSpec:
    """A child supervisor registered as ``<cid>.sup``."""
    flags.setdefault("name", f"{cid}.sup")
    flags.setdefault("intensity", 3)
    flags.setdefault("period", 5)
    return ChildSpec(
        id=cid,
        start=(Supervisor.start_link, (children,), flags),
        type="supervisor",
        restart=restart,  # type: ignore[arg-type]
        significant=significant,
    )


def test_every_rule_has_a_test_here() -> None:
    """A new rule in doctor.RULES needs its in-process test in this module: the tree
    rules are the TREE_CASES, each other rule is named with its test below."""
    others = {
        "intensity_near": test_intensity_near_when_the_window_is_used_up_and_not_before,
        "restart_loop": test_restart_loop_names_the_child_the_count_and_why_it_died,
        "call_timeouts": test_call_timeouts_names_the_destination_its_rate_and_callers,
        "vanished_name": test_vanished_name_is_a_warning_and_an_error_once_nothing_restarts_it,
        "growing_mailbox": test_growing_mailbox_is_found_over_samples_a_full_but_steady_one_is_not,
        "stuck": test_stuck_is_a_process_awaiting_one_thing_too_long_not_a_receive_or_a_sleep,
        "telemetry_dropped": test_telemetry_dropped_when_the_backend_refuses_a_signal,
    }
    assert sorted([*TREE_CASES, *others]) == sorted(RULES)
    assert not set(TREE_CASES) & set(others)


# -- the tree rules: a supervisor's flags and children ---------------------------------------


async def _silent_death() -> None:
    inner = [worker("w")]
    await Supervisor.start_link(
        [sub_supervisor("imports", inner, "transient")], name="app.sup", intensity=3
    )


async def _significant_escalation() -> None:
    spec = sub_supervisor("imports", [worker("w")], "transient", significant=True)
    await Supervisor.start_link(
        [spec], name="app.sup", intensity=3, auto_shutdown="any_significant"
    )


async def _auto_shutdown_permanent() -> None:
    inner = [worker("w", restart="transient", significant=True)]
    await Supervisor.start_link(
        [sub_supervisor("imports", inner, "permanent", auto_shutdown="any_significant")],
        name="app.sup",
        intensity=3,
    )


async def _auto_shutdown_unused() -> None:
    await Supervisor.start_link([worker("w")], name="app.sup", auto_shutdown="all_significant")


async def _intensity_zero() -> None:
    await Supervisor.start_link([worker("w")], name="app.sup", intensity=0)


async def _intensity_burst() -> None:
    await Supervisor.start_link(
        [worker("a"), worker("b"), worker("c")], name="app.sup", intensity=2, period=5
    )


TREE_CASES: dict[str, tuple[Callable[[], Awaitable[None]], str, str]] = {
    "silent_death": (_silent_death, "app.sup / imports", "error"),
    "significant_escalation": (_significant_escalation, "app.sup / imports", "warning"),
    "auto_shutdown_permanent": (_auto_shutdown_permanent, "app.sup / imports", "warning"),
    "auto_shutdown_unused": (_auto_shutdown_unused, "app.sup", "warning"),
    "intensity_zero": (_intensity_zero, "app.sup", "warning"),
    "intensity_burst": (_intensity_burst, "app.sup", "warning"),
}


@pytest.mark.parametrize("rule", sorted(TREE_CASES))
async def test_a_tree_rule_finds_its_hazard_in_a_running_tree(rule: str) -> None:
    build, subject, severity = TREE_CASES[rule]

    async def main(node: suptrace.Node) -> tuple[list[Any], list[dict[str, Any]]]:
        await build()
        return tree_findings(await live_roots(node)), await doctor(node)

    found, from_doctor = await on_node(main)
    assert found == [(rule, subject, severity)]
    # The doctor op applies the same rule to the same tree.
    assert [(f["rule"], f["subject"]) for f in by_rule(from_doctor, rule)] == [(rule, subject)]


async def test_a_sound_tree_gets_no_finding() -> None:
    """Restartable children within the intensity, a permanent child supervisor, and
    an auto-shutdown supervisor (at the root) with a significant child."""

    async def main(node: suptrace.Node) -> tuple[list[Any], list[dict[str, Any]]]:
        await Supervisor.start_link(
            [worker("api"), sub_supervisor("imports", [worker("w")])],
            name="app.sup",
            intensity=3,
            period=5,
        )
        closing = [worker("job", restart="transient", significant=True), worker("log")]
        await Supervisor.start_link(
            closing, name="jobs.sup", intensity=3, auto_shutdown="any_significant"
        )
        return tree_findings(await live_roots(node)), await doctor(node, samples=2)

    found, from_doctor = await on_node(main)
    assert found == []
    assert from_doctor == []


async def test_intensity_near_when_the_window_is_used_up_and_not_before() -> None:
    async def main(node: suptrace.Node) -> list[list[Any]]:
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("w"), lab.spec("v")], name="app.sup", intensity=2, period=3600
        )
        seen = [tree_findings(await live_roots(node))]
        for n in (1, 2):
            await exit_and_wait(lab.pid("w"), ("boom", n))
            await log.wait_progress("w", count=1 + n)
            seen.append(tree_findings(await live_roots(node)))
        return seen

    before, one, two = await on_node(main)
    assert before == [] and one == []
    assert two == [("intensity_near", "app.sup", "warning")]


# -- restart loops -----------------------------------------------------------------------------


async def test_restart_loop_names_the_child_the_count_and_why_it_died() -> None:
    async def main(node: suptrace.Node) -> tuple[list[Any], list[Any], list[Any]]:
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("survey"), lab.spec("steady")], name="app.sup", intensity=20, period=3600
        )
        await exit_and_wait(lab.pid("survey"), ValueError("row 1"))
        await log.wait_progress("survey", count=2)
        reasons, gave_up = diagnose.restart_history(node.reports)
        once = check_restart_loops((await live_roots(node))[0], reasons, gave_up)
        for n in range(2, 6):
            await exit_and_wait(lab.pid("survey"), ValueError(f"row {n}"))
            await log.wait_progress("survey", count=1 + n)
        reasons, gave_up = diagnose.restart_history(node.reports)
        loops = check_restart_loops((await live_roots(node))[0], reasons, gave_up)
        return once, loops, by_rule(await doctor(node), "restart_loop")

    once, loops, from_doctor = await on_node(main)
    assert once == []
    assert [(f["rule"], f["subject"], f["severity"]) for f in loops] == [
        ("restart_loop", "app.sup / survey", "error")
    ]
    message = loops[0]["message"]
    assert "survey was restarted 5 times by app.sup, 5 of them in the last 3600s" in message
    assert "ValueError x5 (last: ValueError('row 5'))" in message
    assert [f["subject"] for f in from_doctor] == ["app.sup / survey"]


async def test_restart_loop_of_a_child_supervisor_names_the_child_that_makes_it_give_up() -> None:
    async def main(node: suptrace.Node) -> list[dict[str, Any]]:
        log, lab = ReportLog(), Lab()
        inner = sub_supervisor("imports", [lab.spec("w")], intensity=1, period=3600)
        await Supervisor.start_link([inner], name="app.sup", intensity=10, period=3600)
        for cycle in range(3):
            # The first crash is restarted; the second makes imports.sup give up,
            # and app.sup starts it again (with a new w).
            await exit_and_wait(lab.pid("w"), ("disk", cycle))
            await log.wait_progress("w", count=2 + 2 * cycle)
            await exit_and_wait(lab.pid("w"), ("disk", cycle))
            await log.wait_progress("imports", count=2 + cycle)
        reasons, gave_up = diagnose.restart_history(node.reports)
        return check_restart_loops((await live_roots(node))[0], reasons, gave_up)

    loops = await on_node(main)
    assert [(f["subject"], f["severity"]) for f in loops] == [("app.sup / imports", "error")]
    message = loops[0]["message"]
    assert "imports was restarted 3 times by app.sup" in message
    assert "each time it had reached its max restart intensity, because of w" in message
    assert "which exited with: tuple x6" in message
    assert "whole subtree" in message


# -- call timeouts -----------------------------------------------------------------------------


class Silent(GenServer):
    """Takes every call and never answers it."""

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        return suptrace.NOREPLY


class Echo(GenServer):
    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        return request


async def _call_and_time_out(dest: str, times: int) -> None:
    for n in range(times):
        with pytest.raises(suptrace.CallTimeout):
            await suptrace.call(dest, n, timeout=0.02)


async def test_call_timeouts_names_the_destination_its_rate_and_callers() -> None:
    async def main(node: suptrace.Node) -> tuple[list[Any], list[Any], list[Any]]:
        await Silent.start_link(name="silent")
        await Echo.start_link(name="echo")
        await _call_and_time_out("silent", 2)
        below = check_call_timeouts(diagnose.call_timeout_rows(node.runtime, node.call_timeouts))
        await _call_and_time_out("silent", 1)
        for n in range(20):
            assert await suptrace.call("echo", n) == n
        rows = diagnose.call_timeout_rows(node.runtime, node.call_timeouts)
        return below, rows, check_call_timeouts(rows)

    below, rows, found = await on_node(main)
    assert below == []  # two timeouts: under the rule's minimum
    assert [(r["destination"], r["timeouts"], r["recent"], r["calls"]) for r in rows] == [
        ("silent", 3, 3, 3)
    ]
    assert [(f["rule"], f["subject"], f["severity"]) for f in found] == [
        ("call_timeouts", "silent", "error")
    ]
    assert "3 of the 3 calls it received (100%) timed out" in found[0]["message"]
    assert "the last one waited 0.02s" in found[0]["message"]


async def test_calls_that_answer_give_no_call_timeout_rows() -> None:
    async def main(node: suptrace.Node) -> list[Any]:
        await Echo.start_link(name="echo")
        for n in range(50):
            await suptrace.call("echo", n)
        return diagnose.call_timeout_rows(node.runtime, node.call_timeouts)

    assert await on_node(main) == []


# -- names, mailboxes, stuck processes (the doctor op's own rules) -----------------------------


async def test_vanished_name_is_a_warning_and_an_error_once_nothing_restarts_it() -> None:
    async def main(node: suptrace.Node) -> list[dict[str, Any]]:
        log, lab = ReportLog(), Lab()
        cache = suptrace.spawn(idle, name="cache")
        await exit_and_wait(cache, "kill")
        inner = sub_supervisor("imports", [lab.spec("w")], "transient", intensity=1, period=3600)
        await Supervisor.start_link([inner], name="app.sup", intensity=3)
        await exit_and_wait(lab.pid("w"), "boom")
        await log.wait_progress("w", count=2)
        await exit_and_wait(lab.pid("w"), "boom")
        await log.wait_context("not_restarted")
        return by_rule(await doctor(node), "vanished_name")

    found = {f["subject"]: f for f in await on_node(main)}
    assert sorted(found) == ["cache", "imports.sup"]
    assert found["cache"]["severity"] == "warning"
    assert found["imports.sup"]["severity"] == "error"
    assert "did not restart it" in found["imports.sup"]["message"]
    assert "gets NoProc" in found["cache"]["hint"]


async def test_a_name_taken_again_is_not_vanished() -> None:
    async def main(node: suptrace.Node) -> list[dict[str, Any]]:
        log = ReportLog()
        await Supervisor.start_link(
            [ChildSpec(id="echo", start=(Echo.start_link, (), {"name": "echo"}))],
            name="app.sup",
        )
        await exit_and_wait(suptrace.whereis("echo"), "boom")  # type: ignore[arg-type]
        await log.wait_progress("echo", count=2)
        return by_rule(await doctor(node), "vanished_name")

    assert await on_node(main) == []


async def hoarder(ready: asyncio.Future[None]) -> None:
    """Receives nothing: its mailbox keeps what it is sent."""
    ready.set_result(None)
    await asyncio.get_running_loop().create_future()


async def flood(target: suptrace.Pid) -> None:
    """Sends to ``target`` once per event-loop iteration (a load, not a clock)."""
    n = 0
    while True:
        suptrace.send(target, n)
        n += 1
        await asyncio.sleep(0)


async def test_growing_mailbox_is_found_over_samples_a_full_but_steady_one_is_not() -> None:
    async def main(node: suptrace.Node) -> tuple[list[Any], list[Any]]:
        loop = asyncio.get_running_loop()
        full, flooded = loop.create_future(), loop.create_future()
        steady = suptrace.spawn(hoarder, full, name="steady")
        await full
        for n in range(20):
            suptrace.send(steady, n)
        victim = suptrace.spawn(hoarder, flooded, name="victim")
        await flooded
        suptrace.spawn_link(flood, victim)
        # Between two samples the doctor awaits its interval: the flood runs meanwhile.
        growing = by_rule(await doctor(node, samples=3, mailbox_min=10), "growing_mailbox")
        one_sample = by_rule(await doctor(node, samples=1, mailbox_min=10), "growing_mailbox")
        return growing, one_sample

    growing, one_sample = await on_node(main)
    assert len(growing) == 1 and growing[0]["subject"].startswith("victim (")
    assert "only grew while sampled" in growing[0]["message"]
    assert one_sample == []  # one sample shows no growth


async def test_stuck_is_a_process_awaiting_one_thing_too_long_not_a_receive_or_a_sleep() -> None:
    async def main(node: suptrace.Node) -> tuple[list[str], list[str]]:
        loop = asyncio.get_running_loop()
        started = loop.create_future()

        async def waits_forever() -> None:
            started.set_result(None)
            await loop.create_future()  # an event nobody sets

        async def sleeps() -> None:
            await asyncio.sleep(3600)

        suptrace.spawn(waits_forever, name="stuck_one")
        suptrace.spawn(idle, name="receiver")
        suptrace.spawn(sleeps, name="sleeper")
        await started
        stuck = by_rule(await doctor(node, samples=2, stuck_after=0.0), "stuck")
        patient = by_rule(await doctor(node, samples=2, stuck_after=3600.0), "stuck")
        return [f["subject"] for f in stuck], [f["subject"] for f in patient]

    stuck, patient = await on_node(main)
    assert [s.split()[0] for s in stuck] == ["stuck_one"]
    assert patient == []


# -- telemetry ---------------------------------------------------------------------------------


async def test_telemetry_dropped_when_the_backend_refuses_a_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SUPTRACE_TRACES", "all")
    receiver = HttpReceiver()
    receiver.refuse, receiver.refuse_signals = "405", {"traces"}
    told = threading.Event()  # the node's one line about the refusal
    sink = logger.add(
        lambda m: told.set(),
        filter=lambda r: f":{receiver.port}" in r["message"] and "refuses traces" in r["message"],
    )

    async def main(node: suptrace.Node) -> tuple[Any, list[dict[str, Any]]]:
        await Echo.start_link(name="echo")
        while not await asyncio.to_thread(told.wait, 0.2):
            await suptrace.call("echo", "x")
        signals = diagnose.telemetry_signals(node.telemetry)
        return signals, by_rule(await doctor(node), "telemetry_dropped")

    try:
        with otlp_env(monkeypatch, receiver, "http/protobuf"):
            monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
            signals, from_doctor = await on_node(main, telemetry="auto")
    finally:
        logger.remove(sink)
        receiver.close()
    found = check_telemetry(signals)
    assert [(f["rule"], f["subject"]) for f in found] == [("telemetry_dropped", "telemetry traces")]
    assert "refuses traces" in found[0]["message"]
    assert "OTEL_TRACES_EXPORTER=none" in found[0]["hint"]
    assert [f["subject"] for f in from_doctor] == ["telemetry traces"]


async def test_telemetry_that_gets_through_or_is_off_gives_no_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SUPTRACE_TRACES", "all")
    receiver = HttpReceiver()

    async def main(node: suptrace.Node) -> Any:
        await Echo.start_link(name="echo")
        await suptrace.call("echo", "x")
        got = await asyncio.to_thread(receiver.wait_for, lambda: bool(receiver.dump().spans), 10)
        assert got, "the receiver got no span"
        return diagnose.telemetry_signals(node.telemetry)

    try:
        with otlp_env(monkeypatch, receiver, "http/protobuf"):
            monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
            signals = await on_node(main, telemetry="auto")
    finally:
        receiver.close()
    assert signals["traces"]["state"] == "ok"
    assert check_telemetry(signals) == []

    async def off(node: suptrace.Node) -> Any:
        return diagnose.telemetry_signals(node.telemetry)

    assert await on_node(off) is None
    assert check_telemetry(None) == []
