"""Istio VirtualService (networking.istio.io/v1, Istio 1.22+): the weights of the stable and
canary destinations of every HTTP route that has both, or of the routes named in
``trafficRouting.istio.routes``. A destination's ``host`` names the Service by its short name
or a name qualified with the rollout's namespace (``web``, ``web.shop``,
``web.shop.svc.cluster.local``); an unset weight counts as 0."""

from __future__ import annotations

from typing import Any

from phasegate.kube import Kube
from phasegate.traffic.cache import RouteCache
from phasegate.traffic.router import RouteError
from phasegate.traffic.weighted import Pair, WeightedRouter, pair_at


class IstioRouter(WeightedRouter):
    kind = "VirtualService"
    group, version, plural = "networking.istio.io", "v1", "virtualservices"

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        stable: str,
        canary: str,
        routes: list[str] | None = None,
        *,
        cache: RouteCache | None = None,
    ) -> None:
        super().__init__(kube, namespace, name, stable, canary, cache=cache)
        self.routes = list(routes or [])

    def pairs(self, obj: dict[str, Any]) -> list[Pair]:
        http = (obj.get("spec") or {}).get("http") or []
        names = [route.get("name") for route in http]
        missing = [name for name in self.routes if name not in names]
        if missing:
            raise RouteError(f"{self.title} has no HTTP route named {', '.join(missing)}")
        found = []
        for i, route in enumerate(http):
            if self.routes and route.get("name") not in self.routes:
                continue
            destinations = route.get("route") or []
            s, c = self._find(destinations, self.stable), self._find(destinations, self.canary)
            if s is None or c is None:
                if self.routes:
                    raise RouteError(
                        f"{self.title}: HTTP route {route.get('name')!r} needs destinations "
                        f"{self.stable!r} and {self.canary!r}"
                    )
                continue
            key = route.get("name") or str(i)
            found.append(pair_at(key, f"/spec/http/{i}/route", destinations, s, c, 0))
        if not found:
            raise RouteError(
                f"{self.title} has no HTTP route with both destinations {self.stable!r} and "
                f"{self.canary!r}; add the canary host (weight 0) beside the stable one"
            )
        return found

    def _find(self, destinations: list[dict[str, Any]], service: str) -> int | None:
        qualified = f"{service}.{self.namespace}"
        for j, entry in enumerate(destinations):
            host = str((entry.get("destination") or {}).get("host", ""))
            if host in (service, qualified) or host.startswith(f"{qualified}.svc"):
                return j
        return None
