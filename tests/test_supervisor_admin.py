"""The supervisor admin API (supervisor_SUITE child_adm, count_children,
which_children, do_not_save_child_specs_for_temporary_children): every result and
error of otp-semantics §2.9, and that none of them emits a report except the
progress report of a successful start."""

from __future__ import annotations

import pytest
from sup_support import ExitLog, Lab, ReportLog, child_pids, exit_and_wait, in_node

import suptrace
from suptrace import (
    AlreadyPresent,
    AlreadyStarted,
    ChildInfo,
    ChildNotFound,
    ChildRunning,
    NoProc,
    Pid,
    StartChildError,
    Supervisor,
    SupervisorError,
)


async def counts(sup: Pid | str) -> list[int]:
    got = await suptrace.count_children(sup)
    return [got["specs"], got["active"], got["supervisors"], got["workers"]]


async def test_child_adm_error_matrix() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, exits, lab = ReportLog(), ExitLog(), Lab()
        child1 = lab.spec("child1")
        await Supervisor.start_link([child1], name="sup_test", intensity=2, period=3600)
        cpid = lab.pid("child1")
        assert await suptrace.which_children("sup_test") == [
            ChildInfo("child1", cpid, "worker", child1.module_names())
        ]
        assert await counts("sup_test") == [1, 1, 0, 1]
        mark = log.mark()

        # start of an already running child
        with pytest.raises(AlreadyStarted) as started:
            await suptrace.start_child("sup_test", child1)
        assert started.value.pid == cpid

        # termination
        with pytest.raises(ChildNotFound):
            await suptrace.terminate_child("sup_test", "hej")
        with pytest.raises(NoProc):
            await suptrace.terminate_child("foo", "child1")
        await suptrace.terminate_child("sup_test", "child1")
        assert exits.reason(cpid) == "shutdown"
        assert await suptrace.which_children("sup_test") == [
            ChildInfo("child1", None, "worker", child1.module_names())
        ]
        assert await counts("sup_test") == [1, 0, 0, 1]
        # like killing the same process again
        await suptrace.terminate_child("sup_test", "child1")
        assert await counts("sup_test") == [1, 0, 0, 1]

        # a spec that is present but not running
        with pytest.raises(AlreadyPresent):
            await suptrace.start_child("sup_test", child1)

        # restart
        cpid2 = await suptrace.restart_child("sup_test", "child1")
        assert cpid2 == lab.pid("child1") and cpid2 != cpid
        assert child_pids(await suptrace.which_children("sup_test")) == {"child1": cpid2}
        assert await counts("sup_test") == [1, 1, 0, 1]
        with pytest.raises(ChildRunning):
            await suptrace.restart_child("sup_test", "child1")
        with pytest.raises(ChildNotFound):
            await suptrace.restart_child("sup_test", "hej")
        with pytest.raises(NoProc):
            await suptrace.restart_child("foo", "child1")

        # deletion
        with pytest.raises(ChildRunning):
            await suptrace.delete_child("sup_test", "child1")
        with pytest.raises(ChildNotFound):
            await suptrace.delete_child("sup_test", "hej")
        with pytest.raises(NoProc):
            await suptrace.delete_child("foo", "child1")
        await suptrace.terminate_child("sup_test", "child1")
        assert exits.reason(cpid2) == "shutdown"
        await suptrace.delete_child("sup_test", "child1")
        with pytest.raises(ChildNotFound):
            await suptrace.restart_child("sup_test", "child1")
        with pytest.raises(ChildNotFound):
            await suptrace.get_childspec("sup_test", "child1")
        assert await suptrace.which_children("sup_test") == []
        assert await counts("sup_test") == [0, 0, 0, 0]

        # start
        with pytest.raises(NoProc):
            await suptrace.start_child("foo", child1)
        cpid3 = await suptrace.start_child("sup_test", child1)
        assert child_pids(await suptrace.which_children("sup_test")) == {"child1": cpid3}
        assert await counts("sup_test") == [1, 1, 0, 1]

        # terminating by pid is not allowed on a supervisor with static children
        with pytest.raises(ChildNotFound):
            await suptrace.terminate_child("sup_test", cpid3)
        assert child_pids(await suptrace.which_children("sup_test")) == {"child1": cpid3}
        with pytest.raises(NoProc):
            await suptrace.which_children("foo")
        with pytest.raises(NoProc):
            await suptrace.count_children("foo")
        with pytest.raises(NoProc):
            await suptrace.get_childspec("foo", "child1")

        # only the two successful starts reported anything
        assert log.since(mark) == [
            ("sup_test", "progress", "child1"),
            ("sup_test", "progress", "child1"),
        ]

    await in_node(main)


async def test_admin_errors_are_supervisor_errors_with_context() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        lab = Lab()
        await Supervisor.start_link([lab.spec("a")], name="sup", intensity=2, period=3600)
        for exc_type in (
            ChildNotFound,
            ChildRunning,
            AlreadyPresent,
            AlreadyStarted,
            StartChildError,
        ):
            assert issubclass(exc_type, SupervisorError)
        with pytest.raises(ChildNotFound) as info:
            await suptrace.delete_child("sup", "zzz")
        assert info.value.supervisor == "sup" and info.value.child_id == "zzz"
        assert "'zzz'" in str(info.value) and "'a'" in str(info.value)  # names what exists
        with pytest.raises(ChildRunning, match="terminate_child"):
            await suptrace.delete_child("sup", "a")

    await in_node(main)


async def test_which_children_is_newest_first_with_types() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("w1"), lab.spec("s1", type="supervisor")],
            name="sup",
            intensity=2,
            period=3600,
        )
        await suptrace.start_child("sup", lab.spec("w2"))
        await suptrace.start_child("sup", lab.spec("s2", type="supervisor"))
        await suptrace.terminate_child("sup", "w2")
        rows = await suptrace.which_children("sup")
        assert [(r.id, r.type) for r in rows] == [
            ("s2", "supervisor"),
            ("w2", "worker"),
            ("s1", "supervisor"),
            ("w1", "worker"),
        ]
        assert child_pids(rows) == {
            "s2": lab.pid("s2"),
            "w2": None,
            "s1": lab.pid("s1"),
            "w1": lab.pid("w1"),
        }
        # supervisors/workers count specs by type, alive or not
        assert await counts("sup") == [4, 3, 2, 2]
        assert log.since() == [
            ("sup", "progress", "w1"),
            ("sup", "progress", "s1"),
            ("sup", "progress", "w2"),
            ("sup", "progress", "s2"),
        ]

    await in_node(main)


async def test_count_children_supervisor_of_supervisors() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        lab = Lab()
        inner = suptrace.ChildSpec(
            id="inner",
            start=(Supervisor.start_link, ([lab.spec("w")],), {"name": "inner"}),
            type="supervisor",
        )
        await Supervisor.start_link([inner], name="outer", intensity=2, period=3600)
        assert await counts("outer") == [1, 1, 1, 0]
        assert await counts("inner") == [1, 1, 0, 1]

    await in_node(main)


async def test_terminate_child_deletes_a_temporary_childs_spec() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link(
            [lab.spec("tmp", restart="temporary"), lab.spec("perm")],
            name="sup",
            intensity=2,
            period=3600,
        )
        mark = log.mark()
        await suptrace.terminate_child("sup", "tmp")
        assert child_pids(await suptrace.which_children("sup")) == {"perm": lab.pid("perm")}
        with pytest.raises(ChildNotFound):
            await suptrace.restart_child("sup", "tmp")
        assert log.since(mark) == []

    await in_node(main)


async def test_do_not_save_child_specs_for_temporary_children() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link([], name="sup", intensity=2, period=3600)
        spec = lab.spec("tmp", restart="temporary")
        pid = await suptrace.start_child("sup", spec)
        assert pid is not None
        mark = log.mark()
        assert await exit_and_wait(pid, "kill") == "killed"
        assert await suptrace.which_children("sup") == []
        assert await counts("sup") == [0, 0, 0, 0]
        # the id is free again: the spec is gone
        assert await suptrace.start_child("sup", spec) == lab.pid("tmp")
        assert log.since(mark) == [
            ("sup", "child_terminated", "tmp", "killed"),
            ("sup", "progress", "tmp"),
        ]
        [report] = log.supervisor_reports(mark)
        # OTP keeps no start arguments for temporary children ({M,F,undefined})
        assert report.offender["start"] == (lab.start, None)
        assert report.offender["restart_type"] == "temporary"

    await in_node(main)


async def test_start_child_rejects_invalid_specs_with_value_error() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        await Supervisor.start_link([], name="sup", intensity=2, period=3600)
        with pytest.raises(ValueError, match="missing start"):
            await suptrace.start_child("sup", {"id": "x"})
        with pytest.raises(ValueError, match="missing id"):
            await suptrace.start_child("sup", {"start": (lab.start, ("x",))})
        with pytest.raises(ValueError, match="invalid child spec"):
            await suptrace.start_child("sup", "child4")
        # significant children only make sense with auto_shutdown (OTP: bad_combination)
        with pytest.raises(ValueError, match="significant"):
            await suptrace.start_child(
                "sup", lab.spec("sig", restart="transient", significant=True)
            )
        assert lab.attempts == []
        assert await suptrace.which_children("sup") == []
        assert log.since() == []

    await in_node(main)


async def test_describe_shows_flags_window_and_children() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        lab = Lab()
        await Supervisor.start_link(
            [lab.spec("a"), lab.spec("b", restart="transient")],
            name="sup",
            strategy="rest_for_one",
            intensity=3,
            period=7,
        )
        info = await suptrace.describe("sup")
        assert (info["strategy"], info["intensity"], info["period"]) == ("rest_for_one", 3, 7)
        assert info["restarts_in_window"] == 0
        assert [c["id"] for c in info["children"]] == ["b", "a"]
        assert info["children"][0]["restart"] == "transient"

    await in_node(main)
