"""The chart's RBAC as kube-apiserver enforces it: what the operator's ServiceAccount may and
may not do, and that a refusal is seen — by the test guard and by the user in status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from phasegate.demo.stack import stack
from support.cluster import RELEASE_NAMESPACE, SERVICE_ACCOUNT, RealCluster
from support.kube import Kube, kubectl
from support.world import Cluster, World, release, service_account_kubeconfig, start_world

pytestmark = [pytest.mark.cluster, pytest.mark.integration]


def can(real_cluster: RealCluster, verb: str, resource: str, namespace: str = "default") -> bool:
    """``kubectl auth can-i`` as the chart's ServiceAccount."""
    answer = kubectl(
        real_cluster.kubeconfig,
        "auth", "can-i", verb, resource, "-n", namespace,
        f"--as=system:serviceaccount:{RELEASE_NAMESPACE}:phasegate",
        check=False,
    )  # fmt: skip
    return answer.stdout.strip() == "yes"


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("patch", "progressiverollouts.phasegate.dev/status", True),
        ("watch", "progressiverollouts.phasegate.dev", True),
        ("patch", "httproutes.gateway.networking.k8s.io", True),
        ("patch", "virtualservices.networking.istio.io", True),
        ("create", "events", True),
        ("patch", "deployments.apps", True),
        ("patch", "clusterkopfpeerings.kopf.dev", True),
        ("create", "progressiverollouts.phasegate.dev", False),
        ("delete", "httproutes.gateway.networking.k8s.io", False),
        ("get", "secrets", False),
        ("list", "pods", False),
        ("delete", "deployments.apps", False),
        ("create", "clusterroles.rbac.authorization.k8s.io", False),
    ],
)
def test_the_service_account_may_do_what_the_operator_needs_and_no_more(
    real_cluster: RealCluster, verb: str, resource: str, allowed: bool
) -> None:
    assert can(real_cluster, verb, resource) is allowed


def test_a_refusal_of_the_operator_fails_the_guard_around_the_scenarios(
    real_cluster: RealCluster, tmp_path: Path
) -> None:
    """The guard every [real] scenario runs in reads the apiserver's audit log: a 403 to the
    operator's ServiceAccount fails the test even where the operator carries on."""
    with stack(tmp_path) as running:
        running.attach(real_cluster.kubeconfig)
        operator = Kube(service_account_kubeconfig(running, SERVICE_ACCOUNT))
        guard = real_cluster.refusing_nothing()
        guard.__enter__()
        status, _ = operator.request("GET", "/api/v1/secrets")
        assert status == 403
        with pytest.raises(AssertionError, match=r"refused the operator:\s+list /api/v1/secrets"):
            guard.__exit__(None, None, None)


@pytest.fixture
def narrow_world(real_cluster: RealCluster, tmp_path: Path) -> Iterator[World]:
    """The chart installed a second time with the Gateway API's rights only."""
    real_cluster.helm(
        "upgrade", "--install", "narrow", str(Path(__file__).parents[2] / "charts/phasegate"),
        "--namespace", "narrow-system", "--create-namespace",
        "--set", "rbac.trafficProviders={gatewayAPI}",
        "--set", "peering.name=narrow", "--wait",
    )  # fmt: skip
    with stack(tmp_path) as running:
        world = start_world(
            running, Cluster(real_cluster.kubeconfig, "narrow-system/narrow-phasegate", None),
            provider="istio",
        )  # fmt: skip
        yield world
        world.clean_up()


def test_a_provider_the_chart_was_not_given_is_reported_degraded_with_the_apis_refusal(
    narrow_world: World,
) -> None:
    world = narrow_world
    world.start_operator()
    world.apply(release(trafficRouting=world.routing))
    status = world.wait(lambda s: s.get("state") == "Degraded", timeout=30, what="Degraded")
    assert "forbidden" in status["message"] and "virtualservices" in status["message"], status
    assert world.router().read_weight() == 0, "no traffic moved"
