"""Phase and release reports: what happened, with values against thresholds, and why."""

from __future__ import annotations

from typing import Any, Literal

from phasegate.api.spec import RolloutSpec
from phasegate.api.status import RolloutStatus
from phasegate.report.build import Report, UnknownPhase, build_report
from phasegate.report.markdown import render_markdown

__all__ = ["Report", "UnknownPhase", "build_report", "render", "render_markdown", "report_of"]


def report_of(obj: dict[str, Any], phase: str | None = None) -> Report:
    """The report of a ProgressiveRollout as the API returns it."""
    meta = obj["metadata"]
    spec = RolloutSpec.model_validate(obj.get("spec") or {})
    status = RolloutStatus.model_validate(obj.get("status") or {})
    return build_report(meta["namespace"], meta["name"], spec, status, phase)


def render(report: Report, fmt: Literal["md", "json"]) -> str:
    """The report as Markdown or as JSON (the documented schema, camelCase)."""
    if fmt == "json":
        return report.model_dump_json(by_alias=True, indent=2) + "\n"
    return render_markdown(report)
