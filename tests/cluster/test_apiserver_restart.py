"""The operator's watches outlive the apiserver: kube-apiserver restarted mid-rollout (its
watch cache starts afresh, so a watch resumed from an older resourceVersion is answered
410 Gone), and the release goes on without repeating or skipping a checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from phasegate.demo.stack import stack
from support.cluster import SERVICE_ACCOUNT, RealCluster
from support.world import Cluster, World, release, start_world

pytestmark = [pytest.mark.cluster, pytest.mark.integration]


@pytest.fixture
def world(real_cluster: RealCluster, tmp_path: Path) -> Iterator[World]:
    with stack(tmp_path) as running:
        world = start_world(running, Cluster(real_cluster.kubeconfig, SERVICE_ACCOUNT, None))
        yield world
        world.clean_up()


def test_an_apiserver_restart_mid_phase_loses_no_checkpoint(
    world: World, real_cluster: RealCluster
) -> None:
    spec = release()["spec"]
    spec["phases"][0]["duration"], spec["phases"][0]["checkpoints"] = "14s", ["4s", "9s", "14s"]
    world.start_operator()
    world.apply(release(**spec))
    before = world.wait(lambda s: len(s.get("checkpoints") or []) >= 1, what="a checkpoint")
    seen = world.rollout()["metadata"]["resourceVersion"]

    real_cluster.plane.restart_apiserver()

    # What the operator's watch meets on reconnecting: its resourceVersion is older than the
    # fresh watch cache, and the apiserver says so with 410 Gone.
    events = world.kube.stream(
        f"/apis/phasegate.dev/v1alpha1/namespaces/{world.ns}/progressiverollouts",
        {"resourceVersion": seen, "timeoutSeconds": "1"},
    )
    assert events and events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410, events

    status = world.wait(
        lambda s: s.get("state") in ("Succeeded", "RolledBack", "Holding"), timeout=90
    )
    assert status["state"] == "Succeeded", status["message"]
    offsets = [(c["phase"], c["offset"]) for c in status["checkpoints"]]
    assert offsets == [
        ("canary", "4s"),
        ("canary", "9s"),
        ("canary", "14s"),
        ("full", "3s"),
        ("full", "6s"),
    ]
    assert before["checkpoints"][0] == status["checkpoints"][0], "history is kept as it was"
    assert all(c["verdict"] == "Passed" for c in status["checkpoints"])
