"""The one internal event stream.

Every observable thing the runtime does is a `TraceEvent`. Reports, the tracer,
the flight recorder, the OpenTelemetry bridge and user hooks all subscribe to
it. Events are built only when somebody listens: the emitting code checks
``runtime.hooks`` or the process's own trace state first.

Schema (stable; ``data`` keys per kind):

=================  =============================================================
kind               data
=================  =============================================================
``send``           ``to`` (Pid), ``msg``
``receive``        ``from`` (Pid or None), ``msg``  -- the message was enqueued
``dead_letter``    ``to`` (Pid or name), ``msg``  -- sent to a dead process
``spawn``          ``child`` (Pid), ``initial_call`` (str), ``link`` (bool)
``spawned``        ``parent`` (Pid or None), ``initial_call``  -- on the child
``exit``           ``reason``, ``by_signal``, ``initial_call``, ``ancestors``, ``links``,
                   ``message_queue_len``, ``messages_in``, ``messages_out``, ``last_events``
``crash``          as ``exit`` plus ``last_events``; only when the process ended by its own
                   hand with an abnormal reason (what a crash report is made of)
``link``           ``peer`` (Pid)
``unlink``         ``peer`` (Pid)
``getting_linked`` ``peer`` (Pid)
``monitor``        ``target`` (Pid), ``ref``
``demonitor``      ``target`` (Pid), ``ref``
``down``           ``target`` (Pid), ``ref``, ``reason``
``exit_signal``    ``from`` (Pid), ``reason``, ``action`` (``trap``/``die``/``ignore``)
``register``       ``name``
``unregister``     ``name``, ``reason`` (None for an explicit unregister)
``call``           ``to``, ``request``, ``ref``
``reply``          ``to`` (the caller Pid or None), ``reply``, ``ref``, ``duration``
``call_timeout``   ``to``, ``request``, ``timeout``
``restart``        ``supervisor``, ``child_id``, ``old_pid``, ``new_pid``, ``reason``
``start_error``    ``supervisor``, ``child_id``, ``reason``
``intensity``      ``supervisor``, ``child_id``, ``restarts`` (including the breaching one),
                   ``intensity``, ``period``, ``reason``, ``offender``, ``child_reason``
``not_restarted``  ``supervisor``, ``child_id``, ``reason``, ``restart_type``, ``cause``,
                   ``rule``, ``offender``
``child_terminated`` ``supervisor``, ``child_id``, ``reason``, ``offender``
``shutdown_error`` ``supervisor``, ``child_id``, ``reason``, ``offender``
``progress``       ``supervisor``, ``child_id``, ``started`` (offender dict), ``api``
``long_schedule``  ``duration``, ``stack``
``large_mailbox``  ``size``, ``limit``
``call_trace``     ``function``, ``phase`` (``call``/``return``/``exception``), ``value``, ``duration``
``trace``          ``note``, ``name``, ``pid``, ``old_pid``  -- a tracer's remark (a followed
                   name changed pid)
=================  =============================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from suptrace.core.terms import Pid

__all__ = ["TraceEvent", "KINDS", "MESSAGE_KINDS", "PROC_KINDS"]

KINDS: Final = frozenset(
    {
        "send",
        "receive",
        "dead_letter",
        "spawn",
        "spawned",
        "exit",
        "crash",
        "link",
        "unlink",
        "getting_linked",
        "monitor",
        "demonitor",
        "down",
        "exit_signal",
        "register",
        "unregister",
        "call",
        "reply",
        "call_timeout",
        "restart",
        "start_error",
        "intensity",
        "not_restarted",
        "child_terminated",
        "shutdown_error",
        "progress",
        "long_schedule",
        "large_mailbox",
        "call_trace",
        "trace",
    }
)

#: dbg's ``send`` / ``receive`` flags map to these kinds.
MESSAGE_KINDS: Final = frozenset({"send", "receive", "dead_letter"})
#: dbg's ``procs`` flag.
PROC_KINDS: Final = frozenset(
    {
        "spawn",
        "spawned",
        "exit",
        "link",
        "unlink",
        "getting_linked",
        "register",
        "unregister",
        "exit_signal",
    }
)


class TraceEvent(NamedTuple):
    """One thing that happened to one process.

    ``ts`` is wall-clock seconds (``time.time()``), ``pid`` the process the
    event belongs to, ``name`` its registered name at that moment. Immutable
    (a named tuple: cheap to build on the hot path).
    """

    ts: float
    pid: Pid | None
    name: str | None
    kind: str
    data: dict[str, Any]
