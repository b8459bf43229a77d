"""Which queries the current phase needs, rendered from the metric templates.

A phase's plan (its rules, each with its metric and rendered queries, and the distinct
queries) is computed once per spec object and reused: the operator asks for it twice per
evaluation (to plan the queries, then to judge the answers), the engine benchmark thousands
of times. Specs are never modified once validated, so the object's identity is its key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta

from phasegate.api.spec import Criterion, Phase, RolloutSpec
from phasegate.api.templates import render
from phasegate.engine.inputs import Backend, QueryRequest
from phasegate.engine.judge import RulePlan


def template_values(
    spec: RolloutSpec, namespace: str, phase: Phase, backend: Backend
) -> dict[str, str | int | float]:
    judged = spec.canary if backend == "canary" else spec.stable
    return {
        "namespace": namespace,
        "service": judged.service,
        "stable.service": spec.stable.service,
        "canary.service": spec.canary.service,
        "phase": phase.name,
        "weight": phase.weight,
    }


def requests_for(
    spec: RolloutSpec, namespace: str, phase: Phase, criterion: Criterion
) -> dict[Backend, QueryRequest]:
    """The queries one criterion needs: the canary's, and the stable's when it compares."""
    metric = spec.metric(criterion.metric)
    backends: tuple[Backend, ...] = ("canary", "stable") if criterion.compare else ("canary",)
    out: dict[Backend, QueryRequest] = {}
    for backend in backends:
        query = render(metric.query, template_values(spec, namespace, phase, backend))
        if criterion.test is not None:
            out[backend] = QueryRequest(
                metric.name, backend, query, window=criterion.test.window, step=criterion.test.step
            )
        else:
            group_by = criterion.consistency.by if criterion.consistency else None
            out[backend] = QueryRequest(metric.name, backend, query, group_by=group_by)
    return out


def rules_of(phase: Phase) -> list[tuple[str, Criterion]]:
    """Every rule of a phase with its id, e.g. ``rollbackTriggers[0]``."""
    return [
        *((f"successCriteria[{i}]", c) for i, c in enumerate(phase.success_criteria)),
        *((f"rollbackTriggers[{i}]", c) for i, c in enumerate(phase.rollback_triggers)),
        *((f"holdTriggers[{i}]", c) for i, c in enumerate(phase.hold_triggers)),
    ]


@dataclass(frozen=True)
class PhasePlan:
    rules: tuple[RulePlan, ...]
    queries: tuple[QueryRequest, ...]  # distinct (by key), in a stable order
    success_criteria: tuple[str, ...]  # the rule ids, in order
    success_criteria_set: frozenset[str]
    rollback_triggers: tuple[tuple[str, timedelta], ...]  # rule id and its ``for``
    hold_triggers: tuple[tuple[str, timedelta], ...]
    offsets: tuple[timedelta, ...]  # Phase.checkpoint_offsets
    # The phase's progress messages, worded by the machine the first time each is needed:
    # the message changes only at a checkpoint, yet every evaluation states it.
    progress: dict[object, str] = field(default_factory=dict, compare=False)


_PLANS: OrderedDict[tuple[int, str, int], tuple[RolloutSpec, PhasePlan]] = OrderedDict()
# One per rollout and phase being evaluated: the operator keeps a rollout's spec object as
# long as its spec does not change, so a plan is made once per spec (a miss only plans again).
_PLANS_KEPT = 4096
_PLANS_LOCK = threading.Lock()


def phase_plan(spec: RolloutSpec, namespace: str, phase_index: int) -> PhasePlan:
    """The phase's rules with their queries, computed once per spec object."""
    key = (id(spec), namespace, phase_index)
    # A hit takes no lock: a read and a move_to_end are each atomic on an OrderedDict.
    kept = _PLANS.get(key)
    if kept is not None and kept[0] is spec:  # the same object, not a reused id
        # (not contextlib.suppress: on this path it would cost more than the lookup)
        try:  # noqa: SIM105
            _PLANS.move_to_end(key)
        except KeyError:  # evicted by another thread meanwhile: it stays out
            pass
        return kept[1]
    phase = spec.phases[phase_index]
    rules = []
    for rule_id, rule in rules_of(phase):
        requests = requests_for(spec, namespace, phase, rule)
        rules.append(RulePlan.of(rule_id, rule, spec.metric(rule.metric), requests))
    distinct: dict[str, QueryRequest] = {}
    for planned in rules:
        for request in planned.requests.values():
            distinct.setdefault(request.key, request)
    success = tuple(f"successCriteria[{i}]" for i in range(len(phase.success_criteria)))
    plan = PhasePlan(
        tuple(rules),
        tuple(distinct.values()),
        success,
        frozenset(success),
        tuple((f"rollbackTriggers[{i}]", t.for_) for i, t in enumerate(phase.rollback_triggers)),
        tuple((f"holdTriggers[{i}]", t.for_) for i, t in enumerate(phase.hold_triggers)),
        tuple(phase.checkpoint_offsets),
    )
    with _PLANS_LOCK:
        _PLANS[key] = (spec, plan)  # the spec is held, so its id cannot be reused meanwhile
        while len(_PLANS) > _PLANS_KEPT:
            _PLANS.popitem(last=False)
    return plan


def plan_queries(spec: RolloutSpec, namespace: str, phase_index: int) -> list[QueryRequest]:
    """All distinct queries the phase's rules need, in a stable order."""
    return list(phase_plan(spec, namespace, phase_index).queries)
