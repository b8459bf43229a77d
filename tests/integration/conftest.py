"""Real processes: the local Kubernetes API, Prometheus, demo services, load, the operator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from phasegate.demo.stack import stack
from support.world import Cluster, World, start_world


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """The local stack, or with ``PHASEGATE_E2E_KUBECONFIG`` that cluster as its API."""
    with stack(tmp_path) as running:
        world = start_world(running, Cluster.from_environment())
        yield world
        world.clean_up()


@pytest.fixture(params=["istio", "smi", "nginx"])
def mesh_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The same, with the traffic split by an Istio VirtualService, an SMI TrafficSplit or
    an NGINX canary Ingress instead of the HTTPRoute."""
    with stack(tmp_path) as running:
        world = start_world(running, Cluster.from_environment(), provider=request.param)
        yield world
        world.clean_up()
