"""How the commands show what a node answered (rich text; plain when piped)."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from typing import Any

from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from suptrace.cli.output import ago, event_text, out, when

__all__ = [
    "nodes_table",
    "ps_table",
    "tasks_table",
    "print_task_info",
    "print_tree",
    "print_info",
    "print_tombstone",
    "print_report",
    "report_filter",
    "print_findings",
    "print_status",
    "window_text",
    "restarts_text",
]


def nodes_table(nodes: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("NODE", "NAME", "PID", "UP", "LISTENS", "WRITE"):
        table.add_column(col)
    for n in nodes:
        listens = "unix" + (f" + tcp {n['tcp']}" if n.get("tcp") else "")
        if n.get("tls"):
            listens += " (tls)"
        table.add_row(
            Text(n["id"], style="bold"),
            n["node"],
            str(n["pid"]),
            ago(n["uptime"]),
            listens,
            "yes" if n.get("allow_write") else "no",
        )
    return table


def _mq_text(n: int) -> Text:
    style = "bold red" if n >= 1000 else "yellow" if n >= 10 else ""
    return Text(str(n), style=style)


def restarts_text(item: dict[str, Any]) -> Text:
    """Restarts of a child by its supervisor, like ``66 (5 in window)``; empty when none."""
    total = int(item.get("restarts") or 0)
    window = int(item.get("restarts_window") or 0)
    if not total:
        return Text("")
    text = Text(str(total), style="bold red" if window >= 3 else "yellow")
    if window:
        text.append(f" ({window} now)", style="red" if window >= 3 else "yellow")
    return text


def ps_table(procs: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col, justify in (
        ("PID", "left"),
        ("NAME", "left"),
        ("STATUS", "left"),
        ("MQ", "right"),
        ("IN", "right"),
        ("OUT", "right"),
        ("RESTARTS", "right"),
        ("RUNS", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for p in procs:
        runs = p.get("behaviour") or ""
        runs = f"{runs} {p['initial_call']}" if runs else p["initial_call"]
        status = p["status"] + (" (traced)" if p.get("traced") else "")
        table.add_row(
            Text(p["pid"], style="dim"),
            Text(p.get("name") or "", style="cyan"),
            status,
            _mq_text(int(p["message_queue_len"])),
            str(p["messages_in"]),
            str(p["messages_out"]),
            restarts_text(p),
            runs,
        )
    return table


def _frame_short(frame: str) -> str:
    """``/long/path/app.py:12 in poll`` as ``app.py:12 in poll``."""
    path, sep, rest = frame.partition(":")
    return path.rsplit("/", 1)[-1] + sep + rest


def _awaits_at(frames: list[str]) -> str:
    """The innermost frame of the task's own code, and what library call it sits in:
    ``app.py:12 in poll → Event.wait``."""
    if not frames:
        return ""
    own = [i for i, f in enumerate(frames) if "/asyncio/" not in f.partition(":")[0]]
    i = own[-1] if own else len(frames) - 1
    text = _frame_short(frames[i])
    if i < len(frames) - 1:
        text += " → " + frames[-1].rpartition(" in ")[2]
    return text


def tasks_table(tasks: list[dict[str, Any]]) -> Table:
    """The loop's plain asyncio tasks (``ps --all``): where each awaits, the task or gather
    it awaits (→) and the tasks that await it (←)."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("TASK")
    table.add_column("COROUTINE")
    table.add_column("STATE")
    table.add_column("AWAITS AT", min_width=20)
    table.add_column("→ ON / ← BY")
    for t in tasks:
        frames = t.get("awaiting_at") or []
        own = bool(t.get("suptrace"))
        links = []
        awaiting = t.get("awaiting")
        if awaiting and awaiting not in ("a future", "a finished future"):
            links.append(f"→ {awaiting}")
        links.extend(f"← {who}" for who in t.get("awaited_by") or [])
        table.add_row(
            Text(t["task"], style="dim" if own else "cyan"),
            Text(t["coroutine"] + (" (suptrace)" if own else ""), style="dim" if own else ""),
            t["state"],
            Text(_awaits_at(frames), style="dim"),
            "\n".join(links),
        )
    return table


def print_task_info(info: dict[str, Any]) -> None:
    """``inspect`` of a plain asyncio task."""
    console = out()
    console.print(Text(f"task {info['task']} (a plain asyncio task, not a process)", style="bold"))
    console.print(_pair("id", info["id"]))
    console.print(_pair("coroutine", info["coroutine"] + (" (suptrace)" if info.get("suptrace") else "")))
    console.print(_pair("state", info["state"]))
    if info.get("awaiting"):
        console.print(_pair("awaiting", info["awaiting"]))
    if info.get("awaited_by"):
        console.print(_pair("awaited by", ", ".join(info["awaited_by"])))
    console.print(Text("awaiting at (innermost last):", style="bold"))
    stack = info.get("awaiting_at") or []
    if not stack:
        console.print(Text("  (not suspended: it has not started or is running now)", style="dim"))
    for frame in stack:
        console.print(Text(f"  {frame}", style="dim"))
    created = info.get("created_at") or []
    if created:
        console.print(Text("created at (innermost last):", style="bold"))
        for frame in created:
            console.print(Text(f"  {frame}", style="dim"))
    else:
        console.print(
            _pair("created at", "not recorded (asyncio debug mode records it: PYTHONASYNCIODEBUG=1)")
        )


# -- tree -----------------------------------------------------------------------------------


def window_text(desc: dict[str, Any]) -> Text:
    """Restart intensity used in the window, like ``2/3 in 5s``."""
    used = desc.get("restarts_in_window")
    intensity = desc.get("intensity")
    if not isinstance(intensity, int):
        return Text("")
    used_n = used if isinstance(used, int) else 0
    style = "bold red" if used_n >= intensity > 0 else "yellow" if used_n else "green"
    return Text(f"{used_n}/{intensity} in {desc.get('period')}s", style=style)


def _sup_label(desc: dict[str, Any], child: dict[str, Any] | None) -> Text:
    label = Text()
    name = desc.get("name")
    child_id = (child or {}).get("id_text")
    if child_id is not None and child_id != name:
        # As for a worker: the child id first (what terminate-child and the reports
        # name), then the registered name.
        label.append(str(child_id), style="bold")
        if name:
            label.append(f" {name}", style="cyan")
    else:
        label.append(str(name or desc.get("pid")), style="bold")
    label.append(f" {desc.get('pid')}", style="dim")
    if desc.get("status") != "ok":
        label.append(f"  {desc.get('status')} (no answer to describe)", style="yellow")
        return label
    kind = "dynamic " if desc.get("kind") == "dynamic_supervisor" else ""
    label.append(f"  {kind}{desc.get('strategy')} ")
    label.append_text(window_text(desc))
    if child is not None:
        label.append(f"  supervisor {child.get('restart')}")
        if child.get("significant"):
            label.append(" significant", style="magenta")
        label.append_text(_restarted(child, "by its parent"))
    auto = desc.get("auto_shutdown")
    if auto and auto != "never":
        label.append(f"  auto_shutdown={auto}", style="magenta")
    return label


def _child_label(child: dict[str, Any]) -> Text:
    label = Text()
    dead = child.get("pid") is None
    label.append(str(child.get("id_text")), style="bold red" if dead else "bold")
    name = child.get("name")
    if name and name != child.get("id_text"):
        label.append(f" {name}", style="cyan")
    pid = child.get("pid")
    if pid == "restarting":
        label.append(" restarting", style="yellow")
    elif pid is None:
        label.append(" not running", style="red")
    else:
        label.append(f" {pid}", style="dim")
    label.append(f"  {child.get('type')} {child.get('restart')}", style="red" if dead else "")
    if child.get("significant"):
        label.append(" significant", style="magenta")
    label.append_text(_restarted(child))
    mq = int(child.get("message_queue_len") or 0)
    if mq:
        label.append("  mq ")
        label.append_text(_mq_text(mq))
    return label


def _restarted(child: dict[str, Any], by: str = "") -> Text:
    """``  restarted 66 times (5 in the window)`` for a child that was restarted."""
    total = int(child.get("restarts") or 0)
    if not total:
        return Text("")
    window = int(child.get("restarts_window") or 0)
    style = "bold red" if window >= 3 else "yellow"
    text = Text(f"  restarted {total} time{'s' if total != 1 else ''}", style=style)
    if by:
        text.append(f" {by}", style=style)
    if window:
        text.append(f" ({window} in the window)", style=style)
    return text


def _add_children(branch: Tree, desc: dict[str, Any], show_start: bool = False) -> None:
    for child in desc.get("children", []):
        sub = child.get("tree")
        if isinstance(sub, dict):
            node = branch.add(_sup_label(sub, child))
            _add_children(node, sub, show_start)
            continue
        node = branch.add(_child_label(child))
        if show_start and child.get("start"):
            node.add(Text(f"runs {child['start']}", style="dim"))
        gone = child.get("not_restarted")
        if isinstance(gone, dict):
            text = Text("gone for good: ", style="bold red")
            text.append(f"exited {gone.get('reason')}", style="red")
            if gone.get("cause"):
                text.append(f" {gone['cause']}", style="red")
            node.add(text)
            if gone.get("rule"):
                node.add(Text(f"not restarted: {gone['rule']}", style="red"))
            node.add(Text("everything that ran under it is gone too", style="red"))


def print_tree(data: dict[str, Any]) -> None:
    console = out()
    roots = data.get("roots", [])
    if not roots:
        console.print(Text(f"node {data.get('node')} runs no supervisor", style="dim"))
    for root in roots:
        tree = Tree(_sup_label(root, None), guide_style="dim")
        _add_children(tree, root)
        console.print(tree)
    loose = data.get("unsupervised") or []
    if loose:
        console.print(
            Text(
                f"outside any supervisor ({data.get('unsupervised_total', len(loose))}):",
                style="bold",
            )
        )
        for p in loose:
            line = Text(f"  {p['pid']}", style="dim")
            if p.get("name"):
                line.append(f" {p['name']}", style="cyan")
            line.append(f" {p['status']} {p['initial_call']}")
            if p.get("message_queue_len"):
                line.append("  mq ")
                line.append_text(_mq_text(int(p["message_queue_len"])))
            console.print(line)
    vanished = data.get("vanished") or []
    if vanished:
        console.print(Text("vanished names:", style="bold red"))
        for stone in vanished:
            console.print(Padding(Text(stone["story"], style="red"), (0, 0, 0, 2), expand=False))


# -- one process ----------------------------------------------------------------------------


def _indented(text: Text, by: int = 2) -> Padding:
    """``text`` indented; the lines it wraps onto keep the indent."""
    return Padding(text, (0, 0, 0, by), expand=False)


def _pair(key: str, value: Any, style: str = "") -> Table:
    """``key: value``, keys right-aligned; a long value wraps under itself."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=16, justify="right", no_wrap=True)
    grid.add_column()
    grid.add_row(Text(f"{key}:", style="bold"), Text(str(value), style=style))
    return grid


def print_info(info: dict[str, Any]) -> None:
    console = out()
    title = Text(info.get("registered_name") or info["pid"], style="bold cyan")
    title.append(f" {info['pid']}", style="dim")
    console.print(title)
    console.print(_pair("status", info["status"]))
    console.print(_pair("runs", f"{info.get('behaviour') or ''} {info['initial_call']}".strip()))
    mq = int(info["message_queue_len"])
    console.print(_pair("mailbox", f"{mq} message{'s' if mq != 1 else ''}", "yellow" if mq else ""))
    console.print(_pair("messages", f"in {info['messages_in']}, out {info['messages_out']}"))
    console.print(_pair("trap_exit", info["trap_exit"]))
    console.print(
        _pair(
            "started", f"{when(info['started_at'])} ({ago(time.time() - info['started_at'])} ago)"
        )
    )
    console.print(_pair("parent", info.get("parent") or "-"))
    if info.get("restarted_by") is not None:
        total = int(info.get("restarts") or 0)
        window = int(info.get("restarts_window") or 0)
        text = (
            f"restarted {total} time{'s' if total != 1 else ''} by its parent "
            f"{info['restarted_by']}, {window} in the last {info.get('restart_period')}s"
            if total
            else f"never restarted by its parent {info['restarted_by']}"
        )
        console.print(_pair("restarts", text, "red" if window >= 3 else "yellow" if total else ""))
    console.print(_pair("ancestors", ", ".join(info.get("ancestors") or []) or "-"))
    console.print(_pair("links", ", ".join(info.get("links") or []) or "-"))
    console.print(_pair("monitors", ", ".join(info.get("monitors") or []) or "-"))
    console.print(_pair("monitored_by", ", ".join(info.get("monitored_by") or []) or "-"))
    if info.get("traced"):
        console.print(_pair("traced", "yes (an attach session is on it)", "magenta"))
    if "state" in info:
        console.print(Text("state:", style="bold"))
        console.print(_indented(Text(str(info["state"]))))
    elif "state_error" in info:
        console.print(_pair("state", info["state_error"], "yellow"))
    stats = info.get("statistics")
    if isinstance(stats, dict):
        console.print(
            _pair(
                "handled",
                f"{stats.get('calls', 0)} calls, {stats.get('casts', 0)} casts, "
                f"{stats.get('infos', 0)} infos",
            )
        )
    sup = info.get("supervisor")
    if isinstance(sup, dict):
        console.print(Text("supervisor:", style="bold"))
        tree = Tree(_sup_label(sup, None), guide_style="dim")
        _add_children(tree, sup, show_start=True)
        console.print(tree)
    stack = info.get("current_stacktrace") or []
    console.print(Text("awaiting at (innermost last):", style="bold"))
    if not stack:
        console.print(Text("  (not suspended: it has not started or is running now)", style="dim"))
    for frame in stack:
        console.print(_indented(Text(str(frame), style="dim")))
    events = info.get("last_events") or []
    console.print(Text(f"last events ({len(events)}):", style="bold"))
    for event in events:
        console.print(_indented(event_text(event)))


def print_tombstone(stone: dict[str, Any]) -> None:
    console = out()
    console.print(Text(stone["story"], style="bold red"))
    console.print(_pair("pid", stone["pid"]))
    console.print(_pair("reason", stone["reason"], "red"))
    console.print(_pair("died", f"{when(stone['ts'])} ({ago(time.time() - stone['ts'])} ago)"))
    console.print(_pair("ran", stone["initial_call"]))
    events = stone.get("last_events") or []
    if events:
        console.print(Text(f"last events ({len(events)}):", style="bold"))
        for event in events:
            console.print(_indented(event_text(event)))


# -- reports, doctor, status ----------------------------------------------------------------

_REPORT_STYLE = {
    "crash": "bold red",
    "not_restarted": "bold yellow",
    "progress": "dim",
}


def print_report(report: dict[str, Any], form: str = "short") -> None:
    """One report: ``short`` (crash reports in about ten lines), ``full`` or ``line``."""
    style = _REPORT_STYLE.get(str(report.get("kind")), "bold red")
    console = out()
    if form == "line":
        line = report.get("line") or str(report.get("text", "")).partition("\n")[0]
        console.print(Text(str(line), style=style if report.get("kind") != "progress" else "dim"))
        return
    text = str(report.get("brief" if form == "short" else "text") or report.get("text", ""))
    head, _, rest = text.partition("\n")
    console.print(Text(head, style=style))
    if rest:
        console.print(Text(rest, style="dim" if report.get("kind") == "progress" else ""))
    console.print()


def report_filter(
    name: str | None, after: float | None
) -> Callable[[dict[str, Any]], bool] | None:
    """A test for reports (as JSON) about ``name`` (wildcards allowed) and not older
    than ``after``; None when there is nothing to filter.

    >>> about = report_filter("importer.*", None)
    >>> about({"kind": "crash", "name": "importer.survey", "pid": "<0.4.0>", "ts": 0})
    True
    >>> about({"kind": "child_terminated", "supervisor": "app.sup", "offender": {"id": "db"}})
    False
    """
    if name is None and after is None:
        return None

    def wanted(report: dict[str, Any]) -> bool:
        if after is not None and float(report.get("ts") or 0) < after:
            return False
        if name is None:
            return True
        subjects = [report.get(k) for k in ("name", "pid", "supervisor", "task")]
        for key in ("offender", "started"):
            off = report.get(key)
            if isinstance(off, dict):
                subjects.extend((off.get("id"), off.get("pid")))
        return any(
            s is not None and fnmatch.fnmatchcase(str(s), name) for s in subjects
        )

    return wanted


_SEVERITY = {"error": ("bold red", "✗"), "warning": ("yellow", "!")}


def print_findings(findings: list[dict[str, Any]], checked: str) -> None:
    console = out()
    for f in findings:
        style, mark = _SEVERITY.get(f["severity"], ("", "-"))
        head = Text(f"{mark} {f['severity']} ", style=style)
        head.append(f"[{f['rule']}] ", style="bold")
        head.append(f["subject"], style="cyan")
        console.print(head)
        # Padding keeps the indent on the lines the terminal's width wraps.
        hint = Text(f"what to do: {f['hint']}", style="dim")
        console.print(Padding(Text(str(f["message"])), (0, 0, 0, 4), expand=False))
        console.print(Padding(hint, (0, 0, 0, 4), expand=False))
    errors = sum(1 for f in findings if f["severity"] == "error")
    warnings = len(findings) - errors
    if findings:
        summary = Text(
            f"{errors} error(s), {warnings} warning(s)", style="bold red" if errors else "yellow"
        )
    else:
        summary = Text("no hazards found", style="bold green")
    summary.append(f" ({checked})", style="dim")
    console.print(summary)


def print_status(status: dict[str, Any]) -> None:
    console = out()
    console.print(Text(f"node {status['node']}", style="bold"))
    console.print(_pair("processes", f"{status['processes']} ({status['registered']} registered)"))
    console.print(_pair("clients", status["clients"]))
    streams = status["streams"]
    console.print(_pair("streams", f"{streams['attach']} attach, {streams['reports']} reports"))
    console.print(_pair("tracers", len(status["tracers"])))
    for t in status["tracers"]:
        console.print(
            Text(
                f"{'':>17}{t['target']}: {t['delivered']} events, {t['dropped']} dropped, "
                f"{t['elapsed']:.0f}s",
                style="dim",
            )
        )
    console.print(_pair("traced procs", status["traced_processes"]))
    console.print(_pair("event hooks", status["event_hooks"]))
    console.print(_pair("frames dropped", status["frames_dropped"]))
    print_telemetry(status.get("telemetry"))
    console.print(_pair("writes", "allowed" if status["allow_write"] else "refused (read-only)"))


def print_telemetry(signals: dict[str, dict[str, Any]] | None) -> None:
    """One line per telemetry signal: exporter, state, counts and the last error."""
    console = out()
    if not signals:
        console.print(_pair("telemetry", "off"))
        return
    console.print(Text(f"{'telemetry:':>16}", style="bold"))  # _pair's key, no value after it
    styles = {"ok": "green", "backoff": "yellow", "refused": "red", "off": "dim"}
    for signal, h in signals.items():
        line = Text(f"{'':>4}{signal:<8} ")
        line.append(f"{h.get('state', '?'):<8}", style=styles.get(str(h.get("state")), ""))
        where = " ".join(str(x) for x in (h.get("exporter"), h.get("endpoint")) if x)
        line.append(f" {where}")
        if h.get("state") != "off" and h.get("exporter") not in ("application", "prometheus"):
            line.append(f"  {h.get('exported', 0)} exported, {h.get('dropped', 0)} dropped")
            if h.get("overload_dropped"):
                line.append(f" ({h['overload_dropped']} on a full queue)")
        console.print(line)
        if h.get("last_error"):
            # Padding keeps a long error's wrapped lines under its first one.
            error = Text(f"last error: {h['last_error']}", style="dim")
            console.print(Padding(error, (0, 0, 0, 13), expand=False))
