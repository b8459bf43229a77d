"""A phase or release report, built from a rollout's spec and status alone.

The JSON form is :class:`Report` as dumped by pydantic (camelCase); its schema is versioned
by ``schemaVersion`` and documented in docs/notifications.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from phasegate.api.durations import Duration, format_duration
from phasegate.api.spec import Phase, RolloutSpec
from phasegate.api.status import (
    Action,
    ApprovalRecord,
    CheckpointRecord,
    CheckpointVerdict,
    Decision,
    PhaseRecord,
    RejectionRecord,
    RolloutStatus,
    RuleExtreme,
    State,
)

SCHEMA_VERSION: Final = "phasegate.dev/report/v1"
WAITING = (State.WAITING_FOR_APPROVAL, State.SCHEDULED)


class ReportModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class PhaseReport(ReportModel):
    name: str
    weight: int
    duration: Duration
    outcome: str = Field(
        description="NotStarted, Passed, RolledBack, Ended, or the release's state while "
        "the phase runs or waits to be entered."
    )
    started_at: datetime | None = None
    ended_at: datetime | None = None
    held_for: Duration = timedelta(0)
    checkpoints_passed: int
    checkpoints_total: int
    checkpoints: list[CheckpointRecord]
    worst: list[RuleExtreme]
    decisions: list[Decision]
    approvals: list[ApprovalRecord]
    rejections: list[RejectionRecord] = Field(
        default_factory=list,
        description="NO-GOs given at this phase's gate: who, for which group, why.",
    )


class TimelineEntry(ReportModel):
    time: datetime
    phase: str | None
    event: str


class Report(ReportModel):
    schema_version: Literal["phasegate.dev/report/v1"] = SCHEMA_VERSION
    kind: Literal["ReleaseReport", "PhaseReport"]
    namespace: str
    name: str
    revision: str | None
    state: State
    message: str
    canary_weight: int | None
    phases: list[PhaseReport]
    timeline: list[TimelineEntry]


class UnknownPhase(LookupError):
    """The report was asked for a phase the spec does not have."""


def build_report(
    namespace: str,
    name: str,
    spec: RolloutSpec,
    status: RolloutStatus,
    phase: str | None = None,
) -> Report:
    """The release report, or one phase's report when ``phase`` is given."""
    phases = spec.phases
    if phase is not None:
        phases = [p for p in spec.phases if p.name == phase]
        if not phases:
            known = ", ".join(p.name for p in spec.phases)
            raise UnknownPhase(f"no phase {phase!r} in {namespace}/{name} (phases: {known})")
    reports = [_phase_report(p, status) for p in phases]
    timeline = [entry for p in reports for entry in _timeline(p)]
    timeline.sort(key=lambda e: e.time)  # stable: within one instant, the order of events
    return Report(
        kind="PhaseReport" if phase is not None else "ReleaseReport",
        namespace=namespace,
        name=name,
        revision=status.revision,
        state=status.state,
        message=status.message,
        canary_weight=status.canary_weight,
        phases=reports,
        timeline=timeline,
    )


def _phase_report(phase: Phase, status: RolloutStatus) -> PhaseReport:
    record = next((r for r in status.phase_history if r.name == phase.name), None)
    record = record or PhaseRecord(name=phase.name)
    checkpoints = [c for c in status.checkpoints if c.phase == phase.name]
    passed = sum(c.verdict is CheckpointVerdict.PASSED for c in checkpoints)
    total = len(phase.checkpoint_offsets)
    return PhaseReport(
        name=phase.name,
        weight=phase.weight,
        duration=phase.duration,
        outcome=_outcome(phase, record, status, passed == total),
        started_at=record.started_at,
        ended_at=record.ended_at,
        held_for=record.held_for,
        checkpoints_passed=passed,
        checkpoints_total=total,
        checkpoints=checkpoints,
        worst=record.worst,
        decisions=record.decisions,
        approvals=[a for a in status.approvals if a.phase == phase.name],
        rejections=[r for r in status.rejections if r.phase == phase.name],
    )


def _outcome(phase: Phase, record: PhaseRecord, status: RolloutStatus, all_passed: bool) -> str:
    if any(d.action is Action.ROLLBACK for d in record.decisions[-1:]):
        return "RolledBack"
    if record.started_at is None:
        waiting = status.decision is not None and status.decision.phase == phase.name
        return status.state.value if waiting and status.state in WAITING else "NotStarted"
    if record.ended_at is None:
        return status.state.value
    return "Passed" if all_passed else "Ended"


def _timeline(phase: PhaseReport) -> list[TimelineEntry]:
    entries: list[tuple[datetime | None, str]] = [
        (phase.started_at, f"{phase.name} started at canary {phase.weight}%"),
    ]
    entries += [(a.time, f"approved for {a.group} by {a.by}") for a in phase.approvals]
    entries += [
        (r.time, f"rejected for {r.group} by {r.by}" + (f": {r.reason}" if r.reason else ""))
        for r in phase.rejections
    ]
    entries += [
        (c.time, f"checkpoint {_offset(c)} {c.verdict.value.lower()}") for c in phase.checkpoints
    ]
    entries += [(d.time, f"{d.action.value}: {d.reason}") for d in phase.decisions]
    entries.append((phase.ended_at, f"{phase.name} ended ({phase.outcome})"))
    return [
        TimelineEntry(time=time, phase=phase.name, event=event)
        for time, event in entries
        if time is not None
    ]


def _offset(record: CheckpointRecord) -> str:
    return format_duration(record.offset)
