"""The Gateway API router against the local Kubernetes API."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest

from phasegate.kube import Kube as Clients
from phasegate.traffic import RouteError
from phasegate.traffic.gatewayapi import GatewayAPIRouter
from phasegate.traffic.weighted import ORIGINAL
from support.kube import Kube

ROUTES = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes"


def router(kube: Kube, route: str = "web") -> GatewayAPIRouter:
    clients = Clients(kubernetes.config.new_client_from_config(str(kube.kubeconfig)))
    return GatewayAPIRouter(clients, "default", route, "web-stable", "web-canary")


def make_route(kube: Kube, rules: list[dict[str, Any]], name: str = "web") -> None:
    kube.ok(
        "POST",
        ROUTES,
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": name},
            "spec": {"hostnames": ["web.example"], "rules": rules},
        },
    )


def refs(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"name": name, "port": 80, "weight": weight} for name, weight in pairs]


def test_sets_the_weights_in_every_rule_with_both_backends_and_reads_them_back(kube: Kube) -> None:
    make_route(
        kube,
        [
            {
                "matches": [{"path": {"value": "/api"}}],
                "backendRefs": refs(("web-stable", 100), ("web-canary", 0)),
            },
            {"backendRefs": refs(("other", 1))},
            {"backendRefs": refs(("web-stable", 100), ("web-canary", 0), ("mirror", 0))},
        ],
    )
    r = router(kube)
    assert r.read_weight() == 0
    r.set_weight(10)
    assert r.read_weight() == 10
    rules = kube.ok("GET", f"{ROUTES}/web")["spec"]["rules"]
    assert [x["weight"] for x in rules[0]["backendRefs"]] == [90, 10]
    assert rules[1]["backendRefs"] == [
        {"name": "other", "port": 80, "weight": 1, "kind": "Service", "group": ""}
    ]
    assert [x["weight"] for x in rules[2]["backendRefs"]] == [90, 10, 0]
    assert rules[0]["matches"] == [{"path": {"value": "/api"}}]


def test_saves_the_original_weights_and_restores_them(kube: Kube) -> None:
    make_route(kube, [{"backendRefs": refs(("web-stable", 80), ("web-canary", 20))}])
    r = router(kube)
    r.set_weight(50)
    r.set_weight(100)
    saved = kube.ok("GET", f"{ROUTES}/web")["metadata"]["annotations"][ORIGINAL]
    assert json.loads(saved) == {"0": [80, 20]}, "the first change saves; later ones keep it"
    assert r.restore() is True
    route = kube.ok("GET", f"{ROUTES}/web")
    assert [x["weight"] for x in route["spec"]["rules"][0]["backendRefs"]] == [80, 20]
    assert ORIGINAL not in route["metadata"].get("annotations", {})
    assert r.restore() is False


def test_a_missing_route_is_a_clear_error(kube: Kube) -> None:
    with pytest.raises(RouteError, match="HTTPRoute default/nope not found"):
        router(kube, "nope").read_weight()


def test_a_route_without_the_canary_backend_is_a_clear_error(kube: Kube) -> None:
    make_route(kube, [{"backendRefs": refs(("web-stable", 100))}])
    with pytest.raises(RouteError, match="no rule with both backends"):
        router(kube).set_weight(10)
    assert "annotations" not in kube.ok("GET", f"{ROUTES}/web")["metadata"]
