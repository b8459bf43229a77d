"""The decision engine: pure functions from observations to verdicts and decisions.

No kopf, no Kubernetes client, no network and no clock: ``now`` is always an argument.
"""

from phasegate.engine.inputs import (
    Control,
    ControlAction,
    Measurement,
    Observations,
    Outcome,
    QueryRequest,
)
from phasegate.engine.machine import (
    Evaluation,
    Event,
    WorkloadAction,
    evaluate,
    invalid,
    queries_needed,
)

__all__ = [
    "Control",
    "ControlAction",
    "Evaluation",
    "Event",
    "Measurement",
    "Observations",
    "Outcome",
    "QueryRequest",
    "WorkloadAction",
    "evaluate",
    "invalid",
    "queries_needed",
]
