"""``suptrace doctor MODULE:ATTRIBUTE``: check a supervision spec without running it.

The attribute is a list of `ChildSpec` (the root supervisor's children), a
dict with ``children`` and the root's flags, or a function returning either.
Child supervisors started with ``Supervisor.start_link``/``start`` (or the
DynamicSupervisor ones) are looked into through their start arguments.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from suptrace.cli.client import EXIT_USAGE, CliError

__all__ = ["check_spec", "spec_tree"]


def _load(text: str) -> Any:
    module_name, sep, attr = text.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(
            f"a spec is MODULE:ATTRIBUTE (like myapp.tree:children), got {text!r}", EXIT_USAGE
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the project's own modules
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}", EXIT_USAGE) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(f"{module_name} has no attribute {attr!r}", EXIT_USAGE) from None
    if callable(obj) and not isinstance(obj, (list, tuple, dict)):
        obj = obj()
    return obj


def _defaults(fn: Any) -> dict[str, Any]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    return {
        k: p.default
        for k, p in params.items()
        if k in ("strategy", "intensity", "period", "auto_shutdown") and p.default is not p.empty
    }


def _nested(spec: Any) -> tuple[str, list[Any], dict[str, Any]] | None:
    """``(kind, children, flags)`` when the spec starts a suptrace supervisor."""
    from suptrace import DynamicSupervisor, Supervisor

    fn = spec.func
    owner = getattr(fn, "__self__", None)
    if not (inspect.isclass(owner) and getattr(fn, "__name__", "") in ("start_link", "start")):
        return None
    kwargs = dict(spec.kwargs)
    if issubclass(owner, DynamicSupervisor):
        flags = {**_defaults(fn), **kwargs, "strategy": "one_for_one"}
        return "dynamic_supervisor", [], flags
    if issubclass(owner, Supervisor):
        children = spec.args[0] if spec.args else kwargs.pop("children", [])
        return "supervisor", list(children), {**_defaults(fn), **kwargs}
    return None


def _id_text(cid: Any) -> str:
    return cid if isinstance(cid, str) else repr(cid)


def spec_tree(
    children: Any,
    flags: dict[str, Any],
    name: str,
    restart: str | None = None,
    kind: str = "supervisor",
) -> dict[str, Any]:
    """A describe-shaped dict for a supervisor that would run ``children``."""
    from suptrace import ChildSpec
    from suptrace.behaviours.childspec import as_childspec

    out_children = []
    for raw in children:
        try:
            spec: ChildSpec = as_childspec(raw)
        except ValueError as exc:
            raise CliError(f"{name}: {exc}", EXIT_USAGE) from None
        child: dict[str, Any] = {
            "id": _id_text(spec.id),
            "id_text": _id_text(spec.id),
            "pid": None,
            "restart": spec.restart,
            "type": spec.type,
            "significant": spec.significant,
        }
        nested = _nested(spec)
        if nested is not None:
            sub_kind, sub_children, sub_flags = nested
            sub_name = sub_flags.pop("name", None) or _id_text(spec.id)
            child["tree"] = spec_tree(
                sub_children, sub_flags, str(sub_name), spec.restart, sub_kind
            )
        out_children.append(child)
    return {
        "name": name,
        "pid": None,
        "kind": kind,
        "status": "ok",
        "strategy": flags.get("strategy"),
        "intensity": flags.get("intensity"),
        "period": flags.get("period"),
        "auto_shutdown": flags.get("auto_shutdown", "never"),
        "restart": restart,
        "children": out_children,
    }


def check_spec(text: str, root_flags: dict[str, Any]) -> dict[str, Any]:
    """Findings for the spec ``MODULE:ATTRIBUTE``; ``root_flags`` override its flags."""
    from suptrace.node.control.doctor import check_tree, walk

    obj = _load(text)
    flags: dict[str, Any] = {}
    if isinstance(obj, dict):
        flags = {
            k: v
            for k, v in obj.items()
            if k in ("strategy", "intensity", "period", "auto_shutdown", "name")
        }
        children = obj.get("children", [])
    elif isinstance(obj, (list, tuple)):
        children = obj
    else:
        raise CliError(
            f"{text} is a {type(obj).__name__}; expected a list of ChildSpec or a dict with "
            "'children' and supervisor flags",
            EXIT_USAGE,
        )
    flags.update(root_flags)
    notes = []
    if "intensity" not in flags:
        notes.append(
            "the root supervisor's flags are not in the spec: pass --intensity/--period "
            "(and --strategy) to check them too"
        )
    root = spec_tree(children, flags, str(flags.pop("name", None) or text))
    findings = check_tree(root)
    return {
        "spec": text,
        "findings": findings,
        "notes": notes,
        "tree": root,
        "checked": {"supervisors": sum(1 for _ in walk(root))},
    }
