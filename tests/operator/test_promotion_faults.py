"""Promotion against an API that fails: phasegate's operator, run in this process with kopf,
against the local API with faults injected into the requests it makes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
import yaml
from kubernetes.config import kube_config

from phasegate.api import controls
from phasegate.localapi import LocalAPI
from phasegate.runtime.operator import make_context, register
from support.kube import CRDS, Kube, eventually
from support.world import deployment, release, route

NS = "default"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
ROLLOUT = f"/apis/phasegate.dev/v1alpha1/namespaces/{NS}/progressiverollouts/web"
SCALE = f"{DEPLOYMENTS}/web-canary/scale"


def rollout() -> dict[str, Any]:
    """One long phase that only a person ends; Prometheus is never reached."""
    canary = {
        "name": "canary",
        "weight": 10,
        "duration": "1h",
        "successCriteria": [{"metric": "error-rate", "max": 0.01}],
    }
    return release(
        revision="v2",
        stable={"service": "web-stable", "deployment": "web-stable"},
        canary={"service": "web-canary", "deployment": "web-canary"},
        prometheus={"address": "http://127.0.0.1:9"},
        phases=[canary],
    )


@pytest.fixture
def api(kube: Kube) -> Kube:
    """The CRD, an HTTPRoute and the two Deployments of a release."""
    for doc in yaml.safe_load_all((CRDS / "phasegate.dev_progressiverollouts.yaml").read_text()):
        kube.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
    kube.ok("POST", f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes", route())
    kube.ok("POST", DEPLOYMENTS, deployment("web-stable", "v1"))
    kube.ok("POST", DEPLOYMENTS, deployment("web-canary", "v2"))
    return kube


@pytest.fixture
def operator(api: Kube, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """phasegate's handlers under kopf, standalone, on a thread of this process."""
    # As $KUBECONFIG would at start-up: the kubernetes library reads it once, on import.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(api.kubeconfig))
    registry = kopf.OperatorRegistry()
    register(registry, make_context(None), peering=None)
    stop = threading.Event()

    def serve() -> None:
        asyncio.run(
            kopf.operator(registry=registry, clusterwide=True, standalone=True, stop_flag=stop)
        )

    thread = threading.Thread(target=serve, name="operator", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the operator stops when asked"


def test_a_failed_canary_scale_down_is_asked_again_until_it_holds(
    local_api: LocalAPI, api: Kube, operator: None
) -> None:
    failing = local_api.handler["patch", SCALE][:2] << 500
    api.ok("POST", ROLLOUT.rsplit("/", 1)[0], rollout())
    eventually(
        lambda: (api.ok("GET", ROLLOUT).get("status") or {}).get("state") == "Progressing",
        30,
        "the release started",
    )
    api.ok(
        "PATCH",
        ROLLOUT,
        {"metadata": {"annotations": controls.annotation("promoteFull", by="test")}},
        content_type="application/merge-patch+json",
    )

    def finished() -> dict[str, Any] | None:
        status = api.ok("GET", ROLLOUT).get("status") or {}
        return status if status.get("state") in ("Succeeded", "RolledBack") else None

    status = eventually(finished, 60, "the end of the release")
    assert status["state"] == "Succeeded", status.get("message")
    assert len(list(failing)) == 2, "both injected failures were met"
    scale_patches = list(local_api.handler["patch", SCALE])
    assert len(scale_patches) >= 3, "asked again after each failure"
    assert api.ok("GET", f"{DEPLOYMENTS}/web-canary")["spec"]["replicas"] == 0
    stable = api.ok("GET", f"{DEPLOYMENTS}/web-stable")["spec"]["template"]["spec"]
    assert stable["containers"][0]["image"] == "registry.local/web:v2", "canary promoted"
