"""The control package's modules keep to their own rooms.

Each module of `suptrace.node.control` holds one concept and uses the others
only through their public names: no module imports a private name (``_x``) of
another suptrace module or reads one through a module it imported, and the
modules' imports of each other form no cycle (so each imports on its own, in any
order). Checked on the source, without importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

from layout_support import assert_no_cycle

import suptrace.node.control

PACKAGE = Path(suptrace.node.control.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def _tree(module: str) -> ast.Module:
    return ast.parse((PACKAGE / f"{module}.py").read_text(), filename=f"{module}.py")


def _runtime_imports(module: str) -> list[ast.ImportFrom]:
    """The module's ``from suptrace... import`` statements, except those only for
    type checking."""
    found: list[ast.ImportFrom] = []
    skip: set[int] = set()
    tree = _tree(module)
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and id(node) not in skip
            and (node.module or "").startswith("suptrace")
        ):
            found.append(node)
    return found


def test_no_control_module_reads_another_modules_private_names() -> None:
    offences = []
    for module in MODULES:
        tree = _tree(module)
        imported_modules: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("suptrace"):
                for alias in node.names:
                    if alias.name.startswith("_") and alias.name != "__version__":
                        offences.append(f"{module}: from {node.module} import {alias.name}")
                    if node.module == "suptrace.node.control":
                        imported_modules.add(alias.asname or alias.name)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in imported_modules
                and node.attr.startswith("_")
            ):
                offences.append(f"{module}: {node.value.id}.{node.attr}")
    assert offences == []


def test_control_modules_import_each_other_without_a_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        deps: set[str] = set()
        for node in _runtime_imports(module):
            if node.module == "suptrace.node.control":
                deps.update(a.name for a in node.names if a.name in MODULES)
            elif (node.module or "").startswith("suptrace.node.control."):
                deps.add((node.module or "").rsplit(".", 1)[1])
        graph[module] = deps - {module}
    assert_no_cycle(graph)
    # The answers' modules are among those checked (a renamed module fails here).
    assert {"errors", "shapes", "processes", "supervisors", "trees", "diagnose", "writes"} <= set(
        MODULES
    )
