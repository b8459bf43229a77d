"""The dashboard's JSON API over a real (local) Kubernetes API: reads, and approve/reject as
control annotations, refused without the page's token or with a bad request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from aiohttp.test_utils import TestClient, TestServer

from phasegate.api import controls
from phasegate.dashboard.server import Dashboard, make_app
from phasegate.demo.stack import free_port
from phasegate.kube import Kube
from phasegate.localapi import LocalAPI
from support.kube import CRDS, kubectl, namespace
from support.world import release

GATED = {"required": ["engineering", "finance"]}


@pytest.fixture
def kc(local_api: LocalAPI) -> Path:
    kubectl(local_api.kubeconfig_path, "apply", "-f", str(CRDS))
    kubectl(local_api.kubeconfig_path, "apply", "-f", "-", stdin=namespace("shop"))
    body = release()
    body["spec"]["phases"][1]["approval"] = GATED
    kubectl(local_api.kubeconfig_path, "apply", "-n", "shop", "-f", "-", stdin=json.dumps(body))
    return local_api.kubeconfig_path


@pytest.fixture
async def client(kc: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Dashboard, Kube]]:
    kube = Kube(kubernetes.config.new_client_from_config(str(kc)))  # type: ignore[no-untyped-call]
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    dashboard = Dashboard(kube=kube, user="ana", namespace="shop", prometheus=nowhere)
    async with TestClient(TestServer(make_app(dashboard), host="127.0.0.1")) as test:
        yield test, dashboard, kube


APPROVE_FINANCE = {"action": "approve", "phase": "full", "group": "finance"}


def controls_on(kube: Kube) -> dict[str, dict[str, Any]]:
    annotations = kube.get_rollout("shop", "web")["metadata"].get("annotations") or {}
    return {k: json.loads(v) for k, v in annotations.items() if k.startswith(controls.PREFIX)}


async def test_the_page_carries_its_token_and_the_list_its_rollouts(
    client: tuple[TestClient[Any, Any], Dashboard, Kube],
) -> None:
    test, dashboard, _ = client
    page = await (await test.get("/")).text()
    assert f'content="{dashboard.token}"' in page and "/static/app.js" in page
    assert (await test.get("/static/app.js")).status == 200
    assert (await test.get("/static/secrets.txt")).status == 404
    listed = await (await test.get("/api/rollouts")).json()
    assert [(r["namespace"], r["name"], r["state"]) for r in listed["rollouts"]] == [
        ("shop", "web", "Pending")
    ]
    assert listed["user"] == "ana"


async def test_an_unreachable_prometheus_is_said_on_each_chart_and_the_rest_still_shows(
    client: tuple[TestClient[Any, Any], Dashboard, Kube],
) -> None:
    test, dashboard, _ = client
    detail = await (await test.get("/api/rollouts/shop/web")).json()
    assert detail["state"] == "Pending" and len(detail["charts"]) == 4
    assert all(dashboard.prometheus in c["error"] for c in detail["charts"])
    assert dashboard.prometheus in detail["alertsError"]
    assert [p["name"] for p in detail["timeline"]["phases"]] == ["canary", "full"]
    missing = await test.get("/api/rollouts/shop/absent")
    assert missing.status == 404 and "not found" in (await missing.json())["error"]


async def test_approve_writes_the_clis_control_annotation_signed_by_the_caller(
    client: tuple[TestClient[Any, Any], Dashboard, Kube],
) -> None:
    test, dashboard, kube = client
    sent = {"X-Phasegate-Token": dashboard.token}
    answer = await test.post("/api/rollouts/shop/web/control", json=APPROVE_FINANCE, headers=sent)
    assert answer.status == 200, await answer.text()
    key = (await answer.json())["requested"]
    assert controls_on(kube) == {
        key: {"action": "approve", "phase": "full", "group": "finance", "by": "ana"}
    }
    assert controls.is_canonical(kube.get_rollout("shop", "web")["metadata"]["annotations"][key])


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        ({"action": "approve", "phase": "full", "group": "finance"}, {}, 403, "token"),
        ({"action": "approve", "phase": "full", "group": "finance"},
         {"X-Phasegate-Token": "guess"}, 403, "token"),
        ({"action": "abort"}, None, 400, "not 'abort'"),
        ({"action": "reject", "phase": "full", "group": "finance"}, None, 400, "needs a reason"),
        ({"action": "approve", "phase": "canary", "group": "finance"}, None, 400, "no approval"),
        ({"action": "approve", "phase": "full", "group": "sales"}, None, 400, "not an approver"),
        ({"action": "approve", "phase": "full"}, None, 400, "say which"),
    ],
)  # fmt: skip
async def test_a_refused_request_writes_nothing_and_says_why(
    client: tuple[TestClient[Any, Any], Dashboard, Kube],
    body: dict[str, Any],
    headers: dict[str, str] | None,
    status: int,
    words: str,
) -> None:
    test, dashboard, kube = client
    sent = {"X-Phasegate-Token": dashboard.token} if headers is None else headers
    answer = await test.post("/api/rollouts/shop/web/control", json=body, headers=sent)
    assert answer.status == status
    assert words in (await answer.json())["error"]
    assert controls_on(kube) == {}


async def test_a_write_naming_another_host_is_refused(
    client: tuple[TestClient[Any, Any], Dashboard, Kube],
) -> None:
    test, dashboard, kube = client
    sent = {"X-Phasegate-Token": dashboard.token, "Host": "attacker.example:3100"}
    answer = await test.post("/api/rollouts/shop/web/control", json=APPROVE_FINANCE, headers=sent)
    assert answer.status == 403 and controls_on(kube) == {}
