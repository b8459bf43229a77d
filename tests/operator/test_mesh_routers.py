"""The Istio, SMI and NGINX routers against the local Kubernetes API: each sets the canary's
weight where its provider reads it, reads it back, and restores what was there before."""

from __future__ import annotations

import json
from typing import Any

import pytest

from phasegate.kube import Conflict
from phasegate.kube import Kube as Clients
from phasegate.traffic import RouteError
from phasegate.traffic.cache import RouteCache
from phasegate.traffic.istio import IstioRouter
from phasegate.traffic.nginx import CANARY, CANARY_OF, WEIGHT, NginxRouter
from phasegate.traffic.smi import SMIRouter
from phasegate.traffic.weighted import ORIGINAL
from support.kube import Kube

NS = "/namespaces/default"
VS = f"/apis/networking.istio.io/v1{NS}/virtualservices"
TS = f"/apis/split.smi-spec.io/v1alpha4{NS}/trafficsplits"
INGRESSES = f"/apis/networking.k8s.io/v1{NS}/ingresses"


def destination(host: str, weight: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"destination": {"host": host, "port": {"number": 80}}}
    return entry if weight is None else {**entry, "weight": weight}


def virtual_service(kube: Kube, http: list[dict[str, Any]]) -> None:
    body = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "web"},
        "spec": {"hosts": ["web.example"], "http": http},
    }
    kube.ok("POST", VS, body)


def weights(kube: Kube, index: int) -> list[int | None]:
    route = kube.ok("GET", f"{VS}/web")["spec"]["http"][index]["route"]
    return [entry.get("weight") for entry in route]


def test_istio_sets_every_http_route_with_both_destinations(kube: Kube, clients: Clients) -> None:
    virtual_service(
        kube,
        [
            {
                "name": "primary",
                "route": [destination("web-stable", 100), destination("web-canary", 0)],
            },
            {"name": "static", "route": [destination("assets")]},
            {
                "name": "qualified",
                "route": [
                    destination("web-stable.default.svc.cluster.local", 100),
                    destination("web-canary.default.svc.cluster.local"),
                ],
            },
        ],
    )
    router = IstioRouter(clients, "default", "web", "web-stable", "web-canary")
    assert router.read_weight() == 0
    router.set_weight(10)
    assert router.read_weight() == 10
    assert weights(kube, 0) == [90, 10] and weights(kube, 2) == [90, 10]
    assert weights(kube, 1) == [None], "a route without the pair is left alone"
    saved = kube.ok("GET", f"{VS}/web")["metadata"]["annotations"][ORIGINAL]
    assert json.loads(saved) == {"primary": [100, 0], "qualified": [100, 0]}
    assert router.restore() is True
    assert weights(kube, 0) == [100, 0] and weights(kube, 2) == [100, 0]


def test_istio_manages_only_the_named_routes(kube: Kube, clients: Clients) -> None:
    pair = [destination("web-stable", 100), destination("web-canary", 0)]
    virtual_service(kube, [{"name": "primary", "route": pair}, {"name": "beta", "route": pair}])
    IstioRouter(clients, "default", "web", "web-stable", "web-canary", ["beta"]).set_weight(30)
    assert weights(kube, 0) == [100, 0] and weights(kube, 1) == [70, 30]
    with pytest.raises(RouteError, match="no HTTP route named gamma"):
        IstioRouter(clients, "default", "web", "web-stable", "web-canary", ["gamma"]).read_weight()


def test_istio_errors_name_what_is_missing(kube: Kube, clients: Clients) -> None:
    with pytest.raises(RouteError, match="VirtualService default/web not found"):
        IstioRouter(clients, "default", "web", "web-stable", "web-canary").read_weight()
    virtual_service(kube, [{"route": [destination("web-stable.other", 100)]}])
    with pytest.raises(RouteError, match="no HTTP route with both destinations"):
        IstioRouter(clients, "default", "web", "web-stable", "web-canary").set_weight(5)


def test_smi_sets_the_backends_weights(kube: Kube, clients: Clients) -> None:
    backends = [
        {"service": "web-stable", "weight": 100},
        {"service": "web-canary", "weight": 0},
        {"service": "web-shadow", "weight": 0},
    ]
    body = {
        "apiVersion": "split.smi-spec.io/v1alpha4",
        "kind": "TrafficSplit",
        "metadata": {"name": "web"},
        "spec": {"service": "web", "backends": backends},
    }
    kube.ok("POST", TS, body)
    router = SMIRouter(clients, "default", "web", "web-stable", "web-canary")
    router.set_weight(25)
    assert router.read_weight() == 25
    got = kube.ok("GET", f"{TS}/web")["spec"]["backends"]
    assert [b["weight"] for b in got] == [75, 25, 0]
    assert router.restore() is True
    assert [b["weight"] for b in kube.ok("GET", f"{TS}/web")["spec"]["backends"]] == [100, 0, 0]
    with pytest.raises(RouteError, match="needs backends 'web-stable' and 'web-beta'"):
        SMIRouter(clients, "default", "web", "web-stable", "web-beta").read_weight()


def stable_ingress(kube: Kube) -> None:
    def path(prefix: str, service: str) -> dict[str, Any]:
        backend = {"service": {"name": service, "port": {"number": 80}}}
        return {"path": prefix, "pathType": "Prefix", "backend": backend}

    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web"},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["web.example"], "secretName": "web-tls"}],
            "rules": [
                {
                    "host": "web.example",
                    "http": {"paths": [path("/", "web-stable"), path("/docs", "docs")]},
                }
            ],
        },
    }
    kube.ok("POST", INGRESSES, body)


def test_nginx_makes_a_canary_ingress_and_deletes_it_on_restore(
    kube: Kube, clients: Clients
) -> None:
    stable_ingress(kube)
    router = NginxRouter(clients, "default", "web", "web-stable", "web-canary")
    assert router.read_weight() == 0 and router.restore() is False
    router.set_weight(10)
    canary = kube.ok("GET", f"{INGRESSES}/web-canary")
    annotations = canary["metadata"]["annotations"]
    assert annotations[CANARY] == "true" and annotations[WEIGHT] == "10"
    assert annotations[CANARY_OF] == "web"
    assert canary["spec"]["ingressClassName"] == "nginx"
    (rule,) = canary["spec"]["rules"]
    assert rule["host"] == "web.example"
    assert [(p["path"], p["backend"]["service"]["name"]) for p in rule["http"]["paths"]] == [
        ("/", "web-canary")
    ], "only the stable Service's paths, sent to the canary"
    assert router.read_weight() == 10
    router.set_weight(50)
    assert router.read_weight() == 50
    assert router.restore() is True
    status, _ = kube.request("GET", f"{INGRESSES}/web-canary")
    assert status == 404
    assert (
        kube.ok("GET", f"{INGRESSES}/web")["spec"]["rules"][0]["http"]["paths"][0]["backend"][
            "service"
        ]["name"]
        == "web-stable"
    ), "the stable Ingress is never changed"


def test_nginx_never_touches_an_ingress_it_did_not_make(kube: Kube, clients: Clients) -> None:
    stable_ingress(kube)
    kube.ok("POST", INGRESSES, {"metadata": {"name": "web-canary"}, "spec": {}})
    router = NginxRouter(clients, "default", "web", "web-stable", "web-canary")
    with pytest.raises(RouteError, match="was not made by phasegate"):
        router.set_weight(10)
    assert router.restore() is False
    assert kube.ok("GET", f"{INGRESSES}/web-canary")["spec"] == {}


def test_nginx_writes_over_a_canary_ingress_its_cache_held_absent(
    kube: Kube, clients: Clients
) -> None:
    """Made by someone else and not yet seen by the (here absent) watch: the create is refused
    (409 AlreadyExists), so the Ingress is read and the weight written over it."""
    stable_ingress(kube)
    cache = RouteCache({("networking.k8s.io", "ingresses")})
    router = NginxRouter(clients, "default", "web", "web-stable", "web-canary", cache=cache)
    assert router.read_weight() == 0
    other = NginxRouter(clients, "default", "web", "web-stable", "web-canary")
    other.set_weight(50)
    assert router.read_weight() == 0, "held absent: not asked of the API"
    router.set_weight(10)
    assert other.read_weight() == 10
    assert router.read_weight() == 10

    kube.ok("DELETE", f"{INGRESSES}/web-canary")
    assert router.restore() is False  # a 404: held absent again
    kube.ok("POST", INGRESSES, {"metadata": {"name": "web-canary"}, "spec": {}})
    assert router.read_weight() == 0
    with pytest.raises(RouteError, match="was not made by phasegate"):
        router.set_weight(10)
    with pytest.raises(RouteError, match="was not made by phasegate"):
        router.read_weight()  # no longer held absent
    assert kube.ok("GET", f"{INGRESSES}/web-canary")["spec"] == {}


def test_a_write_refused_over_a_stale_copy_makes_the_next_read_ask_the_api(
    kube: Kube, clients: Clients
) -> None:
    """Without a watch to bring the newer copy (here none runs), the cache would otherwise
    hold the stale one, and every write over it would be refused, until max_age."""
    stable_ingress(kube)
    cache = RouteCache({("networking.k8s.io", "ingresses")})
    router = NginxRouter(clients, "default", "web", "web-stable", "web-canary", cache=cache)
    router.read_weight()
    router.set_weight(10)
    other = NginxRouter(clients, "default", "web", "web-stable", "web-canary")
    other.set_weight(50)
    assert router.read_weight() == 10, "the copy the cache holds"
    with pytest.raises(Conflict):
        router.set_weight(20)
    assert router.read_weight() == 50, "asked of the API"
    router.set_weight(20)
    assert other.read_weight() == 20


def test_nginx_errors_name_what_is_missing(kube: Kube, clients: Clients) -> None:
    with pytest.raises(RouteError, match="Ingress default/web not found"):
        NginxRouter(clients, "default", "web", "web-stable", "web-canary").read_weight()
    stable_ingress(kube)
    with pytest.raises(RouteError, match="no path to the stable Service 'api'"):
        NginxRouter(clients, "default", "web", "api", "api-canary").set_weight(5)


def test_a_refusal_by_rbac_carries_the_apis_message() -> None:
    from kubernetes.client import ApiException

    from phasegate.kube import Forbidden, translated

    refusal = ApiException(status=403, reason="Forbidden")
    refusal.body = json.dumps(
        {
            "kind": "Status",
            "code": 403,
            "message": 'virtualservices.networking.istio.io "web" is forbidden: User '
            '"system:serviceaccount:phasegate-system:phasegate" cannot get resource',
        }
    )
    expected = r"virtualservices\.networking\.istio\.io .web. is forbidden"
    with pytest.raises(Forbidden, match=expected), translated():
        raise refusal
