"""The ProgressiveRelease CRD: generated from the models, named so `kubectl get releases`
works and never mixes with `kubectl get rollouts`."""

from __future__ import annotations

from pathlib import Path

from phasegate.api.crd import CRD_FILES, release_crd, render_release_yaml

ROOT = Path(__file__).resolve().parents[2]
FILE = "phasegate.dev_progressivereleases.yaml"


def test_committed_release_crds_match_the_models() -> None:
    for place in ("crds", "charts/phasegate/crds", "manifests/install/crds"):
        text = (ROOT / place / FILE).read_text()
        assert text == render_release_yaml(), f"{place}/{FILE} is stale: run `make crds`"
    assert FILE in CRD_FILES
    assert f"crds/{FILE}" in (ROOT / "manifests/install/kustomization.yaml").read_text()


def test_names_and_columns() -> None:
    spec = release_crd()["spec"]
    names = spec["names"]
    assert names["plural"] == "progressivereleases" and "releases" in names["shortNames"]
    assert "rollouts" not in names["categories"], "kubectl get rollouts shows rollouts only"
    columns = [c["name"] for c in spec["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Revision", "Wave", "Waves", "Regions", "State", "Message", "Age"]
    schema = spec["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    template = schema["spec"]["properties"]["template"]["properties"]["spec"]
    assert template["x-kubernetes-preserve-unknown-fields"] is True
    assert schema["spec"]["properties"]["failurePolicy"]["enum"] == ["Halt", "RollbackAll"]


def test_crds_command_writes_both(tmp_path: Path) -> None:
    from phasegate.cli.main import main

    assert main(["crds", "--output", str(tmp_path)]) == 0
    assert (tmp_path / FILE).read_text() == render_release_yaml()
    assert (tmp_path / "phasegate.dev_progressiverollouts.yaml").exists()
