"""trace_calls (dbg's ``tp``): patch a function live, report calls from traced
processes only, restore the original on stop and on node shutdown."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from runtime_support import in_node
from trace_support import EventLog

import suptrace
from suptrace import Down, Pid
from suptrace.core.runtime import current_runtime
from suptrace.observers.tracer import running_tracers

MODULE = "suptrace_calltrace_subject"


def _subject_module() -> types.ModuleType:
    """A throwaway module with one of each kind of callable."""
    mod = types.ModuleType(MODULE)
    source = """
import asyncio

def add(a, b):
    return a + b

def fail(msg):
    raise ValueError(msg)

async def fetch(key, delay=0):
    await asyncio.sleep(delay)
    return {"key": key}

class Repo:
    def __init__(self, prefix):
        self.prefix = prefix

    def get(self, key):
        return f"{self.prefix}{key}"

    @staticmethod
    def version():
        return 3

    @classmethod
    def create(cls, prefix):
        return cls(prefix)

class SubRepo(Repo):
    pass
"""
    exec(compile(source, f"<{MODULE}>", "exec"), mod.__dict__)
    return mod


@pytest.fixture
def subject() -> Iterator[types.ModuleType]:
    mod = _subject_module()
    sys.modules[MODULE] = mod
    try:
        yield mod
    finally:
        del sys.modules[MODULE]


def _calls(log: EventLog) -> list[tuple[str, str, Any]]:
    return [
        (e.data["function"].split(":")[1], e.data["phase"], e.data["value"]) for e in log.events
    ]


async def test_sync_function_call_and_return(subject: types.ModuleType) -> None:
    log = EventLog()

    async def main() -> None:
        tracer = suptrace.trace_calls(f"{MODULE}:add", handler=log)
        assert subject.add(2, 3) == 5
        await log.wait_for(lambda e: e.data["phase"] == "return")
        tracer.stop()

    await in_node(main)
    assert _calls(log) == [("add", "call", "(2, 3)"), ("add", "return", 5)]
    ret = log.events[1]
    assert ret.kind == "call_trace" and isinstance(ret.data["duration"], float)
    assert ret.data["duration"] >= 0


async def test_exception_is_reported_and_reraised(subject: types.ModuleType) -> None:
    log = EventLog()

    async def main() -> None:
        tracer = suptrace.trace_calls(f"{MODULE}:fail", handler=log)
        with pytest.raises(ValueError, match="nope"):
            subject.fail("nope")
        await log.wait_for(lambda e: e.data["phase"] == "exception")
        tracer.stop()

    await in_node(main)
    phases = [e.data["phase"] for e in log.events]
    assert phases == ["call", "exception"]
    exc = log.events[1].data["value"]
    assert isinstance(exc, ValueError) and str(exc) == "nope"
    assert "duration" in log.events[1].data


async def test_async_function(subject: types.ModuleType) -> None:
    log = EventLog()

    async def main() -> None:
        tracer = suptrace.trace_calls(f"{MODULE}:fetch", handler=log)
        assert asyncio.iscoroutinefunction(subject.fetch)
        assert await subject.fetch("k", delay=0) == {"key": "k"}
        await log.wait_for(lambda e: e.data["phase"] == "return")
        tracer.stop()

    await in_node(main)
    assert _calls(log) == [("fetch", "call", "('k', delay=0)"), ("fetch", "return", {"key": "k"})]


async def test_methods_staticmethods_and_classmethods(subject: types.ModuleType) -> None:
    log = EventLog()
    Repo = subject.Repo

    async def main() -> None:
        tracer = suptrace.trace_calls(
            [f"{MODULE}:Repo.get", f"{MODULE}:Repo.version", f"{MODULE}:Repo.create"],
            handler=log,
        )
        repo = Repo.create("r:")  # classmethod through the class
        assert isinstance(repo, Repo)
        assert repo.get(1) == "r:1"  # method through an instance
        assert Repo.version() == 3 and repo.version() == 3  # staticmethod both ways
        assert isinstance(repo.create("x"), Repo)  # classmethod through an instance
        await log.wait_for(lambda e: len(log.events) == 10)
        tracer.stop()

    await in_node(main)
    returns = [(name, value) for name, phase, value in _calls(log) if phase == "return"]
    assert [name for name, _ in returns] == [
        "Repo.create",
        "Repo.get",
        "Repo.version",
        "Repo.version",
        "Repo.create",
    ]
    assert returns[1][1] == "r:1" and returns[2][1] == 3
    # Restored exactly: the descriptors are back in the class namespace.
    assert isinstance(Repo.__dict__["version"], staticmethod)
    assert isinstance(Repo.__dict__["create"], classmethod)
    assert Repo.create("y").get(2) == "y2"


async def test_inherited_method_is_patched_on_the_subclass_only(subject: types.ModuleType) -> None:
    log = EventLog()
    SubRepo, Repo = subject.SubRepo, subject.Repo

    async def main() -> None:
        tracer = suptrace.trace_calls(
            [f"{MODULE}:SubRepo.get", f"{MODULE}:SubRepo.create"], handler=log
        )
        assert SubRepo("s:").get(1) == "s:1"
        assert Repo("r:").get(1) == "r:1"  # the base class is untouched
        assert isinstance(SubRepo.create("c"), SubRepo)
        assert isinstance(SubRepo("i").create("c"), SubRepo)
        await log.wait_for(lambda e: len(log.events) == 6)
        tracer.stop()

    await in_node(main)
    assert [e.data["phase"] for e in log.events].count("return") == 3
    # Removed again, not left behind as a copy on the subclass.
    assert "get" not in SubRepo.__dict__ and "create" not in SubRepo.__dict__


async def test_only_calls_from_traced_processes_are_reported(subject: types.ModuleType) -> None:
    log = EventLog()

    async def caller(tag: str) -> None:
        while True:
            reply_to = await suptrace.receive()
            suptrace.send(reply_to, subject.add(tag, "!"))

    async def main() -> tuple[Pid, Pid]:
        traced = suptrace.spawn(caller, "traced")
        other = suptrace.spawn(caller, "other")
        tracer = suptrace.trace_calls(f"{MODULE}:add", traced, handler=log)
        me = suptrace.self_pid()
        for pid in (other, traced, other):
            suptrace.send(pid, me)
            await suptrace.receive()
        subject.add(1, 1)  # from main: not traced either
        await log.wait_for(lambda e: e.data["phase"] == "return")
        tracer.stop()
        return traced, other

    traced, _ = await in_node(main)
    assert _calls(log) == [("add", "call", "('traced', '!')"), ("add", "return", "traced!")]
    assert {e.pid for e in log.events} == {traced}


async def test_calls_on_an_existing_tracer(subject: types.ModuleType) -> None:
    log = EventLog()

    async def main() -> None:
        me = suptrace.self_pid()
        tracer = suptrace.trace(me, ["send"], handler=log)
        same = suptrace.trace_calls(f"{MODULE}:add", tracer=tracer)
        assert same is tracer and "call_trace" in tracer.kinds
        suptrace.send(me, subject.add(1, 2))
        await suptrace.receive()
        await log.wait_for("send")
        tracer.stop()
        assert subject.add.__name__ == "add" and not hasattr(subject.add, "__suptrace_original__")
        with pytest.raises(ValueError, match="already stopped"):
            suptrace.trace_calls(f"{MODULE}:add", tracer=tracer)
        assert not hasattr(subject.add, "__suptrace_original__")

    await in_node(main)
    assert [e.kind for e in log.events] == ["call_trace", "call_trace", "send"]


async def test_originals_restored_on_stop_and_on_node_shutdown(subject: types.ModuleType) -> None:
    originals = {name: subject.__dict__[name] for name in ("add", "fetch")}
    repo_get = subject.Repo.__dict__["get"]

    async def main() -> None:
        tracer = suptrace.trace_calls([f"{MODULE}:add", f"{MODULE}:Repo.get"], handler=EventLog())
        assert subject.add is not originals["add"]
        assert subject.add.__suptrace_original__ is originals["add"]
        tracer.stop()
        assert subject.add is originals["add"] and subject.Repo.__dict__["get"] is repo_get
        # Left running: the node's shutdown must put the originals back.
        suptrace.trace_calls([f"{MODULE}:add", f"{MODULE}:fetch"], handler=EventLog())
        assert subject.fetch is not originals["fetch"]

    await in_node(main)
    assert subject.add is originals["add"] and subject.fetch is originals["fetch"]


async def test_a_trace_by_pid_ends_with_its_process(subject: types.ModuleType) -> None:
    original = subject.add

    async def main() -> str:
        async def worker() -> None:
            await suptrace.receive()

        pid, ref = suptrace.spawn_monitor(worker)
        tracer = suptrace.trace_calls(f"{MODULE}:add", pid, handler=EventLog())
        suptrace.send(pid, "go")
        await suptrace.receive(lambda m: isinstance(m, Down) and m.ref == ref)
        return await asyncio.wait_for(tracer.wait(), 2)

    assert await in_node(main) == "target_exited"
    assert subject.add is original


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon_here", "must look like 'package.module:function'"),
        ("a:b:c", "must look like"),
        (":add", "must look like"),
        (f"{MODULE}:", "must look like"),
        (f"{MODULE}:Repo.", "must look like"),
        (f"{MODULE}:add me", "must look like"),
        ("suptrace_no_such_module_xyz:f", "cannot import 'suptrace_no_such_module_xyz'"),
        (f"{MODULE}:missing", "has no 'missing'"),
        (f"{MODULE}:Missing.get", "has no 'Missing'"),
        (f"{MODULE}:Repo.missing", "has no 'missing'"),
        (f"{MODULE}:asyncio", "is not a function"),
        (42, "must look like"),
    ],
)
async def test_bad_specs_are_refused(subject: types.ModuleType, spec: Any, message: str) -> None:
    async def main() -> None:
        before = dict(subject.__dict__)
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            suptrace.trace_calls(spec)
        assert {k: v for k, v in subject.__dict__.items()} == before

    await in_node(main)


async def test_one_bad_spec_patches_nothing(subject: types.ModuleType) -> None:
    async def main() -> None:
        original = subject.add
        with pytest.raises(ValueError, match="has no 'nope'"):
            suptrace.trace_calls([f"{MODULE}:add", f"{MODULE}:nope"])
        assert subject.add is original
        with pytest.raises(ValueError, match="at least one"):
            suptrace.trace_calls([])

    await in_node(main)


async def test_a_function_of_a_builtin_type_is_refused_clearly() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="does not let its attributes be replaced"):
            suptrace.trace_calls("contextvars:ContextVar.get")

    await in_node(main)


async def test_a_target_that_cannot_be_patched_leaves_nothing_patched(
    subject: types.ModuleType,
) -> None:
    async def main() -> None:
        rt = current_runtime()
        original = subject.add
        with pytest.raises(ValueError, match="does not let its attributes be replaced"):
            suptrace.trace_calls([f"{MODULE}:add", "contextvars:ContextVar.get"])
        assert subject.add is original
        assert not running_tracers(rt)

    await in_node(main)
