"""Telemetry settings: every decision about a node's telemetry, taken once, at node start.

`decide` turns the node's ``telemetry=`` and ``traces=`` options and the
environment into a `Decision`: where the data goes (the export mode, see
`suptrace.observers.otel.setup`), which spans are kept (the trace mode:
``"failures"``, ``"all"`` or ``"off"``, see `suptrace.observers.otel.bridge`)
and the share of healthy traces sampled in ``"failures"`` mode. The rest of
the package receives the decision and reads no setting again.

This module reads the standard ``OTEL_*`` variables that choose exporters and
protocols, and suptrace's own (``SUPTRACE_TELEMETRY``, ``SUPTRACE_TRACES``,
``SUPTRACE_TRACES_SAMPLE``, ``SUPTRACE_OTLP_FILE``, ``SUPTRACE_OTEL_GLOBAL``);
a bad value is an error naming the variable. It imports nothing from
OpenTelemetry.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Decision",
    "decide",
    "MODES",
    "TRACE_MODES",
    "DEFAULT_SAMPLE",
    "SIGNALS",
    "check_option",
    "check_traces",
    "console_asked",
    "default_file",
    "export_mode",
    "env",
    "exporter_wanted",
    "globals_wanted",
    "protocol",
    "sample_setting",
    "telemetry_override",
    "traces_setting",
]

#: The values ``telemetry=`` accepts as words (anything else is a path, a bool or None).
MODES = ("auto", "off", "file", "otlp", "global")

_TRUE = {"1", "true", "yes", "on"}


def env(name: str) -> str:
    """An environment variable, stripped (empty when unset)."""
    return os.environ.get(name, "").strip()


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "node"


def default_file(node_name: str) -> Path:
    """Where the embedded default writes: ``$SUPTRACE_OTLP_FILE`` or ``./suptrace-<node>.otlp.jsonl``."""
    explicit = env("SUPTRACE_OTLP_FILE")
    if explicit:
        return Path(explicit)
    return Path.cwd() / f"suptrace-{_sanitize(node_name)}.otlp.jsonl"



#: The three signals, each with its own exporter, queue and health.
SIGNALS = ("traces", "metrics", "logs")
#: The values ``traces=`` and ``SUPTRACE_TRACES`` accept.
TRACE_MODES = ("failures", "all", "off")
#: The default share of healthy traces exported in ``"failures"`` mode.
DEFAULT_SAMPLE = 0.01


@dataclass(frozen=True)
class Decision:
    """What a node's telemetry does, decided once (see `decide`).

    ``export`` is where the data goes: ``"off"``, ``"file"``, ``"otlp"``,
    ``"console"``, ``"global"``, ``"explicit"`` or ``"instrumented"``;
    ``traces`` the trace mode; ``sample`` the share of healthy traces exported
    in ``"failures"`` mode.

    >>> Decision("file", "all")
    Decision(export='file', traces='all', sample=0.01)
    """

    export: str
    traces: str = "off"
    sample: float = DEFAULT_SAMPLE


def decide(
    telemetry: Any = None,
    traces: Any = None,
    *,
    explicit: bool = False,
    defaults: dict[str, Any] | None = None,
) -> Decision:
    """The export mode, then the trace mode that follows from it, then the sample.

    ``explicit``: the node was given providers; ``defaults``: the providers
    `SuptraceInstrumentor` was given. Nothing about traces is read when
    telemetry is off.

    >>> decide("off")
    Decision(export='off', traces='off', sample=0.01)
    >>> decide("file", "failures").traces
    'failures'
    """
    export = export_mode(telemetry, explicit, defaults)
    if export == "off":
        return Decision("off")
    destination = export
    if export == "otlp" and exporter_wanted("traces") == ["console"]:
        destination = "console"  # spans printed here, not shipped: every one of them
    mode = traces_setting(traces, destination)
    # Checked in every mode: a bad value set for later fails now, not on the day the
    # mode changes to "failures".
    sample = sample_setting()
    return Decision(export, mode, sample if mode == "failures" else DEFAULT_SAMPLE)


def check_option(telemetry: Any) -> None:
    """A bad ``telemetry=`` fails at ``Node(...)``, before anything starts."""
    if telemetry is None or isinstance(telemetry, (bool, os.PathLike)):
        return
    if isinstance(telemetry, str) and (
        telemetry.strip().lower() in MODES
        or telemetry.endswith(".jsonl")
        or "/" in telemetry
        or os.sep in telemetry
    ):
        return
    raise ValueError(
        f"telemetry must be None, 'auto', 'off', 'file', 'otlp', 'global', False or a file "
        f"path ending in .jsonl, got {telemetry!r}"
    )


def check_traces(traces: Any) -> None:
    """A bad ``traces=`` fails at ``Node(...)``; ``SUPTRACE_TRACES`` is checked at start."""
    if traces is not None and not (
        isinstance(traces, str) and traces.strip().lower() in TRACE_MODES
    ):
        raise ValueError(f"traces must be 'failures', 'all' or 'off', got {traces!r}")


def traces_setting(value: Any = None, export: str = "") -> str:
    """The trace mode: the ``traces=`` keyword, else ``SUPTRACE_TRACES``, else the default.

    The default is ``"all"`` where spans stay local -- the embedded file
    (``export="file"``), the console (``"console"``) -- and for providers the
    application passed (``"explicit"``); ``"failures"`` where they are shipped (OTLP,
    the application's global providers, ``opentelemetry-instrument``).

    >>> traces_setting("failures"), traces_setting(None, "file"), traces_setting(None, "console")
    ('failures', 'all', 'all')
    >>> traces_setting("some")
    Traceback (most recent call last):
      ...
    ValueError: traces must be 'failures', 'all' or 'off', got 'some'
    """
    if value is not None:
        if isinstance(value, str) and value.strip().lower() in TRACE_MODES:
            return value.strip().lower()
        raise ValueError(f"traces must be 'failures', 'all' or 'off', got {value!r}")
    env = os.environ.get("SUPTRACE_TRACES", "").strip()
    if env:
        if env.lower() in TRACE_MODES:
            return env.lower()
        raise ValueError(
            f"SUPTRACE_TRACES must be 'failures', 'all' or 'off', got {env!r}; fix or unset "
            f"the variable"
        )
    return "all" if export in ("file", "console", "explicit") else "failures"


def sample_setting() -> float:
    """``SUPTRACE_TRACES_SAMPLE``: the share of healthy traces exported in "failures" mode.

    >>> sample_setting()
    0.01
    """
    raw = os.environ.get("SUPTRACE_TRACES_SAMPLE", "").strip()
    if not raw:
        return DEFAULT_SAMPLE
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:  # also rejects nan
        raise ValueError(
            f"SUPTRACE_TRACES_SAMPLE must be a number between 0 and 1 (the share of healthy "
            f"traces exported), got {raw!r}; fix or unset the variable"
        )
    return ratio



def export_mode(telemetry: Any, explicit: bool, defaults: dict[str, Any] | None) -> str:
    if telemetry is False:
        return "off"
    if telemetry is True:
        telemetry = "auto"
    if isinstance(telemetry, os.PathLike):
        return "file"
    if telemetry is None:
        telemetry = "auto"
    if not isinstance(telemetry, str):
        raise ValueError(
            f"telemetry must be None, 'auto', 'off', 'file', 'otlp', 'global', False or a file "
            f"path, got {telemetry!r}"
        )
    word = telemetry.strip().lower()
    if word not in MODES:
        if word.endswith(".jsonl") or os.sep in telemetry or "/" in telemetry:
            return "file"
        raise ValueError(
            f"telemetry must be None, 'auto', 'off', 'file', 'otlp', 'global', False or a file "
            f"path ending in .jsonl, got {telemetry!r}"
        )
    if word != "auto":
        return word
    if explicit:
        return "explicit"
    override = telemetry_override()
    if override == "off":
        return "off"
    if override in _OVERRIDE_TO:
        return override
    if env("OTEL_SDK_DISABLED").lower() in _TRUE:
        return "off"
    if defaults is not None:
        return "instrumented"
    from suptrace.observers.otel.globals import global_set

    if global_set():
        return "global"
    if any(env(key) for key in _ENDPOINT_VARIABLES):
        return "otlp"
    if console_asked():
        return "console"
    return "file"


#: What ``SUPTRACE_TELEMETRY`` may say: turn telemetry off, or choose where it goes.
_OVERRIDE_OFF = ("off", "false", "0", "none")
_OVERRIDE_TO = ("file", "otlp", "global")


def telemetry_override() -> str:
    """``SUPTRACE_TELEMETRY``, lower-cased: ``""`` / ``"auto"`` (choose), ``"off"``,
    ``"file"``, ``"otlp"`` or ``"global"``; any other value is an error naming it.

    >>> telemetry_override()
    ''
    """
    raw = env("SUPTRACE_TELEMETRY")
    word = raw.lower()
    if word in _OVERRIDE_OFF:
        return "off"
    if word in ("", "auto") or word in _OVERRIDE_TO:
        return word
    raise ValueError(
        f"SUPTRACE_TELEMETRY must be off, file, otlp, global or auto, got {raw!r}; fix or "
        f"unset the variable"
    )


def console_asked() -> bool:
    """Does an ``OTEL_<SIGNAL>_EXPORTER`` ask for the console exporter?"""
    return any("console" in env(f"OTEL_{s.upper()}_EXPORTER").lower() for s in SIGNALS)


#: Any of these in the environment asks for OTLP export.
_ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
)


def globals_wanted() -> bool:
    """``SUPTRACE_OTEL_GLOBAL`` (default true): may suptrace's providers become global?"""
    word = env("SUPTRACE_OTEL_GLOBAL").lower()
    if not word or word in _TRUE:
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(
        f"SUPTRACE_OTEL_GLOBAL={word!r} is neither true nor false: set it to false to keep "
        "suptrace's OpenTelemetry providers private to the node, or unset it"
    )



def protocol(signal: str) -> str:
    proto = (
        env(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or env("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).lower()
    if proto == "grpc":
        return "grpc"
    if proto != "http/protobuf":
        from loguru import logger

        logger.warning(
            "suptrace telemetry: OTLP protocol {!r} is not supported by the Python exporters; "
            "using http/protobuf",
            proto,
        )
    return "http/protobuf"


_EXPORTERS = {
    "traces": ("otlp", "console", "none"),
    "metrics": ("otlp", "console", "none", "prometheus"),
    "logs": ("otlp", "console", "none"),
}


def exporter_wanted(signal: str, default: str = "otlp") -> list[str]:
    """``OTEL_<SIGNAL>_EXPORTER`` as a list of exporter names ([] for ``none``)."""
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    raw = env(variable).lower()
    words = [w.strip() for w in raw.split(",") if w.strip()] or [default]
    known = _EXPORTERS[signal]
    for word in words:
        if word not in known:
            raise ValueError(
                f"{variable}={raw!r}: suptrace does not know the exporter {word!r}; use "
                f"{', '.join(known[:-1])} or {known[-1]} (or unset {variable} for otlp)"
            )
    if "none" in words:
        return []
    exporters = [w for w in words if w != "prometheus"]
    if len(exporters) > 1:
        raise ValueError(
            f"{variable}={raw!r}: suptrace exports each signal through one exporter; "
            f"choose one of {', '.join(exporters)}"
        )
    return words


