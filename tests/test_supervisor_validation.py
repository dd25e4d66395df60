"""Invalid flags and child specs (supervisor_SUITE child_specs, child_specs_map,
sup_flags, sup_start_map_faulty_specs): a `ValueError` at start that names the
bad field, before anything is started (otp-semantics §2.1)."""

from __future__ import annotations

from typing import Any

import pytest
from sup_support import Lab, ReportLog, in_node

import suptrace
from suptrace import ChildSpec, Supervisor


async def start_fn() -> None: ...


def spec(**kw: Any) -> ChildSpec:
    kw.setdefault("id", "c")
    kw.setdefault("start", (start_fn, ()))
    return ChildSpec(**kw)


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        ({"strategy": "simple_one_for_one"}, "strategy"),
        ({"strategy": "one_for_none"}, "strategy"),
        ({"intensity": -1}, "intensity"),
        ({"intensity": 1.5}, "intensity"),
        ({"intensity": True}, "intensity"),
        ({"period": 0}, "period"),
        ({"period": -5}, "period"),
        ({"period": "5"}, "period"),
        ({"auto_shutdown": "sometimes"}, "auto_shutdown"),
    ],
    ids=str,
)
async def test_invalid_flags_name_the_flag(flags: dict[str, Any], field: str) -> None:
    async def main() -> None:
        log, lab = ReportLog(), Lab()
        with pytest.raises(ValueError, match=rf"invalid {field}\b"):
            await Supervisor.start_link([lab.spec("c")], name="sup", **flags)
        assert lab.attempts == []
        assert suptrace.whereis("sup") is None
        assert log.reports == []

    await in_node(main)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"restart": "sometimes"}, "restart"),
        ({"shutdown": -1}, "shutdown"),
        ({"shutdown": "soon"}, "shutdown"),
        ({"shutdown": True}, "shutdown"),
        ({"type": "manager"}, "type"),
        ({"significant": "yes"}, "significant"),
        ({"modules": (1, 2)}, "modules"),
        ({"start": "not a tuple"}, "start"),
        ({"start": (42, ())}, "start"),
        ({"start": (start_fn, "args")}, "start args"),
        ({"start": (start_fn, (), ["kw"])}, "start kwargs"),
    ],
    ids=str,
)
def test_invalid_child_spec_fields_are_named(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"child spec 'c': invalid {field}\b"):
        spec(**kw)


def test_missing_id() -> None:
    with pytest.raises(ValueError, match="missing id"):
        ChildSpec(id=None, start=(start_fn, ()))


def test_significant_permanent_is_a_bad_combination() -> None:
    with pytest.raises(
        ValueError, match=r"bad combination: restart='permanent' with significant=True"
    ):
        spec(significant=True)
    assert spec(significant=True, restart="transient").significant
    assert spec(significant=True, restart="temporary").significant


def test_shutdown_defaults_and_normalisation() -> None:
    assert spec().shutdown == 5.0
    assert spec(type="supervisor").shutdown == "infinity"
    assert spec(shutdown=2).shutdown == 2.0 and isinstance(spec(shutdown=2).shutdown, float)
    assert spec(shutdown=0).shutdown == 0.0
    assert spec(shutdown="brutal_kill").shutdown == "brutal_kill"


async def test_spec_errors_at_supervisor_start() -> None:
    async def main() -> None:
        log, lab = ReportLog(), Lab()
        with pytest.raises(ValueError, match="duplicate child id 'a'"):
            await Supervisor.start_link([lab.spec("a"), lab.spec("b"), lab.spec("a")])
        with pytest.raises(ValueError, match="missing id"):
            await Supervisor.start_link([{"start": (lab.start, ("x",))}])
        with pytest.raises(ValueError, match="missing start"):
            await Supervisor.start_link([{"id": "child2"}])
        with pytest.raises(ValueError, match="invalid child spec 'child4'"):
            await Supervisor.start_link(["child4"])
        with pytest.raises(ValueError, match="invalid restart"):
            await Supervisor.start_link(
                [{"id": "x", "start": (lab.start, ("x",)), "restart": "often"}]
            )
        with pytest.raises(ValueError, match="children must be a list"):
            await Supervisor.start_link("abc")
        with pytest.raises(ValueError, match="significant=True with auto_shutdown='never'"):
            await Supervisor.start_link([lab.spec("s", restart="transient", significant=True)])
        assert lab.attempts == []
        assert log.reports == []
        # accepted once auto_shutdown gives significance a meaning
        suptrace.trap_exit(True)
        sup = await Supervisor.start_link(
            [lab.spec("s", restart="transient", significant=True)], auto_shutdown="all_significant"
        )
        assert (await suptrace.get_childspec(sup, "s")).significant

    await in_node(main)


async def test_default_flags_are_otps() -> None:
    async def main() -> None:
        suptrace.trap_exit(True)
        sup = await Supervisor.start_link([])
        info = await suptrace.describe(sup)
        assert (info["strategy"], info["intensity"], info["period"], info["auto_shutdown"]) == (
            "one_for_one",
            1,
            5,
            "never",
        )

    await in_node(main)
