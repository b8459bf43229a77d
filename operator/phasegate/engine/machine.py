"""The phase state machine: (spec, status, observations, now) -> evaluation.

Pure and deterministic: no clock, no I/O. The operator calls :func:`evaluate` every
``spec.interval`` (or sooner, at :attr:`Evaluation.next_evaluation`), applies the weight it
returns, writes the status when it differs from the one it passed in, and posts the events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, NamedTuple

from phasegate.api.durations import format_duration
from phasegate.api.spec import Phase, RolloutSpec
from phasegate.api.status import (
    Action,
    ApprovalRecord,
    Breach,
    CheckpointRecord,
    CheckpointVerdict,
    Condition,
    CriterionResult,
    Decision,
    PhaseStatus,
    RejectionRecord,
    RolloutStatus,
    State,
    Verdict,
    elapsed,
    fields_of,
    record_of,
    shallow_copy,
)
from phasegate.engine.inputs import Control, ControlAction, Observations, QueryRequest
from phasegate.engine.judge import Judgement, judge_rules
from phasegate.engine.queries import PhasePlan, phase_plan, plan_queries

# The members of State and Verdict, bound once. In CPython 3.11 reading a member off its
# class (State.PROGRESSING) runs EnumType's __getattr__ hook at every read, several times
# the cost of a plain attribute, and an evaluation made dozens of such reads.
PENDING, PROGRESSING, PROMOTING = State.PENDING, State.PROGRESSING, State.PROMOTING
HOLDING, PAUSED, WAITING_FOR_APPROVAL = State.HOLDING, State.PAUSED, State.WAITING_FOR_APPROVAL
SCHEDULED, SUCCEEDED, ROLLED_BACK = State.SCHEDULED, State.SUCCEEDED, State.ROLLED_BACK
INVALID, DEGRADED = State.INVALID, State.DEGRADED
PASS, FAIL, NO_DATA, ERROR = Verdict.PASS, Verdict.FAIL, Verdict.NO_DATA, Verdict.ERROR

DETAILED_CHECKPOINTS = 50  # older checkpoints keep their verdict but drop per-criterion results
HANDLED_CONTROLS = 32
REJECTIONS = 16  # the latest NO-GOs of a revision kept in status
WEIGHT_RECHECK = timedelta(seconds=1)
METRICS_BREACH = "metrics"
ACTIVE = (
    PROGRESSING,
    HOLDING,
    PAUSED,
    WAITING_FOR_APPROVAL,
    SCHEDULED,
)
MOVING = frozenset((PENDING, PROGRESSING, PROMOTING))  # condition Progressing
BAD = frozenset((ROLLED_BACK, INVALID, DEGRADED))  # condition Degraded
HANDS_OFF = frozenset((DEGRADED, INVALID))  # traffic is left as it is
NO_TIME = timedelta(0)
ON_TIME = (True, "evaluated when due")


class WorkloadAction(StrEnum):
    PROMOTE = "Promote"  # copy the canary's pod template to the stable Deployment
    SCALE_DOWN_CANARY = "ScaleDownCanary"


class HoldReason(StrEnum):
    HOLD_TRIGGER = "HoldTrigger"
    GATE = "Gate"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    REJECTED = "Rejected"  # a NO-GO: only a retry or a new revision goes on


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


class Evaluation(NamedTuple):  # (a tuple: made at every evaluation, it costs less)
    """What to do after one evaluation."""

    status: RolloutStatus
    weight: int | None  # the canary weight the route must have; None: leave traffic alone
    workload: WorkloadAction | None
    events: tuple[Event, ...]
    next_evaluation: timedelta


def queries_needed(spec: RolloutSpec, status: RolloutStatus, namespace: str) -> list[QueryRequest]:
    """The queries the next evaluation needs: those of the current phase, if it runs."""
    phase = status.current_phase
    if status.revision != spec.revision or phase is None or phase.started_at is None:
        return []
    if status.state not in ACTIVE or phase.index >= len(spec.phases):
        return []
    return plan_queries(spec, namespace, phase.index)


def evaluate(
    spec: RolloutSpec,
    status: RolloutStatus,
    observations: Observations,
    now: datetime,
    *,
    namespace: str = "default",
    generation: int | None = None,
) -> Evaluation:
    """Decide what the release does next. ``status`` is not modified."""
    machine = _Machine(spec, status, observations, now, namespace)
    machine.run()
    return machine.result(generation)


def invalid(
    status: RolloutStatus, message: str, now: datetime, *, generation: int | None = None
) -> Evaluation:
    """The evaluation for a spec that fails validation: report it, touch no traffic."""
    s = shallow_copy(status)
    if s.state is not INVALID:
        s.resume_state = s.state
    s.state = INVALID
    s.message = f"invalid spec: {message}"
    s.observed_generation = generation
    _set_conditions(s, now)
    changed = s != status
    events = (Event("Warning", "InvalidSpec", message),) if changed else ()
    return Evaluation(s, None, None, events, timedelta(seconds=30))


class _Machine:
    """One evaluation. It works on the fields of the status given (and of its current phase),
    on plain objects (see fields_of), and makes the status record once, at the end."""

    __slots__ = (
        "control_news",
        "events",
        "given",
        "namespace",
        "not_passed",
        "now",
        "obs",
        "own_phase",
        "phase_fields",
        "plans",
        "results",
        "s",
        "spec",
        "workload",
    )

    def __init__(
        self,
        spec: RolloutSpec,
        status: RolloutStatus,
        observations: Observations,
        now: datetime,
        namespace: str,
    ) -> None:
        self.spec, self.obs, self.now, self.namespace = spec, observations, now, namespace
        # The machine replaces the status's lists and records rather than editing them, except
        # the current phase's fields.
        self.s = s = fields_of(status)
        self.given = status
        phase = status.current_phase
        self.phase_fields = s.current_phase = None if phase is None else fields_of(phase)
        self.own_phase = False  # the current phase was changed (see phase_to_change)
        self.events: list[Event] = []
        self.workload: WorkloadAction | None = None
        self.results: Mapping[str, Judgement] = {}  # by rule id
        # The judgements other than Pass, in rule order. Most evaluations have none: then no
        # query failed, no breach window opens and no rule fires.
        self.not_passed: Sequence[Judgement] = ()
        self.control_news: tuple[bool, str] | None = None  # a control applied (True) or refused
        self.plans: dict[int, PhasePlan] = {}  # by phase index

    # ---- the steps of one evaluation -------------------------------------------------

    def run(self) -> None:
        s = self.s
        if self.obs.route_weight is not None and s.canary_weight != self.obs.route_weight:
            s.canary_weight = self.obs.route_weight
        if s.state is INVALID:
            s.state = s.resume_state or PENDING
            s.resume_state = None
        if s.revision != self.spec.revision:
            self.restart(
                f"new revision {self.spec.revision}" if s.revision else "first evaluation",
                new_revision=s.revision is not None,
            )
        before = self.phase_key()
        for control in self.obs.controls:
            if control.id not in s.handled_controls:
                self.control(control)
                s.handled_controls = [*s.handled_controls, control.id][-HANDLED_CONTROLS:]
                self.control_news = (True, f"{control.action.value} by {control.by} applied")
        for control_id, why in self.obs.refused_controls:
            if control_id not in s.handled_controls:  # reported once, then only removed
                self.event("Warning", "ControlRefused", why)
                s.handled_controls = [*s.handled_controls, control_id][-HANDLED_CONTROLS:]
                self.control_news = (False, why)
        if self.obs.route_error:
            self.degrade(self.obs.route_error)
            return
        if s.state is DEGRADED:
            self.recover()
        if self.phase_key() != before:
            return  # a person moved the release; the measurements were for the old phase
        self.step()

    def step(self) -> None:
        s = self.s
        if s.state is PENDING:
            s.desired_weight = 0
            if s.canary_weight == 0:
                self.enter_phase(0, "started")
            return
        if s.state is PROMOTING:
            self.promoting()
            return
        if s.state not in ACTIVE:
            return
        cp = s.current_phase
        if cp is not None and cp.started_at is None and s.state is PROGRESSING:
            if s.canary_weight != cp.weight:
                return  # the phase clock starts once the route shows the weight
            cp = self.phase_to_change()
            cp.started_at = self.now
            self.event("Normal", "PhaseStarted", f"{cp.name} {cp.weight}%: phase started")
            s.message = self.progress_message(self.spec.phases[cp.index])
            return  # nothing was measured for a phase that had not started
        if cp is not None and cp.started_at is not None:
            self.judge_rules(cp.index)
            # A sustained breach rolls back even when other queries fail: rollback comes first.
            if self.check_rollback() or self.check_metrics():
                return
        if s.state is PROGRESSING and cp is not None:
            if self.check_hold():
                return
            self.checkpoints()
        elif s.state in (WAITING_FOR_APPROVAL, SCHEDULED):
            self.enter_phase(self.next_index(), "gate opened")

    def judge_rules(self, index: int) -> None:
        """Judge every rule whose queries were answered; a rule not measured is not judged."""
        self.results, self.not_passed = judge_rules(self.plan(index).rules, self.obs.measurements)

    def check_metrics(self) -> bool:
        """Track consecutive query errors; hold (or roll back) when they last too long."""
        s = self.s
        errors = self.errors()
        if not errors:
            self.close_breach(METRICS_BREACH)
            # After an outage the series have a gap: continue once every rule has data again.
            if (
                s.state is HOLDING
                and s.hold_reason == HoldReason.METRICS_UNAVAILABLE
                and all(r.verdict is FAIL for r in self.not_passed)
            ):
                self.resume_clock()
                s.state, s.hold_reason = PROGRESSING, None
                self.decide(Action.RESUME, "metrics are available again", [])
                self.event("Normal", "MetricsAvailable", "metrics are available again; continuing")
            return False
        since = self.open_breach(METRICS_BREACH)
        limit = self.spec.interval * (self.spec.max_query_errors - 1)
        if self.now - since < limit or s.state is not PROGRESSING:
            return False
        reason = (
            f"{len(errors)} metric queries failing for {format_duration(self.now - since)} "
            f"({self.spec.max_query_errors} evaluations): {errors[0].reason}"
        )
        evidence = [r.record() for r in errors]
        if self.spec.rollback_on_metrics_unavailable:
            self.rollback(reason, evidence)
        else:
            self.hold(HoldReason.METRICS_UNAVAILABLE, reason, evidence, lower_weight=False)
        return True

    def check_rollback(self) -> bool:
        if not self.s.breaches and not self.failing():
            return False  # no window to open, close or fire
        plan = self.plan(self.current.index)
        fired = [(rule, w) for rule, w in plan.rollback_triggers if self.sustained(rule, w)]
        after = self.spec.breach_rollback_after
        if after is not None:
            fired += [
                (rule, after) for rule in plan.success_criteria if self.sustained(rule, after)
            ]
        if not fired:
            return False
        self.rollback(self.explain(fired), [self.results[rule].record() for rule, _ in fired])
        return True

    def check_hold(self) -> bool:
        if not self.s.breaches and not self.failing():
            return False  # no window to open, close or fire
        plan = self.plan(self.current.index)
        fired = [(rule, w) for rule, w in plan.hold_triggers if self.sustained(rule, w)]
        if not fired or self.current.started_at is None:
            return False
        evidence = [self.results[rule].record() for rule, _ in fired]
        self.hold(HoldReason.HOLD_TRIGGER, self.explain(fired), evidence, lower_weight=True)
        return True

    def checkpoints(self) -> None:
        """Judge every checkpoint that is due, then the gate at the end of the phase."""
        cp = self.current
        if cp.started_at is None:
            return
        phase = self.spec.phases[cp.index]
        plan = self.plan(cp.index)
        offsets = plan.offsets
        ran = elapsed(cp, self.now)
        judged = cp.checkpoints_judged
        if judged < len(offsets) and offsets[judged] <= ran and self.criteria_judged(plan):
            criteria = [self.results[rule] for rule in plan.success_criteria]
            while judged < len(offsets) and offsets[judged] <= ran:
                self.record_checkpoint(phase, offsets[judged], criteria)
                judged = cp.checkpoints_judged
        # Most evaluations leave these as they are: comparing costs less than assigning.
        due = offsets[judged] if judged < len(offsets) else None
        if cp.next_checkpoint != due:
            self.phase_to_change().next_checkpoint = due
        progress = f"{cp.checkpoints_passed}/{cp.checkpoints_total}"
        if self.s.progress != progress:
            self.s.progress = progress
        if judged == len(offsets) and ran >= phase.duration:
            if cp.checkpoints_passed == len(offsets):
                self.advance(f"{phase.name}: all {len(offsets)} checkpoints passed")
            else:
                self.gate_closed(phase, plan)
        else:
            message = self.started_progress(phase, cp, plan)
            if self.s.message != message:
                self.s.message = message

    def criteria_judged(self, plan: PhasePlan) -> bool:
        """Whether every success criterion has a verdict on the canary. A query error defers a
        checkpoint: a Prometheus outage is not a verdict on the canary."""
        wanted = plan.success_criteria_set
        if not self.results.keys() >= wanted:
            return False
        return not any(r.verdict is ERROR and r.rule.rule_id in wanted for r in self.not_passed)

    def gate_closed(self, phase: Phase, plan: PhasePlan) -> None:
        """The phase ended with checkpoints not passed: hold, the last failures as evidence."""
        cp = self.current
        offsets = plan.offsets
        criteria = [self.results[rule] for rule in plan.success_criteria if rule in self.results]
        failed = len(offsets) - cp.checkpoints_passed
        last_failed = [
            r
            for c in self.s.checkpoints
            if c.phase == phase.name and c.verdict is not CheckpointVerdict.PASSED
            for r in (c.results or [])
            if r.verdict is not PASS
        ]
        self.hold(
            HoldReason.GATE,
            f"{phase.name} ended with {failed} of {len(offsets)} checkpoints not passed; "
            "promote, retry or abort",
            last_failed[-len(criteria) :] if criteria else [],
            lower_weight=True,
        )

    def record_checkpoint(self, phase: Phase, offset: timedelta, criteria: list[Judgement]) -> None:
        cp = self.phase_to_change()
        verdicts = {r.verdict for r in criteria}
        if FAIL in verdicts:
            verdict = CheckpointVerdict.FAILED
        elif verdicts <= {PASS}:
            verdict = CheckpointVerdict.PASSED
        else:
            verdict = CheckpointVerdict.INCONCLUSIVE
        record = CheckpointRecord(
            phase=phase.name,
            offset=offset,
            time=self.now,
            verdict=verdict,
            results=[r.record() for r in criteria],
        )
        records = [*self.s.checkpoints, record]
        cut = len(records) - DETAILED_CHECKPOINTS
        if cut > 0 and records[cut - 1].results is not None:
            records[:cut] = [r.model_copy(update={"results": None}) for r in records[:cut]]
        self.s.checkpoints = records
        cp.checkpoints_judged += 1
        position = f"{cp.checkpoints_judged}/{cp.checkpoints_total}"
        if verdict is CheckpointVerdict.PASSED:
            cp.checkpoints_passed += 1
            self.event("Normal", "CheckpointPassed", f"{phase.name} checkpoint {position} passed")
        else:
            why = "; ".join(f"{r.metric}: {r.reason}" for r in criteria if r.verdict is not PASS)
            self.event(
                "Warning",
                f"Checkpoint{verdict.value}",
                f"{phase.name} checkpoint {position} {verdict.value.lower()}: {why}",
            )

    # ---- transitions ------------------------------------------------------------------

    def restart(self, reason: str, *, new_revision: bool) -> None:
        s = self.s
        if new_revision:
            s.approvals = []
            s.rejections = []
            self.decide(Action.RESTART, reason, [])
            self.event("Normal", "Restarted", f"{reason}: canary to 0%, then the first phase")
        s.revision = self.spec.revision
        s.state = PENDING
        s.current_phase = None
        s.checkpoints = []
        s.breaches = []
        s.hold_reason = None
        s.resume_state = None
        s.progress = None
        s.desired_weight = 0
        s.message = f"starting {self.spec.revision}: waiting for the route to show canary 0%"

    def enter_phase(self, index: int, reason: str) -> None:
        s = self.s
        phase = self.spec.phases[index]
        if phase.approval is not None:
            approved = {a.group for a in s.approvals if a.phase == phase.name}
            missing = [g for g in phase.approval.required if g not in approved]
            if missing:
                message = f"waiting for approval of {phase.name} by {', '.join(missing)}"
                if s.state is not WAITING_FOR_APPROVAL:
                    s.state = WAITING_FOR_APPROVAL
                    self.decide(Action.WAIT_FOR_APPROVAL, message, [], phase.name)
                    self.event("Normal", "WaitingForApproval", message)
                s.message = message
                return
        if phase.not_before is not None and self.now < phase.not_before:
            if s.state is not SCHEDULED:
                s.state = SCHEDULED
                message = f"{phase.name} not before {phase.not_before.isoformat()}"
                self.decide(Action.WAIT_FOR_SCHEDULE, message, [], phase.name)
                self.event("Normal", "Scheduled", message)
                s.message = message
            return
        previous = s.current_phase
        s.current_phase = PhaseStatus(
            name=phase.name,
            index=index,
            weight=phase.weight,
            checkpoints_total=len(phase.checkpoint_offsets),
            next_checkpoint=phase.checkpoint_offsets[0],
        )
        s.state = PROGRESSING
        s.hold_reason = None
        s.breaches = []
        s.desired_weight = phase.weight
        s.progress = f"0/{len(phase.checkpoint_offsets)}"
        action = Action.ADVANCE if previous is not None else Action.START
        word = "advanced to" if previous is not None else "started"
        self.decide(action, f"{word} {phase.name} ({phase.weight}%): {reason}", [], phase.name)
        self.event(
            "Normal", "PhaseChanged", f"{word} {phase.name}: canary {phase.weight}% ({reason})"
        )
        if s.canary_weight == phase.weight:
            s.current_phase.started_at = self.now
        s.message = self.progress_message(phase)

    def advance(self, reason: str) -> None:
        following = self.current.index + 1
        if following >= len(self.spec.phases):
            self.complete(reason)
        else:
            self.enter_phase(following, reason)

    def complete(self, reason: str) -> None:
        s = self.s
        if self.spec.stable.deployment is not None:
            s.state = PROMOTING
            s.message = "promoting: the stable Deployment takes the canary's pod template"
            self.decide(Action.PROMOTE, f"all phases done: {reason}", [])
            self.event("Normal", "Promoting", s.message)
            self.promoting()
            return
        s.state = SUCCEEDED
        weight = s.desired_weight
        s.message = (
            f"all phases passed; the route keeps canary {weight}%. Promoting the canary to "
            "stable is yours to do (or set deployment: on stable and canary)"
        )
        self.decide(Action.COMPLETE, f"all phases done: {reason}", [])
        self.event("Normal", "Succeeded", s.message)

    def promoting(self) -> None:
        """Stable takes the canary's template, traffic returns to stable, the canary scales
        down; each step is asked again until it is seen done, so a failed call is retried."""
        s = self.s
        self.workload = WorkloadAction.PROMOTE
        if not self.obs.promotion_done:
            return
        s.desired_weight = 0
        if s.canary_weight != 0:
            return
        if not self.obs.canary_scaled_down:
            self.workload = WorkloadAction.SCALE_DOWN_CANARY
            s.message = "promoted: stable has 100% of traffic; scaling the canary down"
            return
        self.workload = None
        s.state = SUCCEEDED
        s.message = "promoted: stable runs the new revision with 100% of traffic"
        self.decide(Action.COMPLETE, s.message, [])
        self.event("Normal", "Succeeded", s.message)

    def hold(
        self,
        why: HoldReason,
        reason: str,
        evidence: list[CriterionResult],
        *,
        lower_weight: bool,
        event: str = "Holding",
    ) -> None:
        s = self.s
        s.state = HOLDING
        s.hold_reason = why.value
        self.stop_clock()
        if lower_weight and self.spec.hold_weight is not None and s.desired_weight is not None:
            s.desired_weight = min(self.spec.hold_weight, s.desired_weight)
        s.message = f"holding at canary {s.desired_weight}%: {reason}"
        self.decide(Action.HOLD, reason, evidence)
        self.event("Warning", event, s.message)

    def rollback(self, reason: str, evidence: list[CriterionResult]) -> None:
        s = self.s
        s.state = ROLLED_BACK
        s.hold_reason = None
        s.desired_weight = 0
        self.stop_clock()
        s.message = f"rolled back: {reason}. Retry, or change spec.revision"
        self.decide(Action.ROLLBACK, reason, evidence)
        self.event("Warning", "RolledBack", s.message)

    def degrade(self, reason: str) -> None:
        s = self.s
        if s.state is not DEGRADED:
            s.resume_state = s.state
            s.state = DEGRADED
            if s.resume_state is PROGRESSING:
                self.stop_clock()
            self.event("Warning", "Degraded", reason)
        s.message = f"{reason}; traffic left as it is"

    def recover(self) -> None:
        s = self.s
        s.state = s.resume_state or PENDING
        s.resume_state = None
        if s.state is PROGRESSING:
            self.resume_clock()
        self.event("Normal", "Recovered", "the route is readable again")

    # ---- manual controls ----------------------------------------------------------------

    def control(self, c: Control) -> None:
        s = self.s
        by = f" by {c.by}"
        if s.hold_reason == HoldReason.REJECTED and c.action in GO_ON:
            last = s.rejections[-1] if s.rejections else None
            what = f"{last.phase} was rejected by {last.by}" if last else "the gate was rejected"
            self.ignored(c, f"{what}; only retry or a new spec.revision goes on")
        elif c.action is ControlAction.APPROVE:
            self.approve(c)
        elif c.action is ControlAction.REJECT:
            self.reject(c)
        elif c.action is ControlAction.ABORT:
            if s.state in (ROLLED_BACK, SUCCEEDED):
                self.ignored(c, f"the release is {s.state.value}")
            else:
                self.rollback(f"aborted{by}" + (f": {c.reason}" if c.reason else ""), [])
        elif c.action is ControlAction.RETRY:
            self.restart(f"retried{by}", new_revision=False)
            self.decide(Action.RESTART, f"retried{by}", [])
            self.event("Normal", "Restarted", f"retried{by}: canary to 0%, then the first phase")
        elif c.action is ControlAction.PAUSE:
            if s.state in (PROGRESSING, HOLDING) and s.current_phase is not None:
                s.state, s.hold_reason = PAUSED, None
                self.stop_clock()
                s.message = f"paused{by} at canary {s.desired_weight}%; resume to continue"
                self.decide(Action.PAUSE, f"paused{by}", [])
                self.event("Normal", "Paused", s.message)
            else:
                self.ignored(c, f"only a progressing release pauses; it is {s.state.value}")
        elif c.action is ControlAction.RESUME:
            self.resume(c)
        elif c.action in (ControlAction.PROMOTE, ControlAction.PROMOTE_FULL):
            if s.state not in ACTIVE or s.current_phase is None:
                self.ignored(c, f"nothing to promote while {s.state.value}")
                return
            self.resume_clock()
            self.s.hold_reason = None
            if c.action is ControlAction.PROMOTE_FULL:
                self.complete(f"fully promoted{by}")
            else:
                self.advance(f"promoted{by}")

    def gate(self, c: Control) -> tuple[int, Phase, str] | None:
        """The gate an approval or rejection is for: the phase's index, the phase and the
        group; None (and a ControlIgnored event) when the phase has none or the group is not
        one of its approvers."""
        group = c.group or c.by
        found = [(i, p) for i, p in enumerate(self.spec.phases) if p.name == c.phase]
        if not found or found[0][1].approval is None:
            self.ignored(c, f"phase {c.phase!r} has no approval gate")
            return None
        index, phase = found[0]
        assert phase.approval is not None
        if group not in phase.approval.required:
            groups = ", ".join(phase.approval.required)
            self.ignored(c, f"{group!r} is not an approver of {phase.name} ({groups})")
            return None
        return index, phase, group

    def approve(self, c: Control) -> None:
        gate = self.gate(c)
        if gate is None:
            return
        _, phase, group = gate
        if any(a.phase == phase.name and a.group == group for a in self.s.approvals):
            return
        record = ApprovalRecord(phase=phase.name, group=group, by=c.by, time=self.now)
        self.s.approvals = [*self.s.approvals, record]
        self.event("Normal", "Approved", f"{phase.name} approved for {group} by {c.by}")

    def reject(self, c: Control) -> None:
        """A NO-GO on a gate ahead: hold now, weight kept, until a retry or a new revision."""
        s = self.s
        gate = self.gate(c)
        if gate is None:
            return
        index, phase, group = gate
        if s.state in (ROLLED_BACK, SUCCEEDED, PROMOTING):
            self.ignored(c, f"the release is {s.state.value}")
            return
        if s.current_phase is not None and s.current_phase.index >= index:
            self.ignored(c, f"{phase.name} has been entered already; pause or abort instead")
            return
        record = RejectionRecord(
            phase=phase.name, group=group, by=c.by, time=self.now, reason=c.reason
        )
        s.rejections = [*s.rejections, record][-REJECTIONS:]
        s.resume_state = None  # a Degraded release comes back to this hold
        why = f"{phase.name} rejected by {c.by} for {group}" + (f": {c.reason}" if c.reason else "")
        self.hold(HoldReason.REJECTED, why, [], lower_weight=False, event="Rejected")
        s.message += ". Retry, or change spec.revision"

    def resume(self, c: Control) -> None:
        s = self.s
        if s.state not in (PAUSED, HOLDING):
            self.ignored(c, f"nothing to resume while {s.state.value}")
            return
        if s.hold_reason == HoldReason.GATE:
            self.ignored(
                c, "the phase ended without passing its checkpoints; promote, retry or abort"
            )
            return
        cp = self.current
        self.resume_clock()
        s.state, s.hold_reason = PROGRESSING, None
        s.desired_weight = cp.weight
        s.breaches = [b for b in s.breaches if not b.rule.startswith("holdTriggers")]
        self.decide(Action.RESUME, f"resumed by {c.by}", [])
        self.event("Normal", "Resumed", f"resumed by {c.by}: canary back to {cp.weight}%")
        s.message = self.progress_message(self.spec.phases[cp.index])

    def ignored(self, c: Control, why: str) -> None:
        self.event("Warning", "ControlIgnored", f"{c.action.value} by {c.by} ignored: {why}")

    # ---- helpers --------------------------------------------------------------------------

    def plan(self, index: int) -> PhasePlan:
        plan = self.plans.get(index)
        if plan is None:
            plan = self.plans[index] = phase_plan(self.spec, self.namespace, index)
        return plan

    @property
    def current(self) -> PhaseStatus:
        assert self.s.current_phase is not None
        return self.s.current_phase

    def phase_key(self) -> tuple[int | None, State]:
        cp = self.s.current_phase
        return (cp.index if cp else None, self.s.state)

    def next_index(self) -> int:
        return 0 if self.s.current_phase is None else self.s.current_phase.index + 1

    def phase_to_change(self) -> PhaseStatus:
        """The current phase's fields, to change: the status made at the end has a new record
        of them only if they were (most evaluations leave them as they are)."""
        self.own_phase = True
        return self.current

    def stop_clock(self) -> None:
        cp = self.s.current_phase
        if cp is not None and cp.started_at is not None and cp.held_since is None:
            self.phase_to_change().held_since = self.now

    def resume_clock(self) -> None:
        cp = self.s.current_phase
        if cp is not None and cp.held_since is not None:
            held_since = cp.held_since
            cp = self.phase_to_change()
            cp.held_for += self.now - held_since
            cp.held_since = None

    def open_breach(self, rule: str) -> datetime:
        for breach in self.s.breaches:
            if breach.rule == rule:
                return breach.since
        self.s.breaches = [*self.s.breaches, Breach(rule=rule, since=self.now)]
        return self.now

    def close_breach(self, rule: str) -> None:
        if self.s.breaches and any(b.rule == rule for b in self.s.breaches):
            self.s.breaches = [b for b in self.s.breaches if b.rule != rule]

    def failing(self) -> bool:
        return bool(self.not_passed) and any(r.verdict is FAIL for r in self.not_passed)

    def errors(self) -> list[Judgement]:
        """The rules whose queries failed at this evaluation."""
        if not self.not_passed:
            return []
        return [r for r in self.not_passed if r.verdict is ERROR]

    def sustained(self, rule: str, window: timedelta) -> bool:
        """The ``for`` rule: Fail opens or keeps the window, Pass closes it, and NoData or
        Error leave it as it is without firing it. It fires on a Fail once it has lasted
        ``window``."""
        result = self.results.get(rule)
        if result is None:
            return False
        verdict = result.verdict
        if verdict is PASS:
            self.close_breach(rule)
            return False
        if verdict is not FAIL:
            return False
        return self.now - self.open_breach(rule) >= window

    def explain(self, fired: list[tuple[str, timedelta]]) -> str:
        parts = []
        for rule, window in fired:
            r = self.results[rule]
            since = next(b.since for b in self.s.breaches if b.rule == rule)
            lasted = format_duration(self.now - since)
            parts.append(
                f"{rule} {r.metric} ({r.threshold}, for {format_duration(window)}) "
                f"failing for {lasted}: {r.reason}"
            )
        return "; ".join(parts)

    def decide(
        self, action: Action, reason: str, evidence: list[CriterionResult], phase: str | None = None
    ) -> None:
        name = phase or (self.s.current_phase.name if self.s.current_phase else None)
        self.s.decision = Decision(
            action=action, reason=reason, evidence=evidence, time=self.now, phase=name
        )

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def progress_message(self, phase: Phase) -> str:
        cp = self.current
        if cp.started_at is None:
            return (
                f"{phase.name} {phase.weight}%: setting the canary weight "
                f"(route shows {self.s.canary_weight}%)"
            )
        return self.started_progress(phase, cp, self.plan(cp.index))

    def started_progress(self, phase: Phase, cp: PhaseStatus, plan: PhasePlan) -> str:
        """:meth:`progress_message` of a started phase."""
        judged = cp.checkpoints_judged
        last = None
        if judged:  # the phase's latest checkpoint: the last one recorded, unless edited by hand
            records = self.s.checkpoints
            latest = records[-1] if records and records[-1].phase == phase.name else None
            if latest is None:
                latest = next(c for c in reversed(records) if c.phase == phase.name)
            last = latest.verdict
        said = plan.progress.get((judged, last))
        if said is None:
            said = plan.progress[judged, last] = _progress_words(phase, plan, judged, last)
        return said

    def next_evaluation(self) -> timedelta:
        s, interval = self.s, self.spec.interval
        desired, state = s.desired_weight, s.state  # (read once: see _set_conditions)
        if desired is not None and desired != s.canary_weight:
            return min(interval, WEIGHT_RECHECK)
        cp = s.current_phase
        if state is SCHEDULED:
            phase = self.spec.phases[self.next_index()]
            if phase.not_before is not None:
                return max(NO_TIME, min(interval, phase.not_before - self.now))
        if state is PROGRESSING and cp is not None and cp.started_at is not None:
            offsets = self.plan(cp.index).offsets
            judged = cp.checkpoints_judged
            due = offsets[judged] if judged < len(offsets) else self.spec.phases[cp.index].duration
            left = due - elapsed(cp, self.now)
            return interval if left >= interval else left if left > NO_TIME else NO_TIME
        return interval

    def timeliness(self) -> tuple[bool, str] | None:
        """On time, or late by more than an interval; None in between (no flapping)."""
        late, interval = self.obs.late_by, self.spec.interval
        if late > interval:
            return False, (
                f"evaluated {format_duration(late)} after it was due (interval "
                f"{format_duration(interval)}): the operator is falling behind"
            )
        return ON_TIME if late <= interval / 2 else None

    def result(self, generation: int | None) -> Evaluation:
        s = self.s
        if generation is not None:
            s.observed_generation = generation
        errors = self.errors() if self.results else None
        _set_conditions(s, self.now, errors, self.control_news, self.timeliness())
        weight = None if s.state in HANDS_OFF else s.desired_weight
        next_evaluation = self.next_evaluation()
        given = self.given
        if s.current_phase is self.phase_fields is not None:
            s.current_phase = (
                record_of(PhaseStatus, self.phase_fields) if self.own_phase else given.current_phase
            )
        # Most evaluations change nothing: then the status given is the answer (records are
        # never edited, so it can be shared).
        status = given if s.__dict__ == given.__dict__ else record_of(RolloutStatus, s)
        return Evaluation(status, weight, self.workload, tuple(self.events), next_evaluation)


def _progress_words(
    phase: Phase, plan: PhasePlan, judged: int, last: CheckpointVerdict | None
) -> str:
    """A started phase's progress: its last checkpoint's verdict and what comes next."""
    head = f"{phase.name} {phase.weight}%"
    offsets = plan.offsets
    if last is not None:
        done = f"checkpoint {judged}/{len(offsets)} {last.value.lower()} at " + (
            format_duration(offsets[judged - 1])
        )
    else:
        done = f"0/{len(offsets)} checkpoints"
    after = (
        f"next at {format_duration(offsets[judged])}"
        if judged < len(offsets)
        else f"phase ends at {format_duration(phase.duration)}"
    )
    return f"{head}: {done}; {after}"


GO_ON = (
    ControlAction.PROMOTE,
    ControlAction.PROMOTE_FULL,
    ControlAction.PAUSE,
    ControlAction.RESUME,
)


def _set_conditions(
    s: RolloutStatus,
    now: datetime,
    errors: list[Judgement] | None = None,  # of the rules judged; None: none was judged
    control_news: tuple[bool, str] | None = None,
    timeliness: tuple[bool, str] | None = None,
) -> None:
    """Kubernetes-style conditions derived from the state; times move only on a flip."""
    # (Read once: a field read on a pydantic model runs its __getattr__ hook.)
    state, state_message = s.state, s.message
    word, bad = str(state), state in BAD  # (a StrEnum's str() is its value, sooner)
    wanted = [
        ("Ready", state is SUCCEEDED, word, state_message),
        ("Progressing", state in MOVING, word, state_message),
        ("Degraded", bad, word, state_message if bad else ""),
    ]
    previous = {c.type: c for c in s.conditions}
    rejected = bool(s.rejections) and s.hold_reason == HoldReason.REJECTED
    if rejected or "Rejected" in previous:
        last = s.rejections[-1] if rejected else None
        said = (
            f"{last.phase} rejected by {last.by} for {last.group} at "
            f"{last.time.isoformat()}" + (f": {last.reason}" if last.reason else "")
            if last is not None
            else ""
        )
        wanted.append(("Rejected", rejected, "Rejected" if rejected else "GoneOn", said))
    # ControlsAccepted appears with the first refused control annotation: False naming it,
    # True again once a later control is applied.
    controls = previous.get("ControlsAccepted")
    if control_news is not None and (controls is not None or not control_news[0]):
        accepted, said = control_news
        wanted.append(("ControlsAccepted", accepted, "Applied" if accepted else "Refused", said))
    elif controls is not None:
        wanted.append(
            ("ControlsAccepted", controls.status == "True", controls.reason, controls.message)
        )
    # EvaluatedOnTime appears the first time an evaluation starts more than an interval late.
    # Its message is the one of its last flip: a lag that differs at every late evaluation
    # must not make every one of them a status write.
    timely = previous.get("EvaluatedOnTime")
    if timeliness is not None and (timely is not None or not timeliness[0]):
        on_time, said = timeliness
        if timely is not None and (timely.status == "True") == on_time:
            said = timely.message
        wanted.append(("EvaluatedOnTime", on_time, "OnTime" if on_time else "Late", said))
    elif timely is not None:
        wanted.append(("EvaluatedOnTime", timely.status == "True", timely.reason, timely.message))
    metrics = previous.get("MetricsAvailable")
    if errors is not None:
        if errors:
            why = "QueryRejected" if any("rejected" in r.reason for r in errors) else "QueryFailed"
            wanted.append(
                ("MetricsAvailable", False, why, f"{errors[0].metric}: {errors[0].reason}")
            )
        else:
            wanted.append(("MetricsAvailable", True, "QueriesAnswered", "all queries answered"))
    elif metrics is not None:
        wanted.append(
            ("MetricsAvailable", metrics.status == "True", metrics.reason, metrics.message)
        )
    conditions = []
    for type_, ok, reason, message in wanted:
        status = "True" if ok else "False"
        old = previous.get(type_)
        if (
            old is not None
            and old.status == status
            and old.reason == reason
            and old.message == message
        ):
            conditions.append(old)  # unchanged: records are never edited, so it is shared
            continue
        since = old.last_transition_time if old is not None and old.status == status else now
        conditions.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=since,
            )
        )
    s.conditions = conditions
