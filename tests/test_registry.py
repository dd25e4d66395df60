"""The name registry: one name per process, one process per name, names
released on death, and NoProc that tells what happened to a vanished name."""

from __future__ import annotations

import pytest
from runtime_support import down_of, echo, idle, in_node, ping

import suptrace
from suptrace import Down, NoProc, RegistrationError


async def test_register_whereis_registered_and_unregister() -> None:
    async def main() -> None:
        pid = suptrace.spawn(echo)
        assert suptrace.whereis("svc") is None
        suptrace.register("svc", pid)
        assert suptrace.whereis("svc") == pid
        assert "svc" in suptrace.registered()
        info = suptrace.process_info(pid)
        assert info is not None and info["registered_name"] == "svc"
        me = suptrace.self_pid()
        suptrace.send("svc", (me, "ping"))  # send by name
        assert await suptrace.receive(timeout=1) == ("pong", pid)

        suptrace.unregister("svc")
        assert suptrace.whereis("svc") is None
        assert "svc" not in suptrace.registered()
        assert await ping(pid)  # unregistering does not touch the process
        info = suptrace.process_info(pid)
        assert info is not None and info["registered_name"] is None
        with pytest.raises(NoProc):
            suptrace.send("svc", "hi")

    await in_node(main)


async def test_registered_lists_all_names_sorted() -> None:
    async def main() -> None:
        for name in ["b.two", "a.one", "c.three"]:
            suptrace.spawn(idle, name=name)
        assert suptrace.registered() == ["a.one", "b.two", "c.three"]

    await in_node(main)


async def test_spawn_with_name_registers_atomically() -> None:
    async def main() -> None:
        pid = suptrace.spawn(idle, name="early")
        assert suptrace.whereis("early") == pid  # before the process ever ran

    await in_node(main)


async def test_one_process_per_name() -> None:
    async def main() -> None:
        holder = suptrace.spawn(idle, name="taken")
        other = suptrace.spawn(idle)
        with pytest.raises(RegistrationError) as info:
            suptrace.register("taken", other)
        assert "taken" in str(info.value) and str(holder) in str(info.value)
        with pytest.raises(RegistrationError, match=str(holder)):
            suptrace.spawn(idle, name="taken")
        assert suptrace.whereis("taken") == holder
        assert await ping(suptrace.spawn(echo))  # the node keeps running

    await in_node(main)


async def test_one_name_per_process() -> None:
    async def main() -> None:
        pid = suptrace.spawn(idle, name="first")
        with pytest.raises(RegistrationError, match="first"):
            suptrace.register("second", pid)
        assert suptrace.whereis("second") is None
        assert suptrace.whereis("first") == pid

    await in_node(main)


async def test_bad_registrations() -> None:
    async def main() -> None:
        pid = suptrace.spawn(idle)
        with pytest.raises(RegistrationError, match="non-empty str"):
            suptrace.register("", pid)
        with pytest.raises(RegistrationError, match="non-empty str"):
            suptrace.register(42, pid)  # type: ignore[arg-type]
        with pytest.raises(RegistrationError, match="not registered"):
            suptrace.unregister("never.registered")
        dead, ref = suptrace.spawn_monitor(idle)
        suptrace.exit(dead, "kill")
        await down_of(ref)
        with pytest.raises(NoProc):
            suptrace.register("for.the.dead", dead)
        assert suptrace.whereis("for.the.dead") is None
        assert await ping(suptrace.spawn(echo))

    await in_node(main)


async def test_name_is_released_when_the_process_dies() -> None:
    async def main() -> None:
        pid = suptrace.spawn(idle, name="worker")
        ref = suptrace.monitor(pid)
        suptrace.exit(pid, "kill")
        assert suptrace.whereis("worker") is None  # a doomed process holds no name
        assert await down_of(ref) == Down(ref, pid, "killed")
        assert suptrace.whereis("worker") is None
        assert "worker" not in suptrace.registered()
        again = suptrace.spawn(echo, name="worker")  # the name can be taken again
        assert suptrace.whereis("worker") == again != pid
        assert await ping(again)

    await in_node(main)


async def test_name_released_on_normal_exit_and_reusable_by_register() -> None:
    async def main() -> None:
        async def quick() -> None:
            pass

        _pid, ref = suptrace.spawn_monitor(quick, name="quick")
        await down_of(ref)
        assert suptrace.whereis("quick") is None
        other = suptrace.spawn(echo)
        suptrace.register("quick", other)
        assert suptrace.whereis("quick") == other

    await in_node(main)


async def test_noproc_for_a_vanished_name_tells_its_story() -> None:
    async def main() -> None:
        async def importer() -> None:
            await suptrace.receive(lambda m: m == "stop")
            raise suptrace.Exit("shutdown")

        pid = suptrace.spawn(importer, name="copycat.import_sup")
        ref = suptrace.monitor(pid)
        suptrace.send("copycat.import_sup", "stop")
        await down_of(ref)
        with pytest.raises(NoProc) as info:
            suptrace.send("copycat.import_sup", "work")
        text = str(info.value)
        assert "copycat.import_sup is gone" in text
        assert str(pid) in text and "exited shutdown" in text
        assert info.value.reason == "noproc" and info.value.dest == "copycat.import_sup"

        with pytest.raises(NoProc, match="is gone"):
            await suptrace.call("copycat.import_sup", "status", timeout=1)

    await in_node(main)


async def test_noproc_story_names_a_crash_reason() -> None:
    async def main() -> None:
        async def fragile() -> None:
            await suptrace.receive(lambda m: m == "crash")
            raise OSError("disk full")

        pid = suptrace.spawn(fragile, name="fragile")
        ref = suptrace.monitor(pid)
        suptrace.send("fragile", "crash")
        await down_of(ref)
        with pytest.raises(NoProc, match=r"fragile is gone: .*OSError\(disk full\)"):
            suptrace.send("fragile", "again")

    await in_node(main)


async def test_noproc_for_a_never_registered_name_says_so() -> None:
    async def main() -> None:
        with pytest.raises(NoProc, match="no process is registered under this name"):
            suptrace.send("never.was", "hi")

    await in_node(main)


async def test_reregistering_a_name_forgets_its_tombstone() -> None:
    async def main() -> None:
        pid, ref = suptrace.spawn_monitor(idle, name="phoenix")
        suptrace.exit(pid, "kill")
        await down_of(ref)
        new = suptrace.spawn(echo, name="phoenix")
        suptrace.unregister("phoenix")
        with pytest.raises(NoProc) as info:
            suptrace.send("phoenix", "hi")
        assert "is gone" not in str(info.value)  # the old story no longer applies
        assert await ping(new)

    await in_node(main)


async def test_exit_by_name() -> None:
    async def main() -> None:
        pid = suptrace.spawn(idle, name="target")
        ref = suptrace.monitor(pid)
        suptrace.exit("target", "shutdown")
        assert (await down_of(ref)).reason == "shutdown"
        with pytest.raises(NoProc):
            suptrace.exit("target", "shutdown")

    await in_node(main)
