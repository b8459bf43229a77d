"""Gateway API HTTPRoute: the weights of the stable and canary ``backendRefs`` of every rule
that references both (an unset weight counts as 1, as the Gateway API says)."""

from __future__ import annotations

from typing import Any

from phasegate.traffic.router import RouteError
from phasegate.traffic.weighted import Pair, WeightedRouter, pair_at


class GatewayAPIRouter(WeightedRouter):
    kind = "HTTPRoute"
    group, version, plural = "gateway.networking.k8s.io", "v1", "httproutes"

    def pairs(self, obj: dict[str, Any]) -> list[Pair]:
        found = []
        for i, rule in enumerate((obj.get("spec") or {}).get("rules") or []):
            refs = rule.get("backendRefs") or []
            s, c = self._find(refs, self.stable), self._find(refs, self.canary)
            if s is not None and c is not None:
                found.append(pair_at(str(i), f"/spec/rules/{i}/backendRefs", refs, s, c, 1))
        if not found:
            raise RouteError(
                f"{self.title} has no rule with both backends {self.stable!r} and "
                f"{self.canary!r}; add the canary Service as a backendRef (weight 0) beside the "
                "stable one"
            )
        return found

    @staticmethod
    def _find(refs: list[dict[str, Any]], service: str) -> int | None:
        for j, ref in enumerate(refs):
            if (
                ref.get("name") == service
                and ref.get("kind", "Service") == "Service"
                and ref.get("group", "") in ("", "core")
            ):
                return j
        return None
