"""`phasegate run` before its peering object exists: it says what it waits for, in its log and
on /readyz, and goes on by itself once the object is there."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from phasegate.demo.stack import ROOT, Process, Stack, stack
from phasegate.localapi import LocalAPI
from phasegate.runtime.peering import Peering, peerings
from support.kube import CRDS, Kube, eventually
from support.world import release

ROLLOUTS = "/apis/phasegate.dev/v1alpha1/namespaces/default/progressiverollouts"
CLUSTER_PEERING = "waiting for the ClusterKopfPeering 'phasegate' (kopf.dev/v1)"
PEERING_CRD = "waiting for the CustomResourceDefinition clusterkopfpeerings.kopf.dev"


def readiness(process: Process) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{process.ports['health']}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def waiting_only_for(process: Process, start: str) -> str | None:
    """The reason /readyz gives when it is not ready for that reason alone (kopf started)."""
    status, body = readiness(process)
    reasons = body.get("waitingFor", [])
    if status == 503 and len(reasons) == 1 and reasons[0].startswith(start):
        return str(reasons[0])
    return None


def logged(process: Process, start: str) -> dict[str, Any] | None:
    for line in process.log.read_text().splitlines():
        if line.startswith("{") and str(json.loads(line).get("event", "")).startswith(start):
            return dict(json.loads(line))
    return None


@pytest.fixture
def running(local_api: LocalAPI, tmp_path: Path) -> Iterator[Stack]:
    """The phasegate CRD but neither kopf's peering CRD nor a peering object."""
    (tmp_path / "stack").mkdir()
    with stack(tmp_path / "stack") as running:
        shutil.copy(local_api.kubeconfig_path, running.kubeconfig)
        running.kubectl("apply", "-f", str(CRDS / "phasegate.dev_progressiverollouts.yaml"))
        yield running


def test_the_operator_says_what_it_waits_for_until_the_peering_exists(
    running: Stack, local_api: LocalAPI
) -> None:
    kube = Kube(running.kubeconfig)
    kube.ok("POST", ROLLOUTS, release())  # its route is missing: handled, it turns Degraded
    operator = running.start_operator()  # peering "phasegate", cluster-wide

    reason = eventually(lambda: waiting_only_for(operator, PEERING_CRD), 30, "not ready: CRD")
    assert "kubectl apply -f crds/kopf-peering.yaml" in reason
    assert eventually(lambda: logged(operator, PEERING_CRD), 10, "the CRD named in the log")

    running.kubectl("apply", "-f", str(CRDS / "kopf-peering.yaml"))
    reason = eventually(lambda: waiting_only_for(operator, CLUSTER_PEERING), 30, "not ready")
    create = Peering("phasegate").manifest()
    assert f"echo '{create}' | kubectl apply -f -" in reason and "peering.name" in reason
    line = eventually(lambda: logged(operator, CLUSTER_PEERING), 10, "the peering in the log")
    assert line["level"] == "warning" and line["event"] == reason
    assert "status" not in kube.ok("GET", f"{ROLLOUTS}/web"), "nothing is handled meanwhile"

    running.kubectl("apply", "-f", str(ROOT / "manifests/local/peering.yaml"))
    eventually(lambda: readiness(operator) == (200, {"ready": True}), 30, "ready")
    assert logged(operator, "ClusterKopfPeering 'phasegate' found")
    state = eventually(
        lambda: (kube.ok("GET", f"{ROLLOUTS}/web").get("status") or {}).get("state"),
        30,
        "the rollout handled",
    )
    assert state == "Degraded"


def test_a_standalone_operator_is_ready_without_any_peering(running: Stack) -> None:
    operator = running.start_operator("operator", "--standalone")
    eventually(lambda: readiness(operator) == (200, {"ready": True}), 30, "ready")
    assert not logged(operator, "waiting for")


@pytest.mark.parametrize(
    ("name", "namespaces", "expected"),
    [
        (None, (), []),
        ("p", (), [Peering("p")]),
        ("p", ("a", "b"), [Peering("p", "a"), Peering("p", "b")]),
        ("p", ("a", "team-*"), [Peering("p", "a")]),  # a pattern names no single object
    ],
)
def test_the_peering_objects_kopf_needs(
    name: str | None, namespaces: tuple[str, ...], expected: list[Peering]
) -> None:
    assert peerings(name, namespaces) == expected


def test_a_namespaced_peering_is_created_in_its_namespace() -> None:
    manifest = yaml.safe_load(Peering("p", "team").manifest())
    assert manifest == {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": "p", "namespace": "team"},
    }
