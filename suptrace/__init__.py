"""suptrace: Erlang's dbg and SASL for Python.

An OTP-faithful supervision core on asyncio (processes, mailboxes, links,
monitors, exit signals, GenServer, supervisors) in which every message, exit,
restart and restart-intensity breach is observable.
"""

# The package imports its parts on first use (PEP 562), so tools that need one
# submodule -- the `suptrace` command line above all -- do not load the runtime.
# A new public name goes in both places below: the TYPE_CHECKING import (for type
# checkers and readers) and _EXPORTS (what `suptrace.<name>` imports at run time).
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from suptrace.behaviours.childspec import ChildInfo, ChildSpec
    from suptrace.behaviours.dynamic import DynamicSupervisor
    from suptrace.behaviours.gen_server import (
        NOREPLY,
        Caller,
        GenServer,
        StartError,
        call,
        cast,
        get_state,
        reply,
        statistics,
        stop,
    )
    from suptrace.behaviours.intensity import add_restart
    from suptrace.behaviours.supervisor import (
        AlreadyPresent,
        AlreadyStarted,
        ChildNotFound,
        ChildRestarting,
        ChildRunning,
        MaxChildren,
        StartChildError,
        Supervisor,
        SupervisorError,
        count_children,
        delete_child,
        describe,
        get_childspec,
        restart_child,
        start_child,
        terminate_child,
        which_children,
    )
    from suptrace.core.errors import (
        CallError,
        CallExit,
        CallTimeout,
        Exit,
        NodeError,
        NoProc,
        RegistrationError,
    )
    from suptrace.core.events import TraceEvent
    from suptrace.core.process import (
        demonitor,
        exit,
        is_alive,
        link,
        monitor,
        process_info,
        receive,
        register,
        registered,
        self_pid,
        send,
        spawn,
        spawn_link,
        spawn_monitor,
        trap_exit,
        unlink,
        unregister,
        whereis,
    )
    from suptrace.core.terms import (
        IGNORE,
        KILL,
        KILLED,
        NOPROC,
        NORMAL,
        SHUTDOWN,
        Down,
        ExitMsg,
        Pid,
        Ref,
        Shutdown,
        is_normal_exit,
    )
    from suptrace.core.timer import TimerRef, cancel_timer, send_after
    from suptrace.node.hooks import add_event_handler
    from suptrace.node.node import Node, run
    from suptrace.observers.calltrace import trace_calls
    from suptrace.observers.format import event_to_json, format_event
    from suptrace.observers.reports import (
        CrashReport,
        ProgressReport,
        SupervisorReport,
        TaskCrashReport,
        add_report_handler,
        format_report,
        report_history,
    )
    from suptrace.observers.tracer import Tracer, trace

_EXPORTS: dict[str, str] = {
    "ChildInfo": "suptrace.behaviours.childspec",
    "ChildSpec": "suptrace.behaviours.childspec",
    "DynamicSupervisor": "suptrace.behaviours.dynamic",
    "NOREPLY": "suptrace.behaviours.gen_server",
    "Caller": "suptrace.behaviours.gen_server",
    "GenServer": "suptrace.behaviours.gen_server",
    "StartError": "suptrace.behaviours.gen_server",
    "call": "suptrace.behaviours.gen_server",
    "cast": "suptrace.behaviours.gen_server",
    "get_state": "suptrace.behaviours.gen_server",
    "reply": "suptrace.behaviours.gen_server",
    "statistics": "suptrace.behaviours.gen_server",
    "stop": "suptrace.behaviours.gen_server",
    "add_restart": "suptrace.behaviours.intensity",
    "AlreadyPresent": "suptrace.behaviours.supervisor",
    "AlreadyStarted": "suptrace.behaviours.supervisor",
    "ChildNotFound": "suptrace.behaviours.supervisor",
    "ChildRestarting": "suptrace.behaviours.supervisor",
    "ChildRunning": "suptrace.behaviours.supervisor",
    "MaxChildren": "suptrace.behaviours.supervisor",
    "StartChildError": "suptrace.behaviours.supervisor",
    "Supervisor": "suptrace.behaviours.supervisor",
    "SupervisorError": "suptrace.behaviours.supervisor",
    "count_children": "suptrace.behaviours.supervisor",
    "delete_child": "suptrace.behaviours.supervisor",
    "describe": "suptrace.behaviours.supervisor",
    "get_childspec": "suptrace.behaviours.supervisor",
    "restart_child": "suptrace.behaviours.supervisor",
    "start_child": "suptrace.behaviours.supervisor",
    "terminate_child": "suptrace.behaviours.supervisor",
    "which_children": "suptrace.behaviours.supervisor",
    "CallError": "suptrace.core.errors",
    "CallExit": "suptrace.core.errors",
    "CallTimeout": "suptrace.core.errors",
    "Exit": "suptrace.core.errors",
    "NodeError": "suptrace.core.errors",
    "NoProc": "suptrace.core.errors",
    "RegistrationError": "suptrace.core.errors",
    "TraceEvent": "suptrace.core.events",
    "demonitor": "suptrace.core.process",
    "exit": "suptrace.core.process",
    "is_alive": "suptrace.core.process",
    "link": "suptrace.core.process",
    "monitor": "suptrace.core.process",
    "process_info": "suptrace.core.process",
    "receive": "suptrace.core.process",
    "register": "suptrace.core.process",
    "registered": "suptrace.core.process",
    "self_pid": "suptrace.core.process",
    "send": "suptrace.core.process",
    "spawn": "suptrace.core.process",
    "spawn_link": "suptrace.core.process",
    "spawn_monitor": "suptrace.core.process",
    "trap_exit": "suptrace.core.process",
    "unlink": "suptrace.core.process",
    "unregister": "suptrace.core.process",
    "whereis": "suptrace.core.process",
    "IGNORE": "suptrace.core.terms",
    "KILL": "suptrace.core.terms",
    "KILLED": "suptrace.core.terms",
    "NOPROC": "suptrace.core.terms",
    "NORMAL": "suptrace.core.terms",
    "SHUTDOWN": "suptrace.core.terms",
    "Down": "suptrace.core.terms",
    "ExitMsg": "suptrace.core.terms",
    "Pid": "suptrace.core.terms",
    "Ref": "suptrace.core.terms",
    "Shutdown": "suptrace.core.terms",
    "is_normal_exit": "suptrace.core.terms",
    "TimerRef": "suptrace.core.timer",
    "cancel_timer": "suptrace.core.timer",
    "send_after": "suptrace.core.timer",
    "add_event_handler": "suptrace.node.hooks",
    "Node": "suptrace.node.node",
    "run": "suptrace.node.node",
    "trace_calls": "suptrace.observers.calltrace",
    "event_to_json": "suptrace.observers.format",
    "format_event": "suptrace.observers.format",
    "CrashReport": "suptrace.observers.reports",
    "ProgressReport": "suptrace.observers.reports",
    "SupervisorReport": "suptrace.observers.reports",
    "TaskCrashReport": "suptrace.observers.reports",
    "add_report_handler": "suptrace.observers.reports",
    "format_report": "suptrace.observers.reports",
    "report_history": "suptrace.observers.reports",
    "Tracer": "suptrace.observers.tracer",
    "trace": "suptrace.observers.tracer",
}

__version__ = "0.1.0"

__all__ = [
    # processes
    "run",
    "Node",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "self_pid",
    "send",
    "receive",
    "link",
    "unlink",
    "monitor",
    "demonitor",
    "exit",
    "trap_exit",
    "register",
    "unregister",
    "whereis",
    "registered",
    "process_info",
    "is_alive",
    "send_after",
    "cancel_timer",
    # values
    "Pid",
    "Ref",
    "TimerRef",
    "ExitMsg",
    "Down",
    "Shutdown",
    "is_normal_exit",
    "NORMAL",
    "SHUTDOWN",
    "KILL",
    "KILLED",
    "NOPROC",
    "IGNORE",
    # errors
    "Exit",
    "CallError",
    "CallTimeout",
    "CallExit",
    "NoProc",
    "NodeError",
    "RegistrationError",
    "StartError",
    # gen_server
    "GenServer",
    "Caller",
    "NOREPLY",
    "call",
    "cast",
    "reply",
    "stop",
    "get_state",
    "statistics",
    # supervisors
    "Supervisor",
    "DynamicSupervisor",
    "ChildSpec",
    "ChildInfo",
    "add_restart",
    "which_children",
    "count_children",
    "start_child",
    "terminate_child",
    "restart_child",
    "delete_child",
    "get_childspec",
    "describe",
    "SupervisorError",
    "ChildNotFound",
    "ChildRunning",
    "ChildRestarting",
    "AlreadyPresent",
    "AlreadyStarted",
    "StartChildError",
    "MaxChildren",
    # reports
    "SupervisorReport",
    "ProgressReport",
    "CrashReport",
    "TaskCrashReport",
    "add_report_handler",
    "report_history",
    "format_report",
    # tracing
    "trace",
    "Tracer",
    "trace_calls",
    "format_event",
    "event_to_json",
    # hooks
    "TraceEvent",
    "add_event_handler",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'suptrace' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
