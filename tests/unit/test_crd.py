"""The committed CRD is what the models generate, and it is a structural schema."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from phasegate.api.crd import crd, render_yaml
from support.engine import ROOT

CRD_FILE = ROOT / "crds" / "phasegate.dev_progressiverollouts.yaml"


def test_committed_crd_matches_the_models() -> None:
    assert CRD_FILE.read_text() == render_yaml(), "crds/ is stale: run `make crds`"


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path or "/", node)]
    for name, sub in node.get("properties", {}).items():
        out += walk(sub, f"{path}/{name}")
    if "items" in node:
        out += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_schema_is_structural() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = yaml.safe_dump(schema)
    for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "const", "$defs", "title"):
        assert forbidden not in text, forbidden
    for path, node in walk(schema):
        if path == "/metadata":
            continue
        assert "type" in node, f"{path} has no type"
        assert node.get("additionalProperties") is not False, path
        if "default" in node and "pattern" in node:
            assert re.search(node["pattern"], node["default"]), (
                f"{path}: default breaks its pattern"
            )
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(bound, True), bool), f"{path}: {bound} must be a boolean"


def test_crd_names_columns_and_subresources() -> None:
    spec = crd()["spec"]
    assert spec["names"]["categories"] == ["rollouts", "phasegate"]
    assert "prollout" in spec["names"]["shortNames"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.currentPhase.name"
    assert columns["Weight"] == ".status.canaryWeight"
    assert columns["State"] == ".status.state"
    assert columns["Checkpoints"] == ".status.progress"
    assert "Age" in columns


def test_schema_carries_the_rules_it_can_express() -> None:
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    weight = spec["properties"]["phases"]["items"]["properties"]["weight"]
    assert (weight["minimum"], weight["maximum"]) == (0, 100)
    assert spec["properties"]["interval"]["pattern"].startswith("^")
    on_no_data = spec["properties"]["metrics"]["items"]["properties"]["onNoData"]
    assert on_no_data["enum"] == ["Pass", "Fail", "Inconclusive"]
    routing = spec["properties"]["trafficRouting"]
    assert "exactly one" in routing["x-kubernetes-validations"][0]["message"]
    status = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert "Holding" in status["properties"]["state"]["enum"]


def test_crds_command_writes_the_file(tmp_path: Path) -> None:
    from phasegate.cli.main import main

    assert main(["crds", "--output", str(tmp_path)]) == 0
    assert (tmp_path / CRD_FILE.name).read_text() == CRD_FILE.read_text()
