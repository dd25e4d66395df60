"""The bridge's report part: SASL-style reports as OpenTelemetry log records.

With a logger provider, every progress, supervisor, crash and task-crash
report becomes a log record, correlated with the exit span of the process it
is about when there is one.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import set_span_in_context

from suptrace.core.terms import reason_class
from suptrace.observers.otel.spans import reason_text
from suptrace.observers.otel.state import BridgeState

__all__ = ["ReportLogs"]


class ReportLogs(BridgeState):
    """The reports handler of the bridge."""

    def _on_report(self, report: Any) -> None:
        from opentelemetry._logs import SeverityNumber

        from suptrace.observers.reports import (
            CrashReport,
            ProgressReport,
            SupervisorReport,
            TaskCrashReport,
            format_report,
        )

        attrs: dict[str, Any] = {"suptrace.report": type(report).__name__}
        context = None
        if isinstance(report, ProgressReport):
            severity, text = SeverityNumber.INFO, "INFO"
            attrs["suptrace.supervisor"] = str(report.supervisor)
            attrs["suptrace.child.id"] = str(report.started.get("id"))
            event_name = "suptrace.progress"
        elif isinstance(report, SupervisorReport):
            if report.context == "not_restarted":
                severity, text = SeverityNumber.WARN, "WARNING"
            else:
                severity, text = SeverityNumber.ERROR, "ERROR"
            attrs["suptrace.supervisor"] = str(report.supervisor)
            attrs["suptrace.context"] = report.context
            attrs["suptrace.child.id"] = str(report.offender.get("id"))
            attrs["suptrace.exit.reason"] = reason_text(report.reason)
            attrs["suptrace.exit.reason_class"] = reason_class(report.reason)
            event_name = "suptrace.supervisor_report"
        elif isinstance(report, CrashReport):
            severity, text = SeverityNumber.ERROR, "ERROR"
            attrs["suptrace.process.pid"] = str(report.pid)
            attrs["suptrace.process.name"] = report.name or report.initial_call
            attrs["suptrace.exit.reason"] = reason_text(report.reason)
            attrs["suptrace.exit.reason_class"] = reason_class(report.reason)
            event_name = "suptrace.crash_report"
            span = self._dead.get(report.pid)
            if span is not None:
                context = set_span_in_context(span)
        elif isinstance(report, TaskCrashReport):  # a plain asyncio task, not a process
            severity, text = SeverityNumber.ERROR, "ERROR"
            attrs["suptrace.task.name"] = report.task
            attrs["suptrace.exit.reason"] = reason_text(report.reason)
            attrs["suptrace.exit.reason_class"] = reason_class(report.reason)
            event_name = "suptrace.crash_report"
        else:
            return
        self.logger.emit(
            timestamp=int(report.ts * 1e9),
            context=context,
            severity_number=severity,
            severity_text=text,
            body=format_report(report),
            attributes=attrs,
            event_name=event_name,
        )

