"""`kubectl phasegate release` against the local API: a release's waves and regions, and
requests signed as the caller."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from phasegate.api.release import parse_controls, validate_release
from phasegate.cli.kubectl import main
from phasegate.localapi import LocalAPI
from support.kube import CRDS, ROOT, Kube, kubectl

EXAMPLE = ROOT / "manifests/examples/regions-release.yaml"
PATH = "/apis/phasegate.dev/v1alpha1/namespaces/releases/progressivereleases/cohort-analyzer"


@pytest.fixture
def kc(local_api: LocalAPI) -> Path:
    kubectl(local_api.kubeconfig_path, "apply", "-f", str(CRDS))
    kubectl(local_api.kubeconfig_path, "apply", "-f", str(EXAMPLE))
    status = {
        "state": "Holding",
        "revision": "v3.0.0",
        "currentWave": "americas-europe",
        "progress": "1/3",
        "regionsSucceeded": "1/4",
        "message": "americas-europe holds: cannot see eu-west",
        "waves": [
            {"name": "pilot", "state": "Succeeded", "startedAt": "2026-01-01T10:00:00Z",
             "finishedAt": "2026-01-01T16:00:00Z"},
            {"name": "americas-europe", "state": "Progressing",
             "startedAt": "2026-01-01T16:30:00Z"},
            {"name": "asia", "state": "Pending"},
        ],
        "regions": [
            {"name": "us-east", "wave": "pilot", "state": "Succeeded", "reachable": True},
            {"name": "us-west", "wave": "americas-europe", "state": "Progressing",
             "phase": "canary", "weight": 1, "reachable": True,
             "lastDecision": {"action": "Start", "reason": "started"}},
            {"name": "eu-west", "wave": "americas-europe", "state": "Progressing",
             "phase": "canary", "weight": 1, "reachable": False,
             "lastSeen": "2026-01-01T16:40:00Z",
             "message": "the region's API refuses connections"},
            {"name": "ap-south", "wave": "asia", "state": "NotStarted", "reachable": True},
        ],
        "conditions": [
            {"type": "RegionsReachable", "status": "False", "reason": "Unreachable",
             "message": "eu-west: the region's API refuses connections",
             "lastTransitionTime": "2026-01-01T16:40:05Z"},
        ],
    }  # fmt: skip
    Kube(local_api.kubeconfig_path).ok(
        "PATCH", f"{PATH}/status", {"status": status}, content_type="application/merge-patch+json"
    )
    return local_api.kubeconfig_path


def run(kc: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--kubeconfig", str(kc), "release", *args], out=out)
    return code, out.getvalue()


def annotations(kc: Path) -> dict[str, str]:
    found: dict[str, Any] = Kube(kc).ok("GET", PATH)
    return dict(found["metadata"].get("annotations") or {})


def test_the_example_release_is_valid() -> None:
    release = list(yaml.safe_load_all(EXAMPLE.read_text()))[-1]
    spec, problems = validate_release(release)
    assert spec is not None, problems
    assert spec.wave_names() == ["pilot", "americas-europe", "asia"]


def test_get_shows_waves_and_regions(kc: Path) -> None:
    code, out = run(kc, "get", "cohort-analyzer", "-n", "releases")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("releases/cohort-analyzer  v3.0.0  Holding  waves 1/3")
    assert "  americas-europe: Progressing  started 2026-01-01T16:30:00Z" in lines
    eu = next(line for line in lines if line.strip().startswith("eu-west"))
    assert "canary 1%" in eu and "UNREACHABLE" in eu and "seen 2026-01-01T16:40:00Z" in eu
    assert any("condition RegionsReachable: Unreachable" in line for line in lines)
    code, listed = run(kc, "get", "-A")
    assert code == 0 and listed.startswith("releases/cohort-analyzer  v3.0.0  Holding")


def test_kubectl_get_releases_has_its_own_columns(kc: Path) -> None:
    listed = kubectl(kc, "get", "releases", "-n", "releases").stdout.strip()
    header, row = listed.splitlines()
    assert header.split() == ["NAME", "REVISION", "WAVE", "WAVES", "REGIONS", "STATE", "AGE"]
    assert row.split()[:6] == [
        "cohort-analyzer", "v3.0.0", "americas-europe", "1/3", "1/4", "Holding"
    ]  # fmt: skip
    rollouts = kubectl(kc, "get", "rollouts", "-A", check=False).stdout
    assert "cohort-analyzer" not in rollouts, "a release is not listed among rollouts"


def test_approve_a_wave_for_its_only_group_signed_as_the_caller(kc: Path) -> None:
    code, out = run(kc, "approve", "cohort-analyzer", "-n", "releases", "--wave", "asia")
    assert code == 0, out
    requests, problems = parse_controls(annotations(kc))
    assert problems == []
    ((_, body),) = requests
    assert body["action"] == "approve" and body["wave"] == "asia"
    assert body["group"] == "operations" and body["by"] not in ("", "operations")


def test_approve_refuses_a_wave_without_approval_or_a_stranger_group(
    kc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(kc, "approve", "cohort-analyzer", "-n", "releases", "--wave", "pilot")[0] == 2
    assert "needs no approval" in capsys.readouterr().err
    code, _ = run(kc, "approve", "cohort-analyzer", "-n", "releases", "--wave", "asia",
                  "--group", "finance")  # fmt: skip
    assert code == 2 and "not an approver of asia" in capsys.readouterr().err
    assert parse_controls(annotations(kc)) == ([], [])


@pytest.mark.parametrize("action", ["pause", "resume", "abort"])
def test_steering_the_whole_release(kc: Path, action: str) -> None:
    code, out = run(kc, action, "cohort-analyzer", "-n", "releases", "--reason", "incident 42")
    assert code == 0, out
    ((_, body),) = parse_controls(annotations(kc))[0]
    assert body["action"] == action and body["reason"] == "incident 42"
    assert json.loads(json.dumps(body))  # plain JSON, as the hub reads it
