"""The ``ProgressiveRollout`` status: everything the operator knows, and why it decided.

All progress lives here, so a restarted operator continues where it was.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from phasegate.api.durations import Duration


class StatusModel(BaseModel):
    # Unknown fields are ignored, not rejected: an older operator must read a newer status.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


_Record = TypeVar("_Record", bound=StatusModel)
_new = object.__new__
_set = object.__setattr__


_FIELD_ORDER: dict[type[StatusModel], tuple[str, ...]] = {}


def _field_order(cls: type[StatusModel]) -> tuple[str, ...]:
    order = _FIELD_ORDER.get(cls)
    if order is None:
        order = _FIELD_ORDER[cls] = tuple(cls.model_fields)
    return order


def trusted(cls: type[_Record], values: dict[str, Any]) -> _Record:
    """A record of ``cls`` from every one of its fields, each already of the field's exact
    type (``float`` for a float, a member for an enum, the model for a nested record): the
    instance validation would build, without validating again. For the engine's hot paths,
    where the values are the engine's own; anything else validates. Fields missing or out of
    their declared order: validated as usual."""
    if tuple(values) != _field_order(cls):
        return cls(**values)
    return _made(cls, values)


def _made(cls: type[_Record], values: dict[str, Any]) -> _Record:
    record = _new(cls)  # the dict is the record's own from here
    _set(record, "__dict__", values)
    _set(record, "__pydantic_fields_set__", set(values))
    _set(record, "__pydantic_extra__", None)
    _set(record, "__pydantic_private__", None)
    return record


def shallow_copy(record: _Record) -> _Record:
    """What ``record.model_copy()`` returns for a status record (no extra fields, no private
    attributes), in fewer steps."""
    if record.__pydantic_extra__ is not None or record.__pydantic_private__ is not None:
        return record.model_copy()
    copied = _new(type(record))
    _set(copied, "__dict__", record.__dict__.copy())
    _set(copied, "__pydantic_fields_set__", record.__pydantic_fields_set__.copy())
    _set(copied, "__pydantic_extra__", None)
    _set(copied, "__pydantic_private__", None)
    return copied


class _Fields:
    """A record's fields on a plain object: see :func:`fields_of`."""


def fields_of(record: _Record) -> _Record:
    """A copy of ``record``'s fields on a plain object, for code that reads and writes many of
    them: BaseModel defines ``__getattr__``, which keeps CPython off its fast attribute path,
    so a field read on a model costs several times a plain one. The checker sees the record's
    type; only the fields are there, not the model's methods. :func:`record_of` makes the
    record again."""
    copied = _new(_Fields)
    copied.__dict__ = record.__dict__.copy()
    return cast(_Record, copied)


def record_of(cls: type[_Record], fields: _Record) -> _Record:
    """The record of ``cls`` with the fields of ``fields`` (from :func:`fields_of`), not
    validated again: they are a record's fields, changed by code the checker typed. Every
    field counts as set. The fields are the record's from here: ``fields`` is done with."""
    if isinstance(fields, cls):  # a record made meanwhile
        return fields
    return _made(cls, fields.__dict__)  # a record's fields, so in their order


class State(StrEnum):
    """The word for the whole release."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    SCHEDULED = "Scheduled"
    HOLDING = "Holding"
    PAUSED = "Paused"
    ROLLED_BACK = "RolledBack"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    INVALID = "Invalid"
    DEGRADED = "Degraded"


class Verdict(StrEnum):
    """The verdict on one criterion at one evaluation."""

    PASS = "Pass"
    FAIL = "Fail"
    NO_DATA = "NoData"
    ERROR = "Error"


class CheckpointVerdict(StrEnum):
    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


class Action(StrEnum):
    """What the operator decided."""

    START = "Start"
    ADVANCE = "Advance"
    HOLD = "Hold"
    ROLLBACK = "Rollback"
    WAIT_FOR_APPROVAL = "WaitForApproval"
    WAIT_FOR_SCHEDULE = "WaitForSchedule"
    PAUSE = "Pause"
    RESUME = "Resume"
    PROMOTE = "Promote"
    COMPLETE = "Complete"
    RESTART = "Restart"


class CriterionResult(StatusModel):
    """One criterion judged once: what was asked, what came back, and the verdict."""

    rule: str = Field(description="successCriteria[i], rollbackTriggers[i] or holdTriggers[i].")
    metric: str
    query: str = Field(description="The query as sent, after templating.")
    stable_query: str | None = None
    value: float | None = Field(default=None, description="The value judged against the threshold.")
    values: dict[str, float] | None = Field(
        default=None, description="Per segment, or canary and stable."
    )
    threshold: str
    verdict: Verdict
    reason: str


class CheckpointRecord(StatusModel):
    phase: str
    offset: Duration
    time: datetime
    verdict: CheckpointVerdict
    results: list[CriterionResult] | None = Field(
        default=None, description="Dropped for the oldest checkpoints to keep status small."
    )


class Decision(StatusModel):
    action: Action
    reason: str
    evidence: list[CriterionResult] = Field(default_factory=list)
    time: datetime
    phase: str | None = None


class ApprovalRecord(StatusModel):
    """A group's approval of a phase's gate, and the user who gave it."""

    phase: str
    group: str = Field(default="", description="The group the approval is for.")
    by: str = Field(
        description="The user who approved: the authenticated user where the chart's "
        "admission policy is installed."
    )
    time: datetime

    @model_validator(mode="after")
    def _older_records(self) -> ApprovalRecord:
        # Records written before approvals named a group had the group in ``by``.
        if not self.group:
            self.group = self.by
        return self


class RejectionRecord(StatusModel):
    """A NO-GO: a group's rejection of a phase's gate, who said no, and why."""

    phase: str
    group: str
    by: str = Field(description="The user who rejected (authenticated, with the policy).")
    time: datetime
    reason: str = ""


class Condition(StatusModel):
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: datetime


_NO_TIME = timedelta(0)


class PhaseStatus(StatusModel):
    """Where the release is. Elapsed = now - startedAt - heldFor (- now - heldSince)."""

    name: str
    index: int
    weight: int
    started_at: datetime | None = Field(
        default=None, description="When the phase's weight was read back from the route."
    )
    held_for: Duration = Field(default=timedelta(0))
    held_since: datetime | None = Field(
        default=None, description="Set while the phase clock is stopped."
    )
    checkpoints_passed: int = 0
    checkpoints_judged: int = 0
    checkpoints_total: int = 0
    next_checkpoint: Duration | None = None

    def elapsed(self, now: datetime) -> timedelta:
        return elapsed(self, now)


def elapsed(phase: PhaseStatus, now: datetime) -> timedelta:
    """How long the phase has run at ``now``, its clock's stops left out (also of a phase's
    fields: see fields_of)."""
    started_at = phase.started_at
    if started_at is None:
        return _NO_TIME
    run = now - started_at - phase.held_for
    held_since = phase.held_since
    if held_since is not None:
        run -= now - held_since
    return run if run > _NO_TIME else _NO_TIME


class Breach(StatusModel):
    """A rule failing since ``since``: what ``for`` windows are measured on."""

    rule: str
    since: datetime


class RuleExtreme(StatusModel):
    """The worst value one rule saw during a phase, at any evaluation, not only checkpoints."""

    rule: str
    metric: str
    threshold: str
    worst: float
    at: datetime
    verdict: Verdict = Field(description="The rule's verdict at that evaluation.")


class PhaseRecord(StatusModel):
    """One phase as it ran, kept after it ends for the phase report."""

    name: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    held_for: Duration = Field(default=timedelta(0), description="Time the phase clock stood.")
    worst: list[RuleExtreme] = Field(default_factory=list)
    decisions: list[Decision] = Field(
        default_factory=list, description="The phase's latest decisions, with their evidence."
    )


class RolloutStatus(StatusModel):
    observed_generation: int | None = None
    revision: str | None = Field(default=None, description="The revision this status is about.")
    state: State = State.PENDING
    message: str = ""
    canary_weight: int | None = Field(default=None, description="As read back from the route.")
    progress: str | None = Field(default=None, description="Checkpoints passed/total, e.g. 3/6.")
    current_phase: PhaseStatus | None = None
    checkpoints: list[CheckpointRecord] = Field(default_factory=list)
    decision: Decision | None = None
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    rejections: list[RejectionRecord] = Field(
        default_factory=list,
        description="NO-GOs given for this revision; the latest holds the release until retried.",
    )
    conditions: list[Condition] = Field(default_factory=list)
    breaches: list[Breach] = Field(default_factory=list)
    query_errors: int = Field(default=0, description="Consecutive evaluations with failed queries.")
    handled_controls: list[str] = Field(
        default_factory=list, description="Ids of the manual controls already applied."
    )
    desired_weight: int | None = Field(
        default=None, description="The canary weight the operator is setting on the route."
    )
    hold_reason: str | None = Field(
        default=None, description="Why the release holds: HoldTrigger, Gate, MetricsUnavailable."
    )
    resume_state: State | None = Field(
        default=None, description="The state to return to once a Degraded cause clears."
    )
    phase_history: list[PhaseRecord] = Field(
        default_factory=list,
        description="Per phase entered: when it ran, the worst value each rule saw, decisions.",
    )
    notifications: NotificationsStatus | None = Field(
        default=None, description="Events waiting for their receivers, and those delivered."
    )


# Last: the notification models build on StatusModel above.
from phasegate.api.outbox import NotificationsStatus  # noqa: E402

RolloutStatus.model_rebuild()
