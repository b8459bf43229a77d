"""Real processes: a Kubernetes API, Prometheus, demo services, load, the operator.

Every scenario runs twice: on the local API (``[local]``), and on the real control plane of
cluster/ (``[real]``: kube-apiserver, controllers and kwok's nodes, the chart installed by
helm, the operator authenticated as the chart's ServiceAccount). With
``PHASEGATE_E2E_KUBECONFIG`` (``make e2e-kind``) the ``[local]`` run uses that cluster."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from phasegate.demo.stack import stack
from support.cluster import SERVICE_ACCOUNT, RealCluster
from support.world import Cluster, World, start_world

BACKENDS = ["local", pytest.param("real", marks=pytest.mark.cluster)]


# Scenarios whose [real] run repeats on kube-apiserver what their [local] run and the other
# [real] scenarios prove: `make test-all` runs them, `make test` (CI) does not, to stay well
# inside CI's time (each starts its own operators; the regions' start three control planes).
SLOW_ON_REAL = (
    "test_a_promotion_survives_faults_at_every_workload_write",
    "test_two_operators_without_peering_lose_no_decision_and_apply_none_twice",
    "test_a_rollback_in_the_second_wave_halts_the_rest",
    "test_a_region_cut_off_mid_wave_holds_the_release_until_it_answers",
    "test_the_hub_killed_mid_wave_resumes_without_repeating_a_wave",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        if item.name.endswith("[real]") and item.name.split("[")[0] in SLOW_ON_REAL:
            item.add_marker(pytest.mark.slow)


@contextmanager
def running_world(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, provider: str = "gatewayAPI"
) -> Iterator[World]:
    """A world on ``backend``; on the real control plane, any 403 the operator met fails."""
    with contextlib.ExitStack() as scope:
        on = Cluster.from_environment()
        if backend == "real":
            real: RealCluster = request.getfixturevalue("real_cluster")
            on = Cluster(real.kubeconfig, SERVICE_ACCOUNT, None)
            scope.enter_context(real.refusing_nothing())
        running = scope.enter_context(stack(tmp_path))
        world = start_world(running, on, provider=provider)
        yield world
        world.clean_up()


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The stack with its API: the local one, or a cluster (see the module's docstring)."""
    with running_world(request, tmp_path, request.param) as world:
        yield world


@pytest.fixture(params=BACKENDS)
def nginx_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The stack with an NGINX stable Ingress (and the canary one phasegate makes)."""
    with running_world(request, tmp_path, request.param, "nginx") as world:
        yield world


@pytest.fixture(
    params=[
        pytest.param((backend, provider), id=f"{provider}-{backend}", marks=marks)
        for backend, marks in (("local", ()), ("real", (pytest.mark.cluster,)))
        for provider in ("istio", "smi", "nginx")
    ]
)
def mesh_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The same, with the traffic split by an Istio VirtualService, an SMI TrafficSplit or
    an NGINX canary Ingress instead of the HTTPRoute."""
    backend, provider = request.param
    with running_world(request, tmp_path, backend, provider) as world:
        yield world
