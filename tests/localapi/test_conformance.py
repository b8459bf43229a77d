"""The local API behaves as kube-apiserver does, one behaviour per test, over real HTTP
with the ``kubernetes`` client."""

from __future__ import annotations

import threading
import time
from typing import Any

import kubernetes
import pytest
import yaml

from phasegate.localapi import LocalAPI
from support.kube import CRDS, PROVIDER_CRDS, Kube

CR = "/apis/phasegate.dev/v1alpha1/namespaces/default/progressiverollouts"
CM = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def kube(local_api: LocalAPI) -> Kube:
    return Kube(local_api.kubeconfig_path)


@pytest.fixture
def crd(kube: Kube) -> Kube:
    for doc in yaml.safe_load_all((CRDS / "phasegate.dev_progressiverollouts.yaml").read_text()):
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


def test_discovery_serves_core_and_group_versions(kube: Kube) -> None:
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


def test_listing_namespaces_answers_a_namespace_list(kube: Kube) -> None:
    listing = kube.ok("GET", "/api/v1/namespaces")
    assert listing["kind"] == "NamespaceList" and listing["apiVersion"] == "v1"
    assert "default" in {n["metadata"]["name"] for n in listing["items"]}
    typed = kubernetes.client.CoreV1Api(kube.api).list_namespace()
    assert "kube-system" in {n.metadata.name for n in typed.items}


def test_create_sets_uid_creation_timestamp_resource_version_and_generation(crd: Kube) -> None:
    created = crd.ok("POST", CR, rollout())
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0 and meta["generation"] == 1
    assert meta["namespace"] == "default", "the namespace in the URL is stored in the object"


def test_create_in_a_missing_namespace_is_not_found(kube: Kube) -> None:
    status, body = kube.request("POST", "/api/v1/namespaces/nowhere/configmaps", configmap("x"))
    assert (
        status == 404
        and body["kind"] == "Status"
        and 'namespaces "nowhere" not found' in body["message"]
    )


def test_create_twice_is_already_exists(kube: Kube) -> None:
    kube.ok("POST", CM, configmap("twice"))
    status, body = kube.request("POST", CM, configmap("twice"))
    assert status == 409 and body["reason"] == "AlreadyExists"


def test_lists_carry_kind_api_version_and_resource_version(crd: Kube) -> None:
    crd.ok("POST", CR, rollout())
    listing = crd.ok("GET", CR)
    assert (
        listing["kind"] == "ProgressiveRolloutList"
        and listing["apiVersion"] == "phasegate.dev/v1alpha1"
    )
    assert int(listing["metadata"]["resourceVersion"]) >= int(
        listing["items"][0]["metadata"]["resourceVersion"]
    )


def test_resource_versions_increase_monotonically(kube: Kube) -> None:
    versions = [
        int(kube.ok("POST", CM, configmap(f"m{i}"))["metadata"]["resourceVersion"])
        for i in range(5)
    ]
    assert versions == sorted(versions) and len(set(versions)) == 5


def test_a_crd_registers_discovery_with_names_and_subresources(crd: Kube) -> None:
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
    crd: Kube, change: dict[str, Any], field: str, words: str
) -> None:
    status, body = crd.request("POST", CR, rollout(**change))
    assert status == 422 and body["reason"] == "Invalid", body
    causes = body["details"]["causes"]
    assert any(c["field"] == field and words in c["message"] for c in causes), causes
    assert field in body["message"]


def test_a_missing_required_field_is_named(crd: Kube) -> None:
    body = rollout()
    del body["spec"]["revision"]
    status, answer = crd.request("POST", CR, body)
    assert status == 422 and "spec.revision: Required value" in answer["message"]


def test_unknown_fields_are_pruned_or_refused_under_strict_validation(crd: Kube) -> None:
    body = rollout()
    body["spec"]["bogus"] = 1
    status, answer = crd.request("POST", CR, body, query={"fieldValidation": "Strict"})
    assert status == 400 and 'unknown field "spec.bogus"' in answer["message"]
    created = crd.ok("POST", CR, body, query={"fieldValidation": "Ignore"})
    assert "bogus" not in created["spec"]


def test_schema_defaults_are_applied(crd: Kube) -> None:
    created = crd.ok("POST", CR, rollout())
    assert created["spec"]["interval"] == "30s" and created["spec"]["maxQueryErrors"] == 4


def test_generation_counts_spec_changes_only(crd: Kube) -> None:
    crd.ok("POST", CR, rollout())
    merge = "application/merge-patch+json"
    labelled = crd.ok(
        "PATCH", f"{CR}/web", {"metadata": {"labels": {"a": "b"}}}, content_type=merge
    )
    assert labelled["metadata"]["generation"] == 1
    status = crd.ok(
        "PATCH", f"{CR}/web/status", {"status": {"state": "Progressing"}}, content_type=merge
    )
    assert status["metadata"]["generation"] == 1
    changed = crd.ok("PATCH", f"{CR}/web", {"spec": {"revision": "v2"}}, content_type=merge)
    assert changed["metadata"]["generation"] == 2


def test_a_write_that_changes_nothing_keeps_the_resource_version(crd: Kube) -> None:
    created = crd.ok("POST", CR, rollout())
    same = crd.ok(
        "PATCH",
        f"{CR}/web",
        {"spec": {"revision": "v1"}},
        content_type="application/merge-patch+json",
    )
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_an_update_with_a_stale_resource_version_conflicts(kube: Kube) -> None:
    first = kube.ok("POST", CM, configmap("c", a="1"))
    kube.ok("PUT", f"{CM}/c", {**first, "data": {"a": "2"}})
    status, body = kube.request("PUT", f"{CM}/c", {**first, "data": {"a": "3"}})
    assert status == 409 and body["reason"] == "Conflict" and "has been modified" in body["message"]


def test_a_json_patch_testing_a_stale_resource_version_conflicts(kube: Kube) -> None:
    first = kube.ok("POST", CM, configmap("c", a="1"))
    kube.ok("PUT", f"{CM}/c", {**first, "data": {"a": "2"}})
    ops = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": first["metadata"]["resourceVersion"],
        },
        {"op": "replace", "path": "/data/a", "value": "3"},
    ]
    status, _ = kube.request("PATCH", f"{CM}/c", ops, content_type="application/json-patch+json")
    assert status == 409
    current = kube.ok("GET", f"{CM}/c")
    ops[0]["value"] = current["metadata"]["resourceVersion"]
    assert kube.ok("PATCH", f"{CM}/c", ops, content_type="application/json-patch+json")["data"] == {
        "a": "3"
    }


def test_status_and_spec_are_written_through_their_own_endpoints(crd: Kube) -> None:
    crd.ok("POST", CR, {**rollout(), "status": {"state": "Succeeded"}})
    assert "status" not in crd.ok("GET", f"{CR}/web"), "status is dropped on create"
    merge = "application/merge-patch+json"
    crd.ok(
        "PATCH",
        f"{CR}/web",
        {"status": {"state": "Succeeded"}, "spec": {"revision": "v2"}},
        content_type=merge,
    )
    after_main = crd.ok("GET", f"{CR}/web")
    assert after_main["spec"]["revision"] == "v2" and "status" not in after_main
    crd.ok(
        "PATCH",
        f"{CR}/web/status",
        {"status": {"state": "Holding"}, "spec": {"revision": "v3"}},
        content_type=merge,
    )
    after_status = crd.ok("GET", f"{CR}/web")
    assert after_status["status"]["state"] == "Holding" and after_status["spec"]["revision"] == "v2"


def test_status_writes_are_validated_too(crd: Kube) -> None:
    crd.ok("POST", CR, rollout())
    status, body = crd.request(
        "PATCH",
        f"{CR}/web/status",
        {"status": {"state": "Exploded"}},
        content_type="application/merge-patch+json",
    )
    assert status == 422 and "status.state" in body["message"]


def test_deletion_waits_for_finalizers(kube: Kube) -> None:
    kube.ok("POST", CM, {**configmap("f"), "metadata": {"name": "f", "finalizers": ["x/y"]}})
    deleting = kube.ok("DELETE", f"{CM}/f")
    assert deleting["metadata"]["deletionTimestamp"]
    assert kube.ok("GET", f"{CM}/f")["metadata"]["deletionTimestamp"]
    kube.ok(
        "PATCH",
        f"{CM}/f",
        {"metadata": {"finalizers": None}},
        content_type="application/merge-patch+json",
    )
    assert kube.request("GET", f"{CM}/f")[0] == 404


def test_merge_patch_follows_rfc_7386(kube: Kube) -> None:
    kube.ok("POST", CM, configmap("m", a="1", b="2"))
    patched = kube.ok(
        "PATCH",
        f"{CM}/m",
        {"data": {"a": None, "c": "3"}, "metadata": {"labels": {"x": "y"}}},
        content_type="application/merge-patch+json",
    )
    assert patched["data"] == {"b": "2", "c": "3"} and patched["metadata"]["labels"] == {"x": "y"}


def test_json_patch_follows_rfc_6902(kube: Kube) -> None:
    kube.ok("POST", CM, configmap("j", a="1"))
    ops = [
        {"op": "add", "path": "/data/b", "value": "2"},
        {"op": "remove", "path": "/data/a"},
        {"op": "copy", "from": "/data/b", "path": "/data/c"},
        {"op": "move", "from": "/data/c", "path": "/data/d"},
    ]
    patched = kube.ok("PATCH", f"{CM}/j", ops, content_type="application/json-patch+json")
    assert patched["data"] == {"b": "2", "d": "2"}
    status, _ = kube.request(
        "PATCH",
        f"{CM}/j",
        [{"op": "remove", "path": "/data/zzz"}],
        content_type="application/json-patch+json",
    )
    assert status == 422


def test_strategic_merge_patch_merges_lists_by_their_key(kube: Kube) -> None:
    deploys = "/apis/apps/v1/namespaces/default/deployments"
    containers = [{"name": "app", "image": "app:1"}, {"name": "sidecar", "image": "proxy:1"}]
    kube.ok(
        "POST",
        deploys,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": containers}}},
        },
    )
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}}
    patched = kube.ok(
        "PATCH", f"{deploys}/d", patch, content_type="application/strategic-merge-patch+json"
    )
    assert patched["spec"]["template"]["spec"]["containers"] == [
        {"name": "app", "image": "app:2"},
        {"name": "sidecar", "image": "proxy:1"},
    ]
    assert patched["metadata"]["generation"] == 2


def test_label_and_field_selectors_filter_lists(kube: Kube) -> None:
    kube.ok("POST", CM, configmap("a", {"tier": "web", "env": "prod"}))
    kube.ok("POST", CM, configmap("b", {"tier": "db", "env": "prod"}))
    kube.ok("POST", CM, configmap("c", {"tier": "web"}))

    def names(**query: str) -> list[str]:
        return [i["metadata"]["name"] for i in kube.ok("GET", CM, query=query)["items"]]

    assert names(labelSelector="tier=web") == ["a", "c"]
    assert names(labelSelector="tier=web,env") == ["a"]
    assert names(labelSelector="tier in (db, cache)") == ["b"]
    assert names(labelSelector="!env") == ["c"]
    assert names(fieldSelector="metadata.name=b") == ["b"]
    assert kube.request("GET", CM, query={"labelSelector": "tier=(("})[0] == 400


def test_watch_from_a_resource_version_sends_only_later_changes(kube: Kube) -> None:
    kube.ok("POST", CM, configmap("before"))
    mark = kube.ok("GET", CM)["metadata"]["resourceVersion"]
    kube.ok("POST", CM, configmap("after"))
    kube.ok("DELETE", f"{CM}/before")
    events = kube.stream(CM, {"resourceVersion": mark, "timeoutSeconds": "1"})
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "after"),
        ("DELETED", "before"),
    ]


def test_watch_without_a_resource_version_starts_with_the_current_state(kube: Kube) -> None:
    kube.ok("POST", CM, configmap("one"))
    events = kube.stream(CM, {"timeoutSeconds": "1"})
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "one")]


def test_namespaced_watches_deliver_objects_created_by_namespace_url(
    kube: Kube, local_api: LocalAPI
) -> None:
    mark = kube.ok("GET", CM)["metadata"]["resourceVersion"]
    received: list[dict[str, Any]] = []
    watcher = threading.Thread(
        target=lambda: received.extend(
            kube.stream(
                CM, {"resourceVersion": mark, "timeoutSeconds": "2", "labelSelector": "app=web"}
            )
        )
    )
    watcher.start()
    time.sleep(0.3)  # the watch is open before the writes (it would replay them anyway)
    kube.ok("POST", CM, configmap("web-1", {"app": "web"}))
    kube.ok("POST", CM, configmap("db-1", {"app": "db"}))
    watcher.join()
    assert [e["object"]["metadata"]["name"] for e in received] == ["web-1"]
    assert received[0]["object"]["metadata"]["namespace"] == "default"


def test_watches_send_bookmarks_when_asked(kube: Kube) -> None:
    events = kube.stream(
        CM, {"allowWatchBookmarks": "true", "timeoutSeconds": "2", "resourceVersion": "1"}
    )
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks and bookmarks[0]["object"]["metadata"]["resourceVersion"]


def test_a_too_old_resource_version_is_gone(tmp_path: Any) -> None:
    from phasegate.localapi.testing import running_local_api

    with running_local_api(tmp_path / "kc", window=5) as api:
        kube = Kube(api.kubeconfig_path)
        for i in range(10):
            kube.ok("POST", CM, configmap(f"x{i}"))
        events = kube.stream(CM, {"resourceVersion": "2", "timeoutSeconds": "1"})
        assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410


def test_server_side_tables_use_the_printer_columns(crd: Kube) -> None:
    crd.ok("POST", CR, rollout())
    crd.ok(
        "PATCH",
        f"{CR}/web/status",
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
    table = crd.ok("GET", CR, accept="application/json;as=Table;v=v1;g=meta.k8s.io")
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


def test_put_replaces_the_object(kube: Kube) -> None:
    created = kube.ok("POST", CM, configmap("p", a="1"))
    replaced = kube.ok("PUT", f"{CM}/p", {**created, "data": {"z": "9"}})
    assert replaced["data"] == {"z": "9"}
    assert kube.request("PUT", f"{CM}/missing", configmap("missing"))[0] == 404


def create_deployment(kube: Kube, replicas: int) -> None:
    """Deployment ``d`` in ``default``, one container ``d:1``."""
    template = {
        "metadata": {"labels": {"app": "d"}},
        "spec": {"containers": [{"name": "d", "image": "d:1"}]},
    }
    spec = {"replicas": replicas, "selector": {"matchLabels": {"app": "d"}}, "template": template}
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": spec}
    kube.ok("POST", "/apis/apps/v1/namespaces/default/deployments", body)


def test_deployments_have_a_scale_subresource(kube: Kube) -> None:
    deploys = "/apis/apps/v1/namespaces/default/deployments"
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
    typed.patch_namespaced_deployment_scale("d", "default", {"spec": {"replicas": 3}})
    assert typed.read_namespaced_deployment("d", "default").spec.replicas == 3


def test_service_accounts_issue_tokens_through_token_requests(kube: Kube) -> None:
    accounts = "/api/v1/namespaces/default/serviceaccounts"
    core = kubernetes.client.CoreV1Api(kube.api)
    request = {"spec": {"audiences": [], "expirationSeconds": 3600}}
    status, _ = kube.request("POST", f"{accounts}/op/token", request)
    assert status == 404, "no token for a ServiceAccount that does not exist"

    kube.ok("POST", accounts, {"metadata": {"name": "op"}})
    # This client sends no Content-Type here; the apiserver then reads JSON.
    issued = core.create_namespaced_service_account_token("op", "default", request)
    assert issued.status.token and issued.status.expiration_timestamp
    status, body = kube.request("POST", f"{accounts}/op/token", {"spec": {"expirationSeconds": 60}})
    assert status == 422 and "expirationSeconds" in body["message"]
    listed = kube.ok("GET", "/api/v1")["resources"]
    assert {"name": "serviceaccounts/token", "verbs": ["create"]}.items() <= next(
        r for r in listed if r["name"] == "serviceaccounts/token"
    ).items()


def test_the_traffic_providers_crds_register_and_serve_their_objects(kube: Kube) -> None:
    for doc in yaml.safe_load_all(PROVIDER_CRDS.read_text()):
        kube.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {"rules": [{"backendRefs": [{"name": "web-stable", "port": 80}]}]},
    }
    created = kube.ok(
        "POST", "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes", route
    )
    assert created["spec"]["rules"][0]["backendRefs"][0]["weight"] == 1, "schema default"
    for path in (
        "/apis/networking.istio.io/v1/namespaces/default/virtualservices",
        "/apis/split.smi-spec.io/v1alpha4/namespaces/default/trafficsplits",
        "/apis/networking.k8s.io/v1/namespaces/default/ingresses",
    ):
        assert kube.ok("GET", path)["items"] == []


def test_request_history_is_kept_only_when_asked(local_api: LocalAPI, kube: Kube) -> None:
    for _ in range(20):
        kube.ok("GET", CM)
    assert list(local_api.handler._requests) == []
    assert local_api.handler.served >= 20


def test_an_injected_fault_answers_first_for_the_requests_it_covers(
    local_api: LocalAPI, kube: Kube
) -> None:
    kube.ok("POST", CM, {"metadata": {"name": "c"}})
    local_api.handler["get", f"{CM}/c"][:2] << 503
    answers = [kube.request("GET", f"{CM}/c")[0] for _ in range(4)]
    assert answers == [503, 503, 200, 200], "the first two fail, then the emulation answers"
    assert kube.request("GET", CM)[0] == 200, "other requests are not touched"


def test_a_changed_deployment_reports_itself_rolled_out(kube: Kube) -> None:
    deploys = "/apis/apps/v1/namespaces/default/deployments"
    create_deployment(kube, replicas=3)
    status = kube.ok("GET", f"{deploys}/d")["status"]
    assert status == {
        "observedGeneration": 1,
        "replicas": 3,
        "updatedReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
    }
    kube.ok(
        "PATCH",
        f"{deploys}/d",
        {"spec": {"template": {"spec": {"containers": [{"name": "d", "image": "d:2"}]}}}},
        content_type="application/strategic-merge-patch+json",
    )
    assert kube.ok("GET", f"{deploys}/d")["status"]["observedGeneration"] == 2
