"""`kubectl phasegate report --format md|json [--phase P]` against the local API."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from phasegate.cli.kubectl import main
from phasegate.localapi import LocalAPI
from phasegate.report import build_report, render
from support.kube import CRDS, REFERENCE, Kube, kubectl, namespace
from support.reports import RecordingSim, rolled_back_in_ramp

PATH = "/apis/phasegate.dev/v1alpha1/namespaces/learning/progressiverollouts/cohort-analyzer"


@pytest.fixture(scope="module")
def sim() -> RecordingSim:
    return rolled_back_in_ramp()


@pytest.fixture
def kc(local_api: LocalAPI, sim: RecordingSim) -> Path:
    kubectl(local_api.kubeconfig_path, "apply", "-f", str(CRDS))
    kubectl(local_api.kubeconfig_path, "apply", "-f", "-", stdin=namespace("learning"))
    kubectl(local_api.kubeconfig_path, "apply", "-f", str(REFERENCE))
    status = sim.status.model_dump(mode="json", by_alias=True)
    Kube(local_api.kubeconfig_path).ok(
        "PATCH", f"{PATH}/status", {"status": status}, content_type="application/merge-patch+json"
    )
    return local_api.kubeconfig_path


def run(kc: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    argv = ["--kubeconfig", str(kc), "report", "cohort-analyzer", "-n", "learning", *args]
    code = main(argv, out)
    return code, out.getvalue()


def test_json_report_of_one_phase_is_the_status_read_back(kc: Path, sim: RecordingSim) -> None:
    code, out = run(kc, "--format", "json", "--phase", "ramp")
    assert code == 0
    expected = build_report("learning", "cohort-analyzer", sim.spec, sim.status, "ramp")
    assert json.loads(out) == json.loads(render(expected, "json"))
    assert json.loads(out)["phases"][0]["outcome"] == "RolledBack"


def test_markdown_release_report_shows_values_thresholds_and_the_decision(kc: Path) -> None:
    code, out = run(kc, "--format", "md")
    assert code == 0
    assert out.startswith("# Release report: learning/cohort-analyzer")
    assert "| rollbackTriggers[0] | error-rate | <= 0.015 | 0.03 |" in out
    assert "**Rollback**: rollbackTriggers[0] error-rate" in out


def test_an_unknown_phase_names_the_phases_there_are(
    kc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(kc, "--format", "json", "--phase", "bake")
    assert code == 1
    assert "phases: canary, ramp, rollout" in capsys.readouterr().err
