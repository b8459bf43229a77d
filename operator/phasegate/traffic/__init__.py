"""Traffic routers: one module per mesh behind :class:`~phasegate.traffic.router.Router`."""

from __future__ import annotations

from phasegate.api.spec import RolloutSpec
from phasegate.kube import Kube
from phasegate.traffic.gatewayapi import GatewayAPIRouter
from phasegate.traffic.router import RouteError, Router


def router_for(spec: RolloutSpec, namespace: str, kube: Kube) -> Router:
    """The router of the spec's provider; RouteError for providers not supported yet."""
    routing = spec.traffic_routing
    if routing.gateway_api is not None:
        return GatewayAPIRouter(
            kube,
            namespace,
            routing.gateway_api.http_route,
            spec.stable.service,
            spec.canary.service,
        )
    raise RouteError(
        f"trafficRouting.{routing.provider} is not supported by this operator version; "
        "use gatewayAPI"
    )


__all__ = ["RouteError", "Router", "router_for"]
