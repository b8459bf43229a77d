"""Kubernetes API conformance, one behaviour per test, over real HTTP with the ``kubernetes``
client: every test runs against the local API and against the real control plane of
cluster/ (kube-apiserver from k8s.io/kubernetes). Where they disagree, the local API is fixed
or the difference is listed in the README's known limits of the local API."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from phasegate.localapi import LocalAPI
from support.cluster import RealCluster
from support.kube import CRDS, PROVIDER_CRDS, Kube, eventually

BACKENDS = ["local", pytest.param("real", marks=[pytest.mark.cluster, pytest.mark.integration])]


class Api(Kube):
    """A client of one backend, with the paths of the test's namespace."""

    def __init__(self, kubeconfig: Path, namespace: str, backend: str) -> None:
        super().__init__(kubeconfig)
        self.ns, self.backend = namespace, backend
        self.cm = f"/api/v1/namespaces/{namespace}/configmaps"
        self.cr = f"/apis/phasegate.dev/v1alpha1/namespaces/{namespace}/progressiverollouts"
        self.deploys = f"/apis/apps/v1/namespaces/{namespace}/deployments"


@pytest.fixture(params=BACKENDS)
def kube(request: pytest.FixtureRequest) -> Iterator[Api]:
    """The local API (its ``default`` namespace), or the real control plane (a fresh one)."""
    if request.param == "local":
        local_api: LocalAPI = request.getfixturevalue("local_api")
        yield Api(local_api.kubeconfig_path, "default", "local")
        return
    cluster: RealCluster = request.getfixturevalue("real_cluster")
    namespace = request.getfixturevalue("real_namespace")
    yield Api(cluster.kubeconfig, namespace, "real")


@pytest.fixture
def local(local_api: LocalAPI) -> Api:
    """Behaviours of the local API alone (its request history and fault injection)."""
    return Api(local_api.kubeconfig_path, "default", "local")


@pytest.fixture
def crd(kube: Api) -> Api:
    """phasegate's CRD registered (on the real control plane the chart installed it)."""
    if kube.backend == "local":
        for doc in yaml.safe_load_all(
            (CRDS / "phasegate.dev_progressiverollouts.yaml").read_text()
        ):
            kube.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
    return kube


def rollout(name: str = "web", **spec_changes: Any) -> dict[str, Any]:
    spec = {
        "revision": "v1",
        "stable": {"service": "web-stable"},
        "canary": {"service": "web-canary"},
        "trafficRouting": {"gatewayAPI": {"httpRoute": "web"}},
        "metrics": [{"name": "errors", "query": "errors"}],
        "phases": [
            {
                "name": "canary",
                "weight": 10,
                "duration": "1m",
                "successCriteria": [{"metric": "errors", "max": 0.01}],
            }
        ],
        **spec_changes,
    }
    return {
        "apiVersion": "phasegate.dev/v1alpha1",
        "kind": "ProgressiveRollout",
        "metadata": {"name": name},
        "spec": spec,
    }


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": data,
    }


def test_discovery_serves_core_and_group_versions(kube: Api) -> None:
    assert kube.ok("GET", "/api")["versions"] == ["v1"]
    core = kube.ok("GET", "/api/v1")
    assert core["groupVersion"] == "v1"
    assert {"namespaces", "configmaps", "secrets", "services", "events"} <= {
        r["name"] for r in core["resources"]
    }
    groups = {g["name"] for g in kube.ok("GET", "/apis")["groups"]}
    assert {"apps", "coordination.k8s.io", "apiextensions.k8s.io", "events.k8s.io"} <= groups
    apps = {r["name"] for r in kube.ok("GET", "/apis/apps/v1")["resources"]}
    assert {"deployments", "deployments/status", "deployments/scale"} <= apps


def test_listing_namespaces_answers_a_namespace_list(kube: Api) -> None:
    listing = kube.ok("GET", "/api/v1/namespaces")
    assert listing["kind"] == "NamespaceList" and listing["apiVersion"] == "v1"
    assert "default" in {n["metadata"]["name"] for n in listing["items"]}
    typed = kubernetes.client.CoreV1Api(kube.api).list_namespace()
    assert "kube-system" in {n.metadata.name for n in typed.items}


def test_create_sets_uid_creation_timestamp_resource_version_and_generation(crd: Api) -> None:
    created = crd.ok("POST", crd.cr, rollout())
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0 and meta["generation"] == 1
    assert meta["namespace"] == crd.ns, "the namespace in the URL is stored in the object"


def test_create_in_a_missing_namespace_is_not_found(kube: Api) -> None:
    status, body = kube.request("POST", "/api/v1/namespaces/nowhere/configmaps", configmap("x"))
    assert (
        status == 404
        and body["kind"] == "Status"
        and 'namespaces "nowhere" not found' in body["message"]
    )


def test_create_twice_is_already_exists(kube: Api) -> None:
    kube.ok("POST", kube.cm, configmap("twice"))
    status, body = kube.request("POST", kube.cm, configmap("twice"))
    assert status == 409 and body["reason"] == "AlreadyExists"


def test_lists_carry_kind_api_version_and_resource_version(crd: Api) -> None:
    crd.ok("POST", crd.cr, rollout())
    listing = crd.ok("GET", crd.cr)
    assert (
        listing["kind"] == "ProgressiveRolloutList"
        and listing["apiVersion"] == "phasegate.dev/v1alpha1"
    )
    assert int(listing["metadata"]["resourceVersion"]) >= int(
        listing["items"][0]["metadata"]["resourceVersion"]
    )


def test_resource_versions_increase_monotonically(kube: Api) -> None:
    versions = [
        int(kube.ok("POST", kube.cm, configmap(f"m{i}"))["metadata"]["resourceVersion"])
        for i in range(5)
    ]
    assert versions == sorted(versions) and len(set(versions)) == 5


def test_a_crd_registers_discovery_with_names_and_subresources(crd: Api) -> None:
    resources = crd.ok("GET", "/apis/phasegate.dev/v1alpha1")["resources"]
    main = next(r for r in resources if r["name"] == "progressiverollouts")
    assert main["kind"] == "ProgressiveRollout" and main["singularName"] == "progressiverollout"
    assert (
        "prollout" in main["shortNames"] and "rollouts" in main["categories"] and main["namespaced"]
    )
    assert "progressiverollouts/status" in {r["name"] for r in resources}
    stored = crd.ok(
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/progressiverollouts.phasegate.dev",
    )
    established = next(c for c in stored["status"]["conditions"] if c["type"] == "Established")
    assert established["status"] == "True"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            {"phases": [{"name": "canary", "weight": 101, "duration": "1m"}]},
            "spec.phases[0].weight",
            "less than or equal to 100",
        ),
        ({"interval": "5 minutes"}, "spec.interval", "should match"),
        ({"revision": 3}, "spec.revision", "must be of type string"),
        (
            {"metrics": [{"name": "errors", "query": "q", "onNoData": "Ignore"}]},
            "spec.metrics[0].onNoData",
            "Unsupported value",
        ),
        ({"trafficRouting": {}}, "spec.trafficRouting", "exactly one traffic provider"),
    ],
)
def test_custom_resources_are_validated_against_the_schema(
    crd: Api, change: dict[str, Any], field: str, words: str
) -> None:
    status, body = crd.request("POST", crd.cr, rollout(**change))
    assert status == 422 and body["reason"] == "Invalid", body
    causes = body["details"]["causes"]
    assert any(c["field"] == field and words in c["message"] for c in causes), causes
    assert field in body["message"]


def test_a_missing_required_field_is_named(crd: Api) -> None:
    body = rollout()
    del body["spec"]["revision"]
    status, answer = crd.request("POST", crd.cr, body)
    assert status == 422 and "spec.revision: Required value" in answer["message"]


def test_unknown_fields_are_pruned_or_refused_under_strict_validation(crd: Api) -> None:
    body = rollout()
    body["spec"]["bogus"] = 1
    status, answer = crd.request("POST", crd.cr, body, query={"fieldValidation": "Strict"})
    assert status == 400 and 'unknown field "spec.bogus"' in answer["message"]
    created = crd.ok("POST", crd.cr, body, query={"fieldValidation": "Ignore"})
    assert "bogus" not in created["spec"]


def test_schema_defaults_are_applied(crd: Api) -> None:
    created = crd.ok("POST", crd.cr, rollout())
    assert created["spec"]["interval"] == "30s" and created["spec"]["maxQueryErrors"] == 4


def test_generation_counts_spec_changes_only(crd: Api) -> None:
    crd.ok("POST", crd.cr, rollout())
    merge = "application/merge-patch+json"
    labelled = crd.ok(
        "PATCH", f"{crd.cr}/web", {"metadata": {"labels": {"a": "b"}}}, content_type=merge
    )
    assert labelled["metadata"]["generation"] == 1
    status = crd.ok(
        "PATCH", f"{crd.cr}/web/status", {"status": {"state": "Progressing"}}, content_type=merge
    )
    assert status["metadata"]["generation"] == 1
    changed = crd.ok("PATCH", f"{crd.cr}/web", {"spec": {"revision": "v2"}}, content_type=merge)
    assert changed["metadata"]["generation"] == 2


def test_a_write_that_changes_nothing_keeps_the_resource_version(crd: Api) -> None:
    created = crd.ok("POST", crd.cr, rollout())
    same = crd.ok(
        "PATCH",
        f"{crd.cr}/web",
        {"spec": {"revision": "v1"}},
        content_type="application/merge-patch+json",
    )
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_an_update_with_a_stale_resource_version_conflicts(kube: Api) -> None:
    first = kube.ok("POST", kube.cm, configmap("c", a="1"))
    kube.ok("PUT", f"{kube.cm}/c", {**first, "data": {"a": "2"}})
    status, body = kube.request("PUT", f"{kube.cm}/c", {**first, "data": {"a": "3"}})
    assert status == 409 and body["reason"] == "Conflict" and "has been modified" in body["message"]


def test_a_json_patch_writing_a_stale_resource_version_conflicts(kube: Api) -> None:
    first = kube.ok("POST", kube.cm, configmap("c", a="1"))
    kube.ok("PUT", f"{kube.cm}/c", {**first, "data": {"a": "2"}})
    stale = first["metadata"]["resourceVersion"]
    ops = [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": stale},
        {"op": "replace", "path": "/data/a", "value": "3"},
    ]
    json_patch = "application/json-patch+json"
    status, body = kube.request("PATCH", f"{kube.cm}/c", ops, content_type=json_patch)
    assert status == 409 and body["reason"] == "Conflict", body
    ops[0]["value"] = kube.ok("GET", f"{kube.cm}/c")["metadata"]["resourceVersion"]
    assert kube.ok("PATCH", f"{kube.cm}/c", ops, content_type=json_patch)["data"] == {"a": "3"}


def test_a_failed_json_patch_test_is_invalid_not_a_conflict(kube: Api) -> None:
    first = kube.ok("POST", kube.cm, configmap("t", a="1"))
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "3"},
    ]
    status, body = kube.request(
        "PATCH", f"{kube.cm}/t", ops, content_type="application/json-patch+json"
    )
    assert status == 422 and body["reason"] == "Invalid", body
    assert kube.ok("GET", f"{kube.cm}/t")["metadata"] == first["metadata"]


def test_status_and_spec_are_written_through_their_own_endpoints(crd: Api) -> None:
    crd.ok("POST", crd.cr, {**rollout(), "status": {"state": "Succeeded"}})
    assert "status" not in crd.ok("GET", f"{crd.cr}/web"), "status is dropped on create"
    merge = "application/merge-patch+json"
    crd.ok(
        "PATCH",
        f"{crd.cr}/web",
        {"status": {"state": "Succeeded"}, "spec": {"revision": "v2"}},
        content_type=merge,
    )
    after_main = crd.ok("GET", f"{crd.cr}/web")
    assert after_main["spec"]["revision"] == "v2" and "status" not in after_main
    crd.ok(
        "PATCH",
        f"{crd.cr}/web/status",
        {"status": {"state": "Holding"}, "spec": {"revision": "v3"}},
        content_type=merge,
    )
    after_status = crd.ok("GET", f"{crd.cr}/web")
    assert after_status["status"]["state"] == "Holding" and after_status["spec"]["revision"] == "v2"


def test_a_status_merge_patch_carrying_a_stale_resource_version_conflicts(crd: Api) -> None:
    """How the operator writes status: a merge patch of the status subresource carrying the
    resourceVersion the evaluation read."""
    read = crd.ok("POST", crd.cr, rollout())
    merge = "application/merge-patch+json"
    crd.ok("PATCH", f"{crd.cr}/web", {"metadata": {"labels": {"a": "b"}}}, content_type=merge)
    stale = {"metadata": {"resourceVersion": read["metadata"]["resourceVersion"]}}
    status, body = crd.request(
        "PATCH",
        f"{crd.cr}/web/status",
        {**stale, "status": {"state": "Holding"}},
        content_type=merge,
    )
    assert status == 409 and body["reason"] == "Conflict", body
    assert "status" not in crd.ok("GET", f"{crd.cr}/web"), "nothing written"
    current = {
        "metadata": {
            "resourceVersion": crd.ok("GET", f"{crd.cr}/web")["metadata"]["resourceVersion"]
        }
    }
    written = crd.ok(
        "PATCH",
        f"{crd.cr}/web/status",
        {**current, "status": {"state": "Holding"}},
        content_type=merge,
    )
    assert written["status"]["state"] == "Holding"
    assert written["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]


def test_status_writes_are_validated_too(crd: Api) -> None:
    crd.ok("POST", crd.cr, rollout())
    status, body = crd.request(
        "PATCH",
        f"{crd.cr}/web/status",
        {"status": {"state": "Exploded"}},
        content_type="application/merge-patch+json",
    )
    assert status == 422 and "status.state" in body["message"]


def test_deletion_waits_for_finalizers(kube: Api) -> None:
    kube.ok("POST", kube.cm, {**configmap("f"), "metadata": {"name": "f", "finalizers": ["x/y"]}})
    deleting = kube.ok("DELETE", f"{kube.cm}/f")
    assert deleting["metadata"]["deletionTimestamp"]
    assert kube.ok("GET", f"{kube.cm}/f")["metadata"]["deletionTimestamp"]
    kube.ok(
        "PATCH",
        f"{kube.cm}/f",
        {"metadata": {"finalizers": None}},
        content_type="application/merge-patch+json",
    )
    assert kube.request("GET", f"{kube.cm}/f")[0] == 404


def test_strategic_merge_patch_is_refused_on_custom_resources(crd: Api) -> None:
    crd.ok("POST", crd.cr, rollout())
    patch = {"spec": {"revision": "v2"}}
    status, body = crd.request(
        "PATCH", f"{crd.cr}/web", patch, content_type="application/strategic-merge-patch+json"
    )
    assert status == 415 and body["reason"] == "UnsupportedMediaType", body
    assert crd.ok("GET", f"{crd.cr}/web")["spec"]["revision"] == "v1"


def test_merge_patch_follows_rfc_7386(kube: Api) -> None:
    kube.ok("POST", kube.cm, configmap("m", a="1", b="2"))
    patched = kube.ok(
        "PATCH",
        f"{kube.cm}/m",
        {"data": {"a": None, "c": "3"}, "metadata": {"labels": {"x": "y"}}},
        content_type="application/merge-patch+json",
    )
    assert patched["data"] == {"b": "2", "c": "3"} and patched["metadata"]["labels"] == {"x": "y"}


def test_a_merge_patch_drops_nulls_inside_the_values_it_sets(crd: Api) -> None:
    """kube-apiserver's merge patch stores a list without the nulls of its items: a field
    written as null is absent afterwards, nullable or not."""
    crd.ok("POST", crd.cr, rollout())
    result = {
        "rule": "successCriteria[0]",
        "metric": "errors",
        "query": "errors",
        "value": None,
        "threshold": "<= 0.01",
        "verdict": "NoData",
        "reason": "no series",
    }
    record = {
        "phase": "canary",
        "offset": "1m",
        "time": "2026-11-24T10:00:00Z",
        "verdict": "Inconclusive",
        "results": [result],
    }
    patched = crd.ok(
        "PATCH",
        f"{crd.cr}/web/status",
        {"status": {"checkpoints": [record], "message": None}},
        content_type="application/merge-patch+json",
    )
    stored = patched["status"]["checkpoints"][0]["results"][0]
    assert "value" not in stored and stored["metric"] == "errors"


def test_json_patch_follows_rfc_6902(kube: Api) -> None:
    kube.ok("POST", kube.cm, configmap("j", a="1"))
    ops = [
        {"op": "add", "path": "/data/b", "value": "2"},
        {"op": "remove", "path": "/data/a"},
        {"op": "copy", "from": "/data/b", "path": "/data/c"},
        {"op": "move", "from": "/data/c", "path": "/data/d"},
    ]
    patched = kube.ok("PATCH", f"{kube.cm}/j", ops, content_type="application/json-patch+json")
    assert patched["data"] == {"b": "2", "d": "2"}
    status, _ = kube.request(
        "PATCH",
        f"{kube.cm}/j",
        [{"op": "remove", "path": "/data/zzz"}],
        content_type="application/json-patch+json",
    )
    assert status == 422


def test_strategic_merge_patch_merges_lists_by_their_key(kube: Api) -> None:
    deploys = kube.deploys
    containers = [{"name": "app", "image": "app:1"}, {"name": "sidecar", "image": "proxy:1"}]
    kube.ok(
        "POST",
        deploys,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": containers},
                },
            },
        },
    )
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}}
    patched = kube.ok(
        "PATCH", f"{deploys}/d", patch, content_type="application/strategic-merge-patch+json"
    )
    merged = [
        {k: c[k] for k in ("name", "image")}
        for c in patched["spec"]["template"]["spec"]["containers"]
    ]
    assert merged == [
        {"name": "app", "image": "app:2"},
        {"name": "sidecar", "image": "proxy:1"},
    ]
    assert patched["metadata"]["generation"] == 2


def test_label_and_field_selectors_filter_lists(kube: Api) -> None:
    # Every selector names ``test``: a cluster has ConfigMaps of its own in each namespace.
    kube.ok("POST", kube.cm, configmap("a", {"test": "s", "tier": "web", "env": "prod"}))
    kube.ok("POST", kube.cm, configmap("b", {"test": "s", "tier": "db", "env": "prod"}))
    kube.ok("POST", kube.cm, configmap("c", {"test": "s", "tier": "web"}))

    def names(**query: str) -> list[str]:
        return [i["metadata"]["name"] for i in kube.ok("GET", kube.cm, query=query)["items"]]

    assert names(labelSelector="tier=web") == ["a", "c"]
    assert names(labelSelector="tier=web,env") == ["a"]
    assert names(labelSelector="tier in (db, cache)") == ["b"]
    assert names(labelSelector="test=s,!env") == ["c"]
    assert names(fieldSelector="metadata.name=b") == ["b"]
    assert kube.request("GET", kube.cm, query={"labelSelector": "tier=(("})[0] == 400


def test_watch_from_a_resource_version_sends_only_later_changes(kube: Api) -> None:
    # Selected by label: the cluster publishes kube-root-ca.crt into a new namespace whenever
    # its controller gets to it, which can be after the mark.
    kube.ok("POST", kube.cm, configmap("before", {"test": "rv"}))
    mark = kube.ok("GET", kube.cm)["metadata"]["resourceVersion"]
    kube.ok("POST", kube.cm, configmap("after", {"test": "rv"}))
    kube.ok("DELETE", f"{kube.cm}/before")
    query = {"resourceVersion": mark, "timeoutSeconds": "1", "labelSelector": "test=rv"}
    events = kube.stream(kube.cm, query)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "after"),
        ("DELETED", "before"),
    ]


def test_a_label_change_brings_an_object_into_a_selecting_watch_and_takes_it_out(
    kube: Api,
) -> None:
    kube.ok("POST", kube.cm, configmap("x", {"team": "b"}))
    mark = kube.ok("GET", kube.cm)["metadata"]["resourceVersion"]
    path, merge = f"{kube.cm}/x", "application/merge-patch+json"
    kube.ok("PATCH", path, {"metadata": {"labels": {"team": "a"}}}, content_type=merge)
    kube.ok("PATCH", path, {"data": {"k": "v"}}, content_type=merge)
    kube.ok("PATCH", path, {"metadata": {"labels": {"team": "c"}}}, content_type=merge)
    query = {"resourceVersion": mark, "timeoutSeconds": "1", "labelSelector": "team=a"}
    events = kube.stream(kube.cm, query)
    assert [(e["type"], e["object"]["metadata"]["labels"]["team"]) for e in events] == [
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("DELETED", "a"),  # as it was when it last matched
    ]


def test_watch_without_a_resource_version_starts_with_the_current_state(kube: Api) -> None:
    kube.ok("POST", kube.cm, configmap("one", {"test": "w"}))
    events = kube.stream(kube.cm, {"timeoutSeconds": "1", "labelSelector": "test=w"})
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "one")]


def test_namespaced_watches_deliver_objects_created_by_namespace_url(
    kube: Kube, local_api: LocalAPI
) -> None:
    mark = kube.ok("GET", kube.cm)["metadata"]["resourceVersion"]
    received: list[dict[str, Any]] = []
    watcher = threading.Thread(
        target=lambda: received.extend(
            kube.stream(
                kube.cm,
                {"resourceVersion": mark, "timeoutSeconds": "2", "labelSelector": "app=web"},
            )
        )
    )
    watcher.start()
    time.sleep(0.3)  # the watch is open before the writes (it would replay them anyway)
    kube.ok("POST", kube.cm, configmap("web-1", {"app": "web"}))
    kube.ok("POST", kube.cm, configmap("db-1", {"app": "db"}))
    watcher.join()
    assert [e["object"]["metadata"]["name"] for e in received] == ["web-1"]
    assert received[0]["object"]["metadata"]["namespace"] == kube.ns


def test_watches_send_bookmarks_when_asked(local: Api) -> None:
    """Local only: kube-apiserver sends them about once a minute and two seconds before a
    watch times out (seen on the real control plane: 62 s into a 70 s watch), too slow to
    wait for here; the local API sends one each second."""
    mark = local.ok("GET", local.cm)["metadata"]["resourceVersion"]
    events = local.stream(
        local.cm, {"allowWatchBookmarks": "true", "timeoutSeconds": "2", "resourceVersion": mark}
    )
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks and bookmarks[0]["object"]["metadata"]["resourceVersion"]


def test_a_too_old_resource_version_is_gone(tmp_path: Path) -> None:
    """Local only: kube-apiserver answers 410 for versions older than its watch cache's last
    list, which a running cluster moves only on a restart or after long churn; that is
    shown on the real control plane by tests/cluster/test_apiserver_restart.py."""
    from phasegate.localapi.testing import running_local_api

    with running_local_api(tmp_path / "kc", window=5) as api:
        small = Api(api.kubeconfig_path, "default", "local")
        for i in range(10):
            small.ok("POST", small.cm, configmap(f"x{i}"))
        events = small.stream(small.cm, {"resourceVersion": "2", "timeoutSeconds": "1"})
    assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410


def test_server_side_tables_use_the_printer_columns(crd: Api) -> None:
    crd.ok("POST", crd.cr, rollout())
    crd.ok(
        "PATCH",
        f"{crd.cr}/web/status",
        {
            "status": {
                "state": "Progressing",
                "canaryWeight": 10,
                "progress": "3/6",
                "currentPhase": {"name": "ramp", "index": 1, "weight": 10},
            }
        },
        content_type="application/merge-patch+json",
    )
    table = crd.ok("GET", crd.cr, accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    assert table["kind"] == "Table"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:5] == ["Name", "Phase", "Weight", "State", "Checkpoints"] and "Age" in names
    cells = dict(zip(names, table["rows"][0]["cells"], strict=True))
    assert (cells["Phase"], cells["Weight"], cells["State"], cells["Checkpoints"]) == (
        "ramp",
        10,
        "Progressing",
        "3/6",
    )


def test_put_replaces_the_object(kube: Api) -> None:
    created = kube.ok("POST", kube.cm, configmap("p", a="1"))
    replaced = kube.ok("PUT", f"{kube.cm}/p", {**created, "data": {"z": "9"}})
    assert replaced["data"] == {"z": "9"}
    assert kube.request("PUT", f"{kube.cm}/missing", configmap("missing"))[0] == 404


def create_deployment(kube: Api, replicas: int) -> None:
    """Deployment ``d`` in the test's namespace, one container ``d:1``."""
    template = {
        "metadata": {"labels": {"app": "d"}},
        "spec": {"containers": [{"name": "d", "image": "d:1"}]},
    }
    spec = {"replicas": replicas, "selector": {"matchLabels": {"app": "d"}}, "template": template}
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": spec}
    kube.ok("POST", kube.deploys, body)


def test_deployments_have_a_scale_subresource(kube: Api) -> None:
    deploys = kube.deploys
    create_deployment(kube, replicas=2)
    scale = kube.ok("GET", f"{deploys}/d/scale")
    assert (
        scale["kind"] == "Scale"
        and scale["spec"]["replicas"] == 2
        and scale["status"]["selector"] == "app=d"
    )
    kube.ok(
        "PATCH",
        f"{deploys}/d/scale",
        {"spec": {"replicas": 0}},
        content_type="application/merge-patch+json",
    )
    assert kube.ok("GET", f"{deploys}/d")["spec"]["replicas"] == 0
    typed = kubernetes.client.AppsV1Api(kube.api)
    typed.patch_namespaced_deployment_scale("d", kube.ns, {"spec": {"replicas": 3}})
    assert typed.read_namespaced_deployment("d", kube.ns).spec.replicas == 3


def test_service_accounts_issue_tokens_through_token_requests(kube: Api) -> None:
    accounts = f"/api/v1/namespaces/{kube.ns}/serviceaccounts"
    core = kubernetes.client.CoreV1Api(kube.api)
    request = {"spec": {"audiences": [], "expirationSeconds": 3600}}
    status, _ = kube.request("POST", f"{accounts}/op/token", request)
    assert status == 404, "no token for a ServiceAccount that does not exist"

    kube.ok("POST", accounts, {"metadata": {"name": "op"}})
    # This client sends no Content-Type here; the apiserver then reads JSON.
    issued = core.create_namespaced_service_account_token("op", kube.ns, request)
    assert issued.status.token and issued.status.expiration_timestamp
    status, body = kube.request("POST", f"{accounts}/op/token", {"spec": {"expirationSeconds": 60}})
    assert status == 422 and "expirationSeconds" in body["message"]
    listed = kube.ok("GET", "/api/v1")["resources"]
    assert {"name": "serviceaccounts/token", "verbs": ["create"]}.items() <= next(
        r for r in listed if r["name"] == "serviceaccounts/token"
    ).items()


def test_the_traffic_providers_crds_register_and_serve_their_objects(kube: Api) -> None:
    if kube.backend == "local":  # the real control plane has the upstream CRDs already
        for doc in yaml.safe_load_all(PROVIDER_CRDS.read_text()):
            kube.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {"rules": [{"backendRefs": [{"name": "web-stable", "port": 80}]}]},
    }
    created = kube.ok(
        "POST", f"/apis/gateway.networking.k8s.io/v1/namespaces/{kube.ns}/httproutes", route
    )
    assert created["spec"]["rules"][0]["backendRefs"][0]["weight"] == 1, "schema default"
    for path in (
        f"/apis/networking.istio.io/v1/namespaces/{kube.ns}/virtualservices",
        f"/apis/split.smi-spec.io/v1alpha4/namespaces/{kube.ns}/trafficsplits",
        f"/apis/networking.k8s.io/v1/namespaces/{kube.ns}/ingresses",
    ):
        assert kube.ok("GET", path)["items"] == []


def test_request_history_is_kept_only_when_asked(local_api: LocalAPI, local: Api) -> None:
    for _ in range(20):
        local.ok("GET", local.cm)
    assert list(local_api.handler._requests) == []
    assert local_api.handler.served >= 20


def test_an_injected_fault_answers_first_for_the_requests_it_covers(
    local_api: LocalAPI, local: Api
) -> None:
    local.ok("POST", local.cm, {"metadata": {"name": "c"}})
    local_api.handler["get", f"{local.cm}/c"][:2] << 503
    answers = [local.request("GET", f"{local.cm}/c")[0] for _ in range(4)]
    assert answers == [503, 503, 200, 200], "the first two fail, then the emulation answers"
    assert local.request("GET", local.cm)[0] == 200, "other requests are not touched"


def test_a_changed_deployment_reports_itself_rolled_out(kube: Api) -> None:
    deploys = kube.deploys
    create_deployment(kube, replicas=3)
    counts = (
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    )

    def rolled_out(generation: int) -> bool:
        status = kube.ok("GET", f"{deploys}/d").get("status") or {}
        return {k: status.get(k) for k in counts} == dict(
            zip(counts, (generation, 3, 3, 3, 3), strict=True)
        )

    eventually(lambda: rolled_out(1), what="the Deployment's pods available")
    kube.ok(
        "PATCH",
        f"{deploys}/d",
        {"spec": {"template": {"spec": {"containers": [{"name": "d", "image": "d:2"}]}}}},
        content_type="application/strategic-merge-patch+json",
    )
    eventually(lambda: rolled_out(2), what="the new template's pods available")
