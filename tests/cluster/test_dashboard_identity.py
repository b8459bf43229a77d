"""The dashboard acts with the caller's own credentials, on kube-apiserver: alice (allowed to
steer rollouts) approves and the control is signed with her name as the apiserver knows it;
mallory (allowed to read only) is refused by the apiserver, the page says so, nothing is
written."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from phasegate.api import controls
from phasegate.demo.stack import Process, Stack, free_port
from support.cluster import RealCluster
from support.kube import Kube, kubectl
from support.world import release

pytestmark = [pytest.mark.cluster, pytest.mark.integration]

RIGHTS = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: steer}
rules:
- {apiGroups: [phasegate.dev], resources: [progressiverollouts], verbs: [get, list, watch, patch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: steer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: steer}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read}
rules:
- {apiGroups: [phasegate.dev], resources: [progressiverollouts], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read}
subjects: [{kind: User, name: mallory, apiGroup: rbac.authorization.k8s.io}]
"""


def dashboard(running: Stack, kubeconfig: Path, *scope: str) -> tuple[Process, str]:
    port = free_port()
    process = running.phasegate(
        f"dashboard-{kubeconfig.stem}-{port}", "dashboard", "--kubeconfig", str(kubeconfig),
        *scope, "--port", str(port),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    process.wait_serving(url, 60)
    return process, url


def approve(url: str, namespace: str) -> tuple[int, dict[str, Any]]:
    with urllib.request.urlopen(url, timeout=10) as page:
        token = page.read().decode().split('name="phasegate-token" content="')[1].split('"')[0]
    request = urllib.request.Request(
        f"{url}api/rollouts/{namespace}/web/control",
        data=json.dumps({"action": "approve", "phase": "full", "group": "engineering"}).encode(),
        headers={"Content-Type": "application/json", "X-Phasegate-Token": token},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def test_approvals_from_the_dashboard_carry_the_callers_identity_and_rights(
    real_cluster: RealCluster, real_namespace: str, tmp_path: Path
) -> None:
    ns = real_namespace
    body = release()
    body["spec"]["phases"][1]["approval"] = {"required": ["engineering"]}
    kubectl(real_cluster.kubeconfig, "apply", "-n", ns, "-f", "-", stdin=RIGHTS)
    kubectl(real_cluster.kubeconfig, "apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(body))
    admin = Kube(real_cluster.kubeconfig)
    path = f"/apis/phasegate.dev/v1alpha1/namespaces/{ns}/progressiverollouts/web"
    running = Stack(tmp_path)
    try:
        mallory = real_cluster.plane.user_kubeconfig("mallory")
        _, everywhere = dashboard(running, mallory, "-A")  # she may not list every namespace
        with pytest.raises(urllib.error.HTTPError) as listing:
            urllib.request.urlopen(f"{everywhere}api/rollouts", timeout=30)
        assert listing.value.code == 403
        assert "the API refused" in json.load(listing.value)["error"]
        _, as_mallory = dashboard(running, mallory, "-n", ns)
        with urllib.request.urlopen(f"{as_mallory}api/rollouts", timeout=30) as answer:
            listed = json.load(answer)
        assert listed["user"] == "mallory" and [r["name"] for r in listed["rollouts"]] == ["web"]
        code, refused = approve(as_mallory, ns)
        assert code == 403 and "the API refused" in refused["error"], refused
        assert "mallory" in refused["error"]

        _, as_alice = dashboard(running, real_cluster.plane.user_kubeconfig("alice"), "-n", ns)
        code, done = approve(as_alice, ns)
        assert code == 200, done
        annotations = admin.ok("GET", path)["metadata"]["annotations"]
        sent = {k: json.loads(v) for k, v in annotations.items() if k.startswith(controls.PREFIX)}
        assert sent == {
            done["requested"]: {
                "action": "approve", "phase": "full", "group": "engineering", "by": "alice"
            }
        }  # fmt: skip
    finally:
        running.stop_all()
