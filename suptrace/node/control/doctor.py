"""The hazards ``suptrace doctor`` looks for, as pure functions over plain data.

A supervision tree is given as nested dicts shaped like `describe` results
(``name``, ``strategy``, ``intensity``, ``period``, ``auto_shutdown``,
``restarts_in_window`` when live, ``restart`` = its own restart type in its
parent, and ``children`` whose supervisor entries may hold the child's own
dict under ``tree``). The control server builds them from a running node
(`suptrace.node.control.diagnose`); the command line builds them from a list of
`ChildSpec` without running anything.
Both get the same findings.

A finding is a dict: ``severity`` (``error`` or ``warning``), ``rule``,
``subject`` (what it is about), ``message`` (what goes wrong and how) and
``hint`` (what to do).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

__all__ = [
    "check_tree",
    "check_telemetry",
    "check_restart_loops",
    "check_call_timeouts",
    "check_vanished",
    "check_growing_mailbox",
    "check_stuck",
    "waits_at",
    "summarize_reasons",
    "finding",
    "RULES",
]

#: Every rule and the one-line question it answers.
RULES = {
    "silent_death": "a transient/temporary supervisor child vanishes unreported when it gives up",
    "intensity_zero": "a supervisor that gives up at the first restart",
    "intensity_burst": "more children than restarts allowed: one shared failure takes the subtree down",
    "intensity_near": "a supervisor that has used its whole restart budget right now",
    "significant_escalation": "a significant supervisor child whose give-up shuts its parent down",
    "auto_shutdown_unused": "auto_shutdown set but no significant child: it never fires",
    "auto_shutdown_permanent": "an auto-shutdown supervisor restarted by its parent as permanent",
    "vanished_name": "a registered name whose process died and was not replaced",
    "growing_mailbox": "a mailbox that only grows",
    "stuck": "a process awaiting the same thing for a long time",
    "telemetry_dropped": "a telemetry signal that is refused by its backend or loses data",
    "restart_loop": "a child (or a supervisor) its supervisor restarts again and again",
    "call_timeouts": "a destination whose calls time out often",
}


def finding(severity: str, rule: str, subject: str, message: str, hint: str) -> dict[str, Any]:
    return {
        "severity": severity,
        "rule": rule,
        "subject": subject,
        "message": message,
        "hint": hint,
    }


def _label(desc: dict[str, Any]) -> str:
    return str(desc.get("name") or desc.get("pid") or "supervisor")


def _child_label(child: dict[str, Any]) -> str:
    return str(child.get("id_text") or repr(child.get("id")))


def walk(desc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The supervisor and every supervisor below it, parents first."""
    yield desc
    for child in desc.get("children") or ():
        sub = child.get("tree")
        if isinstance(sub, dict):
            yield from walk(sub)


def check_tree(root: dict[str, Any]) -> list[dict[str, Any]]:
    """Findings for a supervisor and all the supervisors below it."""
    found: list[dict[str, Any]] = []
    for desc in walk(root):
        found.extend(check_supervisor(desc))
    return found


def check_supervisor(desc: dict[str, Any]) -> list[dict[str, Any]]:
    """Findings about one supervisor's flags and its direct children."""
    out: list[dict[str, Any]] = []
    sup = _label(desc)
    children = list(desc.get("children") or ())
    intensity = desc.get("intensity")
    period = desc.get("period")
    auto = desc.get("auto_shutdown") or "never"
    dynamic = desc.get("kind") == "dynamic_supervisor"

    for child in children:
        if child.get("type") != "supervisor":
            continue
        restart = child.get("restart")
        cid = _child_label(child)
        if restart in ("transient", "temporary") and child.get("significant") and auto != "never":
            out.append(
                finding(
                    "warning",
                    "significant_escalation",
                    f"{sup} / {cid}",
                    f"{cid} is a significant {restart} supervisor under {sup} "
                    f"(auto_shutdown={auto}): when it reaches its max restart intensity it "
                    f"exits 'shutdown', a normal exit, so {sup} shuts itself down too and the "
                    "failure travels up as a clean shutdown that nobody reports as a crash",
                    "make sure that is the intent; otherwise drop significant=True, or make "
                    f"{cid} permanent so its give-up counts against {sup}'s intensity",
                )
            )
        elif restart in ("transient", "temporary"):
            why = (
                "a transient child is only restarted after an abnormal exit"
                if restart == "transient"
                else "a temporary child is never restarted"
            )
            out.append(
                finding(
                    "error",
                    "silent_death",
                    f"{sup} / {cid}",
                    f"{cid} is a {restart} supervisor under {sup}: when it reaches its max "
                    "restart intensity it exits 'shutdown', which counts as a normal exit, and "
                    f"{why}; the whole subtree under {cid} disappears and OTP logs nothing "
                    "about it (suptrace reports it as not_restarted)",
                    f"make {cid} permanent so its failures count against {sup}'s restart "
                    "intensity, or watch for not_restarted reports",
                )
            )
        sub = child.get("tree")
        if (
            isinstance(sub, dict)
            and (sub.get("auto_shutdown") or "never") != "never"
            and restart == "permanent"
        ):
            out.append(
                finding(
                    "warning",
                    "auto_shutdown_permanent",
                    f"{sup} / {cid}",
                    f"{cid} shuts itself down when its significant children end "
                    f"(auto_shutdown={sub.get('auto_shutdown')}), but it is a permanent child of "
                    f"{sup}, which restarts it at once: the auto shutdown is undone and every "
                    f"cycle uses one of {sup}'s restarts",
                    f"make {cid} transient (or temporary) in {sup}",
                )
            )

    if isinstance(intensity, int) and isinstance(period, (int, float)):
        restartable = [c for c in children if c.get("restart") in ("permanent", "transient")]
        strategy = desc.get("strategy") or "one_for_one"
        if intensity == 0 and restartable:
            out.append(
                finding(
                    "warning",
                    "intensity_zero",
                    sup,
                    f"{sup} has intensity 0: the first restart of any child makes it give up "
                    "and take its children down",
                    "allow a few restarts (intensity 3, period 5 is a common choice)",
                )
            )
        elif (strategy == "one_for_one" or dynamic) and len(restartable) > intensity > 0:
            out.append(
                finding(
                    "warning",
                    "intensity_burst",
                    sup,
                    f"{sup} allows {intensity} restarts in {period}s but supervises "
                    f"{len(restartable)} restartable children: if they fail together once "
                    "(a database or network blip they share is the usual way), it needs "
                    f"{len(restartable)} restarts in the window, gives up and its subtree goes",
                    f"raise intensity to at least {len(restartable)} (or group the children "
                    "under one_for_all if they share a fate)",
                )
            )
        used = desc.get("restarts_in_window")
        if isinstance(used, int) and intensity > 0 and used >= intensity:
            out.append(
                finding(
                    "warning",
                    "intensity_near",
                    sup,
                    f"{sup} has used {used}/{intensity} restarts in its {period}s window: the "
                    "next child failure makes it give up",
                    f"look at why its children restart (suptrace reports --node ... ; "
                    f"suptrace attach {sup} --flags supervisor)",
                )
            )

    if auto != "never" and not dynamic and not any(c.get("significant") for c in children):
        out.append(
            finding(
                "warning",
                "auto_shutdown_unused",
                sup,
                f"{sup} has auto_shutdown={auto} but no significant child, so it never shuts "
                "itself down",
                "mark the children whose end should end the supervisor significant=True, "
                "or set auto_shutdown='never'",
            )
        )
    return out


def check_telemetry(signals: dict[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Findings about the node's telemetry export, from ``Telemetry.signals()``.

    >>> check_telemetry({"traces": {"exporter": "otlp/grpc", "endpoint": "localhost:4317",
    ...     "state": "ok", "exported": 90, "dropped": 10, "overload_dropped": 10,
    ...     "last_error": None}})[0]["rule"]
    'telemetry_dropped'
    """
    out: list[dict[str, Any]] = []
    for signal, health in (signals or {}).items():
        dropped = int(health.get("dropped") or 0)
        state = health.get("state")
        if state != "refused" and not dropped:
            continue
        where = " ".join(str(x) for x in (health.get("exporter"), health.get("endpoint")) if x)
        error = health.get("last_error")
        subject = f"telemetry {signal}"
        variable = f"OTEL_{signal.upper()}_EXPORTER"
        endpoint_var = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
        if state == "refused":
            out.append(
                finding(
                    "warning",
                    "telemetry_dropped",
                    subject,
                    f"{where} refuses {signal} ({error}); {signal} export is off for this "
                    f"node ({dropped} dropped so far), so nothing built on them (dashboards, "
                    "alerts) sees this node",
                    f"if this backend takes no {signal} (Jaeger and Tempo take traces only), "
                    f"set {variable}=none, or set {endpoint_var} to a backend that takes them",
                )
            )
            continue
        overload = int(health.get("overload_dropped") or 0)
        exported = int(health.get("exported") or 0)
        if overload * 2 >= dropped:
            out.append(
                finding(
                    "warning",
                    "telemetry_dropped",
                    subject,
                    f"{dropped} {signal} were dropped ({overload} on a full export queue, "
                    f"{exported} exported) to {where}: the node produces them faster than they "
                    "are sent (overload, not an outage), so what is exported is incomplete",
                    "export fewer (a sampler: OTEL_TRACES_SAMPLER) or raise the queue and batch "
                    "sizes (OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE for traces; "
                    "OTEL_BLRP_* for logs)",
                )
            )
            continue
        now = "it is still unreachable" if state == "backoff" else "it works again"
        out.append(
            finding(
                "warning",
                "telemetry_dropped",
                subject,
                f"{dropped} {signal} were dropped while {where} could not take them (last "
                f"error: {error}); {now}. What was dropped is lost for good",
                f"check the collector behind {endpoint_var} (or OTEL_EXPORTER_OTLP_ENDPOINT); "
                f"`suptrace status` shows each signal's counts; {variable}=none turns the "
                "signal off",
            )
        )
    return out


# -- restart loops ---------------------------------------------------------------------------

#: A worker restarted this many times (over the node's life) is in a restart loop.
RESTART_LOOP_MIN = 5
#: A supervisor child restarted this many times: each one was a whole subtree giving up.
SUPERVISOR_LOOP_MIN = 3
#: This many restarts of one child inside its supervisor's intensity window is a loop too.
RESTART_WINDOW_MIN = 3


def summarize_reasons(reasons: list[tuple[str, str]], most: int = 3) -> str:
    """``(reason class, reason text)`` pairs, oldest first, as a short account:
    the most common classes with counts and the latest text of each.

    >>> summarize_reasons([("ValueError", "ValueError('row 1')"),
    ...                    ("ValueError", "ValueError('row 9')"), ("timeout", "'timeout'")])
    "ValueError x2 (last: ValueError('row 9')), timeout x1 (last: 'timeout')"
    """
    counts: dict[str, int] = {}
    latest: dict[str, str] = {}
    for cls, text in reasons:
        counts[cls] = counts.get(cls, 0) + 1
        latest[cls] = text
    ranked = sorted(counts, key=lambda c: -counts[c])
    parts = [f"{c} x{counts[c]} (last: {latest[c]})" for c in ranked[:most]]
    if len(ranked) > most:
        parts.append(f"and {len(ranked) - most} other kind(s)")
    return ", ".join(parts)


def restart_key(supervisor: Any, child_id: Any) -> str:
    """How restart reasons are keyed: the supervisor's name (or pid) and the child id
    as JSON text, both as `describe` data shows them."""
    return f"{supervisor}\x00{child_id!r}"


def check_restart_loops(
    root: dict[str, Any],
    reasons: dict[str, list[tuple[str, str]]] | None = None,
    gave_up: dict[str, list[str]] | None = None,
    *,
    min_restarts: int = RESTART_LOOP_MIN,
    min_supervisor_restarts: int = SUPERVISOR_LOOP_MIN,
    min_window: int = RESTART_WINDOW_MIN,
) -> list[dict[str, Any]]:
    """Children restarted again and again, in a tree of `describe` dicts whose
    children carry ``restarts`` and ``restarts_window``.

    ``reasons`` maps `restart_key` to the child's recent exit reasons as
    ``(class, text)``, oldest first (from the report history); ``gave_up`` maps a
    supervisor's name to the child ids that made it reach its max restart
    intensity. Both only enrich the findings.

    >>> tree = {"name": "app.sup", "pid": "<0.2.0>", "intensity": 10, "period": 60,
    ...         "children": [{"id": "survey", "id_text": "survey", "type": "worker",
    ...                       "restarts": 66, "restarts_window": 4}]}
    >>> [f["rule"] for f in check_restart_loops(tree)]
    ['restart_loop']
    """
    out: list[dict[str, Any]] = []
    reasons = reasons or {}
    gave_up = gave_up or {}
    for desc in walk(root):
        sup = _label(desc)
        period = desc.get("period")
        for child in desc.get("children") or ():
            total = int(child.get("restarts") or 0)
            window = int(child.get("restarts_window") or 0)
            is_sup = child.get("type") == "supervisor"
            if total < (min_supervisor_restarts if is_sup else min_restarts) and window < min_window:
                continue
            cid = _child_label(child)
            sub = child.get("tree") if isinstance(child.get("tree"), dict) else None
            past = reasons.get(restart_key(sup, child.get("id")), [])
            seen = f"{cid} was restarted {total} times by {sup}"
            seen += f", {window} of them in the last {period}s" if window else ""
            if past and not (is_sup and all(cls == "shutdown" for cls, _ in past)):
                seen += f"; it exited with: {summarize_reasons(past)}"
            if is_sup:
                name = (sub or {}).get("name") or child.get("name") or cid
                offenders = gave_up.get(str(name), [])
                if offenders:
                    ids = sorted(set(offenders), key=offenders.index)
                    seen += (
                        f"; each time it had reached its max restart intensity, because of "
                        f"{', '.join(ids[:5])}"
                    )
                    # Why those children died, as their supervisor reported it.
                    died = [r for i in ids[:5] for r in reasons.get(restart_key(name, i), [])]
                    if died:
                        seen += f", which exited with: {summarize_reasons(died)}"
                why = (
                    f"every restart of a supervisor stops and restarts its whole subtree: "
                    f"whatever runs under {cid} keeps losing its state and work in flight, "
                    f"and each time counts against {sup}'s own intensity, so the failure "
                    "climbs towards the root"
                )
                hint = (
                    f"find the child that makes {cid} give up (suptrace tree; suptrace reports "
                    f"--kind shutdown --name {name}) and fix why it fails; raise {cid}'s "
                    "intensity only if those failures are expected bursts"
                )
            else:
                why = (
                    "a child that keeps dying does no work while the supervisor keeps it "
                    f"looking alive, floods the logs, and uses {sup}'s restart budget: one "
                    "more failure elsewhere and the supervisor gives up"
                )
                hint = (
                    "restarting does not cure a failure that repeats: fix the cause "
                    f"(suptrace reports --name {cid}); if the failure is outside the "
                    "process (a file, a service), let it wait and retry inside instead of "
                    "crashing"
                )
            out.append(
                finding(
                    "error" if window >= min_window else "warning",
                    "restart_loop",
                    f"{sup} / {cid}",
                    f"{seen}. Why it matters: {why}.",
                    hint,
                )
            )
    return out


# -- call timeouts ---------------------------------------------------------------------------

#: At least this many timeouts to one destination before it is worth a finding...
TIMEOUTS_MIN = 3
#: ...and at least this share of the calls it received.
TIMEOUT_RATE_MIN = 0.05


def check_call_timeouts(
    destinations: list[dict[str, Any]],
    *,
    min_timeouts: int = TIMEOUTS_MIN,
    min_rate: float = TIMEOUT_RATE_MIN,
) -> list[dict[str, Any]]:
    """Destinations whose calls time out often.

    Each destination is a dict: ``destination`` (its name or pid), ``timeouts``
    (over the node's life), ``recent`` (timeouts since the current process
    started), ``calls`` (the calls that process received, or None when unknown),
    ``callers`` ({caller: timeouts}) and ``timeout`` (the last call's timeout).

    >>> rows = [{"destination": "db", "timeouts": 36, "recent": 36, "calls": 103,
    ...          "callers": {"poller": 36}, "timeout": 0.5}]
    >>> [(f["rule"], f["severity"]) for f in check_call_timeouts(rows)]
    [('call_timeouts', 'error')]
    >>> check_call_timeouts([{**rows[0], "calls": 10_000}])    # 0.4%: noise
    []
    """
    out: list[dict[str, Any]] = []
    for row in destinations:
        total = int(row.get("timeouts") or 0)
        if total < min_timeouts:
            continue
        dest = str(row.get("destination"))
        recent = int(row.get("recent") or 0)
        calls = row.get("calls")
        rate = None
        if isinstance(calls, int) and calls > 0 and recent:
            rate = min(1.0, recent / max(calls, recent))
            if rate < min_rate:
                continue
        callers = row.get("callers") or {}
        ranked = sorted(callers.items(), key=lambda kv: -kv[1])
        who = ", ".join(f"{c} ({n})" for c, n in ranked[:5])
        if len(ranked) > 5:
            who += f" and {len(ranked) - 5} more"
        seen = f"calls to {dest} timed out {total} times"
        if rate is not None:
            seen += (
                f"; since it started, {recent} of the {calls} calls it received "
                f"({rate:.0%}) timed out"
            )
        if who:
            seen += f"; callers: {who}"
        if row.get("timeout") is not None:
            seen += f"; the last one waited {row['timeout']}s"
        why = (
            "a caller that times out raises CallTimeout (and crashes unless it catches it) "
            f"while {dest} still handles the request later, for nobody: work done twice, "
            "replies lost, and a slow server gets slower as retries pile up"
        )
        hint = (
            f"see how long {dest} takes to answer: suptrace attach {dest} --flags calls; "
            "if it is just slow, give the callers a longer timeout; if one request blocks "
            "it, answer later (NOREPLY and reply from a task) so the others are not held up"
        )
        out.append(
            finding(
                "error" if rate is not None and rate >= 0.2 else "warning",
                "call_timeouts",
                dest,
                f"{seen}. Why it matters: {why}.",
                hint,
            )
        )
    return out


def check_vanished(stones: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Registered names whose process died and nobody took the name again, from the
    tombstones of a tree (``tree()["vanished"]``): an error once its supervisor said
    it will not restart it, a warning before."""
    found = []
    for stone in stones:
        gone_for_good = any("did not restart" in n for n in stone["notes"])
        found.append(
            finding(
                "error" if gone_for_good else "warning",
                "vanished_name",
                stone["name"],
                stone["story"],
                f"nothing is registered as {stone['name']} any more: anything sending to it "
                f"gets NoProc; see: suptrace inspect {stone['name']}",
            )
        )
    return found


def check_growing_mailbox(
    who: str, target: str, sizes: list[int], interval: float, mailbox_min: int
) -> dict[str, Any] | None:
    """A mailbox that only grew over the samples (``sizes``, taken ``interval``
    seconds apart) and holds at least ``mailbox_min`` messages now; ``who`` names
    the process in the text, ``target`` in the command to run.

    >>> check_growing_mailbox("w", "w", [3, 9, 20], 0.5, 10)["message"]
    'the mailbox of w only grew while sampled: 3 -> 9 -> 20 messages over 1.0s; it receives faster than it handles'
    >>> check_growing_mailbox("w", "w", [30, 30], 0.5, 10) is None
    True
    """
    if len(sizes) < 2 or sizes[-1] < mailbox_min:
        return None
    if not all(b > a for a, b in itertools.pairwise(sizes)):
        return None
    return finding(
        "warning",
        "growing_mailbox",
        who,
        f"the mailbox of {who} only grew while sampled: "
        f"{' -> '.join(str(n) for n in sizes)} messages over "
        f"{interval * (len(sizes) - 1):.1f}s; it receives faster than it handles",
        f"see what arrives: suptrace attach {target} --flags receive",
    )


#: Frames of suptrace's own runtime, skipped to find where a process's own code waits.
_RUNTIME_DIRS = tuple(f"{os.sep}suptrace{os.sep}{d}{os.sep}" for d in ("core", "behaviours"))


def waits_at(stack: tuple[str, ...]) -> str:
    """The innermost frame, and the innermost frame of the process's own code if
    that is elsewhere (a process stuck in `call` is stuck where it called)."""
    inner = stack[-1]
    own = next((f for f in reversed(stack) if not any(d in f for d in _RUNTIME_DIRS)), None)
    return inner if own is None or own == inner else f"{inner}, called from {own}"


def check_stuck(
    who: str, target: str, stack: tuple[str, ...], idle: float, stuck_after: float
) -> dict[str, Any] | None:
    """A process that has awaited the same frame (``stack``, innermost last) with no
    message in or out for ``idle`` seconds, at least ``stuck_after``; a sleep is
    not being stuck. The caller has checked that nothing changed between samples."""
    if not stack or idle < stuck_after or "in sleep" in stack[-1]:
        return None
    return finding(
        "warning",
        "stuck",
        who,
        f"{who} has been awaiting the same thing for {idle:.0f}s with no "
        f"message in or out; it waits at {waits_at(stack)}",
        f"a call with timeout=None or an event nobody sets? see: suptrace inspect {target}",
    )
