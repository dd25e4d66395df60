"""Shared by the layout tests: finding an import cycle in a module graph."""

from __future__ import annotations


def assert_no_cycle(graph: dict[str, set[str]]) -> None:
    """Fail with the first cycle found in ``graph`` (module -> modules it imports),
    named as ``import cycle: a -> b -> a``."""
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for dep in sorted(graph.get(module, ())):
            visit(dep, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
