"""Report ConfigMaps on kube-apiserver: written by the operator as the chart's ServiceAccount
(installed with ``rbac.phaseReports``), refused nothing, and collected with their rollout by
the real garbage collector."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from phasegate.demo.stack import stack, wait_until
from support.cluster import RealCluster
from support.kube import ROOT
from support.notify import LoopbackReceiver
from support.world import Cluster, World, release, start_world

pytestmark = [pytest.mark.cluster, pytest.mark.integration]

ACCOUNT = "reports-system/reports-phasegate"
USER = "system:serviceaccount:reports-system:reports-phasegate"
NAMES = ["web-report-canary", "web-report-full", "web-report"]


@pytest.fixture
def reports_world(real_cluster: RealCluster, tmp_path: Path) -> Iterator[World]:
    """The chart installed a second time, asked for report ConfigMaps and the Secret hooks."""
    real_cluster.helm(
        "upgrade", "--install", "reports", str(ROOT / "charts/phasegate"),
        "--namespace", "reports-system", "--create-namespace",
        "--set", "rbac.phaseReports=true", "--set", "rbac.secretNames={hooks}",
        "--set", "peering.name=reports", "--wait",
    )  # fmt: skip
    with stack(tmp_path) as running:
        world = start_world(running, Cluster(real_cluster.kubeconfig, ACCOUNT, None))
        yield world
        world.clean_up()


def test_reports_are_written_as_the_chart_allows_and_go_with_their_rollout(
    real_cluster: RealCluster, reports_world: World
) -> None:
    world = reports_world
    refused_before = len(real_cluster.plane.audited(USER))
    receiver = LoopbackReceiver()
    try:
        url = base64.b64encode(receiver.url.encode()).decode()
        hooks = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hooks"}}
        world.apply(hooks | {"data": {"url": url}})
        rollout = release()
        rollout["spec"]["notifications"] = {
            "receivers": [{"name": "audit", "webhook": {"url": {"name": "hooks", "key": "url"}}}],
            "reports": {"configMaps": True},
        }
        world.apply(rollout)
        world.start_operator()
        status = world.wait(
            lambda s: s.get("state") in ("Succeeded", "RolledBack", "Holding"), timeout=90
        )
        assert status["state"] == "Succeeded", status["message"]
        path = f"/api/v1/namespaces/{world.ns}/configmaps"

        def written() -> bool:
            names = {c["metadata"]["name"] for c in world.kube.ok("GET", path)["items"]}
            return set(NAMES) <= names

        wait_until(written, 30, "the three report ConfigMaps")
        uid = world.rollout()["metadata"]["uid"]
        for name in NAMES:
            made = world.kube.ok("GET", f"{path}/{name}")
            assert [o["uid"] for o in made["metadata"]["ownerReferences"]] == [uid]
        linked = {b["report"]["configMap"]["name"] for b in receiver.bodies() if b["report"]}
        assert linked == set(NAMES)

        world.stack.kubectl("delete", "prollout", "web", "-n", world.ns, "--wait=false")

        def collected() -> bool:
            names = {c["metadata"]["name"] for c in world.kube.ok("GET", path)["items"]}
            return not set(NAMES) & names

        wait_until(collected, 60, "the report ConfigMaps collected with their rollout")
    finally:
        receiver.close()
    refused = [
        f"{e['verb']} {e['requestURI']}"
        for e in real_cluster.plane.audited(USER)[refused_before:]
        if e.get("responseStatus", {}).get("code") == 403
    ]
    assert refused == [], "the chart's grants were enough"
