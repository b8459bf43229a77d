"""Gateway API HTTPRoute: weights of the stable and canary ``backendRefs``.

Every rule that references both backends gets stable ``100 - w`` and canary ``w``;
everything else in the route stays as it is. The route's weights before the first change are
saved in an annotation on the route and put back by :meth:`GatewayAPIRouter.restore`.
"""

from __future__ import annotations

import json
from typing import Any

from phasegate.kube import Kube, NotFound
from phasegate.traffic.router import RouteError

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"
ORIGINAL = "phasegate.dev/original-weights"


class GatewayAPIRouter:
    kind = "HTTPRoute"

    def __init__(self, kube: Kube, namespace: str, route: str, stable: str, canary: str) -> None:
        self.kube, self.namespace, self.route = kube, namespace, route
        self.stable, self.canary = stable, canary

    def _get(self) -> dict[str, Any]:
        try:
            return self.kube.get_custom(GROUP, VERSION, PLURAL, self.namespace, self.route)
        except NotFound:
            raise RouteError(f"HTTPRoute {self.namespace}/{self.route} not found") from None

    def _managed(self, route: dict[str, Any]) -> list[tuple[int, int, int]]:
        """(rule, stable ref, canary ref) indexes of every rule that has both backends."""
        found = []
        for i, rule in enumerate((route.get("spec") or {}).get("rules") or []):
            refs = rule.get("backendRefs") or []
            stable = self._find(refs, self.stable)
            canary = self._find(refs, self.canary)
            if stable is not None and canary is not None:
                found.append((i, stable, canary))
        if not found:
            raise RouteError(
                f"HTTPRoute {self.namespace}/{self.route} has no rule with both backends "
                f"{self.stable!r} and {self.canary!r}; add the canary Service as a backendRef "
                "(weight 0) beside the stable one"
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

    def read_weight(self) -> int:
        route = self._get()
        rules = route["spec"]["rules"]
        weights = set()
        for i, s, c in self._managed(route):
            refs = rules[i]["backendRefs"]
            stable, canary = refs[s].get("weight", 1), refs[c].get("weight", 1)
            total = stable + canary
            weights.add(0 if total == 0 else round(100 * canary / total))
        # Rules that disagree read as the lowest weight: the next write makes them agree.
        return min(weights)

    def set_weight(self, weight: int) -> None:
        route = self._get()
        managed = self._managed(route)
        rules = route["spec"]["rules"]
        annotations = route["metadata"].get("annotations") or {}
        ops: list[dict[str, Any]] = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": route["metadata"]["resourceVersion"],
            }
        ]
        if ORIGINAL not in annotations:
            original = {
                str(i): [
                    rules[i]["backendRefs"][s].get("weight", 1),
                    rules[i]["backendRefs"][c].get("weight", 1),
                ]
                for i, s, c in managed
            }
            if not annotations:
                ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
            ops.append(
                {
                    "op": "add",
                    "path": "/metadata/annotations/" + ORIGINAL.replace("/", "~1"),
                    "value": json.dumps(original, sort_keys=True),
                }
            )
        for i, s, c in managed:
            ops.append(
                {
                    "op": "add",
                    "path": f"/spec/rules/{i}/backendRefs/{s}/weight",
                    "value": 100 - weight,
                }
            )
            ops.append(
                {"op": "add", "path": f"/spec/rules/{i}/backendRefs/{c}/weight", "value": weight}
            )
        self.kube.json_patch_custom(GROUP, VERSION, PLURAL, self.namespace, self.route, ops)

    def restore(self) -> bool:
        try:
            route = self._get()
        except RouteError:
            return False
        saved = (route["metadata"].get("annotations") or {}).get(ORIGINAL)
        if saved is None:
            return False
        rules = route["spec"].get("rules") or []
        ops: list[dict[str, Any]] = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": route["metadata"]["resourceVersion"],
            },
            {"op": "remove", "path": "/metadata/annotations/" + ORIGINAL.replace("/", "~1")},
        ]
        for index, (stable, canary) in json.loads(saved).items():
            i = int(index)
            if i >= len(rules):
                continue
            refs = rules[i].get("backendRefs") or []
            s, c = self._find(refs, self.stable), self._find(refs, self.canary)
            if s is not None and c is not None:
                ops.append(
                    {
                        "op": "add",
                        "path": f"/spec/rules/{i}/backendRefs/{s}/weight",
                        "value": stable,
                    }
                )
                ops.append(
                    {
                        "op": "add",
                        "path": f"/spec/rules/{i}/backendRefs/{c}/weight",
                        "value": canary,
                    }
                )
        self.kube.json_patch_custom(GROUP, VERSION, PLURAL, self.namespace, self.route, ops)
        return True
