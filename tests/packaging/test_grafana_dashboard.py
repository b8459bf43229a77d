"""The Grafana dashboard: generated in code, shipped in the chart for Grafana's sidecar."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from support.kube import ROOT

CHART = ROOT / "charts" / "phasegate"
COMMITTED = CHART / "dashboards" / "phasegate.json"


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name="phasegate", namespace="phasegate-system", is_install=True)
    return [
        d for p, t in sorted(out.items()) if p.endswith(".yaml") for d in yaml.safe_load_all(t) if d
    ]


def dashboards(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "ConfigMap" and "phasegate.json" in d.get("data", {})]


def test_the_committed_dashboard_is_what_the_generator_produces() -> None:
    generated = subprocess.run(
        [sys.executable, str(ROOT / "scripts/grafana_dashboard.py"), "--stdout"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    assert generated == COMMITTED.read_text(), (
        "charts/phasegate/dashboards/phasegate.json is stale: "
        "run .venv/bin/python scripts/grafana_dashboard.py"
    )


def test_the_dashboard_configmap_is_off_by_default() -> None:
    assert dashboards(render({})) == []


def test_the_sidecar_finds_the_dashboard_by_its_label() -> None:
    values = {
        "grafana": {
            "dashboard": {
                "enabled": True,
                "namespace": "monitoring",
                "annotations": {"grafana_folder": "Delivery"},
            }
        }
    }
    (config_map,) = dashboards(render(values))
    kubernetes_validate.validate(config_map, "1.30.0", strict=True)
    meta = config_map["metadata"]
    assert meta["labels"]["grafana_dashboard"] == "1"
    assert meta["namespace"] == "monitoring"
    assert meta["annotations"] == {"grafana_folder": "Delivery"}
    shipped = json.loads(config_map["data"]["phasegate.json"])
    assert shipped == json.loads(COMMITTED.read_text())
    assert shipped["uid"] == "phasegate-operator"


def test_another_sidecar_label_can_be_chosen() -> None:
    values = {"grafana": {"dashboard": {"enabled": True, "label": "dash", "labelValue": "yes"}}}
    (config_map,) = dashboards(render(values))
    assert config_map["metadata"]["labels"]["dash"] == "yes"
    assert config_map["metadata"]["namespace"] == "phasegate-system"


def test_a_misspelt_grafana_value_fails_at_install() -> None:
    with pytest.raises(helm.HelmValuesError, match="enable"):
        render({"grafana": {"dashboard": {"enable": True}}})


def test_every_panel_reads_the_selected_prometheus() -> None:
    board = json.loads(COMMITTED.read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) == 12
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
