"""The phase history in status: what a phase report needs that no single evaluation keeps.

Pure: called after the engine's evaluation with the rules of the phase judged on the same
measurements (:func:`judge_phase`, whose result the metrics share). It changes status
only when something a report shows changes (a phase starts or ends, a decision, a new worst
value), so a steady rollout still writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from phasegate.api.spec import Criterion, RolloutSpec
from phasegate.api.status import (
    Action,
    CriterionResult,
    PhaseRecord,
    RolloutStatus,
    RuleExtreme,
    State,
)
from phasegate.engine import Evaluation, Measurement
from phasegate.engine.judge import judge
from phasegate.engine.queries import requests_for, rules_of

# The rules of a running phase the measurements answer, judged, by rule id.
Judged = Mapping[str, tuple[Criterion, CriterionResult]]

DECISIONS_PER_PHASE = 20
ENDED = (State.ROLLED_BACK, State.SUCCEEDED)


def badness(rule: Criterion, value: float) -> float:
    """How far ``value`` is on the failing side of the rule's test: larger is worse."""
    if rule.consistency is not None:
        return value - rule.consistency.max_spread
    sides = []
    if rule.max is not None:
        sides.append(value - rule.max)
    if rule.min is not None:
        sides.append(rule.min - value)
    return max(sides)


def judge_phase(
    spec: RolloutSpec,
    status: RolloutStatus,
    measurements: Mapping[str, Measurement],
    namespace: str,
) -> Judged:
    """Every rule of the status's running phase that the measurements answer, judged."""
    cp = status.current_phase
    if cp is None or cp.started_at is None or cp.index >= len(spec.phases) or not measurements:
        return {}
    phase = spec.phases[cp.index]
    judged = {}
    for rule_id, rule in rules_of(phase):
        requests = requests_for(spec, namespace, phase, rule)
        if all(r.key in measurements for r in requests.values()):
            metric = spec.metric(rule.metric)
            judged[rule_id] = (rule, judge(rule_id, rule, metric, requests, measurements))
    return judged


def record_history(
    before: RolloutStatus, evaluation: Evaluation, judged: Judged, now: datetime
) -> Evaluation:
    """The evaluation with its status's phase history brought up to date; ``judged``: the
    rules of ``before``'s running phase (:func:`judge_phase`)."""
    after = evaluation.status
    restarted = after.revision != before.revision or any(
        e.reason == "Restarted" for e in evaluation.events
    )
    history = [] if restarted else [r.model_copy() for r in after.phase_history]

    def record(name: str) -> PhaseRecord:
        found = next((r for r in history if r.name == name), None)
        if found is None:
            found = PhaseRecord(name=name)
            history.append(found)
        return found

    old, new = before.current_phase, after.current_phase
    if old is not None and old.started_at is not None and not restarted:
        decided = after.decision if after.decision != before.decision else None
        ended = (
            new is None
            or new.name != old.name
            or after.state in ENDED
            or (decided is not None and decided.phase not in (None, old.name))  # next gate
        )
        if ended and (done := record(old.name)).ended_at is None:
            done.ended_at = now
        for rule_id, (rule, result) in judged.items():
            _keep_worst(record(old.name), rule_id, rule, result, now)
    if new is not None and new.started_at is not None:
        running = record(new.name)
        running.started_at, running.held_for = new.started_at, new.held_for
        if after.state in ENDED and running.ended_at is None:
            running.ended_at = now
    decision = after.decision
    if (
        decision is not None
        and decision != before.decision
        and decision.phase is not None
        and decision.action is not Action.RESTART  # it belongs to the run that it ended
    ):
        target = record(decision.phase)
        target.decisions = [*target.decisions, decision][-DECISIONS_PER_PHASE:]
    if history == after.phase_history:
        return evaluation
    status = after.model_copy(update={"phase_history": history})
    return evaluation._replace(status=status)


def _keep_worst(
    record: PhaseRecord, rule_id: str, rule: Criterion, result: CriterionResult, now: datetime
) -> None:
    if result.value is None:
        return  # no data or an error: nothing to compare
    kept = next((w for w in record.worst if w.rule == rule_id), None)
    if kept is not None and badness(rule, result.value) <= badness(rule, kept.worst):
        return
    extreme = RuleExtreme(
        rule=rule_id,
        metric=result.metric,
        threshold=result.threshold,
        worst=result.value,
        at=now,
        verdict=result.verdict,
    )
    record.worst = [w for w in record.worst if w.rule != rule_id] + [extreme]
    record.worst.sort(key=lambda w: _rule_order(w.rule))


def _rule_order(rule_id: str) -> tuple[int, int]:
    group, _, index = rule_id.partition("[")
    order = ("successCriteria", "rollbackTriggers", "holdTriggers")
    return (order.index(group) if group in order else len(order), int(index.rstrip("]") or 0))
