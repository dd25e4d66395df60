"""suptrace: Erlang's dbg and SASL for Python.

An OTP-faithful supervision core on asyncio (processes, mailboxes, links,
monitors, exit signals, GenServer, supervisors) in which every message, exit,
restart and restart-intensity breach is observable.
"""

# The package imports its parts on first use (PEP 562), so tools that need one
# submodule -- the `suptrace` command line above all -- do not load the runtime.
# The public names are listed once: the TYPE_CHECKING imports below. Type checkers
# and readers see them as explicit re-exports (``name as name``); at run time the
# package reads the same block from its own source (`_public_names`) to know which
# module holds each name. A new public name is one more line there.
import importlib
from typing import TYPE_CHECKING, Any

from suptrace._version import __version__

if TYPE_CHECKING:
    from suptrace.behaviours.admin import AlreadyPresent as AlreadyPresent
    from suptrace.behaviours.admin import AlreadyStarted as AlreadyStarted
    from suptrace.behaviours.admin import ChildNotFound as ChildNotFound
    from suptrace.behaviours.admin import ChildRestarting as ChildRestarting
    from suptrace.behaviours.admin import ChildRunning as ChildRunning
    from suptrace.behaviours.admin import MaxChildren as MaxChildren
    from suptrace.behaviours.admin import StartChildError as StartChildError
    from suptrace.behaviours.admin import SupervisorError as SupervisorError
    from suptrace.behaviours.admin import count_children as count_children
    from suptrace.behaviours.admin import delete_child as delete_child
    from suptrace.behaviours.admin import describe as describe
    from suptrace.behaviours.admin import get_childspec as get_childspec
    from suptrace.behaviours.admin import restart_child as restart_child
    from suptrace.behaviours.admin import start_child as start_child
    from suptrace.behaviours.admin import terminate_child as terminate_child
    from suptrace.behaviours.admin import which_children as which_children
    from suptrace.behaviours.childspec import ChildInfo as ChildInfo
    from suptrace.behaviours.childspec import ChildSpec as ChildSpec
    from suptrace.behaviours.client import call as call
    from suptrace.behaviours.client import get_state as get_state
    from suptrace.behaviours.client import statistics as statistics
    from suptrace.behaviours.client import stop as stop
    from suptrace.behaviours.dynamic import DynamicSupervisor as DynamicSupervisor
    from suptrace.behaviours.gen_server import GenServer as GenServer
    from suptrace.behaviours.gen_server import StartError as StartError
    from suptrace.behaviours.intensity import add_restart as add_restart
    from suptrace.behaviours.requests import NOREPLY as NOREPLY
    from suptrace.behaviours.requests import Caller as Caller
    from suptrace.behaviours.requests import reply as reply
    from suptrace.behaviours.supervisor import Supervisor as Supervisor
    from suptrace.core.errors import CallError as CallError
    from suptrace.core.errors import CallExit as CallExit
    from suptrace.core.errors import CallTimeout as CallTimeout
    from suptrace.core.errors import Exit as Exit
    from suptrace.core.errors import NodeError as NodeError
    from suptrace.core.errors import NoProc as NoProc
    from suptrace.core.errors import RegistrationError as RegistrationError
    from suptrace.core.events import TraceEvent as TraceEvent
    from suptrace.core.links import demonitor as demonitor
    from suptrace.core.links import exit as exit
    from suptrace.core.links import link as link
    from suptrace.core.links import monitor as monitor
    from suptrace.core.links import trap_exit as trap_exit
    from suptrace.core.links import unlink as unlink
    from suptrace.core.mailbox import cast as cast
    from suptrace.core.mailbox import receive as receive
    from suptrace.core.mailbox import send as send
    from suptrace.core.registry import is_alive as is_alive
    from suptrace.core.registry import process_info as process_info
    from suptrace.core.registry import register as register
    from suptrace.core.registry import registered as registered
    from suptrace.core.registry import unregister as unregister
    from suptrace.core.registry import whereis as whereis
    from suptrace.core.spawn import self_pid as self_pid
    from suptrace.core.spawn import spawn as spawn
    from suptrace.core.spawn import spawn_link as spawn_link
    from suptrace.core.spawn import spawn_monitor as spawn_monitor
    from suptrace.core.terms import IGNORE as IGNORE
    from suptrace.core.terms import KILL as KILL
    from suptrace.core.terms import KILLED as KILLED
    from suptrace.core.terms import NOPROC as NOPROC
    from suptrace.core.terms import NORMAL as NORMAL
    from suptrace.core.terms import SHUTDOWN as SHUTDOWN
    from suptrace.core.terms import Down as Down
    from suptrace.core.terms import ExitMsg as ExitMsg
    from suptrace.core.terms import Pid as Pid
    from suptrace.core.terms import Ref as Ref
    from suptrace.core.terms import Shutdown as Shutdown
    from suptrace.core.terms import is_normal_exit as is_normal_exit
    from suptrace.core.timer import TimerRef as TimerRef
    from suptrace.core.timer import cancel_timer as cancel_timer
    from suptrace.core.timer import send_after as send_after
    from suptrace.node.hooks import add_event_handler as add_event_handler
    from suptrace.node.node import Node as Node
    from suptrace.node.node import run as run
    from suptrace.observers.calltrace import trace_calls as trace_calls
    from suptrace.observers.format import event_to_json as event_to_json
    from suptrace.observers.format import format_event as format_event
    from suptrace.observers.reports import CrashReport as CrashReport
    from suptrace.observers.reports import ProgressReport as ProgressReport
    from suptrace.observers.reports import SupervisorReport as SupervisorReport
    from suptrace.observers.reports import TaskCrashReport as TaskCrashReport
    from suptrace.observers.reports import add_report_handler as add_report_handler
    from suptrace.observers.reports import format_report as format_report
    from suptrace.observers.reports import report_history as report_history
    from suptrace.observers.tracer import Tracer as Tracer
    from suptrace.observers.tracer import trace as trace


def _public_names() -> dict[str, str]:
    """Name -> module for every name the TYPE_CHECKING block above imports (read from
    this file's text: a few hundred lines scanned, no parser imported)."""
    names: dict[str, str] = {}
    module = ""
    try:
        with open(__file__, encoding="utf-8") as source:
            text = source.read()
    except OSError:  # installed without its .py files (a zip, a frozen application)
        text = __loader__.get_source(__name__) or ""  # type: ignore[name-defined]
    if "if TYPE_CHECKING:" not in text:
        raise ImportError(
            "suptrace lists its public names in the source of suptrace/__init__.py, "
            "which this installation does not include: install the package with its .py files"
        )
    lines = iter(text.splitlines(keepends=True))
    for line in lines:
        if line.startswith("if TYPE_CHECKING:"):
            break
    for line in lines:
        if line.strip() and not line.startswith("    "):
            break  # the end of the block
        words = line.replace(",", " ").split()
        if words[:1] == ["from"]:
            module, words = words[1], words[3:]
        names.update((word, module) for word in words if word not in ("(", ")", "as"))
    return names


_EXPORTS = _public_names()

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'suptrace' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
