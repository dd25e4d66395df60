"""The admin handler table's error paths and the supervision API the control plane reads.

A malformed admin request (unknown kind, missing or extra arguments, a child
id that cannot be a key) gets a clear `BadRequest` or `ChildNotFound` back and
harms nothing: the supervisor keeps running with the same children. The
control plane (`suptrace.node.control`) reads supervisors in place through
`restarts_of`, `intensity_use` and `child_key`; these are checked on live
supervisors and through the control ops that use them (no CLI subprocess).
"""

from __future__ import annotations

from typing import Any

import pytest
from sup_support import Lab, ReportLog, exit_and_wait, in_node

import suptrace
from suptrace import (
    ChildNotFound,
    ChildSpec,
    DynamicSupervisor,
    Pid,
    Supervisor,
    SupervisorError,
)
from suptrace.behaviours.admin import REQUESTS, BadRequest, answer, parse_request
from suptrace.behaviours.supervision import (
    ChildRestarts,
    IntensityUse,
    SupervisorBase,
)
from suptrace.core.runtime import current_runtime, process_of
from suptrace.node.control import processes, writes
from suptrace.node.control.errors import OpError

# -- the handler table ---------------------------------------------------------------------


def test_both_supervisors_answer_every_request_kind_from_their_table() -> None:
    assert set(Supervisor.admin_handlers) == set(REQUESTS)
    assert set(DynamicSupervisor.admin_handlers) == set(REQUESTS)
    # The table holds the subclass's own handlers where the two differ.
    assert (
        Supervisor.admin_handlers["terminate_child"]
        is not DynamicSupervisor.admin_handlers["terminate_child"]
    )


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (("which_children",), ("which_children", ())),
        ("count_children", ("count_children", ())),
        (("start_child", {"id": "a"}), ("start_child", ({"id": "a"},))),
        (("delete_child", ("db", 1)), ("delete_child", (("db", 1),))),
    ],
)
def test_parse_request_splits_kind_and_arguments(request_: Any, expected: Any) -> None:
    assert parse_request(request_) == expected


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            ("frobnicate", 1),
            r"unknown supervisor request \('frobnicate', 1\) \(known kinds: which_children, ",
        ),
        ("frobnicate", r"unknown supervisor request 'frobnicate'"),
        (42, r"unknown supervisor request 42: expected a tuple \(kind, \*args\)"),
        (["which_children"], r"expected a tuple \(kind, \*args\)"),
        ((), r"unknown supervisor request \(\): expected a tuple"),
        ((("which_children",),), r"expected a tuple \(kind, \*args\) with kind one of"),
        (
            ("terminate_child",),
            r"'terminate_child' takes 1 argument \(child_id_or_pid\), got 0 in \('terminate_child',\)",
        ),
        ("delete_child", r"'delete_child' takes 1 argument \(child_id\), got 0"),
        (("which_children", "x"), r"'which_children' takes 0 arguments, got 1"),
        (("restart_child", "a", "b"), r"'restart_child' takes 1 argument \(child_id\), got 2"),
    ],
)
def test_a_malformed_request_is_a_bad_request_naming_what_is_wrong(
    request_: Any, message: str
) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        parse_request(request_)
    # Old callers catching ValueError or SupervisorError still catch it.
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, SupervisorError)


def test_a_request_with_a_broken_repr_still_gets_an_answer() -> None:
    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    with pytest.raises(BadRequest, match="unknown supervisor request"):
        parse_request(Unprintable())


async def test_answer_refuses_a_kind_the_server_has_no_handler_for() -> None:
    status, error = await answer({}, object(), ("which_children",))
    assert status == "error"
    assert isinstance(error, BadRequest)
    assert "object does not answer supervisor request 'which_children'" in str(error)


async def test_answer_passes_arguments_to_the_handler_and_wraps_refusals() -> None:
    async def echo(server: Any, key: Any) -> Any:
        return (server, key)

    async def refuse(server: Any, key: Any) -> Any:
        raise ChildNotFound(f"no child {key!r}", "sup", key)

    table = {"get_childspec": echo, "delete_child": refuse}
    assert await answer(table, "srv", ("get_childspec", "a")) == ("ok", ("srv", "a"))
    status, error = await answer(table, "srv", ("delete_child", "a"))
    assert status == "error" and isinstance(error, ChildNotFound)


# -- bad requests harm nothing -------------------------------------------------------------


async def _state(sup: Pid) -> tuple[Any, ...]:
    return (
        suptrace.is_alive(sup),
        await suptrace.which_children(sup),
        await suptrace.count_children(sup),
    )


BAD_REQUESTS: list[Any] = [
    ("frobnicate",),
    42,
    ["terminate_child", "a"],
    (),
    ("terminate_child",),
    "restart_child",
    ("delete_child", "a", "b"),
    ("describe", "a"),
]


@pytest.mark.parametrize("request_", BAD_REQUESTS)
async def test_a_bad_request_to_a_supervisor_is_refused_and_harms_nothing(request_: Any) -> None:
    async def main() -> None:
        log, lab = ReportLog(), Lab()
        sup = await Supervisor.start_link([lab.spec("a"), lab.spec("b")])
        before = await _state(sup)
        mark = log.mark()
        status, error = await suptrace.call(sup, request_)
        assert status == "error" and isinstance(error, BadRequest)
        assert await _state(sup) == before
        assert log.since(mark) == []  # no crash, no supervisor report

    await in_node(main)


@pytest.mark.parametrize("request_", BAD_REQUESTS)
async def test_a_bad_request_to_a_dynamic_supervisor_is_refused_and_harms_nothing(
    request_: Any,
) -> None:
    async def main() -> None:
        log, lab = ReportLog(), Lab()
        sup = await DynamicSupervisor.start_link()
        await suptrace.start_child(sup, lab.spec("a"))
        before = await _state(sup)
        mark = log.mark()
        status, error = await suptrace.call(sup, request_)
        assert status == "error" and isinstance(error, BadRequest)
        assert await _state(sup) == before
        assert log.since(mark) == []

    await in_node(main)


async def test_an_unhashable_child_id_is_not_found_and_harms_nothing() -> None:
    async def main() -> None:
        log, lab = ReportLog(), Lab()
        sup = await Supervisor.start_link([lab.spec("a")])
        before = await _state(sup)
        mark = log.mark()
        for ask in (
            suptrace.terminate_child,
            suptrace.restart_child,
            suptrace.delete_child,
            suptrace.get_childspec,
        ):
            with pytest.raises(ChildNotFound, match=r"has no child \['a'\] \(children: \['a'\]\)"):
                await ask(sup, ["a"])
        with pytest.raises(
            ValueError, match=r"child spec \['x'\]: invalid id: .* must be hashable"
        ):
            await suptrace.start_child(sup, lab.spec(["x"]))
        assert await _state(sup) == before
        assert log.since(mark) == []
        assert lab.attempts == ["a"]  # the bad spec's start function never ran

    await in_node(main)


async def test_a_supervisor_with_an_unhashable_child_id_does_not_start() -> None:
    async def main() -> None:
        lab = Lab()
        with pytest.raises(ValueError, match=r"child spec \{'k': 1\}: invalid id"):
            await Supervisor.start_link([lab.spec("a"), lab.spec({"k": 1})])
        assert lab.attempts == []

    await in_node(main)


# -- the named API the control plane reads -------------------------------------------------


def _server(sup: Pid) -> SupervisorBase:
    proc = process_of(sup)
    assert proc is not None and isinstance(proc.behaviour, SupervisorBase)
    return proc.behaviour


async def test_restarts_of_and_intensity_use_follow_a_supervisors_restarts() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await Supervisor.start_link(
            [lab.spec("a"), lab.spec("b")], strategy="rest_for_one", intensity=5, period=60
        )
        server = _server(sup)
        assert server.intensity_use() == IntensityUse("rest_for_one", 5, 60, 0, 2)
        assert server.restarts_of(lab.pid("a")) == ChildRestarts(0, 0)
        assert server.restarts_of(sup) is None  # not its child
        old = lab.pid("a")
        await exit_and_wait(old, "boom")
        await log.wait_progress("b", count=2)  # rest_for_one: a and b restarted
        assert server.restarts_of(old) is None  # the dead pid is no child any more
        assert server.restarts_of(lab.pid("a")) == (1, 1)
        assert server.restarts_of(lab.pid("b")) == (0, 0)  # taken along: not counted
        assert server.intensity_use().restarts_in_window == 1
        await suptrace.terminate_child(sup, "b")
        await suptrace.delete_child(sup, "b")
        assert server.intensity_use().children == 1

    await in_node(main)


async def test_the_named_api_of_a_dynamic_supervisor() -> None:
    async def main() -> None:
        log, lab = ReportLog(), Lab()
        sup = await DynamicSupervisor.start_link(intensity=4, period=9, max_children=3)
        server = _server(sup)
        first = await suptrace.start_child(sup, lab.spec("a"))
        await suptrace.start_child(sup, lab.spec("b"))
        assert first is not None
        assert server.intensity_use() == IntensityUse("one_for_one", 4, 9, 0, 2)
        await exit_and_wait(first, "boom")
        await log.wait_progress("a", count=2)
        assert server.restarts_of(lab.pid("a")) == (1, 1)
        assert server.restarts_of(first) is None
        assert server.intensity_use().restarts_in_window == 1
        assert server.child_key(str(lab.pid("b"))) == lab.pid("b")
        with pytest.raises(
            ValueError, match=r"is a DynamicSupervisor: name the child by pid \(got 'b'"
        ):
            server.child_key("b")

    await in_node(main)


async def test_child_key_finds_a_childs_id_from_its_text() -> None:
    async def main() -> None:
        lab = Lab()
        sup = await Supervisor.start_link([lab.spec(("db", 1)), lab.spec(7), lab.spec("web")])
        server = _server(sup)
        assert server.child_key("('db', 1)") == ("db", 1)  # its repr
        assert server.child_key("7") == 7  # its str
        assert server.child_key("web") == "web"
        assert server.child_key("cache") == "cache"  # no such child: the text itself

    await in_node(main)


# -- the control ops that use it -----------------------------------------------------------


async def test_control_ops_read_supervisors_through_the_named_api() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        log, lab = ReportLog(), Lab()
        sup = await Supervisor.start_link(
            [lab.spec("a")], name="top_sup", strategy="one_for_all", intensity=7, period=11
        )
        pool = await DynamicSupervisor.start_link(name="pool", intensity=2, period=3)
        worker = await suptrace.start_child(pool, lab.spec("w"))
        assert worker is not None
        await exit_and_wait(lab.pid("a"), "boom")
        await log.wait_progress("a", count=2)
        rt = current_runtime()

        top, _ = processes.top(rt, None, 50, 0)
        rows = {row["name"]: row for row in top["supervisors"]}
        assert rows["top_sup"] == {
            "pid": str(sup),
            "name": "top_sup",
            "strategy": "one_for_all",
            "intensity": 7,
            "period": 11,
            "restarts_in_window": 1,
            "children": 1,
        }
        assert rows["pool"]["strategy"] == "one_for_one"
        assert (rows["pool"]["intensity"], rows["pool"]["period"], rows["pool"]["children"]) == (
            2,
            3,
            1,
        )

        proc = process_of(lab.pid("a"))
        assert proc is not None
        total, window, parent = processes.restarts(proc)
        assert (total, window, parent is not None and parent.pid == sup) == (1, 1, True)
        info = await processes.info(rt, str(lab.pid("a")), 1.0, 100)
        assert (info["restarts"], info["restart_period"], info["restarted_by"]) == (
            1,
            11,
            "top_sup",
        )
        winfo = await processes.info(rt, str(worker), 1.0, 100)
        assert (winfo["restarts"], winfo["restart_period"]) == (0, 3)

        # Write ops name a Supervisor's child by its id's text, a DynamicSupervisor's by pid.
        done = await writes.write_op(
            rt, "terminate_child", {"supervisor": "top_sup", "child": "a"}, 1.0
        )
        assert done == {"supervisor": str(sup), "child": "'a'"}
        assert (await suptrace.which_children(sup))[0].pid is None
        with pytest.raises(OpError) as bad:
            await writes.write_op(rt, "terminate_child", {"supervisor": "pool", "child": "w"}, 1.0)
        assert bad.value.code == "bad_args"
        assert str(bad.value).startswith("pool is a DynamicSupervisor: name the child by pid")
        with pytest.raises(OpError) as missing:
            await writes.write_op(
                rt, "restart_child", {"supervisor": "top_sup", "child": "zz"}, 1.0
            )
        assert missing.value.code == "not_found"
        gone = await writes.write_op(
            rt, "terminate_child", {"supervisor": "pool", "child": str(worker)}, 1.0
        )
        assert gone["supervisor"] == str(pool)
        assert await suptrace.count_children(pool) == {
            "specs": 0,
            "active": 0,
            "supervisors": 0,
            "workers": 0,
        }

    await in_node(main)


async def test_a_childspec_dict_spec_is_still_accepted_by_start_child() -> None:
    async def main() -> None:
        lab = Lab()
        sup = await Supervisor.start_link([])
        pid = await suptrace.start_child(sup, {"id": "d", "start": (lab.start, ("d",))})
        assert pid == lab.pid("d")
        spec = await suptrace.get_childspec(sup, "d")
        assert isinstance(spec, ChildSpec) and spec.id == "d"

    await in_node(main)
