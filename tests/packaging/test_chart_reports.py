"""The chart's grant for phase report ConfigMaps: only when asked for, create and patch only,
in the ClusterRole or in each watched namespace's Role."""

from __future__ import annotations

from test_chart import grants, render, rules

CONFIGMAPS = {("", "configmaps", "create"), ("", "configmaps", "patch")}


def test_report_configmaps_are_writable_only_when_the_chart_is_asked() -> None:
    assert not CONFIGMAPS & grants(rules(render({}), "ClusterRole"))
    asked = {"rbac": {"phaseReports": True}}
    added = grants(rules(render(asked), "ClusterRole")) - grants(rules(render({}), "ClusterRole"))
    assert added == CONFIGMAPS, "create and patch; never get, list, delete or update"


def test_in_namespaced_mode_each_watched_namespace_grants_them() -> None:
    values = {"rbac": {"phaseReports": True, "namespaced": True}, "watchNamespaces": ["a", "b"]}
    roles = [d for d in render(values) if d["kind"] == "Role"]
    assert {r["metadata"]["namespace"] for r in roles} == {"a", "b"}
    for role in roles:
        assert grants(role["rules"]) >= CONFIGMAPS
