"""The package keeps to the layers and rooms docs/architecture.md describes.

- Five layers, each importing only the ones below it (cli, node, observers,
  behaviours, core).
- No module imports a private name (``_x``) of another suptrace module.
- No module touches a private attribute (``obj._x``, on anything but ``self`` or
  ``cls``) that it does not define itself; the other libraries' internals a module
  reads on purpose are listed below, per module.
- A pid's process slot (``Pid._proc``) is read and written by core only.
- The modules' top-level imports of each other form no cycle (each imports on its
  own, in any order).

Checked on the source, without importing anything. Relative imports are resolved;
imports under ``if TYPE_CHECKING:`` do not count.
"""

from __future__ import annotations

import ast
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from layout_support import assert_no_cycle

import suptrace

ROOT = Path(suptrace.__file__).parent
LAYERS = ["core", "behaviours", "observers", "node", "cli"]  # each may import those before it
MODULES = sorted(p for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT)

#: Private attributes of other libraries' objects that a module reads on purpose, each
#: behind a version check or a fallback where it is read.
FOREIGN_INTERNALS = {
    # The OpenTelemetry SDK's histogram internals: the metrics fast path.
    "suptrace.observers.otel.metrics": {
        "_attribute_keys", "_attributes_aggregation", "_boundaries", "_get_empty_bucket_counts",
        "_instrument_view_instrument_matches", "_lock", "_max", "_measurement_consumer",
        "_min", "_reader_storages", "_record_min_max", "_sum", "_value", "_view",
    },
    # The SDK tracer's scope and limits, for the spans the tail exports itself.
    "suptrace.observers.otel.tail": {"_instrumentation_scope", "_span_limits"},
    # The OTLP exporter's transport, to tell its outcome from a retry.
    "suptrace.observers.otel.exporters": {"_transport"},
    # asyncio's task factory, read without a method call on the spawn path.
    "suptrace.core.spawn": {"_task_factory"},
    # asyncio's Handle._run (call tracing wraps it) and sys._getframe.
    "suptrace.observers.calltrace": {"_run", "_getframe"},
    # The event loop thread's stack, sampled from another thread.
    "suptrace.observers.sysmon": {"_current_frames"},
}  # fmt: skip
#: The slots of `Pid` that the core package shares (docs/architecture.md).
CORE_PID_SLOTS = {"_proc", "_home", "_hash"}


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in (
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    )


def _target(node: ast.ImportFrom, module: str, package: bool) -> str:
    """The absolute module a ``from ... import`` names, relative ones resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(
    nodes: list[ast.stmt], module: str, package: bool, top_level: bool
) -> Iterator[tuple[str, list[str]]]:
    """``(module, names)`` of each suptrace import in ``nodes``, except those only for
    type checking; a plain ``import suptrace.x`` gives no names. ``top_level``: only
    what runs on import (not the bodies of functions and classes)."""
    for node in nodes:
        if _type_checking(node):
            continue
        if isinstance(node, ast.ImportFrom):
            target = _target(node, module, package)
            if target.split(".")[0] == "suptrace":
                yield target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            yield from ((a.name, []) for a in node.names if a.name.split(".")[0] == "suptrace")
        elif top_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        else:
            children = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)]
            for handler in getattr(node, "handlers", ()):
                children.extend(handler.body)
            yield from _imports(children, module, package, top_level)


class Source:
    def __init__(self, path: Path) -> None:
        self.module = _name(path)
        self.package = path.name == "__init__.py"
        self.tree = ast.parse(path.read_text(), filename=str(path))

    def imports(self, top_level: bool = False) -> list[tuple[str, list[str]]]:
        return list(_imports(self.tree.body, self.module, self.package, top_level))


def _sources() -> list[Source]:
    return [Source(p) for p in MODULES]


def test_the_source_is_where_the_checks_look() -> None:
    names = {s.module for s in _sources()}
    assert {
        "suptrace.core.mailbox",
        "suptrace.behaviours.client",
        "suptrace.cli.view.model",
    } <= names
    assert all(module in names for module in FOREIGN_INTERNALS)


def test_each_layer_imports_only_the_layers_below_it() -> None:
    offences = []
    for source in _sources():
        mine = _layer(source.module)
        if mine is None:
            continue
        allowed = set(LAYERS[: LAYERS.index(mine) + 1])
        for target, _ in source.imports():
            theirs = _layer(target)
            if theirs is not None and theirs not in allowed:
                offences.append(f"{source.module} imports {target}")
    assert offences == []


def test_no_module_imports_a_private_name_of_another() -> None:
    offences = []
    for source in _sources():
        for target, names in source.imports():
            if target == source.module:
                continue
            for name in names:
                if name.startswith("_") and name != "__version__":
                    offences.append(f"{source.module}: from {target} import {name}")
    assert offences == []


def test_top_level_imports_form_no_cycle() -> None:
    sources = {s.module: s for s in _sources()}
    graph: dict[str, set[str]] = {}
    for module, source in sources.items():
        deps: set[str] = set()
        for target, names in source.imports(top_level=True):
            deps.add(target)
            deps.update(f"{target}.{name}" for name in names)  # ``from package import module``
        graph[module] = {d for d in deps if d in sources} - {module}
    assert_no_cycle(graph)


def test_only_core_touches_the_process_a_pid_carries() -> None:
    offences = []
    for source in _sources():
        if source.module.startswith("suptrace.core."):
            continue
        for node in ast.walk(source.tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "_proc"
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                offences.append(f"{source.module}:{node.lineno}: {ast.unparse(node)}")
    assert offences == []


def _defined_here(tree: ast.Module) -> set[str]:
    """The attribute names a module defines: slots, class attributes and methods,
    and what its code assigns on ``self``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(stmt.name)
                elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    names.add(stmt.target.id)
                elif isinstance(stmt, ast.Assign):
                    for target in stmt.targets:
                        if isinstance(target, ast.Name):
                            names.add(target.id)
                            if target.id == "__slots__":
                                with contextlib.suppress(ValueError):  # not a literal
                                    names.update(ast.literal_eval(stmt.value))
    return names


def test_a_private_attribute_is_touched_only_where_it_is_defined() -> None:
    """``x._name`` on anything but ``self`` only in the module that defines ``_name``:
    others go through a public name. Allowed besides: core's `Pid` slots inside
    core, suptrace's own ``_suptrace_*`` marks on other libraries' objects, and the
    other libraries' internals listed for the module. The check goes by name (the
    source does not say what type ``x`` is): a module that defines ``_name`` for
    itself may touch another's ``_name`` unseen."""
    offences = []
    for source in _sources():
        allowed = _defined_here(source.tree) | FOREIGN_INTERNALS.get(source.module, set())
        if source.module.startswith("suptrace.core."):
            allowed |= CORE_PID_SLOTS
        for node in ast.walk(source.tree):
            if not isinstance(node, ast.Attribute):
                continue
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if attr in allowed or attr.startswith("_suptrace"):
                continue
            offences.append(f"{source.module}:{node.lineno}: {ast.unparse(node)}")
    assert offences == []


CHECKS = {
    "layers": test_each_layer_imports_only_the_layers_below_it,
    "private names": test_no_module_imports_a_private_name_of_another,
    "pid slot": test_only_core_touches_the_process_a_pid_carries,
    "private attributes": test_a_private_attribute_is_touched_only_where_it_is_defined,
    "cycle": test_top_level_imports_form_no_cycle,
}


@pytest.mark.parametrize(
    ("where", "source", "caught_by"),
    [
        ("core", "from suptrace.node.node import Node", {"layers"}),
        ("core", "from ..node.node import Node", {"layers"}),  # relative, resolved
        ("core", "if TYPE_CHECKING:\n    from suptrace.node.node import Node", set()),
        ("core", "if not TYPE_CHECKING:\n    from suptrace.node.node import Node", {"layers"}),
        ("behaviours", "from suptrace.core.spawn import _spawn", {"private names"}),
        ("behaviours", "from ..core.spawn import _spawn", {"private names"}),
        (
            "behaviours",
            "try:\n    import suptrace.node.node\nexcept ImportError:\n    pass",
            {"layers"},
        ),
        ("behaviours", "proc = dest._proc", {"pid slot", "private attributes"}),
        ("core", "proc = dest._proc", set()),  # core's own slot
        ("behaviours", "caller._ref = None", {"private attributes"}),  # defined elsewhere
        ("behaviours", "class C:\n    __slots__ = ('_ref',)\nC()._ref = None", set()),
        ("behaviours", "exporter._suptrace_guard = None", set()),  # suptrace's own mark
        ("behaviours", "loop._task_factory", {"private attributes"}),  # listed for spawn only
    ],
)
def test_the_checks_catch_what_they_forbid(
    where: str, source: str, caught_by: set[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_root = tmp_path / "suptrace"
    (fake_root / where).mkdir(parents=True)
    (fake_root / "node").mkdir()
    bad = fake_root / where / "bad.py"
    bad.write_text(source + "\n")
    (fake_root / "node" / "node.py").write_text("Node = None\n")
    monkeypatch.setattr(f"{__name__}.ROOT", fake_root)
    monkeypatch.setattr(f"{__name__}.MODULES", [bad, fake_root / "node" / "node.py"])
    failed = set()
    for label, check in CHECKS.items():
        try:
            check()
        except AssertionError:
            failed.add(label)
    assert failed == caught_by


@pytest.mark.parametrize(
    ("back", "cycle"),
    [
        ("from suptrace.core import one", True),
        ("from . import one", True),
        ("try:\n    from suptrace.core import one\nexcept ImportError:\n    one = None", True),
        ("def later():\n    from suptrace.core import one", False),  # runs after both loaded
        ("if TYPE_CHECKING:\n    from suptrace.core import one", False),
    ],
)
def test_the_cycle_check_finds_a_cycle(
    back: str, cycle: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = tmp_path / "suptrace" / "core"
    core.mkdir(parents=True)
    (core / "one.py").write_text("from suptrace.core.two import b\n")
    (core / "two.py").write_text(back + "\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path / "suptrace")
    monkeypatch.setattr(f"{__name__}.MODULES", [core / "one.py", core / "two.py"])
    if not cycle:
        test_top_level_imports_form_no_cycle()
        return
    with pytest.raises(
        AssertionError,
        match=re.escape(
            "import cycle: suptrace.core.one -> suptrace.core.two -> suptrace.core.one"
        ),
    ):
        test_top_level_imports_form_no_cycle()
