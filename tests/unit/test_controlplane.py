"""The real control plane's launcher (cluster/controlplane.py), without starting a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane import ControlPlane, StartError, v1_crd


def test_a_component_that_exits_is_named_with_its_exit_code_and_the_tail_of_its_log(
    tmp_path: Path,
) -> None:
    plane = ControlPlane(tmp_path)
    (tmp_path / "logs").mkdir()
    component = plane._start(
        "kube-apiserver", Path("/bin/sh"), ["-c", "echo 'bad flag --x'; exit 3"]
    )
    with pytest.raises(StartError) as failed:
        plane._wait(component, "answering /readyz", lambda: False, timeout=10)
    message = str(failed.value)
    assert message.startswith("kube-apiserver exited (code 3) before answering /readyz")
    assert "bad flag --x" in message and str(component.log) in message


def test_a_component_that_never_becomes_ready_is_stopped_by_pid(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path)
    (tmp_path / "logs").mkdir()
    component = plane._start("kwok", Path("/bin/sleep"), ["60"])
    with pytest.raises(StartError, match=r"kwok: healthy not ready after 0\.5s"):
        plane._wait(component, "healthy", lambda: False, timeout=0.5)
    plane.down()
    assert not component.alive() and component.popen is not None
    assert component.popen.returncode is not None, "stopped and reaped"


def test_smis_published_v1beta1_crd_becomes_a_structural_v1_crd() -> None:
    published = {
        "apiVersion": "apiextensions.k8s.io/v1beta1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "trafficsplits.split.smi-spec.io"},
        "spec": {
            "group": "split.smi-spec.io",
            "scope": "Namespaced",
            "names": {"kind": "TrafficSplit", "plural": "trafficsplits"},
            "version": "v1alpha4",
            "versions": [
                {"name": "v1alpha4", "served": True, "storage": True},
                {"name": "v1alpha3", "served": False, "storage": False},
            ],
            "additionalPrinterColumns": [
                {"name": "Service", "type": "string", "JSONPath": ".spec.service"}
            ],
            "validation": {"openAPIV3Schema": {"properties": {"spec": {"type": "object"}}}},
        },
    }
    crd = v1_crd(published)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert "validation" not in crd["spec"] and "version" not in crd["spec"]
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        assert schema["type"] == "object" and schema["properties"]["spec"] == {"type": "object"}
        assert version["additionalPrinterColumns"] == [
            {"name": "Service", "type": "string", "jsonPath": ".spec.service"}
        ]
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha4", "v1alpha3"]
