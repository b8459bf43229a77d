"""What the chart and manifests give the regions feature: the Argo CD health of a
ProgressiveRelease (run in Lua 5.1 as Argo CD runs it), the hub's RBAC and the member
clusters' minimal Role."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import lupa.lua51 as lua51
import pytest
import yaml

from support.kube import ROOT

LUA = ROOT / "manifests/argocd/release-health.lua"
CM = ROOT / "manifests/argocd/argocd-cm-releases.yaml"
MEMBER = ROOT / "manifests/member/member.yaml"
MEMBER_RULES = [
    {
        "apiGroups": ["phasegate.dev"],
        "resources": ["progressiverollouts"],
        "verbs": ["create", "get", "list", "watch", "patch"],
    },
    {"apiGroups": ["phasegate.dev"], "resources": ["progressiverollouts/status"], "verbs": ["get"]},
]


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(LUA.read_text())
    return str(result["status"]), str(result["message"])


def release(state: str | None, generation: int = 2, observed: int = 2) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "shop", "generation": generation}}
    if state is not None:
        obj["status"] = {"state": state, "observedGeneration": observed, "progress": "1/3",
                         "message": f"{state} now"}  # fmt: skip
    return obj


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("Succeeded", "Healthy"),
        ("Halted", "Degraded"),
        ("RolledBack", "Degraded"),
        ("Invalid", "Degraded"),
        ("WaitingForApproval", "Suspended"),
        ("Paused", "Suspended"),
        ("Holding", "Suspended"),
        ("Baking", "Progressing"),
        ("Progressing", "Progressing"),
        ("Pending", "Progressing"),
    ],
)
def test_release_health(state: str, expected: str) -> None:
    status, message = health(release(state))
    assert status == expected
    assert message == f"waves 1/3: {state} now"


def test_a_release_not_yet_observed_is_progressing() -> None:
    assert health(release(None))[0] == "Progressing"
    status, message = health(release("Succeeded", generation=3, observed=2))
    assert (status, "latest spec" in message) == ("Progressing", True)


def test_the_config_map_carries_the_same_lua() -> None:
    data = yaml.safe_load(CM.read_text())["data"]
    assert data["resource.customizations.health.phasegate.dev_ProgressiveRelease"] == (
        LUA.read_text()
    )


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm.Chart.load(str(ROOT / "charts/phasegate"))
    rendered = chart.render(values, name="phasegate", namespace="phasegate-system",
                            is_install=True)  # fmt: skip
    return [
        doc
        for key, text in rendered.items()
        if key.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def test_member_role_is_minimal_and_the_plain_manifest_agrees() -> None:
    docs = render({"member": {"enabled": True, "namespaces": ["shop", "web"]}})
    role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] ==
                "phasegate-member")  # fmt: skip
    assert role["rules"] == MEMBER_RULES
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and
                d["roleRef"]["name"] == "phasegate-member"]  # fmt: skip
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["shop", "web"]
    plain = [d for d in yaml.safe_load_all(MEMBER.read_text()) if d]
    assert next(d for d in plain if d["kind"] == "ClusterRole")["rules"] == MEMBER_RULES


def test_hub_reads_only_the_named_kubeconfig_secrets() -> None:
    docs = render({"hub": {"enabled": True, "namespaces": ["releases"],
                           "kubeconfigSecrets": ["region-east", "region-west"]}})  # fmt: skip
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] ==
                "phasegate-hub")  # fmt: skip
    assert role["metadata"]["namespace"] == "releases"
    secrets = [r for r in role["rules"] if "secrets" in r["resources"]]
    names = ["region-east", "region-west"]
    expected = {"apiGroups": [""], "resources": ["secrets"], "resourceNames": names}
    expected["verbs"] = ["get"]
    assert secrets == [expected]
    granted = {res for r in role["rules"] for res in r["resources"]}
    assert "progressiverollouts" not in granted, "the hub needs no rights on its own cluster's"
    deployment = next(d for d in docs if d["kind"] == "Deployment" and
                      d["metadata"]["name"] == "phasegate-hub")  # fmt: skip
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["run", "--hub", "--namespace=releases"]


def test_both_off_by_default() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in render({})}
    assert ("ClusterRole", "phasegate-member") not in kinds
    assert ("Deployment", "phasegate-hub") not in kinds
