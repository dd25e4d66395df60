"""`suptrace status`'s telemetry lines at 80 columns: a long last error wraps under
its own first line, never back to the left margin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rich.console import Console

from suptrace.cli import output
from suptrace.cli.render import print_telemetry


@pytest.fixture
def console() -> Iterator[Console]:
    saved = dict(output._consoles)
    console = Console(width=80, record=True, highlight=False, soft_wrap=False, no_color=True)
    output._consoles[False] = console
    try:
        yield console
    finally:
        output._consoles.clear()
        output._consoles.update(saved)


def test_a_long_last_error_wraps_under_itself(console: Console) -> None:
    error = (
        "StatusCode.UNAVAILABLE from http://collector.internal:4317 after 3 attempts: "
        "failed to connect to all addresses; last error: connection refused"
    )
    print_telemetry(
        {
            "traces": {
                "state": "backoff",
                "exporter": "otlp",
                "endpoint": "http://collector.internal:4317",
                "exported": 120,
                "dropped": 4,
                "last_error": error,
            }
        }
    )
    lines = console.export_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "last error:" in line)
    error_lines = lines[start:]
    assert len(error_lines) > 1  # it did wrap at 80 columns
    assert all(line.startswith(" " * 13) and line[13] != " " for line in error_lines)
    assert all(len(line) <= 80 for line in lines)
    assert " ".join(line.strip() for line in error_lines) == f"last error: {error}"


def test_the_heading_ends_where_the_other_keys_end_with_nothing_after_it(console: Console) -> None:
    print_telemetry({"logs": {"state": "ok", "exporter": "file", "exported": 3, "dropped": 0}})
    lines = console.export_text().splitlines()
    assert lines[0] == f"{'telemetry:':>16}"  # status's keys are right-aligned on 16 columns
    assert lines[1].startswith("    logs     ok ")
