"""kubectl, as a subprocess, against the local API: what users will type."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from phasegate.localapi import LocalAPI
from support.kube import CRDS, PROVIDER_CRDS, REFERENCE, kubectl, namespace


@pytest.fixture
def kc(local_api: LocalAPI) -> Path:
    kubectl(local_api.kubeconfig_path, "apply", "-f", str(CRDS))
    kubectl(local_api.kubeconfig_path, "apply", "-f", "-", stdin=namespace("learning"))
    return local_api.kubeconfig_path


def patch_status(kc: Path, status: str) -> None:
    """What the operator would write, merged into the reference release's status."""
    kubectl(
        kc,
        "patch",
        "prollout",
        "cohort-analyzer",
        "-n",
        "learning",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    )


def test_kubectl_applies_the_crds_and_the_reference_release(kc: Path) -> None:
    applied = kubectl(kc, "apply", "-f", str(REFERENCE))
    assert "progressiverollout.phasegate.dev/cohort-analyzer created" in applied.stdout
    version = [
        "get",
        "prollout",
        "cohort-analyzer",
        "-n",
        "learning",
        "-o",
        "jsonpath={.metadata.resourceVersion}/{.metadata.generation}",
    ]
    before = kubectl(kc, *version).stdout
    kubectl(kc, "apply", "-f", str(REFERENCE))  # schema defaults make kubectl send a patch...
    assert kubectl(kc, *version).stdout == before  # ...that changes nothing, as on a cluster


def test_kubectl_get_rollouts_shows_the_printer_columns(kc: Path) -> None:
    kubectl(kc, "apply", "-f", str(REFERENCE))
    status = json.dumps(
        {
            "status": {
                "state": "Progressing",
                "canaryWeight": 10,
                "progress": "3/6",
                "currentPhase": {"name": "ramp", "index": 1, "weight": 10},
            }
        }
    )
    patch_status(kc, status)
    out = kubectl(kc, "get", "rollouts", "-A").stdout.splitlines()
    assert out[0].split() == ["NAMESPACE", "NAME", "PHASE", "WEIGHT", "STATE", "CHECKPOINTS", "AGE"]
    assert out[1].split()[:6] == ["learning", "cohort-analyzer", "ramp", "10", "Progressing", "3/6"]


def test_kubectl_apply_refuses_an_invalid_manifest_naming_the_field(kc: Path) -> None:
    bad = REFERENCE.read_text().replace("weight: 100", "weight: 101")
    result = kubectl(kc, "apply", "-f", "-", stdin=bad, check=False)
    assert result.returncode != 0
    assert "spec.phases[2].weight" in result.stderr and "less than or equal to 100" in result.stderr
    unknown = REFERENCE.read_text().replace("holdWeight: 5", "holdWeight: 5\n  canaryWieght: 3")
    result = kubectl(kc, "apply", "-f", "-", stdin=unknown, check=False)
    assert result.returncode != 0 and 'unknown field "spec.canaryWieght"' in result.stderr


def test_kubectl_get_watch_streams_changes(kc: Path) -> None:
    kubectl(kc, "apply", "-f", str(REFERENCE))
    watch = subprocess.Popen(
        ["kubectl", "get", "rollouts", "-n", "learning", "-w", "--request-timeout=5s"],
        env={**os.environ, "KUBECONFIG": str(kc)},  # $HOME and $KUBECACHEDIR: the cache's place
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        assert watch.stdout.readline().split()[0] == "NAME"
        assert watch.stdout.readline().split()[0] == "cohort-analyzer"
        patch_status(kc, '{"status":{"state":"Holding","canaryWeight":5}}')
        line = watch.stdout.readline().split()
        assert line[0] == "cohort-analyzer" and "Holding" in line and "5" in line
    finally:
        watch.kill()
        watch.wait()


def test_kubectl_delete_waits_for_the_object_to_go(kc: Path) -> None:
    kubectl(kc, "apply", "-f", str(REFERENCE))
    started = time.monotonic()
    result = kubectl(kc, "delete", "-f", str(REFERENCE), "--timeout=20s")
    assert 'progressiverollout.phasegate.dev "cohort-analyzer" deleted' in result.stdout
    assert time.monotonic() - started < 10
    assert "No resources found" in kubectl(kc, "get", "rollouts", "-n", "learning").stderr


def test_kubectl_applies_the_provider_crds_and_lists_by_category(kc: Path) -> None:
    kubectl(kc, "apply", "-f", str(PROVIDER_CRDS))
    route = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: learning}
spec:
  rules:
    - backendRefs:
        - {name: web-stable, port: 80, weight: 100}
        - {name: web-canary, port: 80, weight: 0}
"""
    kubectl(kc, "apply", "-f", "-", stdin=route)
    assert "web" in kubectl(kc, "get", "gateway-api", "-n", "learning").stdout
    weights = kubectl(
        kc,
        "get",
        "httproute",
        "web",
        "-n",
        "learning",
        "-o",
        "jsonpath={.spec.rules[0].backendRefs[*].weight}",
    ).stdout
    assert weights.split() == ["100", "0"]


def test_kubectl_create_namespace_says_what_to_use_instead(kc: Path) -> None:
    # kubectl's built-in generators send protobuf, which the local API does not read.
    refused = kubectl(kc, "create", "namespace", "shop", check=False)
    assert refused.returncode != 0
    assert "does not read protobuf" in refused.stderr and "kubectl apply -f" in refused.stderr
    kubectl(kc, "apply", "-f", "-", stdin=namespace("shop"))
    assert kubectl(kc, "get", "namespace", "shop", "-o", "name").stdout.strip() == "namespace/shop"
