"""The Helm chart: lint, render with several value sets, validate every object against the
Kubernetes schemas of v1.30, and check what matters: RBAC, pod security, probes, peering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from phasegate.cli.main import _build_parser
from phasegate.localapi import LocalAPI
from support.kube import ROOT, kubectl, render_script

CHART = ROOT / "charts" / "phasegate"
KUBERNETES = "1.30.0"
NOT_BUILT_IN = {"ClusterKopfPeering", "KopfPeering", "ServiceMonitor"}  # CRD kinds: no schema
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"rbac": {"namespaced": True}, "watchNamespaces": ["shop", "pay"]},
    "single namespace": {"rbac": {"namespaced": True}},
    "watch a list, cluster role": {"watchNamespaces": ["shop"]},
    "three shards": {"shards": 3},
    "a label selection": {"selector": "team in (web, api)", "peering": {"name": "phasegate-web"}},
    "secrets, monitor, one replica": {
        "rbac": {"secretNames": ["prometheus-auth"]},
        "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
        "replicas": 1,
        "prometheus": {"address": "http://prometheus.monitoring:9090"},
        "logging": {"level": "DEBUG", "format": "console"},
    },
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name="phasegate", namespace="phasegate-system", is_install=True)
    return [
        doc
        for path, text in sorted(out.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_the_chart_lints_clean() -> None:
    report = helm.lint(str(CHART), strict=True, kube_version=f"v{KUBERNETES}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_every_rendered_object_is_valid_kubernetes(case: str) -> None:
    docs = render(VALUE_SETS[case])
    assert docs
    for doc in docs:
        if doc["kind"] in NOT_BUILT_IN:
            continue
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_the_pod_runs_non_root_read_only_with_no_capabilities(case: str) -> None:
    deployment = of_kind(render(VALUE_SETS[case]), "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def rules(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [rule for role in of_kind(docs, kind) for rule in role["rules"]]


def grants(rule_list: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v)
        for rule in rule_list
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def test_cluster_rbac_grants_only_what_the_operator_touches() -> None:
    docs = render({})
    assert of_kind(docs, "Role") == []
    granted = grants(rules(docs, "ClusterRole"))
    assert granted == {
        ("phasegate.dev", "progressiverollouts", "get"),
        ("phasegate.dev", "progressiverollouts", "list"),
        ("phasegate.dev", "progressiverollouts", "watch"),
        ("phasegate.dev", "progressiverollouts", "patch"),
        ("phasegate.dev", "progressiverollouts/status", "patch"),
        ("gateway.networking.k8s.io", "httproutes", "get"),
        ("gateway.networking.k8s.io", "httproutes", "list"),  # watched: read from memory
        ("gateway.networking.k8s.io", "httproutes", "watch"),
        ("gateway.networking.k8s.io", "httproutes", "patch"),
        ("apps", "deployments", "get"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments/scale", "patch"),
        ("", "events", "create"),
        ("kopf.dev", "clusterkopfpeerings", "get"),
        ("kopf.dev", "clusterkopfpeerings", "list"),
        ("kopf.dev", "clusterkopfpeerings", "watch"),
        ("kopf.dev", "clusterkopfpeerings", "patch"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    }
    assert not any("*" in part for grant in granted for part in grant)
    assert not any(r == "secrets" for _, r, _ in granted), "no Secret access unless named"


def test_each_traffic_provider_adds_the_rights_on_its_own_objects_only() -> None:
    everything = {"rbac": {"trafficProviders": ["gatewayAPI", "istio", "smi", "nginx"]}}
    added = grants(rules(render(everything), "ClusterRole")) - grants(
        rules(render({}), "ClusterRole")
    )
    assert added == {
        *(("networking.istio.io", "virtualservices", v) for v in ("get", "list", "watch", "patch")),
        *(("split.smi-spec.io", "trafficsplits", v) for v in ("get", "list", "watch", "patch")),
        ("networking.k8s.io", "ingresses", "get"),
        ("networking.k8s.io", "ingresses", "list"),
        ("networking.k8s.io", "ingresses", "watch"),
        ("networking.k8s.io", "ingresses", "create"),
        ("networking.k8s.io", "ingresses", "patch"),
        ("networking.k8s.io", "ingresses", "delete"),
    }
    istio_only = grants(rules(render({"rbac": {"trafficProviders": ["istio"]}}), "ClusterRole"))
    assert ("networking.istio.io", "virtualservices", "patch") in istio_only
    assert not any(group == "gateway.networking.k8s.io" for group, _, _ in istio_only)


def test_secrets_are_readable_only_by_name() -> None:
    secret_rules = [
        r
        for r in rules(render(VALUE_SETS["secrets, monitor, one replica"]), "ClusterRole")
        if "secrets" in r["resources"]
    ]
    assert secret_rules == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["prometheus-auth"],
            "verbs": ["get"],
        }
    ]


def test_namespaced_mode_uses_roles_in_each_watched_namespace() -> None:
    docs = render(VALUE_SETS["namespaced"])
    assert of_kind(docs, "ClusterRole") == [] and of_kind(docs, "ClusterRoleBinding") == []
    assert sorted(r["metadata"]["namespace"] for r in of_kind(docs, "Role")) == ["pay", "shop"]
    assert sorted(p["metadata"]["namespace"] for p in of_kind(docs, "KopfPeering")) == [
        "pay",
        "shop",
    ]
    args = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert (
        "--namespace=shop" in args and "--namespace=pay" in args and "--all-namespaces" not in args
    )
    single = render(VALUE_SETS["single namespace"])
    assert [r["metadata"]["namespace"] for r in of_kind(single, "Role")] == ["phasegate-system"]


def test_two_replicas_with_peering_and_a_disruption_budget_by_default() -> None:
    docs = render({})
    deployment = of_kind(docs, "Deployment")[0]
    assert deployment["spec"]["replicas"] == 2
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering=phasegate" in args and "--all-namespaces" in args
    assert of_kind(docs, "ClusterKopfPeering")[0]["metadata"]["name"] == "phasegate"
    assert of_kind(docs, "PodDisruptionBudget")[0]["spec"]["minAvailable"] == 1
    assert of_kind(render(VALUE_SETS["secrets, monitor, one replica"]), "PodDisruptionBudget") == []


def test_shards_get_a_deployment_a_peering_and_a_budget_each() -> None:
    docs = render({"shards": 3})
    deployments = of_kind(docs, "Deployment")
    flags = [
        sorted(a for a in d["spec"]["template"]["spec"]["containers"][0]["args"] if "shard" in a)
        for d in deployments
    ]
    assert flags == [[f"--peering=phasegate-shard-{i}", f"--shard={i}/3"] for i in range(3)]
    peerings = {p["metadata"]["name"] for p in of_kind(docs, "ClusterKopfPeering")}
    assert peerings == {f"phasegate-shard-{i}" for i in range(3)}
    for i, (deployment, budget) in enumerate(
        zip(deployments, of_kind(docs, "PodDisruptionBudget"), strict=True)
    ):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector["phasegate.dev/shard"] == str(i) and deployment["spec"]["replicas"] == 2
        assert budget["spec"]["selector"]["matchLabels"] == selector


def test_a_selector_is_passed_whole_to_the_operator() -> None:
    (deployment,) = of_kind(render(VALUE_SETS["a label selection"]), "Deployment")
    args = _build_parser().parse_args(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    assert (args.selector, args.peering) == ("team in (web, api)", "phasegate-web")
    (default,) = of_kind(render({}), "Deployment")
    assert (
        _build_parser()
        .parse_args(default["spec"]["template"]["spec"]["containers"][0]["args"])
        .selector
        is None
    )


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_the_operator_accepts_the_arguments_the_chart_gives_it(values: dict[str, Any]) -> None:
    for deployment in of_kind(render(values), "Deployment"):
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        parsed = _build_parser().parse_args(args)  # exits (SystemExit) on an unknown argument
        assert parsed.command == "run"
        assert (parsed.prometheus_max_in_flight, parsed.prometheus_coalesce_window) == (64, 0.5)
        # The operator watches the routes of the providers the chart gave it the rights for.
        assert parsed.traffic_providers == tuple(
            (values.get("rbac") or {}).get("trafficProviders", ["gatewayAPI"])
        )


def test_the_service_monitor_is_optional() -> None:
    assert of_kind(render({}), "ServiceMonitor") == []
    monitor = of_kind(render(VALUE_SETS["secrets, monitor, one replica"]), "ServiceMonitor")[0]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "interval": "30s"}]


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"replicas": 0}, "/replicas"),
        ({"logging": {"level": "LOUD"}}, "/logging/level"),
        ({"prometheus": {"address": "prometheus:9090"}}, "/prometheus/address"),
        ({"prometheus": {"maxInFlight": 0}}, "/prometheus/maxInFlight"),
        ({"prometheus": {"coalesceWindow": -1}}, "/prometheus/coalesceWindow"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
        ({"replica": 2}, "replica"),
        ({"rbac": {"trafficProviders": ["linkerd"]}}, "/rbac/trafficProviders/0"),
    ],
)
def test_bad_values_fail_at_install(values: dict[str, Any], words: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=words):
        render(values)


def test_the_chart_carries_the_generated_crds() -> None:
    for crd in (ROOT / "crds").glob("*.yaml"):
        assert (CHART / "crds" / crd.name).read_text() == crd.read_text(), (
            f"{crd.name}: run `make crds`"
        )
    assert {p.name for p in (CHART / "crds").glob("*.yaml")} == {
        p.name for p in (ROOT / "crds").glob("*.yaml")
    }


def test_the_plain_install_is_the_chart_defaults() -> None:
    install = ROOT / "manifests" / "install"
    assert (install / "phasegate.yaml").read_text() == render_script("render_install"), (
        "run `make manifests`"
    )
    for crd in (ROOT / "crds").glob("*.yaml"):
        assert (install / "crds" / crd.name).read_text() == crd.read_text(), "run `make manifests`"


def test_the_install_and_the_examples_apply_to_the_local_api(local_api: LocalAPI) -> None:
    kc: Path = local_api.kubeconfig_path
    install = ROOT / "manifests" / "install"
    kubectl(
        kc,
        "apply",
        "-f",
        str(install / "crds"),
        "-f",
        str(ROOT / "manifests/local/provider-crds.yaml"),
    )
    applied = kubectl(kc, "apply", "-k", str(install)).stdout
    for expected in (
        "deployment.apps/phasegate created",
        "clusterrole.rbac.authorization.k8s.io/phasegate created",
        "clusterkopfpeering.kopf.dev/phasegate created",
    ):
        assert expected in applied
    examples = ROOT / "manifests" / "examples"
    kubectl(
        kc, "apply", "-f", str(examples / "reference-release-route.yaml")
    )  # its namespace first
    kubectl(kc, "apply", "-f", str(examples))
    names = kubectl(kc, "get", "rollouts", "-A", "-o", "name").stdout.split()
    assert sorted(names) == [
        "progressiverollout.phasegate.dev/cohort-analyzer",
        "progressiverollout.phasegate.dev/shop",
        "progressiverollout.phasegate.dev/web",
    ]
    routes = kubectl(kc, "get", "httproutes", "-A", "-o", "name").stdout.split()
    assert len(routes) == 3
