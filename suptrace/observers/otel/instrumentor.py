"""Providers given to `SuptraceInstrumentor` and the instrumentor itself.

``SuptraceInstrumentor`` is registered as the ``opentelemetry_instrumentor``
entry point ``suptrace``: ``opentelemetry-instrument python app.py`` (or
``SuptraceInstrumentor().instrument(tracer_provider=...)``) makes every node
started afterwards use the instrumented (or global) providers. The class is
built on first access (`instrumentor_class`), so importing this module stays
free of OpenTelemetry imports.
"""

from __future__ import annotations

from typing import Any

__all__ = ["instrumented", "instrumentor_class"]

#: Providers given to `SuptraceInstrumentor.instrument` (None when not instrumented).
_instrumented: dict[str, Any] | None = None


def instrumented() -> dict[str, Any] | None:
    """The providers `SuptraceInstrumentor.instrument` was given, or None.

    >>> instrumented() is None
    True
    """
    return _instrumented


class _Instrumentor:
    """What `SuptraceInstrumentor` does, with or without opentelemetry-instrumentation."""

    def _instrument(self, **kwargs: Any) -> None:
        global _instrumented
        _instrumented = {
            key: kwargs.get(key) for key in ("tracer_provider", "meter_provider", "logger_provider")
        }

    def _uninstrument(self, **kwargs: Any) -> None:
        global _instrumented
        _instrumented = None

    def instrumentation_dependencies(self) -> tuple[str, ...]:
        return ()


def _make_instrumentor() -> type:
    try:
        from opentelemetry.instrumentation.instrumentor import (  # type: ignore[import-not-found,attr-defined,unused-ignore]
            BaseInstrumentor,
        )
    except ImportError:

        class SuptraceInstrumentor(_Instrumentor):
            """Make nodes started from now on use the given (else the global) providers.

            A minimal stand-in for ``BaseInstrumentor`` (opentelemetry-instrumentation
            is not installed): ``instrument(**kwargs)`` / ``uninstrument()``.
            """

            _is_instrumented_by_opentelemetry = False

            def __new__(cls, *args: Any, **kwargs: Any) -> Any:
                inst = getattr(cls, "_instance", None)
                if inst is None:
                    inst = super().__new__(cls)
                    cls._instance = inst
                return inst

            @property
            def is_instrumented_by_opentelemetry(self) -> bool:
                return self._is_instrumented_by_opentelemetry

            def instrument(self, **kwargs: Any) -> None:
                if self._is_instrumented_by_opentelemetry:
                    return
                self._instrument(**kwargs)
                type(self)._is_instrumented_by_opentelemetry = True

            def uninstrument(self, **kwargs: Any) -> None:
                if not self._is_instrumented_by_opentelemetry:
                    return
                self._uninstrument(**kwargs)
                type(self)._is_instrumented_by_opentelemetry = False

        return SuptraceInstrumentor

    class SuptraceInstrumentor(_Instrumentor, BaseInstrumentor):  # type: ignore[misc,no-redef,unused-ignore]
        """Make nodes started from now on use the given (else the global) providers."""

    return SuptraceInstrumentor


_instrumentor_class: type | None = None


def instrumentor_class() -> type:
    """``SuptraceInstrumentor``, built on first use."""
    global _instrumentor_class
    if _instrumentor_class is None:
        cls = _make_instrumentor()
        cls.__qualname__ = cls.__name__ = "SuptraceInstrumentor"
        cls.__module__ = "suptrace.observers.otel"
        _instrumentor_class = cls
    return _instrumentor_class
