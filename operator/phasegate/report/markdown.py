"""A :class:`~phasegate.report.build.Report` as Markdown (GitHub-flavoured tables)."""

from __future__ import annotations

from datetime import datetime

from phasegate.api.durations import format_duration
from phasegate.api.status import CriterionResult, Decision, Verdict
from phasegate.report.build import PhaseReport, Report

MARKS = {Verdict.PASS: "✓", Verdict.FAIL: "✗ Fail"}


def when(time: datetime | None) -> str:
    """UTC to the second: reports are read by people, not parsed (the JSON is for that)."""
    return "—" if time is None else time.strftime("%Y-%m-%d %H:%M:%SZ")


def cell(text: str) -> str:
    """Text that stays inside its table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def shown(result: CriterionResult) -> str:
    """A criterion's value and verdict as one table cell."""
    if result.verdict is Verdict.ERROR:
        return "error"
    value = "no data" if result.value is None else f"{result.value:.6g}"
    return f"{value} {MARKS.get(result.verdict, '')}".rstrip()


def render_markdown(report: Report) -> str:
    """The whole report; one section per phase, then the timeline."""
    what = "Release" if report.kind == "ReleaseReport" else f"Phase {report.phases[0].name}"
    lines = [
        f"# {what} report: {report.namespace}/{report.name} {report.revision or ''}".rstrip(),
        "",
        f"**State:** {report.state.value} — {cell(report.message)}",
        "",
        f"**Canary weight:** {'—' if report.canary_weight is None else report.canary_weight}%",
        "",
        "| Phase | Weight | Outcome | Started | Ended | Held | Checkpoints passed |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {p.name} | {p.weight}% | {p.outcome} | {when(p.started_at)} | {when(p.ended_at)} | "
        f"{format_duration(p.held_for)} | {p.checkpoints_passed}/{p.checkpoints_total} |"
        for p in report.phases
    ]
    for phase in report.phases:
        lines += ["", *_phase(phase)]
    lines += ["", "## Timeline", "", "| Time | Phase | Event |", "|---|---|---|"]
    lines += [f"| {when(e.time)} | {e.phase or ''} | {cell(e.event)} |" for e in report.timeline]
    return "\n".join(lines) + "\n"


def _phase(phase: PhaseReport) -> list[str]:
    lines = [
        f"## Phase {phase.name} ({phase.weight}%, {format_duration(phase.duration)}): "
        f"{phase.outcome}",
        "",
    ]
    lines += _checkpoints(phase)
    if phase.worst:
        lines += [
            "### Worst value of each rule during the phase",
            "",
            "| Rule | Metric | Threshold | Worst | At | Verdict then |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {w.rule} | {w.metric} | {cell(w.threshold)} | {w.worst:.6g} | {when(w.at)} | "
            f"{w.verdict.value} |"
            for w in phase.worst
        ]
        lines.append("")
    if phase.decisions:
        lines += ["### Decisions", ""]
        for decision in phase.decisions:
            lines += _decision(decision)
        lines.append("")
    if phase.approvals:
        lines += ["### Approvals", ""]
        lines += [f"- {a.group}: {a.by} at {when(a.time)}" for a in phase.approvals]
        lines.append("")
    if phase.rejections:
        lines += ["### Rejections (NO-GO)", ""]
        lines += [
            f"- {r.group}: {r.by} at {when(r.time)}" + (f" — {cell(r.reason)}" if r.reason else "")
            for r in phase.rejections
        ]
        lines.append("")
    return lines[:-1] if lines[-1] == "" else lines


def _checkpoints(phase: PhaseReport) -> list[str]:
    if not phase.checkpoints:
        return ["No checkpoint judged yet.", ""]
    offsets = [format_duration(c.offset) for c in phase.checkpoints]
    lines = [
        "### Checkpoints",
        "",
        "| Rule | Metric | Threshold | " + " | ".join(offsets) + " |",
        "|---|---|---|" + "---|" * len(offsets),
    ]
    rules: dict[str, CriterionResult] = {}
    for checkpoint in phase.checkpoints:
        for result in checkpoint.results or []:
            rules.setdefault(result.rule, result)
    for rule, first in rules.items():
        cells = []
        for checkpoint in phase.checkpoints:
            found = next((r for r in checkpoint.results or [] if r.rule == rule), None)
            cells.append("—" if found is None else shown(found))
        lines.append(
            f"| {rule} | {first.metric} | {cell(first.threshold)} | " + " | ".join(cells) + " |"
        )
    verdicts = " | ".join(f"**{c.verdict.value}**" for c in phase.checkpoints)
    lines += [f"| checkpoint | | | {verdicts} |", ""]
    failing = [
        f"- {format_duration(c.offset)} {r.rule} {r.metric}: {cell(r.reason)}"
        for c in phase.checkpoints
        for r in c.results or []
        if r.verdict is not Verdict.PASS
    ]
    if failing:
        lines += ["Not passed:", "", *failing, ""]
    return lines


def _decision(decision: Decision) -> list[str]:
    lines = [f"- {when(decision.time)} **{decision.action.value}**: {cell(decision.reason)}"]
    for e in decision.evidence:
        values = "" if e.value is None else f" value {e.value:.6g} against {e.threshold};"
        lines.append(f"  - {e.rule} {e.metric}:{values} {cell(e.reason)}; query `{cell(e.query)}`")
    return lines
