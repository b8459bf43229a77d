"""Receivers resolved from Secrets and the shared ConfigMap on the local API: bad
configuration is named (never the URL), and the outbox is written back to status."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from phasegate.api import RolloutSpec
from phasegate.api.outbox import NotificationsStatus, OutboxEntry
from phasegate.kube import Conflict
from phasegate.kube import Kube as Clients
from phasegate.notify.cluster import SHARED, KubeReports, KubeResolver, KubeStore
from support.kube import CRDS, REFERENCE, Kube, kubectl, namespace

NS = "learning"
ROLLOUTS = f"/apis/phasegate.dev/v1alpha1/namespaces/{NS}/progressiverollouts"


def secret(kube: Kube, name: str, data: dict[str, str]) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}
    kube.ok("POST", f"/api/v1/namespaces/{NS}/secrets", body)


def spec_with(receivers: list[dict[str, Any]]) -> RolloutSpec:
    raw = yaml.safe_load(REFERENCE.read_text())["spec"]
    return RolloutSpec.model_validate({**raw, "notifications": {"receivers": receivers}})


@pytest.fixture
def setup(kube: Kube) -> Kube:
    kubectl(kube.kubeconfig, "apply", "-f", str(CRDS))
    kubectl(kube.kubeconfig, "apply", "-f", "-", stdin=namespace(NS))
    secret(kube, "hooks", {"url": "https://hooks.example/T0/B0/very-secret", "bad": "not a url"})
    shared = [{"name": "team", "slack": {"url": {"name": "hooks", "key": "url"}}}]
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": SHARED},
        "data": {"receivers": yaml.safe_dump(shared)},
    }
    kube.ok("POST", f"/api/v1/namespaces/{NS}/configmaps", configmap)
    return kube


async def test_receivers_resolve_or_say_what_is_wrong(setup: Kube, clients: Clients) -> None:
    spec = spec_with(
        [
            {"name": "team", "events": ["Rollback"]},
            {
                "name": "audit",
                "webhook": {
                    "url": {"name": "hooks", "key": "url"},
                    "signingKey": {"name": "gone", "key": "k"},
                },
            },
            {"name": "typo", "teams": {"url": {"name": "hooks", "key": "bad"}}},
            {"name": "elsewhere"},
        ]
    )
    targets = {t.name: t for t in await KubeResolver(clients, None).targets(NS, spec)}
    team = targets["team"]
    assert team.error is None and team.service == "slack"
    assert team.url.endswith("very-secret") and team.receiver.wants("Rollback")
    assert not team.receiver.wants("Hold"), "the rollout's events override the shared ones"
    assert targets["audit"].error == "cannot read Secret learning/gone key k: Not Found"
    assert targets["typo"].error == (
        "the URL in Secret learning/hooks key bad is not an http(s) URL"
    )
    assert targets["elsewhere"].error == (
        "receiver 'elsewhere' is not defined in learning/phasegate-notifications"
    )
    assert all("very-secret" not in (t.error or "") + repr(t) for t in targets.values())


async def test_the_outbox_is_written_back_to_status(setup: Kube, clients: Clients) -> None:
    kubectl(setup.kubeconfig, "apply", "-f", str(REFERENCE))
    entry = OutboxEntry(key="k1", event="Hold", time="2025-11-01T10:00:00Z", payload="{}")
    setup.ok(
        "PATCH",
        f"{ROLLOUTS}/cohort-analyzer/status",
        {"status": {"notifications": {"outbox": [entry.model_dump(mode="json", by_alias=True)]}}},
        content_type="application/merge-patch+json",
    )

    def deliver(box: NotificationsStatus) -> NotificationsStatus:
        return box.model_copy(update={"outbox": [], "delivered": [e.key for e in box.outbox]})

    await KubeStore(clients).update(NS, "cohort-analyzer", deliver)
    stored = setup.ok("GET", f"{ROLLOUTS}/cohort-analyzer")["status"]["notifications"]
    assert stored["outbox"] == [] and stored["delivered"] == ["k1"]


async def test_reports_go_to_configmaps_owned_by_the_rollout_and_nothing_else(
    setup: Kube, clients: Clients
) -> None:
    kubectl(setup.kubeconfig, "apply", "-f", str(REFERENCE))
    obj = setup.ok("GET", f"{ROLLOUTS}/cohort-analyzer")
    reports = KubeReports(clients)
    await reports.write(obj, "canary")
    path = f"/api/v1/namespaces/{NS}/configmaps"
    made = setup.ok("GET", f"{path}/cohort-analyzer-report-canary")
    assert made["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "phasegate.dev/v1alpha1",
            "kind": "ProgressiveRollout",
            "name": "cohort-analyzer",
            "uid": obj["metadata"]["uid"],
        }
    ]
    assert made["metadata"]["labels"]["phasegate.dev/report"] == "canary"
    assert made["data"]["report.md"].startswith("# Phase canary report: learning/cohort-analyzer")
    assert json.loads(made["data"]["report.json"])["phases"][0]["outcome"] == "NotStarted"

    setup.ok(
        "PATCH",
        f"{ROLLOUTS}/cohort-analyzer/status",
        {"status": {"state": "Progressing", "message": "canary 1%: started"}},
        content_type="application/merge-patch+json",
    )
    await reports.write(setup.ok("GET", f"{ROLLOUTS}/cohort-analyzer"), "canary")
    again = setup.ok("GET", f"{path}/cohort-analyzer-report-canary")
    assert "canary 1%: started" in again["data"]["report.md"], "written again, replaced"

    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cohort-analyzer-report"},
    }
    setup.ok("POST", path, foreign | {"data": {"mine": "yes"}})
    with pytest.raises(Conflict, match="exists and is not owned by ProgressiveRollout"):
        await reports.write(obj, None)
    assert setup.ok("GET", f"{path}/cohort-analyzer-report")["data"] == {"mine": "yes"}
