"""What a node gives its own services: the runtime, the node's name and its typed parts.

The node builds one `NodeParts` when it starts. The control server, which
answers about all of them, is given it whole; the telemetry service is given
just the runtime, the node's name and the reports. Each reads its
collaborators as typed attributes, never by a name looked up at run time. Code
that runs inside a process and needs the node's parts (the demo, tests, tools)
finds them with `current_parts`.

>>> import asyncio, suptrace
>>> from suptrace.node.parts import current_parts
>>> async def app():
...     async with suptrace.Node("parts-demo", control=False):
...         parts = current_parts("app()")
...         return parts.name, parts.reports is not None, parts.control
>>> asyncio.run(app())
('parts-demo', True, None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from suptrace.core.errors import NodeError
from suptrace.core.runtime import Runtime, current_runtime

if TYPE_CHECKING:
    from suptrace.node.control import ControlServer
    from suptrace.node.telemetry import Telemetry
    from suptrace.observers.call_timeouts import CallTimeouts
    from suptrace.observers.reports import Reports
    from suptrace.observers.sysmon import SystemMonitor
    from suptrace.observers.tasks import TaskWatch

__all__ = ["NodeParts", "current_parts", "parts_of"]


@dataclass(frozen=True, eq=False)
class NodeParts:
    """One running node's runtime, name and parts (None where the node runs without one)."""

    runtime: Runtime
    name: str
    #: SASL-style reports (``reports=False`` leaves it None).
    reports: Reports | None
    #: Calls that timed out, by destination (kept with the reports).
    call_timeouts: CallTimeouts | None
    #: The watch on the loop's plain tasks (kept with the reports).
    tasks: TaskWatch | None
    system_monitor: SystemMonitor | None
    telemetry: Telemetry | None
    control: ControlServer | None


_PARTS: WeakKeyDictionary[Runtime, NodeParts] = WeakKeyDictionary()


def register_parts(parts: NodeParts) -> None:
    """Make ``parts`` what `parts_of` answers for its runtime (the node does this at start)."""
    _PARTS[parts.runtime] = parts


def forget_parts(runtime: Runtime) -> None:
    _PARTS.pop(runtime, None)


def parts_of(runtime: Runtime) -> NodeParts | None:
    """The parts of the node that runs ``runtime`` (None for a runtime no node runs)."""
    return _PARTS.get(runtime)


def current_parts(what: str = "this function") -> NodeParts:
    """The parts of the node whose loop is running; ``what`` names the caller in the error."""
    rt = current_runtime(what)
    parts = _PARTS.get(rt)
    if parts is None:
        raise NodeError(f"{what}: runtime {rt.name!r} is not run by a suptrace Node")
    return parts
