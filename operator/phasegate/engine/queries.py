"""Which queries the current phase needs, rendered from the metric templates."""

from __future__ import annotations

from phasegate.api.spec import Criterion, Phase, RolloutSpec
from phasegate.api.templates import render
from phasegate.engine.inputs import Backend, QueryRequest


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


def plan_queries(spec: RolloutSpec, namespace: str, phase_index: int) -> list[QueryRequest]:
    """All distinct queries the phase's rules need, in a stable order."""
    phase = spec.phases[phase_index]
    seen: dict[str, QueryRequest] = {}
    for _, rule in rules_of(phase):
        for request in requests_for(spec, namespace, phase, rule).values():
            seen.setdefault(request.key, request)
    return list(seen.values())
