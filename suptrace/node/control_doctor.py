"""The hazards ``suptrace doctor`` looks for, as pure functions over plain data.

A supervision tree is given as nested dicts shaped like `describe` results
(``name``, ``strategy``, ``intensity``, ``period``, ``auto_shutdown``,
``restarts_in_window`` when live, ``restart`` = its own restart type in its
parent, and ``children`` whose supervisor entries may hold the child's own
dict under ``tree``). The control server builds them from a running node; the
command line builds them from a list of `ChildSpec` without running anything.
Both get the same findings.

A finding is a dict: ``severity`` (``error`` or ``warning``), ``rule``,
``subject`` (what it is about), ``message`` (what goes wrong and how) and
``hint`` (what to do).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["check_tree", "check_telemetry", "finding", "RULES"]

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
