"""The real control plane of cluster/ for the tests: one per test session, started on first
use, with phasegate's chart installed by the real helm; a fresh namespace per test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane import ControlPlane
from support.kube import ROOT, Kube, kubectl

RELEASE_NAMESPACE = "phasegate-system"
SERVICE_ACCOUNT = f"{RELEASE_NAMESPACE}/phasegate"
OPERATOR_USER = f"system:serviceaccount:{RELEASE_NAMESPACE}:phasegate"
TRAFFIC_PROVIDERS = "{gatewayAPI,istio,smi,nginx}"


@dataclass
class RealCluster:
    """A running control plane with the chart installed."""

    plane: ControlPlane

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    def helm(self, *args: str) -> str:
        import subprocess

        result = subprocess.run(
            [str(self.plane.helm), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}"
        return result.stdout

    def install_chart(self, *values: str) -> None:
        """phasegate's chart as a user installs it: CRDs, RBAC, ServiceAccount, peering and
        the Deployment (whose Pods kwok reports Ready without running them)."""
        self.helm(
            "upgrade", "--install", "phasegate", str(ROOT / "charts/phasegate"),
            "--namespace", RELEASE_NAMESPACE, "--create-namespace",
            "--set", f"rbac.trafficProviders={TRAFFIC_PROVIDERS}",
            *values, "--wait", "--timeout", "120s",
        )  # fmt: skip

    @contextmanager
    def refusing_nothing(self) -> Iterator[None]:
        """Fail when the apiserver refused the operator's ServiceAccount anything (403) in
        the block: a grant the chart lacks, even where the operator carries on regardless."""
        start = len(self.plane.audited(OPERATOR_USER))
        yield
        refused = [
            f"{e['verb']} {e['requestURI']}: {e['responseStatus'].get('message', '')}"
            for e in self.plane.audited(OPERATOR_USER)[start:]
            if e.get("responseStatus", {}).get("code") == 403
        ]
        assert not refused, "the chart's RBAC refused the operator:\n" + "\n".join(refused)

    def namespace(self) -> str:
        name = f"t-{secrets.token_hex(3)}"
        kubectl(self.kubeconfig, "create", "namespace", name)
        return name


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    """The real control plane (binaries from ``cluster/build``, cached by version)."""
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    plane.up()
    try:
        cluster = RealCluster(plane)
        cluster.install_chart()
        yield cluster
    finally:
        plane.down()


@pytest.fixture
def real_namespace(real_cluster: RealCluster) -> Iterator[str]:
    """A namespace of its own for one test, deleted after it."""
    name = real_cluster.namespace()
    yield name
    kubectl(real_cluster.kubeconfig, "delete", "namespace", name, "--wait=false")


@pytest.fixture
def admin(real_cluster: RealCluster) -> Kube:
    return Kube(real_cluster.kubeconfig)
