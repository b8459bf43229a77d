"""`kubectl phasegate` against the local API: reading rollouts and sending controls."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from phasegate.api import controls
from phasegate.cli.kubectl import main
from phasegate.localapi import LocalAPI
from support.kube import CRDS, REFERENCE, Kube, kubectl, namespace

PATH = "/apis/phasegate.dev/v1alpha1/namespaces/learning/progressiverollouts/cohort-analyzer"


@pytest.fixture
def kc(local_api: LocalAPI) -> Path:
    kubectl(local_api.kubeconfig_path, "apply", "-f", str(CRDS))
    kubectl(local_api.kubeconfig_path, "apply", "-f", "-", stdin=namespace("learning"))
    kubectl(local_api.kubeconfig_path, "apply", "-f", str(REFERENCE))
    status = {
        "state": "WaitingForApproval",
        "canaryWeight": 1,
        "progress": "5/5",
        "message": "waiting for approval of ramp by finance",
        "currentPhase": {"name": "canary", "index": 0, "weight": 1},
        "checkpoints": [
            {
                "phase": "canary",
                "offset": "15m",
                "time": "2025-11-01T10:15:00Z",
                "verdict": "Passed",
                "results": [
                    {
                        "rule": "successCriteria[0]",
                        "metric": "error-rate",
                        "query": "q",
                        "value": 0.002,
                        "threshold": "<= 0.01",
                        "verdict": "Pass",
                        "reason": "value 0.002 passes <= 0.01",
                    }
                ],
            }
        ],
    }
    Kube(local_api.kubeconfig_path).ok(
        "PATCH", f"{PATH}/status", {"status": status}, content_type="application/merge-patch+json"
    )
    return local_api.kubeconfig_path


def run(kc: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--kubeconfig", str(kc), *args], out=out)
    return code, out.getvalue()


def test_get_lists_rollouts_with_phase_weight_state_and_checkpoints(kc: Path) -> None:
    code, out = run(kc, "get", "-A")
    assert code == 0
    header, row = out.splitlines()
    assert header.split()[:7] == [
        "NAMESPACE",
        "NAME",
        "REVISION",
        "PHASE",
        "WEIGHT",
        "STATE",
        "CHECKPOINTS",
    ]
    assert row.split()[:7] == [
        "learning",
        "cohort-analyzer",
        "v3.0.0",
        "canary",
        "1",
        "WaitingForApproval",
        "5/5",
    ]


def test_report_shows_values_against_thresholds(kc: Path) -> None:
    code, out = run(kc, "report", "cohort-analyzer", "-n", "learning")
    assert code == 0
    assert (
        "canary @ 15m  Passed" in out
        and "error-rate" in out
        and "0.002" in out
        and "<= 0.01" in out
    )


@pytest.mark.parametrize(
    ("args", "body"),
    [
        (
            ["approve", "--phase", "ramp", "--as", "finance"],
            {"action": "approve", "by": "finance", "phase": "ramp"},
        ),
        (["promote", "--full", "--as", "alice"], {"action": "promoteFull", "by": "alice"}),
        (
            ["abort", "--as", "alice", "--reason", "customer reports"],
            {"action": "abort", "by": "alice", "reason": "customer reports"},
        ),
        (["pause", "--as", "bob"], {"action": "pause", "by": "bob"}),
    ],
)
def test_steering_commands_add_the_control_annotation(
    kc: Path, args: list[str], body: dict[str, str]
) -> None:
    code, out = run(kc, args[0], "cohort-analyzer", "-n", "learning", *args[1:])
    assert code == 0 and "requested" in out
    annotations = Kube(kc).ok("GET", PATH)["metadata"]["annotations"]
    requests, problems = controls.parse(annotations)
    assert problems == [] and [b for _, b in requests] == [body]


def test_a_missing_rollout_is_an_error_and_writes_nothing(
    kc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(kc, "pause", "nope", "-n", "learning")
    assert code == 1 and "Not Found" in capsys.readouterr().err
