"""Drawing a telemetry file in the terminal with rich: a run title per run, the
process forest (failures in red), the message traces (failing ones first), a
metrics table and the warning and error reports.
"""

from __future__ import annotations

from typing import Any

from suptrace.cli.view.file import Dump, SpanRec
from suptrace.cli.view.model import (
    index,
    label,
    message_traces,
    process_forest,
    sender,
    split_runs,
    summarize_run,
    tree_failed,
)

__all__ = ["render"]


def _fmt_duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f}s"
    if seconds >= 0.001:
        return f"{seconds * 1000:.1f}ms"
    return f"{seconds * 1e6:.0f}µs"


def _span_text(s: SpanRec, by_id: dict[str, SpanRec]) -> Any:
    from rich.text import Text

    a = s.attributes
    style = "bold red" if s.failed else ""
    text = Text()
    dest = str(a.get("messaging.destination.name") or s.name)
    msg = a.get("suptrace.message")
    if s.kind == "CLIENT":
        caller = a.get("suptrace.caller.name") or "(outside any process)"
        text.append(f"{caller} → {dest}", style=style or "cyan")
        text.append(" call", style=style)
    elif s.kind == "SERVER":
        text.append(f"{dest}", style=style or "green")
        text.append(" handles the call", style=style)
    elif s.kind == "CONSUMER":
        who = sender(s, by_id) or "?"
        op = str(a.get("messaging.operation.name", "")).removeprefix("handle_") or "message"
        text.append(f"{who} → {dest}", style=style or "magenta")
        text.append(f" {op}", style=style)
    elif s.kind == "INTERNAL" and s.name.startswith("init "):
        text.append(s.name.removeprefix("init "), style=style or "green")
        text.append(" starts (init)", style=style)
    else:
        text.append(s.name, style=style)
    if msg is not None:
        text.append(f" {msg}", style="dim" if not s.failed else style)
    text.append(f"  {_fmt_duration(s.duration)}", style="dim")
    if s.failed:
        text.append(f"  ✗ {s.status_message or 'error'}", style="bold red")
    return text


def _event_text(name: str, attrs: dict[str, Any]) -> Any:
    from rich.text import Text

    failure = name in ("intensity", "not_restarted", "start_error", "shutdown_error", "exception")
    style = "red" if failure else ("yellow" if name in ("restart", "child_terminated") else "dim")
    text = Text(f"• {name}", style=style)
    detail = []
    if "suptrace.child.id" in attrs:
        detail.append(f"child {attrs['suptrace.child.id']}")
    if name == "exception":
        detail.append(f"{attrs.get('exception.type', '')}: {attrs.get('exception.message', '')}")
    elif "suptrace.exit.reason" in attrs and name != "exit":
        detail.append(f"reason {attrs['suptrace.exit.reason']}")
    if name == "intensity":
        detail.append(
            f"{attrs.get('suptrace.restarts')} restarts > intensity {attrs.get('suptrace.intensity')} "
            f"in {attrs.get('suptrace.period')}s"
        )
    if name == "restart" and "suptrace.new.pid" in attrs:
        detail.append(f"now {attrs['suptrace.new.pid']}")
    if name == "not_restarted" and attrs.get("suptrace.rule"):
        detail.append(str(attrs["suptrace.rule"]))
    if detail:
        text.append(": " + "; ".join(detail), style=style)
    return text


def _process_text(s: SpanRec) -> Any:
    from rich.text import Text

    a = s.attributes
    style = "bold red" if s.failed else "bold"
    text = Text(label(s), style=style)
    if a.get("suptrace.process.pid"):
        text.append(f" {a['suptrace.process.pid']}", style="dim")
    reason = a.get("suptrace.exit.reason")
    if reason is not None:
        text.append("  exited ", style="dim" if not s.failed else "red")
        text.append(str(reason), style="red" if s.failed else "green")
    elif any(name == "node_stopped" for name, _t, _a in s.events):
        text.append("  alive at node stop", style="dim")
    text.append(f"  {_fmt_duration(s.duration)}", style="dim")
    return text


def _add_process(tree: Any, s: SpanRec) -> None:
    node = tree.add(_process_text(s))
    for name, _ts, attrs in s.events:
        if name in ("exit", "node_stopped"):
            continue
        node.add(_event_text(name, attrs))
    for c in s.children:
        _add_process(node, c)


def _add_span(tree: Any, s: SpanRec, by_id: dict[str, SpanRec]) -> None:
    node = tree.add(_span_text(s, by_id))
    for name, _ts, attrs in s.events:
        if name == "exception" or name in (
            "restart",
            "intensity",
            "not_restarted",
            "start_error",
            "child_terminated",
            "shutdown_error",
        ):
            node.add(_event_text(name, attrs))
    for c in s.children:
        _add_span(node, c, by_id)


def render(dump: Dump, limit: int, console: Any) -> None:
    """Every run of the file, oldest first, each under a line that says which run."""
    runs = split_runs(dump)
    if dump.bad_lines:
        console.print(f"{dump.path}: {dump.bad_lines} unreadable lines skipped")
    if len(runs) > 1:
        console.print(
            f"[bold]{dump.path}[/] holds {len(runs)} runs (a node started again appends); "
            "each is shown on its own, oldest first"
        )
    for i, run in enumerate(runs, 1):
        if len(runs) > 1:
            console.rule(f"[bold]run {i} of {len(runs)}[/]: {_run_title(run)}", align="left")
        _render_run(run, limit, console)


def _run_title(run: Dump) -> str:
    info = run.run_info
    text = f"node {info.get('node', '?')}"
    if info.get("pid") is not None:
        text += f", pid {info['pid']}"
    started = info.get("started")
    if started is not None:
        import time

        text += ", started " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(started)))
    return text


def _render_run(dump: Dump, limit: int, console: Any) -> None:
    from rich.table import Table
    from rich.tree import Tree

    summary = summarize_run(dump)
    summary["nodes"] = sorted(dump.nodes)
    by_id = index(dump)
    forest = process_forest(dump, by_id)
    traces = message_traces(dump, by_id)
    errors = len(summary["errors"])
    console.print(
        f"[bold]{dump.path}[/]: {len(dump.spans)} spans in {summary['traces']} traces, "
        f"{len(dump.metrics)} metrics, {len(dump.logs)} log records; nodes: "
        f"{', '.join(summary['nodes']) or '-'}"
        + (f"; [red]{errors} failed spans[/]" if errors else "")
    )
    if forest:
        tree = Tree("[bold]Processes[/] (lifetimes, under their parents)")
        for root in forest:
            _add_process(tree, root)
        console.print(tree)
    if traces:
        failing = [t for t in traces if any(tree_failed(r) for r in t)]
        rest = [t for t in traces if t not in failing]
        shown = failing[:limit] + rest[-max(0, limit - len(failing[:limit])) :] if limit else []
        shown.sort(key=lambda roots: roots[0].start)
        title = f"[bold]Messages[/] ({len(traces)} traces"
        if len(shown) < len(traces):
            title += f", showing {len(shown)}: failures first, then the latest; --limit to see more"
        title += ")"
        tree = Tree(title)
        for roots in shown:
            for root in roots:
                _add_span(tree, root, by_id)
        console.print(tree)
    if dump.metrics:
        table = Table(title="Metrics", title_justify="left", show_lines=False)
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_column("detail")
        for name, m in summary["metrics"].items():
            if m["type"] in ("sum", "gauge"):
                value = _num(m["total"])
                top = sorted(m["points"], key=lambda p: -abs(p["value"]))[:4]
                detail = ", ".join(
                    f"{_attrs_text(p['attributes'])}={_num(p['value'])}"
                    for p in top
                    if p["attributes"]
                )
            else:
                value = f"{m['count']} obs"
                mean = m["sum"] / m["count"] if m["count"] else 0.0
                detail = f"mean {_fmt_duration(mean) if m['unit'] == 's' else _num(mean)}"
                if m["p50"] is not None:
                    fmt = _fmt_duration if m["unit"] == "s" else _num
                    detail += f", p50 ≤ {fmt(m['p50'])}, p99 ≤ {fmt(m['p99'])}"
            style = "red" if _alarming(name, m) else None
            table.add_row(name, value, detail, style=style)
        console.print(table)
    if dump.logs:
        sev = summary["logs"]["by_severity"]
        console.print(
            "[bold]Reports[/] (log records): "
            + ", ".join(f"{k} {v}" for k, v in sorted(sev.items()))
        )
        for r in dump.logs:
            if r["severity_number"] >= 13 or str(r["severity"]).upper() in (
                "WARN",
                "WARNING",
                "ERROR",
            ):
                first = r["body"].splitlines()[0] if r["body"] else ""
                detail = r["attributes"].get("suptrace.context") or r["attributes"].get(
                    "suptrace.process.name", ""
                )
                reason = r["attributes"].get("suptrace.exit.reason", "")
                console.print(f"  [red]{first}[/] {detail} {reason}".rstrip())


def _alarming(name: str, m: dict[str, Any]) -> bool:
    if name in (
        "suptrace.supervisor.intensity_breaches",
        "suptrace.call.timeouts",
        "suptrace.process.restarts",
    ):
        return bool(m.get("total"))
    return False


def _num(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return str(int(value)) if isinstance(value, float) else str(value)


def _attrs_text(attrs: dict[str, Any]) -> str:
    return ",".join(str(v) for v in attrs.values())
