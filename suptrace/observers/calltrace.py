"""Call tracing, dbg's ``tp``: wrap a function live, report its calls from traced
processes, and put the original back when the trace ends.

The function is replaced where it is defined (``pkg.module:function`` or
``pkg.module:Class.method``). Code that did ``from pkg.module import function``
before the trace started keeps calling the unwrapped original; methods are
always found through their class, so they are always seen.

Call tracing never traces the runtime, and never recurses into it:

* only calls made by a traced process's own code are reported. A call made
  while the runtime does its own work in that process's step (telling
  observers about an event, writing a report, handling a death, running a
  timer sweep, the tracer and the telemetry bridge themselves) is passed
  straight through, and so is every call made while a call-trace event is
  being reported (a re-entrancy guard per thread). The runtime binds the
  clocks it uses (``time.time``, ``time.monotonic``...) once at import, so
  ``time:time`` or ``time:monotonic`` can be traced: what is seen are the
  calls of the application (and of the libraries it calls, asyncio's timers
  included).
* ``builtins`` (``builtins:len``...) are refused: every module, the runtime
  among them, calls them on nearly every line, so a patched builtin would
  report mostly noise and slow the whole node. Trace the function of your
  code that calls it instead.

Because it cannot make a process die or miss its report, call tracing is a
read-only operation: ``suptrace attach --call`` is allowed on a read-only
control socket (the function is patched only for the session and restored
when it ends).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import CodeType, FrameType
from typing import Any

from suptrace.core.errors import NoProc
from suptrace.core.events import TraceEvent
from suptrace.core.runtime import current_runtime, maybe_process
from suptrace.core.saferepr import safe_str
from suptrace.core.terms import Pid
from suptrace.observers.format import short
from suptrace.observers.tracer import EventHandler, Tracer

__all__ = ["trace_calls", "patch_function", "resolve_function"]


def resolve_function(spec: str) -> tuple[Any, str, Any]:
    """Find ``pkg.module:attr.path``: returns ``(owner, attribute name, raw attribute)``.

    ``raw`` is what the owner's namespace holds (for a method, the
    `staticmethod`/`classmethod` object or plain function found along the MRO).

    >>> owner, name, raw = resolve_function("json:dumps")
    >>> owner.__name__, name
    ('json', 'dumps')
    """
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(
            f"call trace target {spec!r} must look like 'package.module:function' "
            "or 'package.module:Class.method' (one ':' between module and function)"
        )
    module_name, _, path = spec.partition(":")
    parts = path.split(".")
    if not module_name or not all(part.isidentifier() for part in parts):
        raise ValueError(
            f"call trace target {spec!r} must look like 'package.module:function' "
            "or 'package.module:Class.method' (module and attribute names, no spaces)"
        )
    if module_name in _REFUSED_MODULES:
        raise ValueError(
            f"call trace target {spec!r} is refused: builtins are called by every "
            "module on nearly every line (the runtime among them), so tracing one would "
            "report mostly noise and slow the whole node; trace the function of your "
            "code that calls it instead"
        )
    try:
        owner: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"call trace target {spec!r}: cannot import {module_name!r}: {exc}"
        ) from None
    for part in parts[:-1]:
        try:
            owner = getattr(owner, part)
        except AttributeError:
            raise ValueError(f"call trace target {spec!r}: {owner!r} has no {part!r}") from None
    name = parts[-1]
    raw = _lookup_raw(owner, name)
    if raw is _MISSING:
        raise ValueError(f"call trace target {spec!r}: {owner!r} has no {name!r}")
    func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
    if not callable(func):
        raise ValueError(f"call trace target {spec!r} is not a function ({type(func).__name__})")
    return owner, name, raw


_MISSING: Any = object()

#: Modules whose functions are never patched (see the module docstring).
_REFUSED_MODULES = frozenset({"builtins", "__builtin__"})


class _Guard(threading.local):
    #: True while this thread reports a call-trace event: nothing it calls is traced.
    busy = False


_guard = _Guard()

#: Source files whose frames mean "the runtime is doing its own work" (observers,
#: event dispatch, timers, the control plane): a traced function they call,
#: directly or through any library, is not the process's own call. By file, not
#: by module name: code run with a borrowed namespace (a doctest) is not ours.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_RUNTIME_DIRS = tuple(os.path.join(_PACKAGE, d, "") for d in ("observers", "node", "cli"))
_RUNTIME_FILES = frozenset(
    os.path.join(_PACKAGE, "core", f) for f in ("runtime.py", "timers.py")
)
_RUNTIME_CODES: set[CodeType] = set()
_verdicts: dict[CodeType, bool] = {}


def _runtime_code(code: CodeType) -> bool:
    verdict = _verdicts.get(code)
    if verdict is None:
        filename = code.co_filename
        verdict = (
            code in _RUNTIME_CODES
            or filename in _RUNTIME_FILES
            or filename.startswith(_RUNTIME_DIRS)
        )
        if len(_verdicts) < 100_000:
            _verdicts[code] = verdict
    return verdict


#: Where the walk stops: the process's own root frame, or the loop running a step.
_BOUNDARY_CODES: set[CodeType] = set()


def _inside_runtime() -> bool:
    """True when the runtime's own code is on the stack of this step (between the
    traced call and the process's root frame or the loop): the call is not the
    process's own."""
    # 0: here, 1: traced_process, 2: the wrapper, 3: the code that made the call.
    frame: FrameType | None = sys._getframe(3)
    boundary = _BOUNDARY_CODES
    while frame is not None:
        code = frame.f_code
        if code in boundary:
            return False
        if _runtime_code(code):
            return True
        frame = frame.f_back
    return False


def _register_runtime_codes() -> None:
    import asyncio.events

    # Death handling runs in the dying process's step: its calls are the runtime's.
    from suptrace.core.process import DEATH_CODES
    from suptrace.core.spawn import MAIN_CODE

    _RUNTIME_CODES.update(DEATH_CODES)
    _BOUNDARY_CODES.update({MAIN_CODE, asyncio.events.Handle._run.__code__})


def _lookup_raw(owner: Any, name: str) -> Any:
    """The attribute as stored (a descriptor, not what it binds to), or `_MISSING`."""
    if isinstance(owner, type):
        for klass in owner.__mro__:
            if name in klass.__dict__:
                return klass.__dict__[name]
        return _MISSING
    namespace = getattr(owner, "__dict__", None)
    if isinstance(namespace, dict) and name in namespace:
        return namespace[name]
    return getattr(owner, name, _MISSING)


#: The clocks of the call tracer itself, bound before anything can patch them.
_wall = time.time
_perf = time.perf_counter


def patch_function(spec: str, tracer: Tracer) -> Callable[[], None]:
    """Wrap the function named by ``spec`` for ``tracer``; returns the undo."""
    if not _RUNTIME_CODES:
        _register_runtime_codes()
    owner, name, raw = resolve_function(spec)
    func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
    # An inherited method is patched on the named class only, and removed again after.
    own = name in getattr(owner, "__dict__", {})

    def emit(proc: Any, phase: str, value: Any, duration: float | None = None) -> None:
        # Runs with the guard up: whatever reporting calls is never traced again.
        guard = _guard
        guard.busy = True
        try:
            data: dict[str, Any] = {"function": spec, "phase": phase, "value": value}
            if duration is not None:
                data["duration"] = duration
            tracer.accept(TraceEvent(_wall(), proc.pid, proc.name, "call_trace", data))
        except Exception as exc:  # reporting a call must never break the call
            tracer.handler_errors += 1
            tracer.runtime.handler_failed("call tracer", wrapper, exc, "call_trace")
        finally:
            guard.busy = False

    def call_text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        guard = _guard
        guard.busy = True
        try:
            parts = [short(a, tracer.term_limit) for a in args]
            parts += [f"{safe_str(k)}={short(v, tracer.term_limit)}" for k, v in kwargs.items()]
            return f"({', '.join(parts)})"
        except Exception as exc:
            return f"(arguments not shown: {safe_str(exc)})"
        finally:
            guard.busy = False

    def traced_process() -> Any:
        """The calling process when this call is to be reported, else None."""
        if "call_trace" not in tracer.kinds or _guard.busy:
            return None
        proc = maybe_process()
        if not tracer.traces(proc) or _inside_runtime():
            return None
        return proc

    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            proc = traced_process()
            if proc is None:
                return await func(*args, **kwargs)
            emit(proc, "call", call_text(args, kwargs))
            start = _perf()
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                emit(proc, "exception", exc, _perf() - start)
                raise
            emit(proc, "return", result, _perf() - start)
            return result

        wrapper = async_wrapper
    else:

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            proc = traced_process()
            if proc is None:
                return func(*args, **kwargs)
            emit(proc, "call", call_text(args, kwargs))
            start = _perf()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                emit(proc, "exception", exc, _perf() - start)
                raise
            emit(proc, "return", result, _perf() - start)
            return result

        wrapper = sync_wrapper

    setattr(wrapper, "__suptrace_original__", raw)  # noqa: B010 - a marker for tooling
    installed: Any = wrapper
    if isinstance(raw, staticmethod):
        installed = staticmethod(wrapper)
    elif isinstance(raw, classmethod):
        installed = classmethod(wrapper)
    try:
        setattr(owner, name, installed)
    except (TypeError, AttributeError) as exc:  # a built-in type, a read-only namespace
        raise ValueError(
            f"call trace target {spec!r} cannot be traced: {owner!r} does not let its "
            f"attributes be replaced ({exc}); trace the function of your code that calls it"
        ) from None

    def undo() -> None:
        # If somebody wrapped it again after us, leave their wrapper in place: ours
        # becomes a plain pass-through once the tracer has stopped.
        if getattr(owner, "__dict__", {}).get(name) is installed:
            if own:
                setattr(owner, name, raw)
            else:
                delattr(owner, name)

    return undo


def trace_calls(
    functions: str | Iterable[str],
    target: Pid | str = "all",
    *,
    tracer: Tracer | None = None,
    handler: EventHandler | None = None,
    max_events: int | None = 1000,
    duration: float | None = 60.0,
    rate: float | None = 1000.0,
) -> Tracer:
    """Report calls, returns and exceptions of functions called by traced processes.

    ``functions`` are ``"pkg.module:function"`` or ``"pkg.module:Class.method"``
    (sync or async). Calls are reported only from the processes ``target``
    selects (default ``"all"``), or from those of an existing ``tracer``. The
    originals are restored when the tracer stops, even during node shutdown.

    >>> import suptrace, json
    >>> seen = []
    >>> async def main():
    ...     t = suptrace.trace_calls("json:dumps", handler=lambda e: seen.append(e.data["phase"]))
    ...     json.dumps([1])
    ...     t.stop()
    ...     return json.dumps.__name__, hasattr(json.dumps, "__suptrace_original__")
    >>> suptrace.run(main)
    ('dumps', False)
    >>> seen
    ['call', 'return']
    """
    if isinstance(functions, str) or not isinstance(functions, Iterable):
        specs: list[Any] = [functions]  # a non-string is refused by resolve_function
    else:
        specs = list(functions)
    if not specs:
        raise ValueError("trace_calls() needs at least one 'package.module:function'")
    for spec in specs:
        resolve_function(spec)  # fail before patching anything
    created = tracer is None
    if tracer is None:
        rt = current_runtime("trace_calls()")
        tracer = Tracer(
            rt,
            target,
            ("call_trace",),
            max_events=max_events,
            duration=duration,
            rate=rate,
            handler=handler,
        )
        try:
            tracer.start()
        except (NoProc, TypeError):
            tracer.stop("failed")
            raise
    elif not tracer.active:
        raise ValueError(
            f"trace_calls(): the tracer has already stopped ({tracer.stop_reason}); "
            "start a new one with suptrace.trace(...)"
        )
    else:
        tracer.kinds = tracer.kinds | {"call_trace"}
    undos: list[Callable[[], None]] = []
    try:
        for spec in specs:
            undos.append(patch_function(spec, tracer))
    except ValueError:  # one target cannot be patched: none stays patched
        for undo in reversed(undos):
            undo()
        if created:
            tracer.stop("failed")
        raise
    tracer.add_cleanup(*undos)
    return tracer
