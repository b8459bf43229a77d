"""Helpers for the integration tests: a small release, its route, and readers of the stack."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import yaml

from phasegate.demo.stack import Stack
from support.kube import Kube

NS = "it"


def release(name: str = "web", revision: str = "v1", **changes: Any) -> dict[str, Any]:
    """A small release: canary 10% for 8s, then full 100% for 6s; 1s interval."""
    spec: dict[str, Any] = {
        "revision": revision,
        "stable": {"service": "web-stable"},
        "canary": {"service": "web-canary"},
        "trafficRouting": {"gatewayAPI": {"httpRoute": "web"}},
        "interval": "1s",
        "holdWeight": 5,
        "maxQueryErrors": 3,
        "metrics": [
            {
                "name": "error-rate",
                "query": 'sum(rate(http_requests_total{service="{{service}}",code=~"5.."}[5s])) '
                '/ sum(rate(http_requests_total{service="{{service}}"}[5s]))',
            },
            {
                "name": "p99-latency",
                "query": "histogram_quantile(0.99, sum by (le) "
                '(rate(http_request_duration_seconds_bucket{service="{{service}}"}[5s])))',
            },
        ],
        "phases": [
            {
                "name": "canary",
                "weight": 10,
                "duration": "8s",
                "checkpoints": ["4s", "6s", "8s"],
                "successCriteria": [
                    {"metric": "error-rate", "max": 0.01},
                    {"metric": "p99-latency", "max": 0.2},
                ],
                "rollbackTriggers": [{"metric": "error-rate", "max": 0.5, "for": "2s"}],
                "holdTriggers": [{"metric": "error-rate", "max": 0.03, "for": "2s"}],
            },
            {
                "name": "full",
                "weight": 100,
                "duration": "6s",
                "checkpoints": ["3s", "6s"],
                "successCriteria": [{"metric": "error-rate", "max": 0.01}],
                "rollbackTriggers": [{"metric": "error-rate", "max": 0.5, "for": "2s"}],
            },
        ],
    }
    spec.update(changes)
    return {
        "apiVersion": "phasegate.dev/v1alpha1",
        "kind": "ProgressiveRollout",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def route(
    name: str = "web", backends: tuple[str, ...] = ("web-stable", "web-canary")
) -> dict[str, Any]:
    refs = [{"name": b, "port": 80, "weight": 100 if i == 0 else 0} for i, b in enumerate(backends)]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": refs}]},
    }


class World:
    """The running stack, with the readers a test needs."""

    def __init__(self, running: Stack) -> None:
        self.stack = running
        self.kube = Kube(running.kubeconfig)

    def apply(self, *objects: dict[str, Any]) -> None:
        self.stack.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))

    def rollout(self, name: str = "web") -> dict[str, Any]:
        return self.kube.ok(
            "GET", f"/apis/phasegate.dev/v1alpha1/namespaces/{NS}/progressiverollouts/{name}"
        )  # type: ignore[no-any-return]

    def status(self, name: str = "web") -> dict[str, Any]:
        return self.rollout(name).get("status") or {}

    def route(self, name: str = "web") -> dict[str, Any]:
        return self.kube.ok(
            "GET", f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes/{name}"
        )  # type: ignore[no-any-return]

    def canary_weight(self, name: str = "web") -> int:
        refs = self.route(name)["spec"]["rules"][0]["backendRefs"]
        return int(next(r for r in refs if r["name"].endswith("canary"))["weight"])

    def wait(
        self,
        check: Callable[[dict[str, Any]], Any],
        timeout: float = 60,
        name: str = "web",
        what: str = "condition",
    ) -> dict[str, Any]:
        """Poll the rollout's status until ``check`` holds; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status(name)
            if check(status):
                return status
            time.sleep(0.2)
        raise AssertionError(
            f"{what} not reached in {timeout}s; "
            f"status: {status.get('state')} {status.get('message')}"
        )

    def start_operator(self, name: str = "operator", *extra: str) -> Any:
        """An operator process; standalone unless ``extra`` asks for peering."""
        flags = extra or ("--standalone",)
        return self.stack.start_operator(name, *flags, "--prometheus", self.stack.prometheus_url)

    def control(self, action: str, name: str = "web", **fields: str) -> None:
        from phasegate.api import controls

        ((key, value),) = controls.annotation(action, **fields).items()  # type: ignore[arg-type]
        self.stack.kubectl("annotate", "prollout", name, "-n", NS, f"{key}={value}")


def start_world(running: Stack) -> World:
    """The stack the scenarios run on: API, stable and canary services, Prometheus scraping
    them, namespace ``it`` with route ``web``, and 300 requests/s of load."""
    running.start_api()
    running.start_service("web-stable")
    running.start_service("web-canary")
    running.start_prometheus()
    running.prometheus_scrapes(["web-stable", "web-canary"])
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    running.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(namespace))
    world = World(running)
    world.apply(route())
    running.start_load(NS, "web", rate=300)
    return world


class WeightRecorder:
    """Records every change of the route's canary weight, as watches deliver it.

    Short watches (1s each, resumed from the last resourceVersion) keep the reader thread
    stoppable without closing a connection under its feet."""

    def __init__(self, world: World, name: str = "web") -> None:
        self.world, self.name = world, name
        self.samples: list[tuple[float, int]] = [(time.time(), world.canary_weight(name))]
        self._version = world.route(name)["metadata"]["resourceVersion"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        base = (
            f"http://127.0.0.1:{self.world.stack.api_port}/apis/gateway.networking.k8s.io/v1"
            f"/namespaces/{NS}/httproutes?watch=true&fieldSelector=metadata.name%3D{self.name}"
            "&timeoutSeconds=1"
        )
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(
                    f"{base}&resourceVersion={self._version}", timeout=5
                ) as stream:
                    for line in stream:
                        self._record(json.loads(line))
            except (OSError, ValueError):
                time.sleep(0.1)

    def _record(self, event: dict[str, Any]) -> None:
        self._version = event["object"]["metadata"]["resourceVersion"]
        refs = event["object"]["spec"]["rules"][0]["backendRefs"]
        weight = int(next(r for r in refs if r["name"].endswith("canary"))["weight"])
        if weight != self.samples[-1][1]:
            self.samples.append((time.time(), weight))

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.samples

    def first(self, weight: int) -> float:
        return next(t for t, w in self.samples if w == weight)


def breach_start(
    prometheus_url: str, query: str, threshold: float, start: float, end: float
) -> float:
    """The first instant from which ``query`` stayed above ``threshold`` until ``end``."""
    from phasegate.demo.stack import http_json

    params = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": "0.25"})
    values = http_json(f"{prometheus_url}/api/v1/query_range?{params}")["data"]["result"][0][
        "values"
    ]
    above = [float(t) for t, v in values if float(v) > threshold]
    return next(t for t in above if all(float(v) > threshold for s, v in values if float(s) >= t))
