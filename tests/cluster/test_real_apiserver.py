"""What only a real kube-apiserver can say: phasegate's CRDs, manifests and chart against
kube-apiserver from k8s.io/kubernetes (the control plane of cluster/), with the chart
installed by the real helm."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from phasegate.localapi.testing import running_local_api
from support.cluster import RealCluster
from support.engine import load_reference
from support.kube import CRDS, ROOT, Kube, kubectl
from support.malformed import MALFORMED, Edit

pytestmark = [pytest.mark.cluster, pytest.mark.integration]

CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
DRY_RUN = {"dryRun": "All"}


def version_of(obj: dict[str, Any]) -> dict[str, str]:
    return {"resourceVersion": obj["metadata"]["resourceVersion"]}


def rollouts(namespace: str) -> str:
    return f"/apis/phasegate.dev/v1alpha1/namespaces/{namespace}/progressiverollouts"


def reference(namespace: str) -> dict[str, Any]:
    doc = copy.deepcopy(load_reference())
    doc["metadata"] = {"name": "cohort-analyzer", "namespace": namespace}
    return doc


def test_the_charts_crds_are_established_with_a_structural_schema(admin: Kube) -> None:
    for name in ("progressiverollouts.phasegate.dev", "clusterkopfpeerings.kopf.dev"):
        crd = admin.ok("GET", f"{CRD}/{name}")
        conditions = {c["type"]: c for c in crd["status"]["conditions"]}
        assert conditions["Established"]["status"] == "True", conditions
        assert conditions["NamesAccepted"]["status"] == "True", conditions
        assert "NonStructuralSchema" not in conditions, conditions["NonStructuralSchema"]


def test_the_crds_cel_rules_fit_the_cost_budget_and_are_enforced(
    admin: Kube, real_namespace: str
) -> None:
    """The apiserver estimates every x-kubernetes-validations rule's cost when the CRD is
    written and refuses one over budget; a dry-run re-creation shows the estimate holds."""
    crd = admin.ok("GET", f"{CRD}/progressiverollouts.phasegate.dev")
    rules = json.dumps(crd["spec"]).count('"rule"')
    assert rules >= 1, "the CRD carries CEL rules"
    again = {k: crd[k] for k in ("apiVersion", "kind", "spec")}
    again["metadata"] = {"name": crd["metadata"]["name"], **version_of(crd)}
    status, body = admin.request("PUT", f"{CRD}/{crd['metadata']['name']}", again, query=DRY_RUN)
    assert status == 200, body
    doc = reference(real_namespace)
    doc["spec"]["trafficRouting"] = {}
    status, body = admin.request("POST", rollouts(real_namespace), doc)
    assert status == 422 and "spec.trafficRouting" in body["message"], body


def test_kubectl_get_rollouts_shows_the_printer_columns_short_names_and_category(
    real_cluster: RealCluster, real_namespace: str
) -> None:
    kc = real_cluster.kubeconfig
    kubectl(kc, "apply", "-f", "-", stdin=yaml.safe_dump(reference(real_namespace)))
    table = kubectl(kc, "get", "rollouts", "-n", real_namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "WEIGHT", "STATE", "CHECKPOINTS", "AGE"], table
    assert table[1].split()[0] == "cohort-analyzer"
    for name in ("prollout", "progressiverollout", "progressiverollouts", "rollouts"):
        listed = kubectl(kc, "get", name, "-n", real_namespace, "-o", "name").stdout.split()
        assert listed == ["progressiverollout.phasegate.dev/cohort-analyzer"], name
    resources = kubectl(kc, "api-resources", "--categories=rollouts", "-o", "name").stdout
    assert resources.split() == ["progressiverollouts.phasegate.dev"]


@pytest.fixture(scope="module")
def local_crd_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """A local API with phasegate's CRD, for the verdicts the real apiserver is compared to."""
    with running_local_api(tmp_path_factory.mktemp("local") / "kubeconfig") as api:
        kube = Kube(api.kubeconfig_path)
        for doc in yaml.safe_load_all(
            (CRDS / "phasegate.dev_progressiverollouts.yaml").read_text()
        ):
            kube.ok("POST", CRD, doc)
        yield kube


def verdict(kube: Kube, namespace: str, doc: dict[str, Any]) -> tuple[int, str]:
    """(status, message) of a server-side dry run of ``doc`` as kubectl sends it (strict)."""
    status, body = kube.request(
        "POST", rollouts(namespace), doc, query={"dryRun": "All", "fieldValidation": "Strict"}
    )
    return status, "" if status < 300 else body.get("message", "")


@pytest.mark.parametrize(
    ("case", "edit", "field", "words"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
def test_each_malformed_manifest_gets_the_same_answer_from_both_apis(
    admin: Kube,
    local_crd_api: Kube,
    real_namespace: str,
    case: str,
    edit: Edit,
    field: str,
    words: str,
) -> None:
    """Where the CRD schema can refuse a malformed manifest, the real apiserver refuses it
    naming the field, and the local API answers alike; the rest is accepted by both and left
    to the operator (reported Invalid in status, tests/integration)."""
    real_doc, local_doc = reference(real_namespace), reference("default")
    edit(real_doc)
    edit(local_doc)
    real_status, real_message = verdict(admin, real_namespace, real_doc)
    local_status, local_message = verdict(local_crd_api, "default", local_doc)
    assert (real_status >= 400) == (local_status >= 400), (real_message, local_message)
    if real_status >= 400:
        assert field in real_message, real_message
        assert real_status == local_status, (real_message, local_message)
        assert field in local_message, local_message


def test_the_reference_release_is_admitted_as_written(admin: Kube, real_namespace: str) -> None:
    status, body = admin.request(
        "POST",
        rollouts(real_namespace),
        reference(real_namespace),
        query={"fieldValidation": "Strict"},
    )
    assert status == 201, body
    assert body["metadata"]["generation"] == 1


def test_kubectl_create_namespace_works(real_cluster: RealCluster, tmp_path: Path) -> None:
    """The command a new user types first (a protobuf body: the local API refuses it)."""
    kc = real_cluster.kubeconfig
    kubectl(kc, "create", "namespace", "learning-create")
    try:
        assert kubectl(kc, "get", "namespace", "learning-create", "-o", "name").stdout.strip() == (
            "namespace/learning-create"
        )
    finally:
        kubectl(kc, "delete", "namespace", "learning-create", "--wait=false")


def test_the_kustomize_install_is_admitted(real_cluster: RealCluster) -> None:
    """manifests/install (the chart's defaults, rendered) passes the apiserver's admission,
    over the chart's own install as an upgrade from one to the other would."""
    install = str(ROOT / "manifests/install")
    out = kubectl(real_cluster.kubeconfig, "apply", "--dry-run=server", "-k", install).stdout
    for kind in ("customresourcedefinition", "clusterrole", "serviceaccount", "deployment"):
        assert f"{kind}.".lower() in out.lower() or f"{kind}/" in out.lower(), out
    assert "(server dry run)" in out, out
