"""The hub's decisions, pure: what a release does given what each region shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from phasegate.api.release import (
    OWNER_ANNOTATION,
    ReleaseSpec,
    ReleaseState,
    ReleaseStatus,
    merge_patch,
    region_problems,
    validate_release,
)
from phasegate.hub.plan import Plan, RegionView, Release, plan

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TEMPLATE: dict[str, Any] = {
    "stable": {"service": "web-stable"},
    "canary": {"service": "web-canary"},
    "trafficRouting": {"gatewayAPI": {"httpRoute": "web"}},
    "metrics": [{"name": "errors", "query": "vector(0)"}],
    "phases": [{"name": "canary", "weight": 10, "duration": "1m"}],
}


def spec(**changes: Any) -> ReleaseSpec:
    body: dict[str, Any] = {
        "revision": "v2",
        "template": {"spec": TEMPLATE},
        "regions": [
            {"name": n, "kubeconfigSecret": {"name": f"region-{n}"}}
            for n in ("east", "west", "eu", "ap")
        ],
        "waves": [{"regions": ["east"]}, {"regions": ["west", "eu"]}, {"regions": ["ap"]}],
        "interval": "1s",
    }
    body.update(changes)
    return ReleaseSpec.model_validate(body)


def release(s: ReleaseSpec | None = None) -> Release:
    return Release("hub", "shop", "uid-1", 1, s or spec())


def rollout(
    rel: Release, region: str, state: str = "Progressing", revision: str | None = None
) -> dict[str, Any]:
    obj = rel.rollout(region)
    obj["metadata"]["resourceVersion"] = "1"
    rev = revision or rel.spec.revision
    obj["spec"]["revision"] = rev
    obj["status"] = {
        "revision": rev,
        "state": state,
        "currentPhase": {"name": "canary", "index": 0, "weight": 10},
        "canaryWeight": 10,
        "decision": {"action": "Advance", "reason": "checkpoint passed", "time": T0.isoformat()},
    }
    return obj


def views(rel: Release, **regions: str | None) -> dict[str, RegionView]:
    """Each region of the spec: absent unless named; a state name, or 'down'."""
    out = {}
    for r in rel.spec.regions:
        state = regions.get(r.name)
        if state == "down":
            out[r.name] = RegionView(r.name, error="the region's API refuses connections")
        elif state is None:
            out[r.name] = RegionView(r.name)
        else:
            out[r.name] = RegionView(r.name, rollout=rollout(rel, r.name, state))
    return out


def step(
    rel: Release,
    status: ReleaseStatus,
    now: datetime = T0,
    requests: list[tuple[str, dict[str, Any]]] | None = None,
    **regions: str | None,
) -> Plan:
    return plan(rel, status, views(rel, **regions), requests or [], now)


def written(p: Plan) -> dict[str, list[str]]:
    return {
        w.region: (["rollout"] if w.rollout else []) + [b["action"] for _, b in w.controls]
        for w in p.writes
    }


def test_the_first_wave_starts_alone() -> None:
    rel = release()
    p = step(rel, ReleaseStatus())
    assert written(p) == {"east": ["rollout"]}
    assert p.status.state is ReleaseState.PROGRESSING
    assert p.status.current_wave == "wave-1"
    created = p.writes[0].rollout
    assert created is not None and created["spec"]["revision"] == "v2"
    assert created["metadata"]["annotations"][OWNER_ANNOTATION] == "hub/shop"


def test_waves_follow_in_order_after_the_bake_time() -> None:
    rel = release(spec(bakeTime="10m"))
    s = step(rel, ReleaseStatus()).status
    p = step(rel, s, T0 + timedelta(minutes=1), east="Succeeded")
    assert p.status.state is ReleaseState.BAKING and written(p) == {}
    assert p.status.waves[0].state == "Succeeded"
    assert p.next_in == timedelta(seconds=1)
    p = step(rel, p.status, T0 + timedelta(minutes=11, seconds=1), east="Succeeded")
    assert written(p) == {"west": ["rollout"], "eu": ["rollout"]}
    assert p.status.current_wave == "wave-2" and p.status.progress == "1/3"


def test_running_regions_are_not_written_again() -> None:
    rel = release()
    s = step(rel, ReleaseStatus()).status
    p = step(rel, s, T0 + timedelta(seconds=5), east="Progressing")
    assert written(p) == {}
    assert p.status.regions[0].phase == "canary" and p.status.regions[0].weight == 10


def test_a_region_it_cannot_see_holds_the_wave_and_the_next() -> None:
    rel = release()
    s = step(rel, ReleaseStatus()).status
    s = step(rel, s, T0, east="Succeeded").status
    p = step(rel, s, T0 + timedelta(seconds=2), east="Succeeded", west="Succeeded", eu="down")
    assert p.status.state is ReleaseState.HOLDING
    assert "cannot see eu" in p.status.message
    assert "ap" not in written(p)
    reachable = next(c for c in p.status.conditions if c.type == "RegionsReachable")
    assert reachable.status == "False" and "eu" in reachable.message
    # back: the wave completes and the next starts
    p = step(rel, p.status, T0 + timedelta(seconds=3), east="Succeeded", west="Succeeded",
             eu="Succeeded")  # fmt: skip
    assert written(p) == {"ap": ["rollout"]}


def test_an_earlier_region_out_of_sight_holds_the_next_wave() -> None:
    rel = release()
    s = step(rel, ReleaseStatus()).status
    s = step(rel, s, T0, east="Succeeded").status
    s = step(rel, s, T0, east="Succeeded", west="Succeeded", eu="Progressing").status
    p = step(rel, s, T0, east="down", west="Succeeded", eu="Succeeded")
    assert p.status.state is ReleaseState.HOLDING and written(p) == {}
    assert "cannot see east" in p.status.message


def test_a_rollback_in_the_second_wave_halts_and_pauses_the_rest_of_it() -> None:
    rel = release()
    s = step(rel, ReleaseStatus()).status
    s = step(rel, s, T0, east="Succeeded").status
    p = step(rel, s, T0, east="Succeeded", west="RolledBack", eu="Progressing")
    assert p.status.state is ReleaseState.HALTED and p.status.failed_region == "west"
    assert written(p) == {"eu": ["pause"]}
    for _, body in p.writes[0].controls:
        assert body["reason"].startswith("release hub/shop: halted: region west RolledBack")
    p.status.regions[2].requested = [i for i, _ in p.writes[0].controls]  # the hub's write
    p = step(rel, p.status, T0, east="Succeeded", west="RolledBack", eu="Paused")
    assert written(p) == {}, "a halted release sends each control once and starts nothing"


def test_rollback_all_rolls_back_finished_regions_too() -> None:
    rel = release(spec(failurePolicy="RollbackAll"))
    s = step(rel, ReleaseStatus()).status
    s = step(rel, s, T0, east="Succeeded").status
    p = step(rel, s, T0, east="Succeeded", west="RolledBack", eu="Progressing")
    assert p.status.state is ReleaseState.ROLLED_BACK
    assert written(p) == {"east": ["retry", "abort"], "eu": ["abort"]}
    ids = [i for w in p.writes for i, _ in w.controls]
    assert ids == sorted(ids[:2]) + ids[2:], "retry is applied before abort (ids sort so)"


def test_abort_rolls_back_every_region_that_took_the_revision() -> None:
    rel = release()
    s = step(rel, ReleaseStatus()).status
    s = step(rel, s, T0, east="Succeeded").status
    abort = [("abort-1", {"action": "abort", "by": "alice", "reason": "incident"})]
    p = step(rel, s, T0, requests=abort, east="Succeeded", west="Progressing", eu="down")
    assert p.status.state is ReleaseState.ROLLED_BACK
    assert written(p) == {"east": ["retry", "abort"], "west": ["abort"]}
    assert "still to roll back when they answer: eu" in p.status.message
    assert "abort-1" in p.status.handled_controls


def test_a_wave_waits_for_its_approvals() -> None:
    waves = [
        {"regions": ["east"]},
        {"name": "americas", "regions": ["west", "eu"], "approval": {"required": ["ops", "eng"]}},
        {"regions": ["ap"]},
    ]
    rel = release(spec(waves=waves))
    s = step(rel, ReleaseStatus()).status
    p = step(rel, s, T0, east="Succeeded")
    assert p.status.state is ReleaseState.WAITING_FOR_APPROVAL and written(p) == {}
    approvals = [
        ("a1", {"action": "approve", "wave": "americas", "by": "oscar", "group": "ops"}),
        ("a2", {"action": "approve", "wave": "americas", "by": "mallory", "group": "finance"}),
    ]
    p = step(rel, p.status, T0, requests=approvals, east="Succeeded")
    assert p.status.state is ReleaseState.WAITING_FOR_APPROVAL and "eng" in p.status.message
    assert any(e[1] == "ControlIgnored" and "finance" in e[2] for e in p.events)
    p = step(rel, p.status, T0, requests=[("a3", {"action": "approve", "wave": "americas",
             "by": "alice", "group": "eng"})], east="Succeeded")  # fmt: skip
    assert written(p) == {"west": ["rollout"], "eu": ["rollout"]}
    assert [(a.group, a.by) for a in p.status.approvals] == [("ops", "oscar"), ("eng", "alice")]


def test_a_new_revision_starts_again_from_the_first_wave() -> None:
    rel = release()
    s = step(rel, ReleaseStatus()).status
    s = step(rel, s, T0, east="Succeeded").status
    s = step(rel, s, T0, east="Succeeded", west="Succeeded", eu="Succeeded").status
    s = step(rel, s, T0, east="Succeeded", west="Succeeded", eu="Succeeded", ap="Succeeded").status
    assert s.state is ReleaseState.SUCCEEDED and s.regions_succeeded == "4/4"
    v3 = release(spec(revision="v3"))
    seen = {n: RegionView(n, rollout=rollout(rel, n, "Succeeded", "v2")) for n in
            ("east", "west", "eu", "ap")}  # fmt: skip
    p = plan(v3, s, seen, [], T0)
    assert p.status.revision == "v3" and p.status.progress == "0/3"
    assert written(p) == {"east": ["rollout"]}, "the other regions keep v2 until their wave"
    assert {r.name: r.state for r in p.status.regions}["west"] == "NotStarted"


def test_pause_and_resume_the_whole_release() -> None:
    rel = release()
    s = step(rel, ReleaseStatus()).status
    p = step(rel, s, T0, requests=[("p", {"action": "pause", "by": "alice"})], east="Progressing")
    assert p.status.state is ReleaseState.PAUSED and written(p) == {"east": ["pause"]}
    p.status.regions[0].requested = [i for i, _ in p.writes[0].controls]
    p = step(rel, p.status, T0, east="Succeeded")
    assert p.status.state is ReleaseState.PAUSED and written(p) == {}, "no wave starts paused"
    p = step(rel, p.status, T0, requests=[("r", {"action": "resume", "by": "alice"})],
             east="Succeeded")  # fmt: skip
    assert written(p) == {"west": ["rollout"], "eu": ["rollout"]}


def test_missing_credentials_are_a_condition_naming_the_secret() -> None:
    rel = release()
    seen = views(rel)
    why = "Secret hub/region-eu not found: create it with the region's kubeconfig under key"
    seen["eu"] = RegionView("eu", error=why, credentials=("SecretNotFound", why))
    p = plan(rel, ReleaseStatus(), seen, [], T0)
    condition = next(c for c in p.status.conditions if c.type == "RegionCredentials")
    assert (condition.status, condition.reason) == ("False", "SecretNotFound")
    assert "eu: Secret hub/region-eu not found" in condition.message


def test_a_rollout_of_someone_else_is_left_alone() -> None:
    rel = release()
    foreign = rollout(rel, "east")
    foreign["metadata"]["annotations"] = {}
    seen = views(rel)
    seen["east"] = RegionView("east", rollout=foreign)
    p = plan(rel, ReleaseStatus(), seen, [], T0)
    assert written(p) == {}
    assert "not this release's" in p.status.regions[0].message


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"waves": [{"regions": ["east", "east2"]}]}, "'east2' is not in regions"),
        ({"waves": [{"regions": ["east"]}, {"regions": ["east", "west", "eu", "ap"]}]},
         "already in waves[0]"),
        ({"waves": [{"regions": ["east"]}]}, "in no wave"),
        ({"template": {"spec": {**TEMPLATE, "revision": "x"}}}, "template.spec.revision"),
    ],
)  # fmt: skip
def test_release_specs_are_checked(changes: dict[str, Any], problem: str) -> None:
    base = spec().model_dump(mode="json", by_alias=True)
    _, problems = validate_release({"spec": {**base, **changes}})
    assert any(problem in p for p in problems), problems


def test_each_region_rollout_is_checked_with_its_overrides() -> None:
    s = spec()
    body = s.model_dump(mode="json", by_alias=True)
    body["regions"][2]["overrides"] = {"phases": [{"name": "canary", "weight": 400}]}
    problems = region_problems(ReleaseSpec.model_validate(body))
    assert any(p.startswith("region eu: spec.phases[0]") for p in problems), problems


def test_merge_patch_is_rfc_7386() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}, "l": [1]}, {"b": {"c": None, "e": 4},
                       "l": [2]}) == {"a": 1, "b": {"d": 3, "e": 4}, "l": [2]}  # fmt: skip


def test_controls_to_regions_are_in_the_admission_policys_canonical_form() -> None:
    import json
    import re

    from phasegate.hub.regions import signed

    canonical = re.compile(
        r'^\{"action":"(promote|promoteFull|pause|resume|abort|retry)","by":"[^"\\\x00-\x1f]+"'
        r'(,"reason":"([^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u00[01][0-9a-fA-F])*")?\}$'
    )
    body = {"action": "abort", "reason": 'release hub/shop: rolled back — west "RolledBack"'}
    text = signed(body, "system:serviceaccount:phasegate-system:phasegate-hub")
    assert canonical.match(text), text
    assert json.loads(text)["by"] == "system:serviceaccount:phasegate-system:phasegate-hub"
