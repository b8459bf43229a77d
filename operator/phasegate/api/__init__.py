"""The v1alpha1 API of phasegate: spec, status and the CRD generated from them."""

from phasegate.api.durations import Duration, format_duration, parse_duration
from phasegate.api.resource import API_VERSION, ProgressiveRollout
from phasegate.api.spec import Criterion, Metric, NoDataPolicy, Phase, RolloutSpec, Trigger
from phasegate.api.status import (
    Action,
    CheckpointRecord,
    CheckpointVerdict,
    CriterionResult,
    Decision,
    PhaseStatus,
    RolloutStatus,
    State,
    Verdict,
)

__all__ = [
    "API_VERSION",
    "Action",
    "CheckpointRecord",
    "CheckpointVerdict",
    "Criterion",
    "CriterionResult",
    "Decision",
    "Duration",
    "Metric",
    "NoDataPolicy",
    "Phase",
    "PhaseStatus",
    "ProgressiveRollout",
    "RolloutSpec",
    "RolloutStatus",
    "State",
    "Trigger",
    "Verdict",
    "format_duration",
    "parse_duration",
]
