"""What the control server's requests compute, called in-process on a real node: ``ps``,
``inspect``, ``tree``, ``status``' telemetry, ``reports``, ``doctor`` and the write
commands (``terminate_child``, ``restart_child``, ``exit``), with the errors they give
for a missing process, a process that is not a supervisor, a child that is not there.

The ops are called as the control server calls them (the runtime, the node's
reports, a timeout); the argument checks the server makes before it calls an op
(types, ranges, required arguments) are exercised over a real control socket of a
node in this same process. No subprocess; tests wait on reports, Down messages and
futures, never on time."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sup_support import TEST_DEADLINE, Lab, ReportLog, exit_and_wait, wait_dead

import suptrace
from suptrace import (
    ChildSpec,
    CrashReport,
    DynamicSupervisor,
    GenServer,
    ProgressReport,
    Supervisor,
    SupervisorReport,
)
from suptrace.node.control import diagnose, processes, shapes, trees, writes
from suptrace.node.control.errors import OpError
from suptrace.node.control.protocol import HEADER, decode_body, encode_frame

T = TypeVar("T")

#: The timeout the ops get for asking a process (describe, get_state).
ASK = 2.0


async def on_node(
    main: Callable[[suptrace.Node], Awaitable[T]], *, name: str = "opsnode", **opts: Any
) -> T:
    """Run ``main(node)`` as the root process of a fresh quiet node (no control socket,
    telemetry off, unless asked)."""
    opts.setdefault("log_reports", False)
    opts.setdefault("telemetry", "off")
    opts.setdefault("control", False)
    opts.setdefault("shutdown_timeout", 1.0)
    async with asyncio.timeout(TEST_DEADLINE * 3), suptrace.Node(name, **opts) as node:
        return await node.run_root(main, node)


async def idle() -> None:
    while True:
        await suptrace.receive()


def worker(cid: Any, **kw: Any) -> ChildSpec:
    return ChildSpec(id=cid, start=(suptrace.spawn_link, (idle,), {}), **kw)


class Counter(GenServer):
    """Counts; ``("hold", entered, release)`` sets ``entered`` and blocks the server
    until ``release`` is done."""

    async def init(self, start: int = 0) -> None:
        self.n = start

    async def handle_call(self, request: Any, caller: suptrace.Caller) -> Any:
        if isinstance(request, tuple) and request[0] == "hold":
            request[1].set_result(None)
            await request[2]
            return "released"
        self.n += 1
        return self.n


def counter(cid: str, name: str) -> ChildSpec:
    return ChildSpec(id=cid, start=(Counter.start_link, (), {"name": name}))


async def start_app() -> suptrace.Pid:
    """app.sup: a counter named ``api``, an idle worker ``("shard", 1)`` and a child
    supervisor ``imports.sup`` with one idle worker."""
    inner = ChildSpec(
        id="imports",
        start=(Supervisor.start_link, ([worker("w")],), {"name": "imports.sup", "intensity": 3}),
        type="supervisor",
    )
    pid: suptrace.Pid = await Supervisor.start_link(
        [counter("api", "api"), worker(("shard", 1)), inner],
        name="app.sup",
        intensity=5,
        period=3600,
    )
    return pid


async def op_error(op: Awaitable[Any]) -> OpError:
    with pytest.raises(OpError) as info:
        await op
    return info.value


def sync_error(fn: Callable[[], Any]) -> OpError:
    with pytest.raises(OpError) as info:
        fn()
    return info.value


# -- ps ----------------------------------------------------------------------------------------


async def test_ps_lists_the_live_processes_in_pid_order_with_their_restarts() -> None:
    async def main(node: suptrace.Node) -> tuple[dict[str, Any], ...]:
        log = ReportLog()
        await start_app()
        suptrace.spawn(idle, name="loose")
        await exit_and_wait(suptrace.whereis("api"), "boom")  # type: ignore[arg-type]
        await log.wait_progress("api", count=2)
        rt = node.runtime
        return (
            processes.ps(rt, False, 1000),
            processes.ps(rt, False, 2),
            processes.ps(rt, True, 1000),
        )

    everything, first_two, with_system = await on_node(main)
    rows = {r["name"]: r for r in everything["processes"]}
    assert {"app.sup", "api", "imports.sup", "loose"} <= set(rows)
    assert everything["node"] == "opsnode" and not everything["truncated"]
    assert everything["total"] == len(everything["processes"])
    pids = [suptrace.Pid.parse(r["pid"]) for r in everything["processes"]]
    assert pids == sorted(pids)
    api = rows["api"]
    assert (api["restarts"], api["restarts_window"]) == (1, 1)
    assert api["behaviour"] == "Counter" and api["parent"] == rows["app.sup"]["pid"]
    assert api["status"] == "waiting" and api["message_queue_len"] == 0
    assert rows["loose"]["restarts"] == 0 and rows["loose"]["behaviour"] is None
    assert (first_two["total"], len(first_two["processes"]), first_two["truncated"]) == (
        everything["total"],
        2,
        True,
    )
    assert with_system["total"] >= everything["total"]
    assert "tasks" not in everything


async def test_ps_with_tasks_lists_plain_tasks_and_says_when_task_reports_are_off() -> None:
    async def main(node: suptrace.Node) -> dict[str, Any]:
        gate = asyncio.Event()
        task = asyncio.create_task(gate.wait(), name="refresher")
        try:
            return processes.ps(node.runtime, False, 100, tasks=True, watch=node.parts.tasks)
        finally:
            task.cancel()

    watched = await on_node(main)
    assert "refresher" in [t["task"] for t in watched["tasks"]]
    assert watched["tasks_total"] >= 1 and watched["task_crash_reports"] is True
    assert "task_crash_reports_off" not in watched

    unwatched = await on_node(main, reports=False)
    assert unwatched["task_crash_reports"] is False
    assert unwatched["task_crash_reports_off"] == "the node keeps no reports (reports=False)"


# -- inspect -----------------------------------------------------------------------------------


async def test_inspect_a_server_by_name_or_pid_shows_its_state_and_who_restarts_it() -> None:
    async def main(node: suptrace.Node) -> tuple[dict[str, Any], dict[str, Any]]:
        await start_app()
        assert await suptrace.call("api", "tick") == 1
        by_name = await processes.info(node.runtime, "api", ASK, 200)
        by_pid = await processes.info(node.runtime, by_name["pid"], ASK, 200)
        return by_name, by_pid

    by_name, by_pid = await on_node(main)
    assert by_name["registered_name"] == "api" and by_pid["pid"] == by_name["pid"]
    assert by_name["behaviour"] == "Counter"
    assert by_name["state"] == "{'n': 1}"
    assert (by_name["statistics"]["calls"], by_name["statistics"]["casts"]) == (1, 0)
    assert isinstance(by_name["statistics"], dict)
    assert by_name["restarted_by"] == "app.sup" and by_name["restart_period"] == 3600
    assert (by_name["restarts"], by_name["restarts_window"]) == (0, 0)
    assert by_name["links"] and by_name["parent"] in by_name["links"]
    assert any("tick" in e["text"] for e in by_name["last_events"]), by_name["last_events"]


async def test_inspect_a_supervisor_shows_its_children_in_start_order() -> None:
    async def main(node: suptrace.Node) -> dict[str, Any]:
        await start_app()
        return await processes.info(node.runtime, "app.sup", ASK, 200)

    sup = (await on_node(main))["supervisor"]
    assert sup["status"] == "ok" and sup["strategy"] == "one_for_one"
    assert (sup["intensity"], sup["period"], sup["restarts_in_window"]) == (5, 3600, 0)
    assert [c["id_text"] for c in sup["children"]] == ["api", "('shard', 1)", "imports"]
    api, shard, imports = sup["children"]
    assert (api["name"], api["type"], api["restart"], api["alive"]) == (
        "api",
        "worker",
        "permanent",
        True,
    )
    assert shard["id"] == ["shard", 1] and shard["name"] is None
    assert imports["type"] == "supervisor" and imports["name"] == "imports.sup"


async def test_inspect_a_busy_server_says_it_is_busy_instead_of_hanging() -> None:
    async def main(node: suptrace.Node) -> dict[str, Any]:
        await start_app()
        loop = asyncio.get_running_loop()
        entered: asyncio.Future[None] = loop.create_future()
        hold: asyncio.Future[None] = loop.create_future()
        caller = asyncio.ensure_future(suptrace.call("api", ("hold", entered, hold)))
        await entered  # api is inside the call now
        try:
            return await processes.info(node.runtime, "api", 0.05, 200)
        finally:
            hold.set_result(None)
            assert await caller == "released"

    out = await on_node(main)
    assert out["state_error"] == "no answer in 0.05s: the server is busy in a callback"
    assert "state" not in out


async def test_inspect_something_missing_names_it_and_suggests_what_to_do() -> None:
    async def main(node: suptrace.Node) -> list[OpError]:
        rt = node.runtime
        await start_app()
        cache = suptrace.spawn(idle, name="cache")
        await exit_and_wait(cache, "kill")
        return [
            await op_error(processes.info(rt, "nobody", ASK, 200)),
            await op_error(processes.info(rt, "app.sub", ASK, 200)),
            await op_error(processes.info(rt, "cache", ASK, 200)),
            await op_error(processes.info(rt, "<0.99999.0>", ASK, 200)),
            await op_error(processes.info(rt, "<0.x.0>", ASK, 200)),
        ]

    nobody, typo, dead, no_pid, bad_pid = await on_node(main)
    assert nobody.code == "not_found"
    assert nobody.message == "no process 'nobody' on node opsnode (see: suptrace ps)"
    assert typo.detail["did_you_mean"] == ["app.sup"]
    assert "did you mean app.sup?" in typo.message
    assert dead.code == "not_found" and "cache" in dead.message
    assert dead.detail["tombstone"]["name"] == "cache"
    assert dead.message.startswith("cache is gone: <0.") and " exited killed at " in dead.message
    assert dead.detail["tombstone"]["reason"] == "'killed'"
    for err, target in ((no_pid, "<0.99999.0>"), (bad_pid, "<0.x.0>")):
        assert (err.code, err.message) == (
            "not_found",
            f"no process {target!r} on node opsnode (see: suptrace ps)",
        )


async def test_inspect_a_plain_task_by_name_and_refuse_an_ambiguous_one() -> None:
    async def main(node: suptrace.Node) -> tuple[dict[str, Any], OpError]:
        gate = asyncio.Event()
        one = asyncio.create_task(gate.wait(), name="flusher")
        twins = [asyncio.create_task(gate.wait(), name="twin") for _ in range(2)]
        await asyncio.sleep(0)  # let them start awaiting (one loop step, not a clock)
        try:
            return await processes.info(node.runtime, "flusher", ASK, 200), await op_error(
                processes.info(node.runtime, "twin", ASK, 200)
            )
        finally:
            gate.set()
            await asyncio.gather(one, *twins)

    task, ambiguous = await on_node(main)
    assert task["kind"] == "task" and task["task"] == "flusher"
    assert task["awaiting_at"], task
    assert ambiguous.code == "ambiguous"
    assert "2 plain tasks are named 'twin' on node opsnode" in ambiguous.message
    assert "inspect one by its id" in ambiguous.message


# -- tree --------------------------------------------------------------------------------------


async def test_tree_shows_each_tree_the_unsupervised_and_the_vanished() -> None:
    async def main(node: suptrace.Node) -> dict[str, Any]:
        await start_app()
        suptrace.spawn(idle, name="loose")
        gone = suptrace.spawn(idle, name="gone")
        await exit_and_wait(gone, "boom")
        return await trees.tree(node.runtime, node.reports, ASK)

    snapshot = await on_node(main)
    (root,) = snapshot["roots"]
    assert (root["name"], root["status"], root["restart"]) == ("app.sup", "ok", None)
    assert [c["id_text"] for c in root["children"]] == ["api", "('shard', 1)", "imports"]
    imports = root["children"][2]["tree"]
    assert (imports["name"], imports["restart"]) == ("imports.sup", "permanent")
    assert [c["id"] for c in imports["children"]] == ["w"]
    loose = [r["name"] for r in snapshot["unsupervised"]]
    assert "loose" in loose and "api" not in loose and "app.sup" not in loose
    assert snapshot["unsupervised_total"] == len(snapshot["unsupervised"])
    assert [s["name"] for s in snapshot["vanished"]] == ["gone"]


async def test_tree_tells_why_a_child_supervisor_is_gone_for_good() -> None:
    async def main(node: suptrace.Node) -> tuple[dict[str, Any], dict[str, Any]]:
        log, lab = ReportLog(), Lab()
        inner = ChildSpec(
            id="imports",
            start=(
                Supervisor.start_link,
                ([lab.spec("w")],),
                {"name": "imports.sup", "intensity": 1, "period": 3600},
            ),
            type="supervisor",
            restart="transient",
        )
        await Supervisor.start_link([inner], name="app.sup", intensity=3)
        await exit_and_wait(lab.pid("w"), "boom")
        await log.wait_progress("w", count=2)
        await exit_and_wait(lab.pid("w"), "boom")
        await log.wait_context("not_restarted")
        rt = node.runtime
        return await trees.tree(rt, node.reports, ASK), await trees.tree(rt, None, ASK)

    with_reports, without = await on_node(main)
    (child,) = with_reports["roots"][0]["children"]
    assert child["pid"] is None and "tree" not in child
    why = child["not_restarted"]
    assert why["reason"] == "'shutdown'"
    assert why["cause"].startswith("after reaching max restart intensity (2 restarts in 3600s")
    assert "transient" in why["rule"]
    assert child["tombstone"]["name"] == "imports.sup"
    # Without the report history the tree still stands, without the story.
    (bare,) = without["roots"][0]["children"]
    assert bare["pid"] is None and "not_restarted" not in bare


async def test_tree_marks_a_supervisor_too_busy_to_answer_and_goes_on() -> None:
    async def main(node: suptrace.Node) -> dict[str, Any]:
        lab = Lab()
        sup = await Supervisor.start_link([worker("w")], name="app.sup", intensity=3)
        lab.mode["slow"] = "gate"
        starting = asyncio.ensure_future(suptrace.start_child(sup, lab.spec("slow")))
        gate = await lab.at_gate()  # app.sup is inside the start of "slow"
        try:
            return await trees.tree(node.runtime, node.reports, 0.05)
        finally:
            gate.release()
            await starting

    (root,) = (await on_node(main))["roots"]
    assert (root["name"], root["status"], root["children"]) == ("app.sup", "busy", [])


# -- status and reports ------------------------------------------------------------------------


async def test_status_telemetry_is_each_signals_health_or_none_when_off(tmp_path: Path) -> None:
    async def main(node: suptrace.Node) -> Any:
        return diagnose.telemetry_signals(node.telemetry)

    assert await on_node(main) is None
    signals = await on_node(main, telemetry=str(tmp_path / "node.otlp.jsonl"))
    assert isinstance(signals, dict) and "traces" in signals
    assert all("state" in health for health in signals.values()), signals


async def test_reports_filter_by_kind_and_serialise_each_report_type() -> None:
    async def main(node: suptrace.Node) -> list[Any]:
        log = ReportLog()
        await start_app()
        await exit_and_wait(suptrace.whereis("api"), ValueError("bad row"))  # type: ignore[arg-type]
        await log.wait_progress("api", count=2)
        crashed = suptrace.spawn(_raise)
        await wait_dead(crashed)
        await log.wait(lambda r: isinstance(r, CrashReport) and r.pid == crashed)
        assert node.reports is not None
        return list(node.reports.history)

    history = await on_node(main)
    assert {"crash", "progress", "supervisor", "child_terminated"} <= shapes.REPORT_KINDS
    default = [r for r in history if shapes.report_matches(r, None)]
    assert default and not any(isinstance(r, ProgressReport) for r in default)
    crashes = [r for r in history if shapes.report_matches(r, frozenset({"crash"}))]
    assert crashes and all(isinstance(r, CrashReport) for r in crashes)
    supervision = [r for r in history if shapes.report_matches(r, frozenset({"supervisor"}))]
    assert supervision and all(isinstance(r, SupervisorReport) for r in supervision)
    terminated = [r for r in history if shapes.report_matches(r, frozenset({"child_terminated"}))]
    assert [r.context for r in terminated] == ["child_terminated"]

    sup_json = shapes.report_json(terminated[0])
    assert (sup_json["kind"], sup_json["supervisor"], sup_json["reason_class"]) == (
        "child_terminated",
        "app.sup",
        "ValueError",
    )
    assert sup_json["offender"]["id"] == "api"
    assert "Counter.start_link" in sup_json["offender"]["start"]
    assert "child_terminated" in sup_json["text"]
    progress = shapes.report_json(next(r for r in history if isinstance(r, ProgressReport)))
    assert progress["kind"] == "progress" and "started" in progress
    crash = shapes.report_json(crashes[-1])
    assert (crash["kind"], crash["reason_class"]) == ("crash", "RuntimeError")
    assert "disk full" in crash["reason"]


async def _raise() -> None:
    raise RuntimeError("disk full")


# -- doctor ------------------------------------------------------------------------------------


async def test_doctor_says_what_it_checked_and_lists_errors_before_warnings() -> None:
    async def main(node: suptrace.Node) -> dict[str, Any]:
        silent = ChildSpec(
            id="imports",
            start=(Supervisor.start_link, ([worker("w")],), {"name": "imports.sup"}),
            type="supervisor",
            restart="transient",
        )
        # intensity 0 (a warning), and a transient child supervisor (an error).
        await Supervisor.start_link([worker("api"), silent], name="app.sup", intensity=0)
        return await diagnose.doctor(
            node.runtime,
            node.reports,
            samples=2,
            interval=0.01,
            stuck_after=3600.0,
            mailbox_min=10,
            timeout=ASK,
            call_timeouts=node.call_timeouts,
            telemetry=node.telemetry,
        )

    result = await on_node(main)
    assert result["node"] == "opsnode"
    assert [(f["severity"], f["rule"]) for f in result["findings"]] == [
        ("error", "silent_death"),
        ("warning", "intensity_zero"),
    ]
    checked = result["checked"]
    assert (checked["supervisors"], checked["samples"], checked["interval"]) == (2, 2, 0.01)
    assert checked["processes"] >= 4 and checked["tombstones"] == 0
    assert checked["call_destinations"] == 0


# -- write commands ----------------------------------------------------------------------------


async def test_terminate_then_restart_a_child_by_its_id_text() -> None:
    async def main(node: suptrace.Node) -> list[Any]:
        rt = node.runtime
        sup = await start_app()
        old = suptrace.whereis("api")
        assert old is not None
        stopped = await writes.write_op(
            rt, "terminate_child", {"supervisor": "app.sup", "child": "api"}, ASK
        )
        after_stop = {c.id: c.pid for c in await suptrace.which_children(sup)}
        restarted = await writes.write_op(
            rt, "restart_child", {"supervisor": str(sup), "child": "api"}, ASK
        )
        shard = await writes.write_op(
            rt, "terminate_child", {"supervisor": "app.sup", "child": "('shard', 1)"}, ASK
        )
        return [sup, old, stopped, after_stop, restarted, shard, suptrace.whereis("api")]

    sup, old, stopped, after_stop, restarted, shard, new = await on_node(main)
    assert stopped == {"supervisor": str(sup), "child": "'api'"}
    assert after_stop["api"] is None
    assert restarted["pid"] == str(new) and new != old
    assert shard["child"] == "('shard', 1)"


async def test_write_commands_refuse_what_is_not_there_or_not_a_supervisor() -> None:
    async def main(node: suptrace.Node) -> list[OpError]:
        rt = node.runtime
        await start_app()

        async def write(op: str, **args: Any) -> OpError:
            return await op_error(writes.write_op(rt, op, args, ASK))

        return [
            await write("restart_child", supervisor="nosuch.sup", child="api"),
            await write("restart_child", supervisor="api", child="x"),
            await write("terminate_child", supervisor="app.sup", child="nobody"),
            await write("restart_child", supervisor="app.sup", child="api"),
            await write("exit", target="nobody", reason="kill"),
        ]

    no_sup, not_sup, no_child, running, no_target = await on_node(main)
    assert (no_sup.code, no_sup.message) == (
        "not_found",
        "no supervisor 'nosuch.sup' on node opsnode (see: suptrace ps)",
    )
    assert not_sup.code == "bad_args"
    assert not_sup.message.startswith("api is not a supervisor (it runs ")
    assert no_child.code == "not_found" and "nobody" in no_child.message
    assert running.code == "bad_args" and "running" in running.message
    assert (no_target.code, no_target.message) == (
        "not_found",
        "no process 'nobody' on node opsnode (see: suptrace ps)",
    )


async def test_a_dynamic_supervisors_children_are_named_by_pid() -> None:
    async def main(node: suptrace.Node) -> tuple[OpError, dict[str, Any], bool]:
        rt = node.runtime
        dyn = await DynamicSupervisor.start_link(name="pool")
        child = await suptrace.start_child(dyn, worker("conn"))
        assert isinstance(child, suptrace.Pid)
        by_id = await op_error(
            writes.write_op(rt, "terminate_child", {"supervisor": "pool", "child": "conn"}, ASK)
        )
        done = await writes.write_op(
            rt, "terminate_child", {"supervisor": "pool", "child": str(child)}, ASK
        )
        return by_id, done, suptrace.is_alive(child)

    by_id, done, alive = await on_node(main)
    assert (by_id.code, by_id.message) == (
        "bad_args",
        "pool is a DynamicSupervisor: name the child by pid (got 'conn', expected the form <0.42.0>)",
    )
    assert done["supervisor"] and not alive


async def test_exit_sends_the_exit_signal_and_a_busy_supervisor_times_out() -> None:
    async def main(node: suptrace.Node) -> tuple[dict[str, Any], Any, OpError]:
        rt = node.runtime
        loose = suptrace.spawn(idle, name="loose")
        ref = suptrace.monitor(loose)
        sent = await writes.write_op(rt, "exit", {"target": "loose", "reason": "maintenance"}, ASK)
        down = await suptrace.receive(lambda m: type(m) is suptrace.Down and m.ref == ref)
        lab = Lab()
        sup = await Supervisor.start_link([worker("w")], name="app.sup", intensity=3)
        lab.mode["slow"] = "gate"
        starting = asyncio.ensure_future(suptrace.start_child(sup, lab.spec("slow")))
        gate = await lab.at_gate()
        try:
            late = await op_error(
                writes.write_op(rt, "restart_child", {"supervisor": "app.sup", "child": "w"}, 0.05)
            )
        finally:
            gate.release()
            await starting
        return sent, down.reason, late

    sent, reason, late = await on_node(main)
    assert sent["reason"] == "maintenance" and reason == "maintenance"
    assert (late.code, late.message) == ("timeout", "app.sup did not answer in 0.05s")


# -- argument checks, over a real control socket of a node in this process ---------------------


def _ask(path: str, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """One request over a fresh blocking connection (run in a thread: the node keeps going)."""

    def exact(sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError(f"the node closed the connection during {op}")
            data += chunk
        return data

    def frame(sock: socket.socket) -> dict[str, Any]:
        (size,) = HEADER.unpack(exact(sock, HEADER.size))
        body: dict[str, Any] = decode_body(exact(sock, size))
        return body

    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        assert frame(s)["type"] == "welcome"
        s.sendall(encode_frame({"id": 1, "op": op, "args": args}))
        return frame(s)


BAD_ARGS: list[tuple[str, dict[str, Any], str]] = [
    ("ps", {"limit": "ten"}, "argument 'limit' must be an integer, got str 'ten'"),
    ("ps", {"system": 1}, "argument 'system' must be a boolean, got int 1"),
    ("ps", {"limit": True}, "argument 'limit' must be an integer, got bool True"),
    ("info", {}, "argument 'target' is required (a string)"),
    ("info", {"target": "x" * 1001}, "argument 'target' is too long (1001 characters"),
    ("doctor", {"samples": 50}, "doctor: samples must be 1..20 and interval 0..10 s"),
    ("doctor", {"interval": 1e300}, "argument 'interval' is out of range"),
    ("reports", {"kinds": ["crash", "bogus"]}, "unknown report kind(s) ['bogus']"),
    ("reports", {"kinds": "crash"}, "argument 'kinds' must be a list"),
    ("restart_child", {"supervisor": "app.sup", "child": 5}, "argument 'child' must be a string"),
    ("terminate_child", {"supervisor": "app.sup"}, "argument 'child' is required (a string)"),
    ("exit", {"target": "api", "reason": ""}, "exit: reason must be a non-empty string"),
    ("top", {"sort": "z"}, "top: sort must be one of m, s, r, y, not 'z'"),
]


async def test_bad_arguments_are_refused_by_name_before_any_op_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    monkeypatch.setenv("SUPTRACE_RUNTIME_DIR", str(run_dir))

    async def main(node: suptrace.Node) -> list[tuple[str, dict[str, Any]]]:
        await start_app()
        assert node.control is not None and node.control.path is not None
        path = str(node.control.path)
        answers = []
        for op, args, _ in BAD_ARGS:
            answers.append((op, await asyncio.to_thread(_ask, path, op, args)))
        # ...and nothing was harmed: the node still answers, api still runs.
        healthy = await asyncio.to_thread(_ask, path, "info", {"target": "api"})
        answers.append(("info", healthy))
        return answers

    answers = await on_node(main, control={"allow_write": True})
    *refused, healthy = answers
    for (op, args, expected), (_, frame) in zip(BAD_ARGS, refused, strict=True):
        assert frame["ok"] is False, (op, args, frame)
        assert frame["error"]["code"] == "bad_args", (op, args, frame)
        assert expected in frame["error"]["message"], (op, args, frame["error"]["message"])
    assert healthy[1]["ok"] is True and healthy[1]["result"]["registered_name"] == "api"
