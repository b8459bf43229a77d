"""Approvals the API server vouches for, on kube-apiserver: the chart installed by helm with
its approval policy on, the test users of cluster/ (static tokens: alice in engineering,
fiona in finance, mallory in no group) sending controls with their own credentials, and the
operator evaluating a release as the chart's ServiceAccount. Every verdict is read from the
API: the apiserver's answer to the write, then the rollout's status and Events."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from phasegate.api import controls
from phasegate.cli.kubectl import main as kubectl_phasegate
from phasegate.demo.stack import stack
from support.cluster import OPERATOR_USER, SERVICE_ACCOUNT, RealCluster
from support.kube import Kube, eventually, kubectl
from support.world import Cluster, World, release, start_world

pytestmark = [pytest.mark.cluster, pytest.mark.integration]

ARGOCD = "argocd/argocd-server"
ARGOCD_USER = "system:serviceaccount:argocd:argocd-server"
LABEL = "phasegate-approvals"  # the namespaces the policy is bound to in these tests
POLICY = (
    "--set", "approvalPolicy.enabled=true",
    "--set", "approvalPolicy.groups.engineering=engineering",
    "--set", "approvalPolicy.groups.finance=finance",
    "--set", f"approvalPolicy.namespaceSelector.matchLabels.{LABEL}=checked",
)  # fmt: skip
STEERING = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: steer-rollouts}
rules:
- apiGroups: [phasegate.dev]
  resources: [progressiverollouts]
  verbs: [get, list, watch, create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: steer-rollouts}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: steer-rollouts}
subjects:
- {kind: Group, name: engineering, apiGroup: rbac.authorization.k8s.io}
- {kind: Group, name: finance, apiGroup: rbac.authorization.k8s.io}
- {kind: User, name: mallory, apiGroup: rbac.authorization.k8s.io}
- {kind: ServiceAccount, name: argocd-server, namespace: argocd}
"""


def rollout_path(namespace: str, name: str = "web") -> str:
    return f"/apis/phasegate.dev/v1alpha1/namespaces/{namespace}/progressiverollouts/{name}"


def annotate(
    kube: Kube, namespace: str, values: dict[str, str | None], dry_run: bool = False
) -> tuple[int, Any]:
    """Merge-patch control annotations as ``kube``'s user; the apiserver's (status, body)."""
    return kube.request(
        "PATCH",
        rollout_path(namespace),
        {"metadata": {"annotations": values}},
        content_type="application/merge-patch+json",
        query={"dryRun": "All"} if dry_run else None,
    )


def token_kubeconfig(cluster: RealCluster, account: str, directory: Path) -> Path:
    """A kubeconfig authenticating with a fresh token of ServiceAccount ``account``."""
    namespace, name = account.split("/")
    admin = Kube(cluster.kubeconfig)
    issued = admin.ok(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": issued["status"]["token"]}}]
    config["contexts"][0]["context"]["user"] = account
    path = directory / f"{namespace}-{name}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def policy(real_cluster: RealCluster) -> Iterator[RealCluster]:
    """The chart upgraded with the approval policy on, bound to labelled namespaces only;
    put back to its defaults (policy off) afterwards."""
    real_cluster.install_chart(*POLICY)
    kubectl(real_cluster.kubeconfig, "create", "namespace", "argocd", check=False)
    kubectl(real_cluster.kubeconfig, "create", "serviceaccount", "argocd-server", "-n", "argocd")
    try:
        yield real_cluster
    finally:
        real_cluster.install_chart()
        kubectl(real_cluster.kubeconfig, "delete", "namespace", "argocd", "--wait=false")


def governed(cluster: RealCluster, namespace: str) -> None:
    """Put ``namespace`` under the policy, let the users steer rollouts in it, and wait until
    the apiserver enforces the policy there (a dry-run write it must refuse is refused)."""
    kubectl(cluster.kubeconfig, "label", "namespace", namespace, f"{LABEL}=checked")
    kubectl(cluster.kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=STEERING)
    alice = Kube(cluster.plane.user_kubeconfig("alice"))
    probe = release(name="probe")
    probe["metadata"]["annotations"] = {
        "control.phasegate.dev/probe": '{"action": "pause","by":"alice"}'
    }
    collection = rollout_path(namespace).rsplit("/", 1)[0]

    def refused() -> bool:
        code, _ = alice.request("POST", collection, probe, query={"dryRun": "All"})
        return code == 422

    eventually(refused, timeout=30, what="the approval policy enforced")


def test_the_policy_is_admitted_by_the_apiserver_without_type_warnings(
    policy: RealCluster,
) -> None:
    found = Kube(policy.kubeconfig).ok(
        "GET",
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/phasegate-approvals",
    )
    assert found["status"].get("typeChecking", {}).get("expressionWarnings") is None, found


def test_a_pending_control_cannot_be_removed_by_someone_else(
    policy: RealCluster, real_namespace: str, tmp_path: Path
) -> None:
    """No operator runs here: controls stay pending. Fiona's NO-GO is hers to withdraw."""
    ns = real_namespace
    governed(policy, ns)
    kubectl(policy.kubeconfig, "apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(release()))
    fiona = Kube(policy.plane.user_kubeconfig("fiona"))
    mallory = Kube(policy.plane.user_kubeconfig("mallory"))
    operator = Kube(token_kubeconfig(policy, SERVICE_ACCOUNT, tmp_path))
    no_go = controls.annotation(
        "reject", by="fiona", phase="full", group="finance", reason="quarter close"
    )
    assert annotate(fiona, ns, dict(no_go))[0] == 200
    (key,) = no_go

    code, answer = annotate(mallory, ns, {key: None})
    assert code == 403, answer
    assert answer["message"].endswith(
        f"annotation {key} is a control sent by fiona and not yet applied: only they or the "
        "operator may remove or change it"
    )
    code, answer = annotate(mallory, ns, controls.annotation("pause", by="mallory") | {key: None})
    assert code == 403, "overwriting or removing among other changes is refused alike"

    code, answer = annotate(operator, ns, {key: None})
    assert code == 200, answer  # the operator removes each control once applied
    own = controls.annotation("pause", by=OPERATOR_USER)
    assert annotate(operator, ns, dict(own))[0] == 200, "the operator's own write"
    assert annotate(fiona, ns, dict(no_go))[0] == 200
    assert annotate(fiona, ns, {key: None})[0] == 200, "fiona withdraws her own"


@pytest.fixture(scope="module")
def world(policy: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A release whose second phase needs engineering's and finance's approval, evaluated
    by the operator as the chart's ServiceAccount, waiting at that gate."""
    with stack(tmp_path_factory.mktemp("approvals")) as running:
        world = start_world(running, Cluster(policy.kubeconfig, SERVICE_ACCOUNT, None))
        try:
            governed(policy, world.ns)
            world.start_operator()
            spec = release()["spec"]
            spec["phases"][1]["approval"] = {"required": ["engineering", "finance"]}
            world.apply(release(phases=spec["phases"]))
            world.wait(
                lambda s: s.get("state") == "WaitingForApproval", timeout=60, what="the gate"
            )
            yield world
        finally:
            world.clean_up()


def as_user(cluster: RealCluster, user: str, *args: str) -> tuple[int, str, str]:
    """``kubectl phasegate ARGS`` with ``user``'s kubeconfig: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = kubectl_phasegate(
            ["--kubeconfig", str(cluster.plane.user_kubeconfig(user)), *args], out=out
        )
    return code, out.getvalue(), err.getvalue()


def test_a_user_outside_the_group_is_refused_by_the_apiserver_naming_the_group(
    policy: RealCluster, world: World
) -> None:
    mallory = Kube(policy.plane.user_kubeconfig("mallory"))
    approval = controls.annotation("approve", by="mallory", phase="full", group="finance")
    code, answer = annotate(mallory, world.ns, dict(approval))
    assert (code, answer["reason"]) == (403, "Forbidden"), answer
    assert answer["message"].endswith(
        "denied request: mallory may not approve or reject for group finance: only members "
        "of finance may"
    ), answer["message"]
    alice = Kube(policy.plane.user_kubeconfig("alice"))
    code, answer = annotate(
        alice, world.ns, controls.annotation("approve", by="alice", phase="full", group="finance")
    )
    assert code == 403 and "alice may not approve or reject for group finance" in answer["message"]
    assert world.status().get("approvals") in (None, []), "nothing reached the operator"


@pytest.mark.parametrize(
    ("user", "value", "code", "words"),
    [
        # fiona's approval, signed by mallory's hand
        (
            "mallory",
            '{"action":"approve","phase":"full","group":"finance","by":"fiona"}',
            403,
            'is signed by "fiona" but sent by mallory',
        ),
        # what json.loads reads as fiona's approval, in forms a regex could misread
        (
            "mallory",
            '{"action":"approve","phase":"full","group":"finance","by":"fion\\u0061"}',
            422,
            "is not a phasegate control in its canonical form",
        ),
        (
            "mallory",
            '{"action":"appr\\u006fve","phase":"full","group":"finance","by":"mallory"}',
            422,
            "is not a phasegate control in its canonical form",
        ),
        (
            "mallory",
            '{"action":"approve","phase":"full","group":"fin\\u0061nce","by":"mallory"}',
            422,
            "is not a phasegate control in its canonical form",
        ),
        (
            "mallory",
            '{"action":"approve","phase":"full","group":"product","by":"mallory",'
            '"group":"finance"}',
            422,
            "is not a phasegate control in its canonical form",
        ),
        (
            "alice",
            '{"action": "approve", "phase": "full", "group": "finance", "by": "alice"}',
            422,
            "is not a phasegate control in its canonical form",
        ),
        (
            "alice",
            '{"action":"approve","by":"finance","phase":"full"}',  # the older form
            422,
            "is not a phasegate control in its canonical form",
        ),
        (
            "alice",
            '{"action":"approve","phase":"full","group":"operations","by":"alice"}',
            403,
            "nobody may approve or reject for group operations: no identity provider group "
            "is mapped to it (chart value approvalPolicy.groups.operations)",
        ),
    ],
)
def test_evasions_are_refused(
    policy: RealCluster, world: World, user: str, value: str, code: int, words: str
) -> None:
    kube = Kube(policy.plane.user_kubeconfig(user))
    answered, answer = annotate(kube, world.ns, {"control.phasegate.dev/evasion": value})
    assert answered == code and words in answer["message"], (answered, answer)


def test_approvals_and_a_no_go_land_with_the_authenticated_user(
    policy: RealCluster, world: World, tmp_path: Path
) -> None:
    with policy.refusing_nothing():  # no write of the operator's refused, by RBAC or policy
        approvals_and_a_no_go(policy, world, tmp_path)


def approvals_and_a_no_go(policy: RealCluster, world: World, tmp_path: Path) -> None:
    # alice approves for engineering with kubectl phasegate: no --as, the apiserver says who
    code, out, err = as_user(
        policy, "alice", "approve", "web", "-n", world.ns, "--phase", "full", "--group",
        "engineering",
    )  # fmt: skip
    assert code == 0, err
    assert "approve requested for" in out and "as alice for engineering" in out
    status = world.wait(lambda s: bool(s.get("approvals")), timeout=20, what="the approval")
    assert [(a["group"], a["by"]) for a in status["approvals"]] == [("engineering", "alice")]

    # fiona says NO-GO for finance: the gate holds, and says who and why
    code, _, err = as_user(
        policy, "fiona", "reject", "web", "-n", world.ns, "--phase", "full", "--group",
        "finance", "--reason", "quarter close",
    )  # fmt: skip
    assert code == 0, err
    status = world.wait(lambda s: s.get("holdReason") == "Rejected", timeout=20, what="NO-GO")
    assert status["state"] == "Holding"
    (rejection,) = status["rejections"]
    assert {k: rejection[k] for k in ("phase", "group", "by", "reason")} == {
        "phase": "full",
        "group": "finance",
        "by": "fiona",
        "reason": "quarter close",
    }
    condition = next(c for c in status["conditions"] if c["type"] == "Rejected")
    assert condition["status"] == "True" and "rejected by fiona for finance" in condition["message"]
    admin = Kube(policy.kubeconfig)
    events = admin.ok("GET", f"/api/v1/namespaces/{world.ns}/events")["items"]
    assert any(
        e["reason"] == "Rejected" and e["type"] == "Warning" and "quarter close" in e["message"]
        for e in events
    ), [e["reason"] for e in events]

    # resume does not lift a NO-GO; retry does, and the release comes back to the gate
    code, out, err = as_user(policy, "alice", "resume", "web", "-n", world.ns)
    assert code == 0, err
    (resume,) = re.findall(r"\(control\.phasegate\.dev/(.+)\)", out)
    status = world.wait(
        lambda s: resume in (s.get("handledControls") or []), timeout=20, what="resume applied"
    )
    assert status["state"] == "Holding" and status["holdReason"] == "Rejected"
    assert as_user(policy, "alice", "retry", "web", "-n", world.ns)[0] == 0
    world.wait(lambda s: s.get("state") == "WaitingForApproval", timeout=60, what="the gate")

    # Argo CD's server approves for finance as its ServiceAccount (trusted by the chart)
    argocd = Kube(token_kubeconfig(policy, ARGOCD, tmp_path))
    approval = controls.annotation("approve", by=ARGOCD_USER, phase="full", group="finance")
    assert annotate(argocd, world.ns, dict(approval))[0] == 200
    status = world.wait(
        lambda s: (s.get("currentPhase") or {}).get("name") == "full",
        timeout=30,
        what="the gate passed",
    )
    assert sorted((a["group"], a["by"]) for a in status["approvals"]) == [
        ("engineering", "alice"),
        ("finance", ARGOCD_USER),
    ]

    def consumed() -> bool:
        annotations = world.rollout()["metadata"].get("annotations") or {}
        return not [k for k in annotations if k.startswith(controls.PREFIX)]

    # the operator removes each applied control: its writes are admitted under the policy
    eventually(consumed, timeout=20, what="the applied controls removed by the operator")
