"""The operator validates a rollout's spec once per change, not once per evaluation."""

from __future__ import annotations

import copy
from typing import Any, cast

from phasegate.engine.queries import phase_plan
from phasegate.kube import Kube
from phasegate.runtime.reconcile import Context
from phasegate.runtime.telemetry import Telemetry
from phasegate.traffic import RouteCache, router_for
from support.world import release


def test_an_unchanged_spec_is_one_object_and_a_changed_one_is_validated_again() -> None:
    ctx = Context(kube=cast(Kube, None), telemetry=Telemetry())
    raw: dict[str, Any] = release()["spec"]
    first, problems = ctx.spec("shop", "web", raw)
    assert first is not None and problems == []
    newer = copy.deepcopy(raw)  # a new watch event, same spec
    again, _ = ctx.spec("shop", "web", newer)
    assert again is first
    assert ctx.specs["shop", "web"][0] is newer, "the older copy is not kept beside the newer"
    assert phase_plan(again, "shop", 0) is phase_plan(first, "shop", 0), "planned once"
    changed = {**raw, "revision": "v2"}
    second, _ = ctx.spec("shop", "web", changed)
    assert second is not first and second is not None and second.revision == "v2"
    invalid, problems = ctx.spec("shop", "web", {**raw, "phases": []})
    assert invalid is None and problems
    ctx.forget("shop", "web")
    assert ctx.spec("shop", "web", raw)[0] is not first, "forgotten with its rollout"


def test_a_rollout_forgotten_leaves_none_of_its_routes_in_the_route_cache() -> None:
    ingresses = ("networking.k8s.io", "ingresses")
    ctx = Context(kube=cast(Kube, None), telemetry=Telemetry(), routes=RouteCache({ingresses}))
    raw = release(trafficRouting={"nginx": {"stableIngress": "web"}})["spec"]
    spec, problems = ctx.spec("shop", "web", raw)
    assert spec is not None and problems == []
    ctx.reads_routes("shop", "web", router_for(spec, "shop", ctx.kube, ctx.routes))
    stable, canary = (*ingresses, "shop", "web"), (*ingresses, "shop", "web-canary")
    for key in (stable, canary):  # as evaluations leave them: asked for, then offered
        assert ctx.routes.get(key) is None
        ctx.routes.offer(key, {"metadata": {"name": key[3], "resourceVersion": "7"}})
    assert len(ctx.routes) == 2
    ctx.forget("shop", "web")
    assert len(ctx.routes) == 0
    ctx.routes.offer(stable, {"metadata": {"name": "web", "resourceVersion": "8"}})
    assert len(ctx.routes) == 0, "a forgotten route is no longer kept from the watch"
