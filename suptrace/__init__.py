"""suptrace: Erlang's dbg and SASL for Python.

An OTP-faithful supervision core on asyncio (processes, mailboxes, links,
monitors, exit signals, GenServer, supervisors) in which every message, exit,
restart and restart-intensity breach is observable.
"""

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
from suptrace.node.hooks import add_event_handler
from suptrace.node.node import Node, run
from suptrace.observers.calltrace import trace_calls
from suptrace.observers.format import event_to_json, format_event
from suptrace.observers.reports import (
    CrashReport,
    ProgressReport,
    SupervisorReport,
    add_report_handler,
    format_report,
    report_history,
)
from suptrace.observers.tracer import Tracer, trace

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
    # values
    "Pid",
    "Ref",
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
