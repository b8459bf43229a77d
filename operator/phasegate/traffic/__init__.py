"""Traffic routers: one module per mesh behind :class:`~phasegate.traffic.router.Router`."""

from __future__ import annotations

from collections.abc import Callable

from phasegate.api.spec import RolloutSpec
from phasegate.kube import Kube
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


def router_for(spec: RolloutSpec, namespace: str, kube: Kube) -> Router:
    """The router of the spec's provider."""
    routing, stable, canary = spec.traffic_routing, spec.stable.service, spec.canary.service
    if routing.gateway_api is not None:
        return GatewayAPIRouter(kube, namespace, routing.gateway_api.http_route, stable, canary)
    if routing.istio is not None:
        vs = routing.istio
        return IstioRouter(kube, namespace, vs.virtual_service, stable, canary, vs.routes)
    if routing.smi is not None:
        return SMIRouter(kube, namespace, routing.smi.traffic_split, stable, canary)
    if routing.nginx is not None:
        return NginxRouter(kube, namespace, routing.nginx.stable_ingress, stable, canary)
    raise RouteError("trafficRouting names no provider")


__all__ = ["ROUTERS", "RouteError", "Router", "router_for"]
