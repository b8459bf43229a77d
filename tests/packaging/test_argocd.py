"""The Argo CD health check and actions, run in Lua 5.1 as Argo CD runs them."""

from __future__ import annotations

from typing import Any

import lupa.lua51 as lua51
import pytest
import yaml

from phasegate.api import controls
from support.kube import ROOT, render_script

CM = ROOT / "manifests" / "argocd" / "argocd-cm.yaml"
KEY = "phasegate.dev_ProgressiveRollout"
ARGOCD = "system:serviceaccount:argocd:argocd-server"  # who Argo CD's server writes as


def config() -> dict[str, Any]:
    return yaml.safe_load(CM.read_text())["data"]  # type: ignore[no-any-return]


def run(script: str, obj: dict[str, Any]) -> Any:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    return lua.execute(script)


def to_python(value: Any) -> Any:
    if lua51.lua_type(value) == "table":
        keys = list(value.keys())
        if keys and all(isinstance(k, int) for k in keys):
            return [to_python(value[k]) for k in sorted(keys)]
        return {k: to_python(v) for k, v in value.items()}
    return value


def rollout(
    state: str | None, generation: int = 3, observed: int = 3, **status: Any
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "shop", "generation": generation, "annotations": {"team": "a"}},
        "spec": {
            "phases": [
                {"name": "canary"},
                {"name": "ramp", "approval": {"required": ["engineering", "finance"]}},
                {"name": "rollout"},
            ]
        },
    }
    if state is not None:
        obj["status"] = {
            "state": state,
            "observedGeneration": observed,
            "message": f"{state} now",
            **status,
        }
    return obj


@pytest.mark.parametrize(
    ("state", "health"),
    [
        ("Pending", "Progressing"),
        ("Progressing", "Progressing"),
        ("Promoting", "Progressing"),
        ("WaitingForApproval", "Suspended"),
        ("Scheduled", "Suspended"),
        ("Holding", "Suspended"),
        ("Paused", "Suspended"),
        ("RolledBack", "Degraded"),
        ("Invalid", "Degraded"),
        ("Degraded", "Degraded"),
        ("Succeeded", "Healthy"),
    ],
)
def test_health_of_every_state(state: str, health: str) -> None:
    hs = to_python(run(config()[f"resource.customizations.health.{KEY}"], rollout(state)))
    assert hs == {"status": health, "message": f"{state} now"}


def test_a_spec_not_yet_observed_is_progressing() -> None:
    script = config()[f"resource.customizations.health.{KEY}"]
    assert to_python(run(script, rollout(None)))["status"] == "Progressing"
    stale = to_python(run(script, rollout("Succeeded", generation=4, observed=3)))
    assert stale == {
        "status": "Progressing",
        "message": "Waiting for phasegate to observe the latest spec",
    }


def actions() -> dict[str, Any]:
    return yaml.safe_load(config()[f"resource.customizations.actions.{KEY}"])  # type: ignore[no-any-return]


def enabled(obj: dict[str, Any]) -> set[str]:
    found = to_python(run(actions()["discovery.lua"], obj))
    return {name for name, flags in found.items() if not flags["disabled"]}


def test_discovery_offers_what_applies_now() -> None:
    assert enabled(rollout("Progressing", currentPhase={"index": 1})) == {
        "pause",
        "promote",
        "promote-full",
        "abort",
    }
    assert {n for n in enabled(rollout("Progressing", currentPhase={"index": 0}))} >= {
        "reject-engineering",
        "reject-finance",
    }
    assert enabled(rollout("Holding", currentPhase={"index": 1})) == {
        "pause",
        "resume",
        "promote",
        "promote-full",
        "abort",
        "retry",
    }
    assert enabled(rollout("RolledBack")) == {"retry"}
    assert enabled(rollout("Succeeded")) == set()


def test_discovery_offers_approvals_still_missing_for_the_next_phase() -> None:
    waiting = rollout(
        "WaitingForApproval",
        currentPhase={"index": 0},
        approvals=[{"phase": "ramp", "group": "engineering", "by": "alice"}],
    )
    assert {n for n in enabled(waiting) if n.startswith("approve-")} == {"approve-finance"}
    older = rollout(
        "WaitingForApproval",
        currentPhase={"index": 0},
        approvals=[{"phase": "ramp", "by": "finance"}],  # the group in `by`, as before
    )
    assert {n for n in enabled(older) if n.startswith("approve-")} == {"approve-engineering"}


def test_after_a_no_go_discovery_offers_only_retry_and_abort() -> None:
    rejected = rollout("Holding", currentPhase={"index": 0}, holdReason="Rejected")
    assert enabled(rejected) == {"retry", "abort", "approve-engineering", "approve-finance"}


@pytest.mark.parametrize("name", ["pause", "resume", "promote", "promote-full", "abort", "retry"])
def test_actions_write_the_control_annotation_the_operator_reads(name: str) -> None:
    script = next(d["action.lua"] for d in actions()["definitions"] if d["name"] == name)
    obj = to_python(run(script, rollout("Holding", currentPhase={"index": 0})))
    assert obj["metadata"]["annotations"]["team"] == "a"
    requests, problems = controls.parse(obj["metadata"]["annotations"])
    expected = {"promote-full": "promoteFull"}.get(name, name)
    assert problems == [] and [body for _, body in requests] == [{"action": expected, "by": ARGOCD}]
    (value,) = [v for k, v in obj["metadata"]["annotations"].items() if k != "team"]
    assert controls.is_canonical(value), "the form the admission policy admits"


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("approve-finance", {}),
        ("reject-finance", {"reason": "NO-GO given in Argo CD"}),
    ],
)
def test_approve_and_reject_name_the_group_and_the_next_phase(
    name: str, extra: dict[str, str]
) -> None:
    script = next(d["action.lua"] for d in actions()["definitions"] if d["name"] == name)
    obj = to_python(run(script, rollout("WaitingForApproval", currentPhase={"index": 0})))
    requests, problems = controls.parse(obj["metadata"]["annotations"])
    assert problems == []
    action = name.split("-")[0]
    assert [body for _, body in requests] == [
        {"action": action, "phase": "ramp", "group": "finance", "by": ARGOCD, **extra}
    ]
    (value,) = [v for k, v in obj["metadata"]["annotations"].items() if k != "team"]
    assert controls.is_canonical(value), "the form the admission policy admits"


def test_approve_with_no_phase_ahead_fails_and_writes_nothing() -> None:
    script = next(
        d["action.lua"] for d in actions()["definitions"] if d["name"] == "approve-finance"
    )
    with pytest.raises(lua51.LuaError, match="no phase ahead whose gate approve could be for"):
        run(script, rollout("Progressing", currentPhase={"index": 2}))


def test_the_committed_config_is_rendered_from_the_lua_sources() -> None:
    assert CM.read_text() == render_script("render_argocd"), "run `make manifests`"
