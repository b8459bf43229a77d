"""Malformed ProgressiveRollouts, each with the field its refusal must name: shared by the
spec validation tests and the real apiserver's admission tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Edit = Callable[[dict[str, Any]], None]


def phase(i: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda doc: doc["spec"]["phases"][i]


def setter(path: str, value: Any) -> Edit:
    """Set a dotted path (list indexes as numbers) to ``value``; ``...`` deletes it."""

    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        key: Any = int(last) if last.isdigit() else last
        if value is ...:
            del node[key]
        else:
            node[key] = value

    return edit


MALFORMED: list[tuple[str, Edit, str, str]] = [
    # (case, edit, field path expected in the message, words expected)
    ("unknown duration unit", setter("spec.interval", "5d"), "spec.interval", "invalid duration"),
    (
        "negative duration",
        setter("spec.phases.0.duration", "-2h"),
        "spec.phases[0].duration",
        "negative",
    ),
    (
        "bare number duration",
        setter("spec.breachRollbackAfter", "180"),
        "spec.breachRollbackAfter",
        "invalid duration",
    ),
    (
        "zero phase duration",
        setter("spec.phases.0.duration", "0s"),
        "spec.phases[0].duration",
        "longer than 0s",
    ),
    (
        "weight above 100",
        setter("spec.phases.2.weight", 101),
        "spec.phases[2].weight",
        "less than or equal to 100",
    ),
    (
        "negative weight",
        setter("spec.phases.0.weight", -1),
        "spec.phases[0].weight",
        "greater than or equal to 0",
    ),
    (
        "weights decrease",
        setter("spec.phases.1.weight", 0),
        "spec.phases[1].weight",
        "never decrease",
    ),
    (
        "hold weight above 100",
        setter("spec.holdWeight", 150),
        "spec.holdWeight",
        "less than or equal to 100",
    ),
    (
        "checkpoint beyond the phase",
        setter("spec.phases.0.checkpoints", ["15m", "3h"]),
        "spec.phases[0].checkpoints[1]",
        "3h is outside the phase (0, 2h]",
    ),
    (
        "checkpoint at zero",
        setter("spec.phases.0.checkpoints", ["0s", "1h"]),
        "spec.phases[0].checkpoints[0]",
        "0s is outside",
    ),
    (
        "unsorted checkpoints",
        setter("spec.phases.0.checkpoints", ["30m", "15m"]),
        "spec.phases[0].checkpoints[1]",
        "must be sorted",
    ),
    (
        "duplicated checkpoints",
        setter("spec.phases.0.checkpoints", ["15m", "15m"]),
        "spec.phases[0].checkpoints[1]",
        "repeats 15m",
    ),
    (
        "empty checkpoints",
        setter("spec.phases.0.checkpoints", []),
        "spec.phases[0].checkpoints",
        "at least one offset",
    ),
    (
        "undefined metric",
        setter("spec.phases.0.successCriteria.0.metric", "errors"),
        "spec.phases[0].successCriteria[0].metric",
        "not defined",
    ),
    (
        "undefined metric in a trigger",
        setter("spec.phases.1.rollbackTriggers.0.metric", "nope"),
        "spec.phases[1].rollbackTriggers[0].metric",
        "not defined",
    ),
    (
        "criterion without a test",
        setter("spec.phases.0.successCriteria.0", {"metric": "error-rate"}),
        "spec.phases[0].successCriteria[0]",
        "needs a test",
    ),
    (
        "min above max",
        setter("spec.phases.0.successCriteria.0", {"metric": "error-rate", "min": 2, "max": 1}),
        "spec.phases[0].successCriteria[0]",
        "greater than max",
    ),
    ("no traffic provider", setter("spec.trafficRouting", {}), "spec.trafficRouting", "found none"),
    (
        "two traffic providers",
        setter("spec.trafficRouting.smi", {"trafficSplit": "x"}),
        "spec.trafficRouting",
        "found gatewayAPI, smi",
    ),
    (
        "duplicate phase names",
        setter("spec.phases.1.name", "canary"),
        "spec.phases[1].name",
        "'canary' is used twice",
    ),
    (
        "duplicate metric names",
        setter("spec.metrics.1.name", "error-rate"),
        "spec.metrics[1].name",
        "'error-rate' is used twice",
    ),
    (
        "empty approval list",
        setter("spec.phases.1.approval", {"required": []}),
        "spec.phases[1].approval.required",
        "at least 1 item",
    ),
    (
        "approver listed twice",
        setter("spec.phases.1.approval", {"required": ["eng", "eng"]}),
        "spec.phases[1].approval.required",
        "listed twice",
    ),
    ("unknown spec field", setter("spec.canaryWeight", 5), "spec.canaryWeight", "unknown field"),
    (
        "unknown phase field",
        setter("spec.phases.0.wieght", 5),
        "spec.phases[0].wieght",
        "unknown field",
    ),
    (
        "missing revision",
        setter("spec.revision", ...),
        "spec.revision",
        "required field is missing",
    ),
    ("no phases", setter("spec.phases", []), "spec.phases", "at least 1 item"),
    ("no metrics", setter("spec.metrics", []), "spec.metrics", "at least 1 item"),
    (
        "unknown template variable",
        setter("spec.metrics.0.query", 'x{s="{{svc}}"}'),
        "spec.metrics[0].query",
        "unknown template variable",
    ),
    (
        "naive notBefore",
        setter("spec.phases.1.notBefore", "2025-11-01T14:00:00"),
        "spec.phases[1].notBefore",
        "time zone",
    ),
    (
        "bad onNoData",
        setter("spec.metrics.0.onNoData", "Ignore"),
        "spec.metrics[0].onNoData",
        "'Pass', 'Fail' or 'Inconclusive'",
    ),
    (
        "same service both sides",
        setter("spec.canary.service", "cohort-analyzer-stable"),
        "spec",
        "must differ",
    ),
    (
        "deployment on one side",
        setter("spec.stable.deployment", "app"),
        "spec",
        "on both stable and canary",
    ),
    (
        "statistical test without compare",
        setter("spec.phases.0.successCriteria.0", {"metric": "error-rate", "max": 1, "test": {}}),
        "spec.phases[0].successCriteria[0]",
        "needs compare: stable",
    ),
    (
        "bad prometheus address",
        setter("spec.prometheus.address", "prometheus:9090"),
        "spec.prometheus.address",
        "should match pattern",
    ),
    ("interval too short", setter("spec.interval", "10ms"), "spec.interval", "at least 100ms"),
    (
        "weight as text",
        setter("spec.phases.0.weight", "ten"),
        "spec.phases[0].weight",
        "valid integer",
    ),
    (
        "bad phase name",
        setter("spec.phases.0.name", "Canary Phase"),
        "spec.phases[0].name",
        "pattern",
    ),
    ("wrong kind", setter("kind", "Rollout"), "kind", "ProgressiveRollout"),
]
