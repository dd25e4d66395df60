"""Call tracing, dbg's ``tp``: wrap a function live, report its calls from traced
processes, and put the original back when the trace ends.

The function is replaced where it is defined (``pkg.module:function`` or
``pkg.module:Class.method``). Code that did ``from pkg.module import function``
before the trace started keeps calling the unwrapped original; methods are
always found through their class, so they are always seen.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import time
from collections.abc import Callable, Iterable
from typing import Any

from suptrace.core.errors import NoProc
from suptrace.core.events import TraceEvent
from suptrace.core.runtime import current_runtime, maybe_process
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


def patch_function(spec: str, tracer: Tracer) -> Callable[[], None]:
    """Wrap the function named by ``spec`` for ``tracer``; returns the undo."""
    owner, name, raw = resolve_function(spec)
    func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
    # An inherited method is patched on the named class only, and removed again after.
    own = name in getattr(owner, "__dict__", {})

    def emit(phase: str, value: Any, duration: float | None = None) -> None:
        proc = maybe_process()
        if not tracer.traces(proc):
            return
        assert proc is not None
        data: dict[str, Any] = {"function": spec, "phase": phase, "value": value}
        if duration is not None:
            data["duration"] = duration
        tracer._accept(TraceEvent(time.time(), proc.pid, proc.name, "call_trace", data))

    def call_text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        parts = [short(a, tracer.term_limit) for a in args]
        parts += [f"{k}={short(v, tracer.term_limit)}" for k, v in kwargs.items()]
        return f"({', '.join(parts)})"

    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if "call_trace" not in tracer.kinds or not tracer.traces(maybe_process()):
                return await func(*args, **kwargs)
            emit("call", call_text(args, kwargs))
            start = time.perf_counter()
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                emit("exception", exc, time.perf_counter() - start)
                raise
            emit("return", result, time.perf_counter() - start)
            return result

        wrapper = async_wrapper
    else:

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            if "call_trace" not in tracer.kinds or not tracer.traces(maybe_process()):
                return func(*args, **kwargs)
            emit("call", call_text(args, kwargs))
            start = time.perf_counter()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                emit("exception", exc, time.perf_counter() - start)
                raise
            emit("return", result, time.perf_counter() - start)
            return result

        wrapper = sync_wrapper

    setattr(wrapper, "__suptrace_original__", raw)  # noqa: B010 - a marker for tooling
    installed: Any = wrapper
    if isinstance(raw, staticmethod):
        installed = staticmethod(wrapper)
    elif isinstance(raw, classmethod):
        installed = classmethod(wrapper)
    setattr(owner, name, installed)

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
    for spec in specs:
        tracer._undo.append(patch_function(spec, tracer))
    return tracer
