"""The package keeps to the layers and rooms docs/architecture.md describes.

Five layers, each importing only the ones below it (cli, node, observers,
behaviours, core); no module imports a private name (``_x``) of another suptrace
module; the modules' top-level imports of each other form no cycle (each
imports on its own, in any order); and a pid's process slot (``Pid._proc``) is
read and written by core only. Checked on the source, without importing anything.
"""

from __future__ import annotations

import ast
import contextlib
import re
from pathlib import Path

import pytest

import suptrace

ROOT = Path(suptrace.__file__).parent
LAYERS = ["core", "behaviours", "observers", "node", "cli"]  # each may import those before it
MODULES = sorted(p for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT)


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _runtime_imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of each suptrace import, except those only for type
    checking; a plain ``import suptrace.x`` gives no names."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("suptrace"):
            found.append((node.module or "", [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names if a.name.startswith("suptrace"))
    return found


def _trees() -> list[tuple[str, ast.Module]]:
    return [(_name(p), ast.parse(p.read_text(), filename=str(p))) for p in MODULES]


def test_the_source_is_where_the_checks_look() -> None:
    names = {name for name, _ in _trees()}
    assert {
        "suptrace.core.mailbox",
        "suptrace.behaviours.client",
        "suptrace.cli.view.model",
    } <= names


def test_each_layer_imports_only_the_layers_below_it() -> None:
    offences = []
    for module, tree in _trees():
        mine = _layer(module)
        if mine is None:
            continue
        allowed = set(LAYERS[: LAYERS.index(mine) + 1])
        for target, _ in _runtime_imports(tree):
            theirs = _layer(target)
            if theirs is not None and theirs not in allowed:
                offences.append(f"{module} imports {target}")
    assert offences == []


def test_no_module_imports_a_private_name_of_another() -> None:
    offences = []
    for module, tree in _trees():
        for target, names in _runtime_imports(tree):
            if target == module:
                continue
            for name in names:
                if name.startswith("_") and name != "__version__":
                    offences.append(f"{module}: from {target} import {name}")
    assert offences == []


def test_top_level_imports_form_no_cycle() -> None:
    trees = dict(_trees())
    graph: dict[str, set[str]] = {}
    for module, tree in trees.items():
        deps: set[str] = set()
        for node in tree.body:  # top level only: an import inside a function runs later
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("suptrace"):
                target = node.module or ""
                deps.update(
                    f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in trees
                )
                deps.add(target)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[module] = {d for d in deps if d in trees} - {module}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for dep in sorted(graph[module]):
            visit(dep, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_only_core_touches_the_process_a_pid_carries() -> None:
    offences = []
    for module, tree in _trees():
        if module.startswith("suptrace.core."):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "_proc"
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                offences.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    assert offences == []


#: Private attributes of other libraries' objects that suptrace reads on purpose, each
#: behind a version check or a fallback where it lives: the OpenTelemetry SDK's
#: histogram internals (the metrics fast path) and tracer, asyncio's and sys's.
FOREIGN_INTERNALS = {
    "_attribute_keys", "_attributes_aggregation", "_boundaries", "_get_empty_bucket_counts",
    "_instrument_view_instrument_matches", "_lock", "_max", "_measurement_consumer", "_min",
    "_reader_storages", "_record_min_max", "_sum", "_value", "_view",
    "_instrumentation_scope", "_span_limits", "_transport",
    "_task_factory", "_run", "_getframe", "_current_frames",
}  # fmt: skip
#: The slots of `Pid` that the core package shares (docs/architecture.md).
CORE_PID_SLOTS = {"_proc", "_home", "_hash"}


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
    listed internals of other libraries."""
    offences = []
    for module, tree in _trees():
        defined = _defined_here(tree)
        in_core = module.startswith("suptrace.core.")
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if (
                attr in defined
                or attr.startswith("_suptrace")
                or attr in FOREIGN_INTERNALS
                or (in_core and attr in CORE_PID_SLOTS)
            ):
                continue
            offences.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    assert offences == []


@pytest.mark.parametrize(
    ("source", "caught_by"),
    [
        ("from suptrace.node.node import Node", {"layers"}),  # core reaching up
        ("from suptrace.core.spawn import _spawn", {"private names"}),
        ("proc = dest._proc", {"pid slot", "private attributes"}),  # outside core
        ("caller._ref = None", {"private attributes"}),  # defined in another module
        ("class Caller:\n    __slots__ = ('_ref',)\nCaller()._ref = None", set()),
    ],
)
def test_the_checks_catch_what_they_forbid(
    source: str, caught_by: set[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_root = tmp_path / "suptrace"
    where = fake_root / ("core" if "node.node" in source else "behaviours")
    where.mkdir(parents=True)
    (where / "bad.py").write_text(source + "\n")
    monkeypatch.setattr(f"{__name__}.ROOT", fake_root)
    monkeypatch.setattr(f"{__name__}.MODULES", [where / "bad.py"])
    checks = {
        "layers": test_each_layer_imports_only_the_layers_below_it,
        "private names": test_no_module_imports_a_private_name_of_another,
        "pid slot": test_only_core_touches_the_process_a_pid_carries,
        "private attributes": test_a_private_attribute_is_touched_only_where_it_is_defined,
    }
    failed = set()
    for label, check in checks.items():
        try:
            check()
        except AssertionError:
            failed.add(label)
    assert failed == caught_by


def test_the_cycle_check_finds_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core = tmp_path / "suptrace" / "core"
    core.mkdir(parents=True)
    (core / "one.py").write_text("from suptrace.core.two import b\n")
    (core / "two.py").write_text("from suptrace.core import one\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path / "suptrace")
    monkeypatch.setattr(f"{__name__}.MODULES", [core / "one.py", core / "two.py"])
    with pytest.raises(
        AssertionError,
        match=re.escape(
            "import cycle: suptrace.core.one -> suptrace.core.two -> suptrace.core.one"
        ),
    ):
        test_top_level_imports_form_no_cycle()
