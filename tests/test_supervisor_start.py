"""Supervisor start (supervisor_SUITE sup_start, sup_start_map): start order,
ignore, failed starts at init and through the API, and the reports each emits
(otp-semantics §2.2, §2.9, §5)."""

from __future__ import annotations

from typing import Any

import pytest
from sup_support import ANY, ExitLog, Lab, ReportLog, child_pids, exit_from, in_node

import suptrace
from suptrace import (
    IGNORE,
    ChildInfo,
    ChildSpec,
    GenServer,
    Pid,
    Shutdown,
    StartChildError,
    StartError,
    Supervisor,
)

COUNTS = ("specs", "active", "supervisors", "workers")


async def counts(sup: Pid | str) -> list[int]:
    """count_children in the order OTP's tests write it: [specs, active, supervisors, workers]."""
    got = await suptrace.count_children(sup)
    assert set(got) == set(COUNTS)
    return [got[k] for k in COUNTS]


async def test_start_normal_starts_children_in_order_and_stops_them_in_reverse() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        sup = await Supervisor.start_link(
            [lab.spec("c1"), lab.spec("c2"), lab.spec("c3")], name="sup", intensity=2, period=3600
        )
        assert lab.attempts == ["c1", "c2", "c3"]
        p1, p2, p3 = lab.pid("c1"), lab.pid("c2"), lab.pid("c3")
        assert p1 < p2 < p3
        module = lab.spec("c1").module_names()
        assert await suptrace.which_children("sup") == [
            ChildInfo("c3", p3, "worker", module),
            ChildInfo("c2", p2, "worker", module),
            ChildInfo("c1", p1, "worker", module),
        ]
        assert await counts(sup) == [3, 3, 0, 3]
        assert log.since() == [
            ("sup", "progress", "c1"),
            ("sup", "progress", "c2"),
            ("sup", "progress", "c3"),
        ]
        started = log.reports[0].started  # type: ignore[union-attr]
        assert started["pid"] == p1 and started["id"] == "c1"

        suptrace.exit(sup, "shutdown")
        assert await exit_from(sup) == "shutdown"
        assert exits.order([p1, p2, p3]) == [p3, p2, p1]
        assert [exits.reason(p) for p in (p1, p2, p3)] == ["shutdown"] * 3
        assert exits.reason(sup) == "shutdown"
        assert suptrace.whereis("sup") is None
        assert len(log.reports) == 3  # a supervisor exiting shutdown reports nothing

    await in_node(main)


async def test_empty_supervisor_starts_and_stops_cleanly() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log = ReportLog()
        sup = await Supervisor.start_link([], intensity=2, period=3600)
        assert await suptrace.which_children(sup) == []
        assert await counts(sup) == [0, 0, 0, 0]
        await suptrace.stop(sup, "shutdown")
        assert log.reports == []

    await in_node(main)


async def test_ignore_child_keeps_a_permanent_spec_without_a_pid() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        lab.mode["child1"] = "ignore"
        await Supervisor.start_link([], name="sup", intensity=2, period=3600)
        assert await suptrace.start_child("sup", lab.spec("child1")) is None
        cpid2 = await suptrace.start_child("sup", lab.spec("child2"))
        assert cpid2 == lab.pid("child2")
        assert child_pids(await suptrace.which_children("sup")) == {"child2": cpid2, "child1": None}
        assert [c.id for c in await suptrace.which_children("sup")] == ["child2", "child1"]
        assert await counts("sup") == [2, 1, 0, 2]
        assert log.since() == [("sup", "progress", "child2")]  # ignore starts nothing: no report

    await in_node(main)


async def test_ignore_child_at_init_keeps_permanent_and_transient_specs() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        lab.mode["a"] = lab.mode["b"] = "ignore"
        await Supervisor.start_link(
            [lab.spec("a"), lab.spec("b", restart="transient"), lab.spec("c")],
            name="sup",
            intensity=2,
            period=3600,
        )
        assert child_pids(await suptrace.which_children("sup")) == {
            "c": lab.pid("c"),
            "b": None,
            "a": None,
        }
        assert await counts("sup") == [3, 1, 0, 3]
        assert log.since() == [("sup", "progress", "c")]

    await in_node(main)


async def test_ignore_temporary_child_at_init_is_not_stored() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        lab.mode["child1"] = "ignore"
        await Supervisor.start_link(
            [lab.spec("child1", restart="temporary"), lab.spec("child2", restart="temporary")],
            name="sup",
            intensity=2,
            period=3600,
        )
        assert await suptrace.which_children("sup") == [
            ChildInfo("child2", lab.pid("child2"), "worker", lab.spec("child2").module_names())
        ]
        assert await counts("sup") == [1, 1, 0, 1]
        assert log.since() == [("sup", "progress", "child2")]

    await in_node(main)


async def test_ignore_temporary_child_start_child_is_not_stored() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        lab.mode["child1"] = "ignore"
        await Supervisor.start_link([], name="sup", intensity=2, period=3600)
        assert await suptrace.start_child("sup", lab.spec("child1", restart="temporary")) is None
        cpid2 = await suptrace.start_child("sup", lab.spec("child2", restart="temporary"))
        assert child_pids(await suptrace.which_children("sup")) == {"child2": cpid2}
        assert await counts("sup") == [1, 1, 0, 1]
        with pytest.raises(suptrace.ChildNotFound):
            await suptrace.get_childspec("sup", "child1")
        assert log.since() == [("sup", "progress", "child2")]

    await in_node(main)


# -- failed starts at init ------------------------------------------------------------------


async def test_failed_start_at_init_stops_started_children_in_reverse_and_raises() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        lab.mode["c3"] = ("exit", "bad_start")
        with pytest.raises(StartError) as info:
            await Supervisor.start_link(
                [lab.spec("c1"), lab.spec("c2"), lab.spec("c3"), lab.spec("c4")],
                name="sup",
                intensity=2,
                period=3600,
            )
        assert info.value.reason == Shutdown(("failed_to_start_child", "c3", "bad_start"))
        assert lab.attempts == ["c1", "c2", "c3"]  # c4 is never tried
        p1, p2 = lab.pid("c1"), lab.pid("c2")
        assert exits.order([p1, p2]) == [p2, p1]
        assert exits.reason(p1) == exits.reason(p2) == "shutdown"
        assert log.since() == [
            ("sup", "progress", "c1"),
            ("sup", "progress", "c2"),
            ("sup", "start_error", "c3", "bad_start"),
        ]
        [err] = log.supervisor_reports()
        assert err.offender["pid"] is None and err.offender["restart_type"] == "permanent"
        assert suptrace.whereis("sup") is None
        # OTP >= 26: a trapping caller does not also get the failed supervisor's EXIT.
        with pytest.raises(TimeoutError):
            await suptrace.receive(lambda m: isinstance(m, suptrace.ExitMsg), timeout=0)

    await in_node(main)


async def test_start_function_raising_gives_the_exception_as_reason() -> None:
    boom = ValueError("database unreachable")

    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        lab.mode["db"] = ("raise", boom)
        with pytest.raises(StartError) as info:
            await Supervisor.start_link([lab.spec("db")], name="sup", intensity=2, period=3600)
        assert info.value.reason == Shutdown(("failed_to_start_child", "db", boom))
        assert info.value.reason.term[2] is boom
        assert log.since() == [("sup", "start_error", "db", repr(boom))]

    await in_node(main)


async def test_start_function_returning_a_non_pid_is_a_start_error_with_a_clear_reason() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        lab.mode["w"] = ("return", ("ok", "not a pid"))
        with pytest.raises(StartError) as info:
            await Supervisor.start_link([lab.spec("w")], name="sup", intensity=2, period=3600)
        tag, cid, reason = info.value.reason.term
        assert (tag, cid) == ("failed_to_start_child", "w")
        assert isinstance(reason, TypeError)
        assert "('ok', 'not a pid')" in str(reason) and "must return a Pid" in str(reason)
        [err] = log.supervisor_reports()
        assert (err.context, err.offender["id"], err.reason) == ("start_error", "w", reason)
        assert len(log.reports) == 1

    await in_node(main)


class Server(GenServer):
    async def init(self, outcome: Any) -> Any:
        if outcome == "ignore":
            return IGNORE
        if outcome != "ok":
            raise suptrace.Exit(outcome)
        return None


async def test_gen_server_child_whose_init_stops_gives_that_reason() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log = ReportLog()
        good = ChildSpec(id="good", start=(Server.start_link, ("ok",)))
        bad = ChildSpec(id="bad", start=(Server.start_link, (("no_config", 42),)))
        with pytest.raises(StartError) as info:
            await Supervisor.start_link([good, bad], name="sup", intensity=2, period=3600)
        # OTP: {error, R} from the child's init is the start_error reason R.
        assert info.value.reason == Shutdown(("failed_to_start_child", "bad", ("no_config", 42)))
        assert log.since() == [
            ("sup", "progress", "good"),
            ("crash", ANY, ("no_config", 42)),  # the server's own exit, as proc_lib reports it
            ("sup", "start_error", "bad", ("no_config", 42)),
        ]

    await in_node(main)


async def test_gen_server_child_returning_ignore_is_kept_without_pid() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log = ReportLog()
        spec = ChildSpec(id="maybe", start=(Server.start_link, ("ignore",)))
        await Supervisor.start_link([spec], name="sup", intensity=2, period=3600)
        assert child_pids(await suptrace.which_children("sup")) == {"maybe": None}
        assert log.since() == []

    await in_node(main)


async def test_nested_failed_start_nests_failed_to_start_child() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        lab.mode["w"] = ("exit", "bad")
        inner = ChildSpec(
            id="inner",
            start=(Supervisor.start_link, ([lab.spec("w")],), {"name": "inner_sup"}),
            type="supervisor",
        )
        with pytest.raises(StartError) as info:
            await Supervisor.start_link([inner], name="outer", intensity=2, period=3600)
        inner_reason = Shutdown(("failed_to_start_child", "w", "bad"))
        assert info.value.reason == Shutdown(("failed_to_start_child", "inner", inner_reason))
        assert log.since() == [
            ("inner_sup", "start_error", "w", "bad"),
            ("outer", "start_error", "inner", inner_reason),
        ]

    await in_node(main)


# -- failed starts through the API: errors returned, never reported ------------------------


async def test_start_child_returns_error_without_a_report_and_discards_the_spec() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link([], name="sup", intensity=2, period=3600)
        mark = log.mark()
        lab.mode["child1"] = ("exit", "child_error")
        with pytest.raises(StartChildError) as info:
            await suptrace.start_child("sup", lab.spec("child1"))
        assert info.value.reason == "child_error"
        assert info.value.child_id == "child1"
        boom = RuntimeError("kaboom")
        lab.mode["child2"] = ("raise", boom)
        with pytest.raises(StartChildError) as info2:
            await suptrace.start_child("sup", lab.spec("child2"))
        assert info2.value.reason is boom
        lab.mode["child3"] = ("return", 42)
        with pytest.raises(StartChildError) as info3:
            await suptrace.start_child("sup", lab.spec("child3"))
        assert isinstance(info3.value.reason, TypeError)
        assert await suptrace.which_children("sup") == []
        assert await counts("sup") == [0, 0, 0, 0]
        assert log.since(mark) == []

    await in_node(main)


async def test_restart_child_returns_error_and_pid_stays_undefined() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link([lab.spec("child1")], name="sup", intensity=2, period=3600)
        await suptrace.terminate_child("sup", "child1")
        mark = log.mark()
        lab.mode["child1"] = ("exit", "restart_error")
        with pytest.raises(StartChildError) as info:
            await suptrace.restart_child("sup", "child1")
        assert info.value.reason == "restart_error"
        assert child_pids(await suptrace.which_children("sup")) == {"child1": None}
        assert await counts("sup") == [1, 0, 0, 1]
        assert log.since(mark) == []
        lab.mode["child1"] = "ok"
        pid = await suptrace.restart_child("sup", "child1")
        assert pid == lab.pid("child1")
        assert child_pids(await suptrace.which_children("sup")) == {"child1": pid}
        assert log.since(mark) == [("sup", "progress", "child1")]

    await in_node(main)


# -- specs as maps, defaults ---------------------------------------------------------------


async def test_start_map_specs_and_get_childspec_defaults() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        lab = Lab()
        sup = await Supervisor.start_link(
            [
                {"id": "child1", "start": (lab.start, ("child1",))},
                {"id": "child2", "start": (lab.start, ("child2",)), "shutdown": "brutal_kill"},
                {"id": "child3", "start": (lab.start, ("child3",)), "type": "supervisor"},
                {"id": "child4", "start": (lab.start, ("child4",)), "silly_flag": True},
            ],
            intensity=2,
            period=3600,
        )
        s1 = await suptrace.get_childspec(sup, "child1")
        assert (s1.restart, s1.shutdown, s1.type, s1.significant) == (
            "permanent",
            5.0,
            "worker",
            False,
        )
        assert s1.as_dict() == {
            "id": "child1",
            "start": (lab.start, ("child1",)),
            "restart": "permanent",
            "shutdown": 5.0,
            "type": "worker",
            "significant": False,
            "modules": s1.module_names(),
        }
        s2 = await suptrace.get_childspec(sup, "child2")
        assert s2.shutdown == "brutal_kill"
        s3 = await suptrace.get_childspec(sup, "child3")
        assert (s3.type, s3.shutdown) == ("supervisor", "infinity")
        assert (await suptrace.get_childspec(sup, "child4")).id == "child4"  # unknown keys ignored
        with pytest.raises(suptrace.ChildNotFound):
            await suptrace.get_childspec(sup, "child5")
        assert await counts(sup) == [4, 4, 1, 3]

    await in_node(main)


async def test_unnamed_supervisor_reports_under_its_pid() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await Supervisor.start_link([lab.spec("c")], intensity=2, period=3600)
        assert log.since() == [(sup, "progress", "c")]
        assert log.reports[0].pid == sup

    await in_node(main)


async def test_already_started_outside_the_supervisor() -> None:
    """A child whose registered name is taken by a process started elsewhere:
    start_child fails with that reason, reports nothing, and leaves the other
    process alone."""

    async def main() -> None:
        suptrace.trap_exit(True)
        log = ReportLog()
        outside = await Server.start("ok", name="the_server")
        await Supervisor.start_link([], name="sup", intensity=2, period=3600)
        spec = ChildSpec(id="srv", start=(Server.start_link, ("ok",), {"name": "the_server"}))
        with pytest.raises(StartChildError) as info:
            await suptrace.start_child("sup", spec)
        assert isinstance(info.value.reason, suptrace.RegistrationError)
        assert "the_server" in str(info.value.reason)
        assert suptrace.whereis("the_server") == outside
        assert await suptrace.which_children("sup") == []
        assert log.since() == []

    await in_node(main)
