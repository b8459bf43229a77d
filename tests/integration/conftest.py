"""Real processes: the local Kubernetes API, Prometheus, demo services, load, the operator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from phasegate.demo.stack import stack
from support.world import NS, World, route


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with stack(tmp_path) as running:
        running.start_api()
        running.start_service("web-stable")
        running.start_service("web-canary")
        running.start_prometheus()
        running.prometheus_scrapes(["web-stable", "web-canary"])
        running.kubectl(
            "apply",
            "-f",
            "-",
            stdin=yaml.safe_dump(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
            ),
        )
        world = World(running)
        world.apply(route())
        running.start_load(NS, "web", rate=300)
        yield world
