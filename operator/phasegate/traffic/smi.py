"""SMI TrafficSplit (split.smi-spec.io/v1alpha4): the weights of the stable and canary
entries of ``spec.backends``."""

from __future__ import annotations

from typing import Any

from phasegate.traffic.router import RouteError
from phasegate.traffic.weighted import Pair, WeightedRouter, pair_at


class SMIRouter(WeightedRouter):
    kind = "TrafficSplit"
    group, version, plural = "split.smi-spec.io", "v1alpha4", "trafficsplits"

    def pairs(self, obj: dict[str, Any]) -> list[Pair]:
        backends = (obj.get("spec") or {}).get("backends") or []
        services = [entry.get("service") for entry in backends]
        if self.stable not in services or self.canary not in services:
            raise RouteError(
                f"{self.title} needs backends {self.stable!r} and {self.canary!r}; add the "
                "canary Service (weight 0) beside the stable one"
            )
        s, c = services.index(self.stable), services.index(self.canary)
        return [pair_at("backends", "/spec/backends", backends, s, c, 0)]
