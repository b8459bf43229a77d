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


# The local API authenticates nobody and serves no SelfSubjectReview: the CLI signs with the
# kubeconfig's user and says so. (On kube-apiserver: tests/cluster/test_admitted_approvals.py.)
LOCAL_USER = "phasegate-local"


@pytest.mark.parametrize(
    ("args", "body"),
    [
        (
            ["approve", "--phase", "ramp", "--group", "finance"],
            {"action": "approve", "phase": "ramp", "group": "finance", "by": LOCAL_USER},
        ),
        (
            ["reject", "--phase", "ramp", "--group", "finance", "--reason", 'quarter "close"'],
            {
                "action": "reject",
                "phase": "ramp",
                "group": "finance",
                "by": LOCAL_USER,
                "reason": 'quarter "close"',
            },
        ),
        (["promote", "--full"], {"action": "promoteFull", "by": LOCAL_USER}),
        (
            ["abort", "--reason", "customer reports"],
            {"action": "abort", "by": LOCAL_USER, "reason": "customer reports"},
        ),
        (["pause"], {"action": "pause", "by": LOCAL_USER}),
    ],
)
def test_steering_commands_add_the_control_annotation(
    kc: Path, args: list[str], body: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(kc, args[0], "cohort-analyzer", "-n", "learning", *args[1:])
    assert code == 0 and "requested" in out
    assert f"signing as '{LOCAL_USER}', the kubeconfig's user" in capsys.readouterr().err
    annotations = Kube(kc).ok("GET", PATH)["metadata"]["annotations"]
    requests, problems = controls.parse(annotations)
    assert problems == [] and [b for _, b in requests] == [body]
    ((value),) = [v for k, v in annotations.items() if k.startswith(controls.PREFIX)]
    assert controls.is_canonical(value), "the form the admission policy admits"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["approve", "--phase", "ramp"],
            "ramp needs approvals from engineering, operations, product, finance: "
            "say which with --group",
        ),
        (
            ["approve", "--phase", "ramp", "--group", "legal"],
            "'legal' is not an approver of ramp; its groups: engineering, operations, "
            "product, finance",
        ),
        (
            ["reject", "--phase", "canary", "--group", "finance", "--reason", "no"],
            "phase 'canary' has no approval gate; phases with one: ramp, rollout",
        ),
        (
            ["approve", "--phase", "ramp", "--as", "finance"],
            "--as is gone: phasegate acts as you, as the API server knows you; "
            "name the group with --group",
        ),
    ],
)
def test_a_control_that_cannot_apply_is_refused_before_anything_is_written(
    kc: Path, args: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(kc, args[0], "cohort-analyzer", "-n", "learning", *args[1:])
    assert code == 2 and f"error: {error}" in capsys.readouterr().err
    annotations = Kube(kc).ok("GET", PATH)["metadata"].get("annotations") or {}
    assert not [k for k in annotations if k.startswith(controls.PREFIX)]


def test_a_rejection_needs_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["reject", "cohort-analyzer", "--phase", "ramp", "--group", "finance"])
    assert "the following arguments are required: --reason" in capsys.readouterr().err


def test_a_missing_rollout_is_an_error_and_writes_nothing(
    kc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(kc, "pause", "nope", "-n", "learning")
    assert code == 1 and "Not Found" in capsys.readouterr().err
