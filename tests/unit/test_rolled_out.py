"""A promotion counts once the stable Deployment is rolled out, as `kubectl rollout status`
decides it from the Deployment's status."""

from __future__ import annotations

from typing import Any

import pytest

from phasegate.workloads import rolled_out


def deployment(status: dict[str, int], wanted: int = 3) -> dict[str, Any]:
    return {"metadata": {"generation": 2}, "spec": {"replicas": wanted}, "status": status}


DONE = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}


@pytest.mark.parametrize(
    ("status", "expected", "why"),
    [
        (DONE, True, "every replica updated and available"),
        ({**DONE, "observedGeneration": 1}, False, "the controller has not seen the new template"),
        ({**DONE, "updatedReplicas": 2}, False, "a replica still runs the old template"),
        ({**DONE, "replicas": 4}, False, "an old replica is still terminating"),
        ({**DONE, "availableReplicas": 2}, False, "an updated replica is not available yet"),
        ({}, False, "no status yet"),
    ],
)
def test_a_deployment_is_rolled_out_only_when_kubectl_would_say_so(
    status: dict[str, int], expected: bool, why: str
) -> None:
    assert rolled_out(deployment(status)) is expected, why


def test_a_deployment_scaled_to_zero_is_rolled_out_once_its_pods_are_gone() -> None:
    gone = {"observedGeneration": 2, "replicas": 0, "updatedReplicas": 0}
    assert rolled_out(deployment(gone, wanted=0))
    assert not rolled_out(deployment({**gone, "replicas": 1}, wanted=0))
