"""Traffic routers: one module per mesh behind :class:`~phasegate.traffic.router.Router`."""

from __future__ import annotations

from collections.abc import Callable

from phasegate.api.spec import RolloutSpec
from phasegate.kube import Kube
from phasegate.traffic.cache import RouteCache
from phasegate.traffic.gatewayapi import GatewayAPIRouter
from phasegate.traffic.istio import IstioRouter
from phasegate.traffic.nginx import NginxRouter
from phasegate.traffic.router import RouteError, Router
from phasegate.traffic.smi import SMIRouter

# The router of each provider, by its key under spec.trafficRouting; each is built from
# (kube, namespace, object name, stable Service, canary Service).
ROUTERS: dict[str, Callable[[Kube, str, str, str, str], Router]] = {
    "gatewayAPI": GatewayAPIRouter,
    "istio": IstioRouter,
    "smi": SMIRouter,
    "nginx": NginxRouter,
}


# The kinds whose objects a RouteCache can hold, (group, version, plural), by provider.
_WATCHABLE = {
    provider: (router.group, router.version, router.plural)
    for provider, router in (
        ("gatewayAPI", GatewayAPIRouter),
        ("istio", IstioRouter),
        ("smi", SMIRouter),
        ("nginx", NginxRouter),
    )
}
WATCHED_ROUTES = tuple(_WATCHABLE.values())


def watched_kinds(providers: tuple[str, ...]) -> set[tuple[str, str]]:
    """(group, plural) of the route kinds of ``providers`` that can be watched."""
    return {(group, plural) for p, (group, _, plural) in _WATCHABLE.items() if p in providers}


def router_for(
    spec: RolloutSpec, namespace: str, kube: Kube, cache: RouteCache | None = None
) -> Router:
    """The router of the spec's provider; with ``cache``, routes are read from the watched
    copies it holds."""
    routing, stable, canary = spec.traffic_routing, spec.stable.service, spec.canary.service
    if routing.gateway_api is not None:
        route = routing.gateway_api.http_route
        return GatewayAPIRouter(kube, namespace, route, stable, canary, cache=cache)
    if routing.istio is not None:
        vs = routing.istio
        return IstioRouter(
            kube, namespace, vs.virtual_service, stable, canary, vs.routes, cache=cache
        )
    if routing.smi is not None:
        split = routing.smi.traffic_split
        return SMIRouter(kube, namespace, split, stable, canary, cache=cache)
    if routing.nginx is not None:
        stable_ingress = routing.nginx.stable_ingress
        return NginxRouter(kube, namespace, stable_ingress, stable, canary, cache=cache)
    raise RouteError("trafficRouting names no provider")


__all__ = [
    "ROUTERS",
    "WATCHED_ROUTES",
    "RouteCache",
    "RouteError",
    "Router",
    "router_for",
    "watched_kinds",
]
