"""suptrace: Erlang's dbg and SASL for Python.

An OTP-faithful supervision core on asyncio (processes, mailboxes, links,
monitors, exit signals, GenServer, supervisors) in which every message, exit,
restart and restart-intensity breach is observable.
"""

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
    # hooks
    "TraceEvent",
    "add_event_handler",
    "__version__",
]
